"""`sj.splat`: rasterize-then-splat's splat and composite step as a building block, for
colours shaded by one's own code from `sj.rasterize`'s fragments."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from softjax._src.camera import Camera, to_camera
from softjax._src.hard.fragments import Fragments
from softjax._src.hard.splat import splat_planes
from softjax._src.inputs import compute_dtype, in_dtype
from softjax._src.mesh import Mesh
from softjax._src.ops import check_fragments
from softjax._src.pipeline.splat import splat_offsets


def splat(colors, fragments: Fragments, mesh: Mesh, camera: Camera, background=None):
    """Splats shaded fragments onto the pixel grid and composites them (Cole et al. 2021,
    "Differentiable Surface Rendering via Non-Differentiable Sampling"): what
    `RasterConfig(visibility="splat")` does after shading.

    Each pixel's colour on each layer is spread over its 3x3 neighbourhood by a Gaussian of
    variance 1/4 px^2 centred at the screen position of the surface point it shows, rebuilt
    from the vertices and the camera with the fragments' barycentrics held constant. In value
    that point is the pixel's centre; in derivative it moves with the geometry, so the
    result's gradient reaches the vertices and the camera across silhouette and occlusion
    edges. Splats are routed by depth to foreground, surface and background buffers at each
    pixel, each normalised by `1 / max(weight, 1)` (a covered interior collects 1.05), and
    composited front to back. The formulas are in `softjax._src.hard.splat`.

    Args:
      colors: `(H, W, C)` shaded colours of `fragments` (`(H, W, K, C)` with K layers); values
        where a layer has no face are ignored.
      fragments: `sj.rasterize(mesh, camera, cfg, layers=K)`.
      mesh, camera: what was rasterized.
      background: None (default) returns the composite premultiplied by coverage (over
        nothing); C values (or one) composite it over that colour instead.

    Returns:
      `(H, W, C + 1)`: the composited colours and, last, the coverage in [0, 1], in the dtype
      of `colors` (floating point). Differentiable with respect to `colors`, the vertices and
      the camera, in forward and reverse mode.
    """
    check_fragments(fragments, mesh)
    if not isinstance(camera, Camera) or camera.eye.ndim != 1:
        raise TypeError("`camera` must be a single softjax Camera (use jax.vmap for a batch)")
    colors = jnp.asarray(colors)
    if not jnp.issubdtype(colors.dtype, jnp.floating):
        raise TypeError(f"`colors` must be floating point, got {colors.dtype}")
    layered = fragments.face_id.ndim == 3
    want = fragments.face_id.shape
    if colors.ndim != len(want) + 1 or colors.shape[:-1] != want:
        raise ValueError(
            f"`colors` must be {'(H, W, K, C)' if layered else '(H, W, C)'} with the fragments' "
            f"{want}, got shape {tuple(colors.shape)}"
        )
    channels = colors.shape[-1]
    dtype = compute_dtype(colors.dtype)
    if background is not None:
        background = jnp.asarray(background, dtype)
        if background.ndim > 1 or background.size not in (1, channels):
            raise ValueError(
                f"`background` must be one value or {channels} (one per channel of `colors`), "
                f"got shape {tuple(background.shape)}"
            )
        background = jnp.broadcast_to(background.reshape(-1), (channels,))
    mesh, camera = in_dtype((mesh, camera), dtype)
    out = _splat(colors.astype(dtype), fragments, mesh, camera, background, layered)
    return out.astype(colors.dtype)


@jax.jit
def _splat_jit(colors, fragments, mesh, camera, background):
    def planes(x):  # (H, W, K, ...) -> (K, H, W, ...)
        return jnp.moveaxis(x, 2, 0)

    face, depth = planes(fragments.face_id), planes(fragments.depth)
    bary = tuple(planes(fragments.bary[..., k]).astype(colors.dtype) for k in range(3))
    offset = splat_offsets(to_camera(camera, mesh.verts), mesh.faces, face, bary, camera,
                           face.shape[1:])  # fmt: skip
    colours = [planes(colors[..., c]) for c in range(colors.shape[-1])]
    out, alpha = splat_planes(colours, face, depth.astype(colors.dtype), offset, background)
    return jnp.stack([*out, alpha], axis=-1)


def _splat(colors, fragments, mesh, camera, background, layered):
    if not layered:  # one layer: add its axis
        fragments = Fragments(*(x[:, :, None] for x in fragments))
        colors = colors[:, :, None]
    if mesh.num_faces == 0:  # nothing covers any pixel: the background, alpha 0
        shape = (*colors.shape[:2], colors.shape[-1])
        rgb = jnp.zeros(shape, colors.dtype) if background is None else jnp.broadcast_to(
            background, shape)  # fmt: skip
        return jnp.concatenate([rgb, jnp.zeros((*shape[:2], 1), colors.dtype)], axis=-1)
    return _splat_jit(colors, fragments, mesh, camera, background)
