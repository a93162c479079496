"""Public entry points: mesh + camera (+ lights) -> silhouette or RGBA image.

The pipeline, as data flows: project the faces to the screen, compute per (pixel, face)
fragments, turn signed distances into coverage logits, shade, aggregate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from softjax import blend
from softjax.camera import Camera, pixel_centers
from softjax.config import RasterConfig
from softjax.mesh import Mesh, face_normals
from softjax.raster import fragments, project
from softjax.shading import Lights, lambert


def _check_args(mesh, camera, cfg, lights=None) -> None:
    for value, cls, name in ((mesh, Mesh, "mesh"), (camera, Camera, "camera"),
                             (cfg, RasterConfig, "cfg")):  # fmt: skip
        if not isinstance(value, cls):
            got = type(value).__name__
            raise TypeError(f"`{name}` must be a softjax {cls.__name__}, got {got}")
    if lights is not None and not isinstance(lights, Lights):
        raise TypeError(f"`lights` must be a softjax Lights or None, got {type(lights).__name__}")
    if mesh.verts.ndim != 2:
        raise ValueError(
            f"`mesh.verts` must have shape (V, 3), got {tuple(mesh.verts.shape)}; to render "
            "a batch of meshes use jax.vmap"
        )
    if camera.eye.ndim != 1:
        raise ValueError(
            f"`camera` holds a batch of cameras (eye shape {tuple(camera.eye.shape)}); "
            "render a batch with jax.vmap(sj.render, in_axes=(None, 0, None))"
        )


def _rasterize(mesh: Mesh, camera: Camera, cfg: RasterConfig):
    """Dense reference rasterization: every pixel against every face.

    Returns the camera (in the mesh's dtype), the pixel-face fragments, coverage logits
    `dist2 / sigma` `(P, F)` and the mask `(P, F)` of pairs that take part (face rendered and
    within the `dist_eps` cull distance). Memory is O(H * W * F): tests and small scenes.
    """
    dtype = mesh.verts.dtype
    camera = jax.tree.map(lambda x: jnp.asarray(x, dtype), camera)
    tris = project(mesh.verts, mesh.faces, camera, cfg.cull_backfaces)
    frags = fragments(pixel_centers(cfg.image_size, dtype), tris)
    valid = tris.valid[None, :] & (frags.dist2 >= -cfg.cull_dist2)
    return camera, frags, frags.dist2 / cfg.sigma, valid


def render_silhouette(mesh: Mesh, camera: Camera, cfg: RasterConfig) -> jax.Array:
    """Soft silhouette `1 - prod_f (1 - D_f)`.

    Args:
      mesh: the mesh to draw.
      camera: a single camera (use `jax.vmap` for a batch).
      cfg: static settings (image size, sigma).

    Returns:
      `(H, W)` alpha in [0, 1], in the dtype of `mesh.verts`.
    """
    _check_args(mesh, camera, cfg)
    _, _, logits, valid = _rasterize(mesh, camera, cfg)
    alpha = blend.silhouette_from_log_transmittance(blend.log_transmittance(logits, valid))
    return alpha.reshape(cfg.image_size)


def render(mesh: Mesh, camera: Camera, cfg: RasterConfig, lights: Lights | None = None):
    """Soft RGBA image (SoftRas aggregation).

    Colours are the mesh's vertex colours interpolated with perspective-correct barycentrics
    (clamped to the triangle outside it), multiplied by flat Lambert shading when `lights` is
    given. RGB is a softmax over faces weighted by coverage and depth, with the background as
    one more candidate; it is not premultiplied: near an edge it keeps the face's colour and
    it becomes `cfg.background` where every face is beyond the `cfg.dist_eps` cull distance
    (alpha below about `dist_eps`).

    Faces with a corner at view depth <= `camera.near` are not drawn (culled, not clipped).
    Geometry beyond `camera.far` is still drawn; its depth weight falls below the background's.

    Args:
      mesh: the mesh to draw.
      camera: a single camera (use `jax.vmap` for a batch).
      cfg: static settings.
      lights: optional `Lights`; None renders unlit vertex colours.

    Returns:
      `(H, W, 4)` RGBA in the dtype of `mesh.verts`; `rgba[..., 3]` equals
      `render_silhouette(mesh, camera, cfg)`.
    """
    _check_args(mesh, camera, cfg, lights)
    camera, frags, logits, valid = _rasterize(mesh, camera, cfg)
    dtype = mesh.verts.dtype

    alpha = blend.silhouette_from_log_transmittance(blend.log_transmittance(logits, valid))

    face_colours = mesh.colors[mesh.faces]  # (F, 3 corners, 3 rgb)
    colours = jnp.einsum("pfk,fkc->pfc", frags.bary, face_colours)
    if lights is not None:
        lights = jax.tree.map(lambda x: jnp.asarray(x, dtype), lights)
        colours = colours * lambert(lights, face_normals(mesh.verts, mesh.faces))[None]
    background = jnp.asarray(cfg.background, dtype)
    rgb = blend.softmax_colour(
        logits, frags.z, colours, valid, background,
        near=camera.near, far=camera.far, gamma=cfg.gamma, eps=cfg.eps,
    )  # fmt: skip

    h, w = cfg.image_size
    return jnp.concatenate([rgb, alpha[:, None]], axis=-1).reshape(h, w, 4)
