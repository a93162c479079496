"""The z-buffer: per pixel centre, the nearest clipped triangle whose interior holds it.

One rule everywhere: the top-left rule decides centres on shared edges, equal depths go to the
lower index, and layer k + 1 is the nearest triangle after layer k in (depth, index) order
(depth peeling). Dense (every pixel against every triangle) or tiled (faces binned to the
tiles under their screen boxes, no blur radius); not differentiated."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from softjax._src.geometry.pairs import visible_depth
from softjax._src.geometry.triangles import from_rows, geometry_rows, setup
from softjax._src.numerics import materialize
from softjax._src.pixels import pixel_axes, pixel_centers
from softjax._src.tiles.bins import (
    FaceData,
    Static,
    batch_of,
    bin_faces,
    face_data,
    for_each_round,
    grid_shape,
    schedule,
    static_settings,
    untile,
)
from softjax._src.tiles.views import per_view


def dense_depths(tris, image_size, perspective: bool):
    """`(H * W, F')` view depth of each clipped triangle of `tris` at each pixel centre that it
    holds (`visible_depth`: the tiled z-buffer's test), inf elsewhere and for empty
    slots. All pairs at once: for the dense method. Not differentiated."""
    tris = jax.lax.stop_gradient(tris)
    pix = pixel_centers(image_size, tris.xy.dtype)
    t = setup(geometry_rows(tris.xy, tris.z))
    return jnp.where(tris.valid[None, :], visible_depth(pix[:, :1], pix[:, 1:], t, perspective),
                     jnp.inf)  # fmt: skip


def dense_nearest(tris, image_size, perspective: bool, layers: int = 1):
    """`(layers, H * W)` int32 indices of the nearest clipped triangles `tris` at each pixel
    centre (-1 where none), nearest first, every pixel against every triangle: the dense
    method's z-buffer, by the same rule as the tiled one (`nearest_after`). Not
    differentiated."""
    z = dense_depths(tris, image_size, perspective)  # (P, F')
    index = jnp.arange(z.shape[1], dtype=jnp.int32)[None, :]
    z_after = jnp.full(z.shape[:1], -jnp.inf, z.dtype)
    id_after = jnp.full(z.shape[:1], -1, jnp.int32)
    ids = []
    for _ in range(layers):
        later = (z > z_after[:, None]) | ((z == z_after[:, None]) & (index > id_after[:, None]))
        zl = jnp.where(later, z, jnp.inf)
        best = jnp.argmin(zl, axis=-1).astype(jnp.int32)  # the first of equal depths
        z_after = jnp.take_along_axis(zl, best[:, None], axis=-1)[:, 0]
        id_after = jnp.where(jnp.isfinite(z_after), best, -1)
        ids.append(id_after)
    return jnp.stack(ids)


def visible_triangles(tris, cfg, perspective: bool, layers: int = 1, typical_faces=None):
    """`(layers, H, W)` int32 indices of the nearest clipped triangles `tris` at each pixel
    centre (-1 where none), nearest first, by `cfg.method`. Not differentiated."""
    tris = jax.lax.stop_gradient(tris)
    pieces = tris.valid.shape[0]
    if cfg.method == "dense":
        ids = dense_nearest(tris, cfg.image_size, perspective, layers)
        return ids.reshape(layers, *cfg.image_size)
    st = static_settings(cfg, pieces, perspective, typical_faces=typical_faces, hard=True)
    faces, valid = face_data(tris, jnp.zeros((pieces, 3, 0), tris.xy.dtype))
    ids, _ = nearest_faces(faces, valid, st, layers)
    return untile(ids, cfg.image_size, cfg.tile_size)


def nearest_after(faces: FaceData, valid, after_z, after_id, st: Static):
    """Per pixel, the nearest face whose interior holds its centre among those that come after
    `(after_z, after_id)` `(T, Q)` in (depth, index) order (None: every face): `(z (T, Q),
    face (T, Q))`, with `(inf, -1)` where none. Equal depths go to the lowest index, so
    `after=None` gives the z-buffer and each result, passed back as `after`, peels the next
    layer. A z-buffer over the same bins and schedule as the colour pass, forward only.

    Each work item's (tile, chunk of faces) result is written to its own row; a round's rows
    are then resolved per tile with two scatters (a tile's chunks may share a batch). Merging
    into a per-tile buffer batch by batch instead costs a pass over the whole image per
    batch."""
    # Only pixel centres inside a face count: its bounding box is enough.
    bins = bin_faces(faces, valid, st, 0.0)
    ny, nx = grid_shape(st.image_size, st.tile)
    shape, dtype = (ny * nx, st.tile * st.tile), faces.rows.dtype
    # Pixel centres per tile row and column (`tile_grid`'s values), broadcast per batch: the
    # whole grid would be two image-sized buffers.
    y_axis, x_axis = pixel_axes(st.image_size, ny * st.tile, nx * st.tile)
    y_axis = jnp.asarray(y_axis, dtype).reshape(ny, st.tile)
    x_axis = jnp.asarray(x_axis, dtype).reshape(nx, st.tile)
    sentinel = faces.rows.shape[0] - 1
    none = jnp.iinfo(jnp.int32).max
    # Face-major rows and flags side by side: a batch gathers each face's whole row at once
    # (one gather per batch; one per field took 27 small operations per batch).
    table = jnp.concatenate([faces.rows, faces.flags], axis=1)
    n_rows = faces.rows.shape[1]

    def one_round(k, r, carry):
        zbuf, nearest = carry
        work = schedule(bins, k, r, st)
        slots, size = work.item_tile.shape[0], st.batch

        def body(b, out):
            tile, idx = batch_of(work, b, sentinel, st, size)
            g = jnp.moveaxis(table[idx], -1, 0)[..., None]  # (27, B, c, 1)
            tri = from_rows(g[:n_rows], g[n_rows:])  # fields (3, B, c, 1)
            grid = (size, st.tile, st.tile)
            px = jnp.broadcast_to(x_axis[tile % nx][:, None, :], grid).reshape(size, 1, -1)
            py = jnp.broadcast_to(y_axis[tile // nx][:, :, None], grid).reshape(size, 1, -1)
            px, py = materialize((px, py), idx)
            z = visible_depth(px, py, tri, st.perspective)
            keep = valid[idx][:, :, None]
            if after_z is not None:
                z_after, id_after = after_z[tile][:, None, :], after_id[tile][:, None, :]
                face = idx[:, :, None]
                keep = keep & ((z > z_after) | ((z == z_after) & (face > id_after)))
            # (B, c, Q), computed once: both results below read it.
            z = materialize(jnp.where(keep, z, jnp.inf), idx)
            # Over the chunk's faces as unrolled elementwise steps (see `_sum_over_faces`),
            # depth and index in one pass.
            z_b, face_b = z[:, 0], jnp.where(jnp.isfinite(z[:, 0]), idx[:, 0, None], none)
            for f in range(1, st.chunk):
                z_f, id_f = z[:, f], idx[:, f, None]
                better = (z_f < z_b) | ((z_f == z_b) & jnp.isfinite(z_f) & (id_f < face_b))
                z_b, face_b = jnp.where(better, z_f, z_b), jnp.where(better, id_f, face_b)
            return (jax.lax.dynamic_update_slice_in_dim(out[0], z_b, b * size, 0),
                    jax.lax.dynamic_update_slice_in_dim(out[1], face_b, b * size, 0))  # fmt: skip

        init = (jnp.full((slots, shape[1]), jnp.inf, dtype),
                jnp.full((slots, shape[1]), none, jnp.int32))  # fmt: skip
        z_items, id_items = jax.lax.fori_loop(0, (work.num_items + size - 1) // size, body, init)
        # Padding items hold (inf, none) at tile 0, which changes nothing there.
        z_t = jnp.full(shape, jnp.inf, dtype).at[work.item_tile].min(z_items)
        won = jnp.isfinite(z_items) & (z_items == z_t[work.item_tile])
        id_t = (
            jnp.full(shape, none, jnp.int32).at[work.item_tile].min(jnp.where(won, id_items, none))
        )
        tie = jnp.isfinite(z_t) & (z_t == zbuf)
        nearest = jnp.where(z_t < zbuf, id_t, jnp.where(tie, jnp.minimum(nearest, id_t), nearest))
        return jnp.minimum(zbuf, z_t), nearest

    init = (jnp.full(shape, jnp.inf, dtype), jnp.full(shape, none, jnp.int32))
    zbuf, nearest = for_each_round(bins, st, one_round, init)
    return zbuf, jnp.where(nearest == none, -1, nearest)


def nearest_first(faces: FaceData, valid, st: Static):
    """`nearest_after` of every face: the z-buffer."""
    return nearest_after(faces, valid, None, None, st)


def nearest_faces(faces: FaceData, valid, st: Static, layers: int = 1):
    """Per-pixel nearest covering faces of `faces` (colours unused), nearest first:
    `(layers, T, Q)` int32 indices (-1 for none) and their depths `(layers, T, Q)` (inf for
    none); not differentiable. Layer k + 1 is the nearest face after layer k in (depth, index)
    order (depth peeling)."""
    faces = jax.lax.stop_gradient(faces)
    z, face = per_view(nearest_first, st)(faces, valid)
    ids, depths = [face], [z]
    for _ in range(layers - 1):
        z, face = per_view(nearest_after, st)(faces, valid, z, face)
        ids.append(face)
        depths.append(z)
    return jnp.stack(ids), jnp.stack(depths)
