"""Soft visibility's program: project, then the dense reference or the tiled stream, then
alpha from the T-conorm's reduction."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from softjax._src.camera import Camera
from softjax._src.config import RasterConfig
from softjax._src.geometry.clip import clip_attributes, clip_depths, project, source_face
from softjax._src.hard.zbuffer import nearest_faces
from softjax._src.mesh import Mesh
from softjax._src.soft.colour import softmax_scale
from softjax._src.soft.dense import dense
from softjax._src.soft.stream import Scalars, stream
from softjax._src.soft.tconorms import alpha_from
from softjax._src.tiles.bins import face_data, static_settings, untile


def face_ids_of(nearest):
    """Clipped-triangle indices (-1 for none) -> the faces they come from."""
    return jnp.where(nearest >= 0, source_face(nearest), -1).astype(jnp.int32)


# Jitted so that eager calls compile once per shape and config rather than tracing the
# tiled path's loops on every call; inside a user's jit/vmap/grad it is simply inlined.
@functools.partial(jax.jit, static_argnames=("shader", "face_ids", "depth"))
def aggregate(mesh: Mesh, camera: Camera, cfg: RasterConfig, blur, corner_colours,
              shader=None, shade=(), face_ids=False, depth=None):  # fmt: skip
    """Alpha `(H, W)` and, when `corner_colours (F, 3, A)` has A > 0, RGB `(H, W, C)`, by
    the method `cfg` names. `shader(attrs, face, shade)` turns interpolated attributes into
    colours per (pixel, face) pair (one whose `derivatives` is k > 0 also takes the screen
    derivatives of its first k attributes, `pair_derivatives`); None takes them as colours.
    With `face_ids`, also the nearest face whose interior holds each pixel centre `(H, W)`
    (-1 for none), else None.
    `blur = (sigma, gamma, t_conorm_p)` are scalars, traced so that new values reuse the
    compilation. `depth` is the attribute channel holding the corners' view depth, if any
    (see `clip_depths`). Everything is in the dtype of `mesh.verts` (see `compute_dtype`)."""
    dtype = mesh.verts.dtype
    sigma, gamma, p = (jnp.asarray(x, dtype) for x in blur)
    tris = project(mesh.verts, mesh.faces, camera, cfg.cull_backfaces, mesh.face_mask)
    perspective = not camera.orthographic
    with_colour = corner_colours.shape[-1] > 0
    corner_colours = clip_attributes(tris, corner_colours)  # (F', 3, A)
    if depth is not None:
        clipped = clip_depths(tris, corner_colours[..., depth], camera.near)
        corner_colours = corner_colours.at[..., depth].set(clipped)
    pieces = tris.valid.shape[0]
    faces_kept = mesh.num_faces if mesh.face_mask is None else jnp.sum(mesh.face_mask)
    winner_needed = face_ids or (with_colour and cfg.color == "hard")

    if cfg.method == "dense":
        # Every pixel against every clipped triangle: 2F pieces, most second pieces unused.
        # (Choosing the first pieces alone by a `lax.cond` when no face needs a second one
        # halves the forward pass, but reverse mode then keeps both branches' residuals.)
        total, rgb, nearest = dense(cfg, camera, sigma, gamma, p, shader, shade,
                                    winner_needed, with_colour, tris, corner_colours)  # fmt: skip
    else:
        static = static_settings(cfg, pieces, perspective, shader, mesh.num_faces)
        faces, valid = face_data(tris, corner_colours)
        nearest = None
        if winner_needed:
            nearest = nearest_faces(faces, valid, static)[0][0]
        scalars = Scalars(softmax_scale(gamma, camera.near, camera.far), camera.far,
                          sigma, gamma, p, shade)  # fmt: skip
        winner = nearest if with_colour and cfg.color == "hard" else None
        total, rgb = stream(faces, scalars, valid, winner, static)
        total = untile(total, cfg.image_size, cfg.tile_size)
        if nearest is not None:
            nearest = untile(nearest, cfg.image_size, cfg.tile_size)
        if with_colour:
            rgb = jnp.moveaxis(untile(rgb, cfg.image_size, cfg.tile_size), 0, -1)
    alpha = alpha_from(total, p, cfg.alpha, faces_kept)
    return alpha, rgb if with_colour else None, face_ids_of(nearest) if face_ids else None
