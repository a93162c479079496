"""Perspective cameras as pytrees, and the projection to screen space.

Screen space ("NDC-y units"): x to the camera's right, y up, both divided by the half-height
of the image plane, so the vertical field of view spans y in [-1, 1] and the horizontal one spans
x in [-W/H, W/H]. Pixels are square in these units (2/H on a side), which is why the soft
coverage distance, measured here, stays isotropic for non-square images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from softjax._checks import as_float_array, check_finite, check_shape, is_concrete
from softjax._numerics import safe_norm, safe_normalize


@jax.tree_util.register_pytree_node_class
class Camera:
    """A pinhole camera with a vertical field of view.

    Args:
      eye: `(3,)` camera centre in world coordinates.
      rotation: `(3, 3)` world-to-camera rotation whose rows are the camera's right `r`, up `u`
        and forward `f` axes in world coordinates; camera coordinates of a point `p` are
        `rotation @ (p - eye)`, with `z` the view depth (positive in front).
      fov: scalar vertical field of view in degrees, in (0, 180).
      near, far: scalar clipping depths, `0 < near < far`. `near` culls faces (see
        `render`); `far` only sets the depth normalisation of the colour softmax.

    Most users build cameras with `look_at`. All fields are array leaves: `jax.vmap(look_at)`
    gives a batch of cameras whose fields carry a leading batch axis.
    """

    def __init__(self, eye, rotation, fov=60.0, near=0.1, far=100.0):
        eye = as_float_array(eye, "eye")
        dtype = eye.dtype
        rotation = as_float_array(rotation, "rotation", dtype=dtype)
        fov, near, far = (as_float_array(v, n, dtype=dtype) for v, n in
                          ((fov, "fov"), (near, "near"), (far, "far")))  # fmt: skip
        check_shape(eye, (3,), "eye")
        check_shape(rotation, (3, 3), "rotation")
        for v, n in ((fov, "fov"), (near, "near"), (far, "far")):
            check_shape(v, (), n)
            check_finite(v, n)
        check_finite(eye, "eye")
        check_finite(rotation, "rotation")
        if is_concrete(fov) and not 0.0 < float(fov) < 180.0:
            raise ValueError(f"`fov` must be in (0, 180) degrees, got {float(fov)}")
        if is_concrete(near) and is_concrete(far) and not 0.0 < float(near) < float(far):
            raise ValueError(
                f"`near` and `far` must satisfy 0 < near < far, got near={float(near)}, "
                f"far={float(far)}"
            )
        self.eye, self.rotation, self.fov, self.near, self.far = eye, rotation, fov, near, far

    def tree_flatten(self):
        return (self.eye, self.rotation, self.fov, self.near, self.far), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.eye, obj.rotation, obj.fov, obj.near, obj.far = children
        return obj

    def __repr__(self) -> str:
        return f"Camera(eye={self.eye}, fov={self.fov}, near={self.near}, far={self.far})"


def look_at(eye, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), fov=60.0, near=0.1, far=100.0) -> Camera:
    """A perspective camera at `eye` looking at `at`.

    Frame: `f = normalize(at - eye)`, `r = normalize(cross(f, up))`, `u = cross(r, f)`. Image
    row 0 is towards `up`, column 0 is the camera's left. When `up` is parallel to the view
    direction another up is chosen (the world axis least aligned with `f`), so the camera and
    its gradients stay finite.

    Args:
      eye, at, up: `(3,)` world positions / direction.
      fov: vertical field of view in degrees.
      near, far: clipping depths, `0 < near < far`.

    Raises:
      ValueError: when `eye` equals `at`, `up` is zero, or the scalars are out of range
        (checked eagerly).
    """
    eye = as_float_array(eye, "eye")
    dtype = eye.dtype
    at = as_float_array(at, "at", dtype=dtype)
    up = as_float_array(up, "up", dtype=dtype)
    for v, n in ((eye, "eye"), (at, "at"), (up, "up")):
        check_shape(v, (3,), n)
        check_finite(v, n)
    if is_concrete(eye) and is_concrete(at) and not np.any(np.asarray(eye) != np.asarray(at)):
        raise ValueError("`eye` and `at` must differ: the view direction is undefined")
    if is_concrete(up) and not np.any(np.asarray(up)):
        raise ValueError("`up` must be a non-zero vector")

    f = safe_normalize(at - eye, fallback=jnp.array([0.0, 0.0, -1.0], dtype))
    up = safe_normalize(up, fallback=jnp.array([0.0, 1.0, 0.0], dtype))
    r = jnp.cross(f, up)
    # Fallback up: the world axis least aligned with f is never parallel to it.
    alt_up = jax.nn.one_hot(jnp.argmin(jnp.abs(f)), 3, dtype=dtype)
    r = jnp.where(safe_norm(r) > 1e-3, r, jnp.cross(f, alt_up))
    r = safe_normalize(r)
    u = jnp.cross(r, f)
    return Camera(eye, jnp.stack([r, u, f]), fov, near, far)


def to_camera(camera: Camera, points):
    """World points `(..., 3)` -> camera coordinates `(..., 3)` (x right, y up, z depth)."""
    return (points - camera.eye) @ camera.rotation.T


def to_screen(camera: Camera, cam_points, valid):
    """Camera coordinates `(..., 3)` -> screen xy `(..., 2)` in NDC-y units.

    `valid` marks points in front of the near plane; elsewhere the division uses a dummy depth
    so that values and gradients stay finite (the caller masks those points out).
    """
    half_height = jnp.tan(jnp.deg2rad(camera.fov) / 2)
    z = jnp.where(valid, cam_points[..., 2], 1.0)
    return cam_points[..., :2] / (z * half_height)[..., None]


def pixel_axes(image_size: tuple[int, int], rows: int, cols: int):
    """Screen y of pixel rows `0..rows-1` and x of columns `0..cols-1` (numpy float64).

    Pixel (i, j) has its centre at NDC x = (2j+1)/W - 1, y = 1 - (2i+1)/H; x is then scaled by
    W/H into the isotropic screen units used for distances. `rows`/`cols` may run past the
    image (the tiled path pads to whole tiles); every caller uses this one formula so that all
    paths see bit-identical pixel centres.
    """
    h, w = image_size
    y = 1 - (2 * np.arange(rows) + 1) / h
    x = ((2 * np.arange(cols) + 1) / w - 1) * (w / h)
    return y, x


def pixel_centers(image_size: tuple[int, int], dtype) -> jax.Array:
    """Screen xy of every pixel centre, `(H * W, 2)` in row-major order (see `pixel_axes`)."""
    y, x = pixel_axes(image_size, *image_size)
    xx, yy = np.meshgrid(x, y)
    return jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=-1), dtype=dtype)
