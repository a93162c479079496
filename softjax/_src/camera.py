"""Cameras as pytrees (perspective and orthographic), and the projection to screen space.

Screen space ("NDC-y units"): x to the camera's right, y up, both divided by half the image
height, so the image spans y in [-1, 1] and x in [-W/H, W/H]. Pixels are square in these
units (2/H on a side), which is why the soft coverage distance, measured here, stays isotropic
for non-square images. A camera maps camera coordinates `(x, y, z)` (OpenCV's: x right, y
down, z the view depth) to the screen with a focal length and a principal point in these
units:

    perspective:   (x_s, y_s) = focal * (x / z, -y / z) + center
    orthographic:  (x_s, y_s) = focal * (x, -y) + center

`look_at` (vertical field of view, centred) and `Camera.from_opencv` (intrinsics K, pose R, t)
both build this one camera, so one projection serves every path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from softjax._src.checks import (
    as_choice,
    as_finite_real,
    as_flag,
    as_float_array,
    as_image_size,
    check_finite,
    check_positive,
    check_rotation,
    check_shape,
    host_values,
)
from softjax._src.numerics import matmul, safe_norm, safe_normalize


@jax.tree_util.register_pytree_node_class
class Camera:
    """A pinhole (perspective) or orthographic camera.

    Camera coordinates are OpenCV's: x to the right of the image, y down it, z the view depth
    (positive in front), a right-handed frame.

    Args:
      eye: `(3,)` camera centre in world coordinates (for an orthographic camera, the origin
        of its frame).
      rotation: `(3, 3)` world-to-camera rotation (orthonormal, det +1) whose rows are the
        camera's right, down and forward axes in world coordinates: camera coordinates of a
        point `p` are `rotation @ (p - eye)`. The same matrix as OpenCV's `R`.
      focal: `(2,)` positive focal lengths (x, y) in screen units (see the module docstring):
        `1 / tan(fov / 2)` for a vertical field of view `fov`; for an orthographic camera
        the screen units per world unit.
      center: `(2,)` screen position of the principal point (the optical axis); `(0, 0)` is
        the image centre, screen y pointing up.
      near, far: scalar depths, `0 < near < far`. Geometry is clipped at `near` (see
        `render`); `far` only sets the depth normalisation of the colour softmax.
      orthographic: static flag; True projects along the forward axis without perspective
        division.

    Most users build cameras with `look_at` or `Camera.from_opencv`. Array fields are pytree
    leaves: `jax.vmap(look_at)` gives a batch of cameras whose fields carry a leading batch
    axis; `orthographic` is static (part of the tree structure).

    Raises:
      ValueError: wrong shapes, non-finite values, a `rotation` that is not a rotation, a
        non-positive focal length or `near`/`far` out of order (values are checked where they
        can be read without a device transfer, see `softjax._checks`).
    """

    def __init__(self, eye, rotation, focal, center=(0.0, 0.0), near=0.1, far=100.0,
                 orthographic=False):  # fmt: skip
        eye = as_float_array(eye, "eye")
        dtype = eye.dtype
        rotation = as_float_array(rotation, "rotation", dtype=dtype)
        focal = as_float_array(focal, "focal", dtype=dtype)
        center = as_float_array(center, "center", dtype=dtype)
        near, far = (as_float_array(v, n, dtype=dtype) for v, n in ((near, "near"), (far, "far")))
        for v, n, shape in ((eye, "eye", (3,)), (rotation, "rotation", (3, 3)),
                            (focal, "focal", (2,)), (center, "center", (2,)),
                            (near, "near", ()), (far, "far", ())):  # fmt: skip
            check_shape(v, shape, n)
            check_finite(v, n)
        check_positive(focal, "focal")
        check_rotation(rotation, "rotation")
        near_v, far_v = host_values(near), host_values(far)
        if near_v is not None and far_v is not None and not 0.0 < float(near_v) < float(far_v):
            raise ValueError(
                f"`near` and `far` must satisfy 0 < near < far, got near={float(near_v)}, "
                f"far={float(far_v)}"
            )
        self.eye, self.rotation, self.focal, self.center = eye, rotation, focal, center
        self.near, self.far = near, far
        self.orthographic = as_flag(orthographic, "orthographic")

    def tree_flatten(self):
        return (self.eye, self.rotation, self.focal, self.center, self.near, self.far), (
            self.orthographic
        )

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.eye, obj.rotation, obj.focal, obj.center, obj.near, obj.far = children
        obj.orthographic = aux
        return obj

    @property
    def fov(self):
        """Vertical field of view in degrees (perspective cameras)."""
        return jnp.rad2deg(2 * jnp.arctan(1 / self.focal[..., 1]))

    def __repr__(self) -> str:
        kind = "orthographic" if self.orthographic else "perspective"
        return (
            f"Camera({kind}, eye={self.eye}, focal={self.focal}, center={self.center}, "
            f"near={self.near}, far={self.far})"
        )

    @classmethod
    def from_opencv(cls, K, R, t, image_size, pixel_center=0.0, near=0.1, far=100.0):
        """A perspective camera from OpenCV intrinsics and extrinsics.

        OpenCV's conventions: camera x right, y down, z forward; a world point `X` has camera
        coordinates `R @ X + t` and pixel coordinates `(u, v) = (fx x / z + cx, fy y / z + cy)`,
        `u` along columns and `v` along rows. Pixel (i, j) has its centre at
        `(u, v) = (j + pixel_center, i + pixel_center)`: 0 for OpenCV, 0.5 for COLMAP's
        intrinsics (which put pixel centres at +0.5).

        Args:
          K: `(3, 3)` intrinsics `[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]` in pixels (no skew).
          R: `(3, 3)` world-to-camera rotation (proper: det +1).
          t: `(3,)` world-to-camera translation.
          image_size: `(H, W)` of the image K describes, the same order as `RasterConfig`.
            Rendering at another size with the same aspect ratio shows the same view.
          pixel_center: where pixel centres lie in OpenCV pixel coordinates (static).
          near, far: depths, `0 < near < far`.

        Differentiable with respect to `K`, `R` and `t`.
        """
        h, w = as_image_size(image_size)
        pc = as_finite_real(pixel_center, "pixel_center")
        K = as_float_array(K, "K")
        dtype = K.dtype
        R = as_float_array(R, "R", dtype=dtype)
        t = as_float_array(t, "t", dtype=dtype)
        for v, n, shape in ((K, "K", (3, 3)), (R, "R", (3, 3)), (t, "t", (3,))):
            check_shape(v, shape, n)
            check_finite(v, n)
        k = host_values(K)
        if k is not None:
            k = k.astype(np.float64)
            if k[0, 1] != 0 or k[1, 0] != 0 or np.any(k[2] != [0, 0, 1]):
                raise ValueError(
                    f"`K` must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew), got {k.tolist()}"
                )
            if not (k[0, 0] > 0 and k[1, 1] > 0):
                raise ValueError(f"`K` must have positive fx and fy, got {k[0, 0]}, {k[1, 1]}")
        check_rotation(R, "R")
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        # Column j has screen x = (2j + 1 - W) / H and row i has y = 1 - (2i + 1) / H, with
        # j = u - pixel_center and i = v - pixel_center.
        focal = jnp.stack([2 * fx / h, 2 * fy / h])
        center = jnp.stack([(2 * (cx - pc) + 1 - w) / h, (h - 1 - 2 * (cy - pc)) / h])
        return cls(-matmul(R.T, t), R, focal, center, near, far)

    def to_opencv(self, image_size, pixel_center=0.0):
        """`(K, R, t)` in OpenCV's conventions (see `from_opencv`) for an image of
        `image_size = (H, W)`; perspective cameras only."""
        if self.orthographic:
            raise ValueError("an orthographic camera has no OpenCV pinhole intrinsics")
        if self.eye.ndim != 1:
            raise ValueError("`to_opencv` takes one camera; use jax.vmap for a batch")
        h, w = as_image_size(image_size)
        pc = as_finite_real(pixel_center, "pixel_center")
        fx, fy = self.focal[0] * h / 2, self.focal[1] * h / 2
        cx = (self.center[0] * h + w - 1) / 2 + pc
        cy = (h - 1 - self.center[1] * h) / 2 + pc
        zero, one = jnp.zeros_like(fx), jnp.ones_like(fx)
        K = jnp.stack([jnp.stack([fx, zero, cx]), jnp.stack([zero, fy, cy]),
                       jnp.stack([zero, zero, one])])  # fmt: skip
        return K, self.rotation, -matmul(self.rotation, self.eye)


def look_at(eye, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), fov=60.0, near=0.1, far=100.0,
            projection="perspective", scale=1.0) -> Camera:  # fmt: skip
    """A camera at `eye` looking at `at`, centred on the image.

    Frame: `f = normalize(at - eye)`, `r = normalize(cross(f, up))`, `u = cross(r, f)`; the
    camera's `rotation` has the rows `(r, -u, f)` (right, down, forward: OpenCV's frame, a
    proper rotation). Image row 0 is towards `up`, column 0 is the camera's left. When `up` is
    parallel to the view direction another up is chosen (the world axis least aligned with
    `f`), so the camera and its gradients stay finite.

    Args:
      eye, at, up: `(3,)` world positions / direction.
      fov: vertical field of view in degrees (perspective).
      near, far: depths, `0 < near < far`: geometry is clipped at `near`; `far` sets the
        depth normalisation of the colour softmax.
      projection: "perspective" or "orthographic" (static).
      scale: orthographic zoom: `y_ndc = scale * (up component)` and
        `x_ndc = scale * (right component) * H / W`, so the view is `2 / scale` world units
        tall (orthographic only).

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
    eye_v, at_v, up_v = host_values(eye), host_values(at), host_values(up)
    if eye_v is not None and at_v is not None and not np.any(eye_v != at_v):
        raise ValueError("`eye` and `at` must differ: the view direction is undefined")
    if up_v is not None and not np.any(up_v):
        raise ValueError("`up` must be a non-zero vector")

    rotation = _look_at_rotation(eye, at, up)
    projection = as_choice(projection, "projection", ("perspective", "orthographic"))
    if projection == "orthographic":
        scale = as_float_array(scale, "scale", dtype)
        check_shape(scale, (), "scale")
        check_finite(scale, "scale")
        check_positive(scale, "scale")
        focal = jnp.stack([scale, scale])
    elif projection == "perspective":
        fov = as_float_array(fov, "fov", dtype)
        check_shape(fov, (), "fov")
        check_finite(fov, "fov")
        fov_v = host_values(fov)
        if fov_v is not None and not 0.0 < float(fov_v) < 180.0:
            raise ValueError(f"`fov` must be in (0, 180) degrees, got {float(fov_v)}")
        focal = _fov_focal(fov)
    return Camera(eye, rotation, focal, jnp.zeros(2, dtype), near, far,
                  orthographic=projection == "orthographic")  # fmt: skip


# The arithmetic of `look_at` as compiled functions: run eagerly (and eagerly under `vmap`,
# as for a batch of cameras), each primitive would otherwise compile a program of its own
# (~0.08 GB and a second or two for `jax.vmap(look_at)`).
@jax.jit
def _look_at_rotation(eye, at, up):
    """The `(3, 3)` rotation of `look_at`: rows right, down, forward (OpenCV's camera frame,
    a proper rotation)."""
    dtype = eye.dtype
    f = safe_normalize(at - eye, fallback=jnp.array([0.0, 0.0, -1.0], dtype))
    up = safe_normalize(up, fallback=jnp.array([0.0, 1.0, 0.0], dtype))
    r = jnp.cross(f, up)
    # Fallback up: the world axis least aligned with f is never parallel to it.
    alt_up = jax.nn.one_hot(jnp.argmin(jnp.abs(f)), 3, dtype=dtype)
    r = jnp.where(safe_norm(r) > 1e-3, r, jnp.cross(f, alt_up))
    r = safe_normalize(r)
    u = jnp.cross(r, f)
    return jnp.stack([r, -u, f])


@jax.jit
def _fov_focal(fov):
    """`(2,)` focal lengths of a vertical field of view `fov` in degrees."""
    return jnp.broadcast_to(1 / jnp.tan(jnp.deg2rad(fov) / 2), (2,))


def to_camera(camera: Camera, points):
    """World points `(..., 3)` -> camera coordinates `(..., 3)` (x right, y down, z depth)."""
    return matmul(points - camera.eye, camera.rotation.T)


def to_screen(camera: Camera, cam_points):
    """Camera coordinates `(..., 3)` with depth > 0 -> screen xy `(..., 2)` in NDC-y units
    (y up)."""
    xy = cam_points[..., :2] * jnp.asarray([1.0, -1.0], cam_points.dtype)
    if not camera.orthographic:
        xy = xy / cam_points[..., 2:3]
    return xy * camera.focal + camera.center
