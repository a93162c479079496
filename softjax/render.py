"""Public entry points: mesh + camera (+ lights) -> silhouette or RGBA image.

The pipeline, as data flows: project the faces to the screen; for (pixel, face) pairs compute
signed distances, barycentrics and depth; turn distances into coverage; shade; aggregate. The
pair stage runs either densely (`method="dense"`, the reference) or per screen tile over
candidate faces (`method="tiled"`, `softjax.tiled`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from softjax import blend, tiled
from softjax._checks import is_concrete
from softjax.camera import Camera, pixel_centers
from softjax.config import RasterConfig
from softjax.mesh import Mesh, face_normals
from softjax.raster import corners, fragments, interpolate, project
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


def _corner_colours(mesh: Mesh, lights: Lights | None, dtype):
    """`(F, 3, 3)` colour of each face corner, lit per face (flat Lambert) when `lights`."""
    colours = mesh.colors[mesh.faces]
    if lights is None:
        return colours
    lights = jax.tree.map(lambda x: jnp.asarray(x, dtype), lights)
    return colours * lambert(lights, face_normals(mesh.verts, mesh.faces))[:, None, :]


def _with_sentinel(tris):
    """`(9, F + 1)` corner fields and `(F + 1,)` validity of the faces plus one sentinel face
    at index F (finite depth, never valid) that padded list slots point at."""
    geom = jnp.stack(corners(tris.xy, tris.z))  # (9, F)
    sentinel = jnp.zeros((9, 1), geom.dtype).at[6:].set(1.0)
    valid = jnp.concatenate([tris.valid, jnp.zeros(1, bool)])
    return jnp.concatenate([geom, sentinel], axis=1), valid


# Jitted so that eager calls compile once per shape and config rather than tracing the
# tiled path's loops on every call; inside a user's jit/vmap/grad it is simply inlined.
@jax.jit
def _aggregate(mesh: Mesh, camera: Camera, cfg: RasterConfig, corner_colours):
    """Log-transmittance `(H, W)` and, when `corner_colours (F, 3, C)` has C > 0, RGB
    `(H, W, C)`, by the method `cfg` names."""
    dtype = mesh.verts.dtype
    camera = jax.tree.map(lambda x: jnp.asarray(x, dtype), camera)
    tris = project(mesh.verts, mesh.faces, camera, cfg.cull_backfaces)
    perspective = not camera.orthographic
    with_colour = corner_colours.shape[-1] > 0

    if cfg.method == "dense":
        pix = pixel_centers(cfg.image_size, dtype)
        frags = fragments(pix[:, :1], pix[:, 1:], corners(tris.xy, tris.z), perspective)
        valid = tris.valid[None, :] & (frags.dist2 >= -cfg.cull_dist2)
        logits = frags.dist2 / cfg.sigma
        log_t = blend.log_transmittance(logits, valid).reshape(cfg.image_size)
        if not with_colour:
            return log_t, None
        colours = interpolate(frags.bary, jnp.transpose(corner_colours, (1, 2, 0))[:, :, None])
        rgb = blend.softmax_colour(
            logits, frags.z, colours, valid, jnp.asarray(cfg.background, dtype),
            near=camera.near, far=camera.far, gamma=cfg.gamma, eps=cfg.eps,
        )  # fmt: skip
        return log_t, rgb.reshape(*cfg.image_size, -1)

    static = tiled.static_settings(cfg, mesh.num_faces, perspective)
    geom, valid = _with_sentinel(tris)
    faces = tiled.FaceData(
        geom, jnp.pad(jnp.transpose(corner_colours, (1, 2, 0)), ((0, 0), (0, 0), (0, 1)))
    )
    scalars = tiled.Scalars(blend.softmax_scale(cfg.gamma, camera.near, camera.far), camera.far)
    log_t, rgb = tiled.stream(faces, scalars, valid, static)
    log_t = tiled.untile(log_t, cfg.image_size, cfg.tile_size)
    if not with_colour:
        return log_t, None
    return log_t, jnp.moveaxis(tiled.untile(rgb, cfg.image_size, cfg.tile_size), 0, -1)


def render_silhouette(mesh: Mesh, camera: Camera, cfg: RasterConfig) -> jax.Array:
    """Soft silhouette `1 - prod_f (1 - D_f)`.

    Args:
      mesh: the mesh to draw.
      camera: a single camera (use `jax.vmap` for a batch).
      cfg: static settings (image size, sigma, method).

    Returns:
      `(H, W)` alpha in [0, 1], in the dtype of `mesh.verts`.
    """
    _check_args(mesh, camera, cfg)
    no_colour = jnp.zeros((mesh.num_faces, 3, 0), mesh.verts.dtype)
    log_t, _ = _aggregate(mesh, camera, cfg, no_colour)
    return blend.silhouette_from_log_transmittance(log_t)


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
    corner_colours = _corner_colours(mesh, lights, mesh.verts.dtype)
    log_t, rgb = _aggregate(mesh, camera, cfg, corner_colours)
    alpha = blend.silhouette_from_log_transmittance(log_t)
    return jnp.concatenate([rgb, alpha[..., None]], axis=-1)


def fit_pair_capacity(mesh: Mesh, camera: Camera, cfg: RasterConfig, margin: float = 1.25):
    """`cfg` with `pair_capacity` sized so that every view of `mesh` bins in one round.

    The tiled path bins (tile, face) candidate pairs `cfg.pair_capacity` at a time and takes
    further rounds for views with more (same image, more time). This counts the pairs of each
    view eagerly and returns `dataclasses.replace(cfg, pair_capacity=ceil(margin * max))`.
    Call it once, outside `jit`, on a representative mesh (for example the initial or target
    mesh of a fit), then use the returned config everywhere.

    Args:
      mesh: the mesh, with concrete (non-traced) arrays.
      camera: one camera or a batch of cameras (fields with a leading batch axis).
      cfg: the settings to size; `cfg.method` is not changed.
      margin: head room above the largest count, at least 1.

    Returns:
      A `RasterConfig`.
    """
    _check_args(mesh, jax.tree.map(lambda x: x[0], camera) if camera.eye.ndim == 2 else camera,
                cfg)  # fmt: skip
    if not all(is_concrete(x) for x in jax.tree.leaves((mesh, camera))):
        raise ValueError("`fit_pair_capacity` counts pairs eagerly: call it outside jit/vmap/grad")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 1):
        raise ValueError(f"`margin` must be a finite number >= 1, got {margin!r}")
    st = tiled.static_settings(cfg, mesh.num_faces, not camera.orthographic)

    def count(cam):
        cam = jax.tree.map(lambda x: jnp.asarray(x, mesh.verts.dtype), cam)
        tris = project(mesh.verts, mesh.faces, cam, cfg.cull_backfaces)
        geom, valid = _with_sentinel(tris)
        return tiled.bin_faces(geom, valid, st).end[-1]

    counts = jax.jit(jax.vmap(count) if camera.eye.ndim == 2 else count)(camera)
    return dataclasses.replace(cfg, pair_capacity=max(1, math.ceil(margin * int(jnp.max(counts)))))
