"""Memory-bounded exact SoftRas: screen tiles, per-tile candidate faces, streamed reductions.

The dense path evaluates every (pixel, face) pair and lets autodiff keep a few dozen
pixels x faces buffers. Here:

1. Binning. The image is cut into `tile_size` x `tile_size` pixel tiles. A face can only reach
   a pixel whose centre lies within its screen bounding box grown by the `dist_eps` cull
   radius `sqrt(sigma * ln(1/dist_eps - 1))` (beyond it the dense path ignores the pair too),
   so each tile lists the faces whose grown box overlaps it. The list has room for every face,
   so nothing can overflow; unused slots point at a sentinel face that takes no part.
2. Work items. Each tile's list is cut into chunks of `chunk` faces; a work item is one
   (tile, chunk) with at least one real face, so the work follows the pairs that matter, not
   pixels x faces, and empty tiles cost nothing.
3. Streaming. Items are processed in batches of about `batch_pairs` pixel-face pairs. Per pixel
   the stream keeps the log-transmittance `sum log(1 - D)` and an online softmax (running max,
   numerator, denominator), merged across items by scatter-max and scatter-add, the way
   FlashAttention streams attention.
4. Backward (`jax.custom_vjp`). Only per-pixel aggregates are saved; the backward walks the
   same batches again, recomputes their terms and pulls the cotangents through them with
   `jax.vjp`. The cotangent of a face's softmax logit is `p_f * <g_rgb, c_f - rgb>` with
   `p_f = exp(log_w_f - log Z)`; that of its `log(1 - D)` is the pixel's `g_log_t`.

Peak memory: O(batch_pairs) for the pair terms, O(pixels) for the aggregates, and
O(tiles x faces) int32 for the candidate lists (built one row of tiles at a time). Building
those lists costs O(tiles x faces) time too, which dominates at 512x512 and beyond: binning by
enumerating each face's tiles (O(pairs)) is the next step.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from softjax import blend
from softjax.camera import pixel_axes
from softjax.raster import Corners, fragments, interpolate


class FaceData(NamedTuple):
    """Per-face inputs of the stream, with one extra sentinel face at index F.

    geom: `(9, F + 1)` the `Corners` fields stacked (screen x, y of a, b, c; their depths).
    colours: `(3, C, F + 1)` corner colours (C = 0 for silhouettes only).
    """

    geom: jax.Array
    colours: jax.Array


class Scalars(NamedTuple):
    """Differentiable scalars of the colour softmax: `scale = 1 / (gamma * (far - near))`."""

    scale: jax.Array
    far: jax.Array


class Work(NamedTuple):
    """The schedule: candidate lists and (tile, chunk) items (not differentiated).

    cand: `(T, F')` face ids per tile, real ones first, then the sentinel F.
    item_tile, item_start: `(N,)` tile and first list slot of each item, N a multiple of the
      batch size; entries at or past `num_items` are padding.
    num_items: scalar count of real items.
    px, py: `(T, Q)` pixel centres of each tile. z_ref: `(T,)` reference depth of each tile.
    """

    cand: jax.Array
    item_tile: jax.Array
    item_start: jax.Array
    num_items: jax.Array
    px: jax.Array
    py: jax.Array
    z_ref: jax.Array


class Static(NamedTuple):
    """Hashable settings of one stream call."""

    image_size: tuple
    tile: int
    sigma: float
    gamma: float
    eps: float
    cull_dist2: float
    chunk: int
    batch: int
    background: tuple


def tile_grid(image_size: tuple[int, int], tile: int, dtype):
    """Pixel centres by tile, `px, py (T, tile * tile)` in screen units, and the tiles' bounds
    `(T, 4)` as (x_min, x_max, y_min, y_max) of their pixel centres. Pixels past the image edge
    (when H or W is not a multiple of `tile`) are computed and cropped by `untile`."""
    h, w = image_size
    ny, nx = -(-h // tile), -(-w // tile)
    y, x = pixel_axes(image_size, ny * tile, nx * tile)
    xx, yy = np.meshgrid(x, y)  # (ny * tile, nx * tile)

    def by_tile(a):
        return a.reshape(ny, tile, nx, tile).transpose(0, 2, 1, 3).reshape(ny * nx, tile * tile)

    px, py = by_tile(xx), by_tile(yy)
    bounds = np.stack([px.min(1), px.max(1), py.min(1), py.max(1)], -1)
    return jnp.asarray(px, dtype), jnp.asarray(py, dtype), jnp.asarray(bounds, dtype)


def untile(values, image_size: tuple[int, int], tile: int):
    """`(..., T, tile * tile)` per-tile values -> `(..., H, W)` image."""
    h, w = image_size
    ny, nx = -(-h // tile), -(-w // tile)
    lead = values.shape[:-2]
    img = values.reshape(*lead, ny, nx, tile, tile)
    img = jnp.swapaxes(img, -3, -2).reshape(*lead, ny * tile, nx * tile)
    return img[..., :h, :w]


def schedule(geom, valid, far, st: Static) -> Work:
    """Bins faces to tiles and lists the (tile, chunk) work items.

    `geom (9, F')` holds the faces' `Corners` fields and `valid (F',)` marks the faces that
    render (the sentinel is not one of them).
    """
    px, py, bounds = tile_grid(st.image_size, st.tile, geom.dtype)
    rows = -(-st.image_size[0] // st.tile)
    num_faces = geom.shape[1]
    num_tiles = bounds.shape[0]
    width = max(1, -(-num_faces // st.chunk)) * st.chunk  # whole chunks, at least one
    # The grown box must contain every pixel that the exact pair test keeps: a relative margin
    # covers the rounding of this radius and of the box against `dist2 >= -cull_dist2`.
    radius = (
        float(np.sqrt(st.cull_dist2)) * (1 + 1e-3) + 1e-6 if np.isfinite(st.cull_dist2) else np.inf
    )
    xs, ys = geom[0:6:2], geom[1:6:2]  # (3, F') corner x and y
    lo_x, hi_x = jnp.min(xs, 0) - radius, jnp.max(xs, 0) + radius
    lo_y, hi_y = jnp.min(ys, 0) - radius, jnp.max(ys, 0) + radius
    near_corner = jnp.min(geom[6:9], axis=0)  # (F',)
    face_ids = jnp.arange(num_faces, dtype=jnp.int32)

    def one_row(row_bounds):
        """Candidate lists of one row of tiles; a row at a time keeps the temporaries small."""
        hit = (
            (lo_x[None, :] <= row_bounds[:, None, 1])
            & (hi_x[None, :] >= row_bounds[:, None, 0])
            & (lo_y[None, :] <= row_bounds[:, None, 3])
            & (hi_y[None, :] >= row_bounds[:, None, 2])
            & valid[None, :]
        )  # (nx, F')
        # Stream compaction: a face's slot is the number of hits before it in its tile's list.
        slot = jnp.where(hit, jnp.cumsum(hit, axis=1, dtype=jnp.int32) - 1, width)
        tile = jnp.arange(hit.shape[0])[:, None]
        cand = jnp.full((hit.shape[0], width), num_faces - 1, jnp.int32)  # the sentinel
        cand = cand.at[tile, slot].set(face_ids[None, :], mode="drop")
        # Reference depth: the nearest corner among the tile's candidates. Every pixel depth in
        # the tile is at least this (a perspective-correct depth is a weighted harmonic mean
        # of corner depths), and logits relative to it keep float32 precision where
        # zn / gamma would not.
        z_ref = jnp.min(jnp.where(hit, near_corner[None, :], jnp.inf), axis=1, initial=jnp.inf)
        return cand, jnp.sum(hit, axis=1, dtype=jnp.int32), z_ref

    cand, count, z_ref = jax.lax.map(one_row, bounds.reshape(rows, -1, 4))
    cand, count, z_ref = cand.reshape(num_tiles, width), count.ravel(), z_ref.ravel()
    z_ref = jax.lax.stop_gradient(jnp.where(jnp.isfinite(z_ref), z_ref, far))

    # Items: chunk k of tile t exists when k * chunk < count[t]; same compaction, in tile order.
    per_tile = width // st.chunk
    total = -(-(num_tiles * per_tile) // st.batch) * st.batch
    used = (jnp.arange(per_tile)[None, :] * st.chunk < count[:, None]).ravel()
    pos = jnp.where(used, jnp.cumsum(used, dtype=jnp.int32) - 1, total)
    tile_of = jnp.repeat(jnp.arange(num_tiles, dtype=jnp.int32), per_tile)
    start_of = jnp.tile(jnp.arange(per_tile, dtype=jnp.int32) * st.chunk, num_tiles)
    item_tile = jnp.zeros(total, jnp.int32).at[pos].set(tile_of, mode="drop")
    item_start = jnp.zeros(total, jnp.int32).at[pos].set(start_of, mode="drop")
    return Work(cand, item_tile, item_start, jnp.sum(used, dtype=jnp.int32), px, py, z_ref)


def _batch(work: Work, b, sentinel: int, st: Static):
    """Tile ids `(B,)` and face ids `(B, chunk)` of batch `b`; padding items get the sentinel."""
    first = b * st.batch
    tile = jax.lax.dynamic_slice_in_dim(work.item_tile, first, st.batch)
    start = jax.lax.dynamic_slice_in_dim(work.item_start, first, st.batch)
    real = first + jnp.arange(st.batch) < work.num_items
    idx = work.cand[tile[:, None], start[:, None] + jnp.arange(st.chunk)[None, :]]
    return tile, jnp.where(real[:, None], idx, sentinel)


def _terms(faces: FaceData, scalars: Scalars, work: Work, tile, idx, st: Static):
    """Pair terms of one batch of items: `tile (B,)`, face ids `idx (B, c)`.

    Returns `log(1 - D)` `(B, Q, c)` (0 for pairs that take no part), the softmax logits
    `log D + (zn - zn_ref) / gamma` `(B, Q, c)` (-inf for those pairs) and the interpolated
    colours `(C, B, Q, c)` (None for the last two when C = 0).
    """
    sentinel = faces.geom.shape[1] - 1
    tri = Corners(*faces.geom[:, idx][:, :, None, :])  # fields (B, 1, c)
    frag = fragments(work.px[tile][..., None], work.py[tile][..., None], tri)
    ok = (idx != sentinel)[:, None, :] & (frag.dist2 >= -st.cull_dist2)
    logits = frag.dist2 / st.sigma
    log1m_d = blend.log1m_coverage(logits, ok)
    if faces.colours.shape[1] == 0:
        return log1m_d, None, None
    log_w = blend.colour_logits(logits, frag.z, work.z_ref[tile][:, None, None], scalars.scale, ok)
    colours = interpolate(frag.bary, faces.colours[:, :, idx][:, :, :, None, :])
    return log1m_d, log_w, colours


def _log_bg(scalars: Scalars, z_ref, st: Static):
    """Background logit relative to the tile's reference depth: `(eps - zn_ref) / gamma`."""
    return blend.background_logit(z_ref, scalars.far, scalars.scale, st.gamma, st.eps)


def _num_batches(work: Work, st: Static):
    return (work.num_items + st.batch - 1) // st.batch


def _forward(faces: FaceData, scalars: Scalars, valid, st: Static):
    """Bins, then runs every batch of items. Returns `log_t (T, Q)`, `rgb (C, T, Q)`,
    `log_z (T, Q)` and the schedule (kept for the backward pass)."""
    work = schedule(jax.lax.stop_gradient(faces.geom), valid, scalars.far, st)
    num_tiles, q = work.px.shape
    c = faces.colours.shape[1]
    dtype = work.px.dtype
    sentinel = faces.geom.shape[1] - 1
    log_bg = _log_bg(scalars, work.z_ref, st)  # (T,)
    init = (
        jnp.zeros((num_tiles, q), dtype),  # log transmittance
        jnp.broadcast_to(log_bg[:, None], (num_tiles, q)),  # running max m (starts at the bg)
        jnp.ones((num_tiles, q), dtype),  # denominator relative to exp(m): the bg's weight
        jnp.broadcast_to(jnp.asarray(st.background[:c], dtype)[:, None, None], (c, num_tiles, q)),
    )

    def body(b, carry):
        log_t, m, den, num = carry
        tile, idx = _batch(work, b, sentinel, st)
        log1m_d, log_w, colours = _terms(faces, scalars, work, tile, idx, st)
        log_t = log_t.at[tile].add(jnp.sum(log1m_d, -1))
        if c == 0:
            return log_t, m, den, num
        m_new = m.at[tile].max(jnp.max(log_w, -1))
        # Rescale only the batch's tiles; a tile listed twice gets the same value twice.
        m_b = m_new[tile]
        rescale = jnp.exp(m[tile] - m_b)  # (B, Q)
        w = jnp.exp(log_w - m_b[..., None])  # 0 where log_w = -inf
        den = den.at[tile].set(den[tile] * rescale).at[tile].add(jnp.sum(w, -1))
        num = num.at[:, tile].set(num[:, tile] * rescale)
        num = num.at[:, tile].add(jnp.einsum("bqf,cbqf->cbq", w, colours))
        return log_t, m_new, den, num

    log_t, m, den, num = jax.lax.fori_loop(0, _num_batches(work, st), body, init)
    return log_t, num / den, m + jnp.log(den), work


def _backward(faces, scalars, work, rgb, log_z, g_log_t, g_rgb, st: Static):
    """Cotangents of `faces` and `scalars` from those of `log_t` and `rgb`."""
    c = faces.colours.shape[1]
    sentinel = faces.geom.shape[1] - 1
    zeros = jax.tree.map(jnp.zeros_like, (faces, scalars))

    def body(b, acc):
        tile, idx = _batch(work, b, sentinel, st)
        terms, vjp = jax.vjp(lambda f, s: _terms(f, s, work, tile, idx, st), faces, scalars)
        log1m_d, log_w, colours = terms
        g_log1m_d = jnp.broadcast_to(g_log_t[tile][..., None], log1m_d.shape)
        if c == 0:
            g = vjp((g_log1m_d, None, None))
        else:
            p = jnp.exp(log_w - log_z[tile][..., None])  # each pair's softmax weight
            g_rgb_b = g_rgb[:, tile][..., None]  # (C, B, Q, 1)
            g_log_w = p * jnp.sum(g_rgb_b * (colours - rgb[:, tile][..., None]), axis=0)
            g = vjp((g_log1m_d, g_log_w, p[None] * g_rgb_b))
        return jax.tree.map(jnp.add, acc, g)

    g_faces, g_scalars = jax.lax.fori_loop(0, _num_batches(work, st), body, zeros)
    if c:
        # The background's share of the softmax depends on far and scale through its logit.
        p_bg = jnp.exp(_log_bg(scalars, work.z_ref, st)[:, None] - log_z)
        bg = jnp.asarray(st.background[:c], rgb.dtype)[:, None, None]
        g_log_bg = p_bg * jnp.sum(g_rgb * (bg - rgb), axis=0)
        _, vjp_bg = jax.vjp(lambda s: _log_bg(s, work.z_ref, st), scalars)
        (g_bg,) = vjp_bg(jnp.sum(g_log_bg, -1))
        g_scalars = jax.tree.map(jnp.add, g_scalars, g_bg)
    return g_faces, g_scalars


@functools.lru_cache(maxsize=64)
def _one_view_at_a_time(fn, st: Static):
    """`fn(*args, st)` whose `vmap` runs the views one after another (`lax.map`).

    Vectorising the streamed loops over views makes XLA batch their scatters and gathers,
    which measured about 2x slower per view on CPU than running the same loop per view; one
    view at a time costs exactly n times one view and keeps memory per view.
    """

    @jax.custom_batching.custom_vmap
    def per_view(*args):
        return fn(*args, st)

    @per_view.def_vmap
    def rule(axis_size, in_batched, *args):
        flags, treedef = jax.tree.flatten(in_batched)
        leaves = treedef.flatten_up_to(list(args))
        mapped = [x for x, f in zip(leaves, flags, strict=True) if f]

        def one(xs):
            it = iter(xs)
            merged = [next(it) if f else x for x, f in zip(leaves, flags, strict=True)]
            return per_view(*treedef.unflatten(merged))

        out = jax.lax.map(one, mapped)
        return out, jax.tree.map(lambda _: True, out)

    return per_view


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def stream(faces: FaceData, scalars: Scalars, valid, st: Static):
    """Bins and streams all faces. Returns `log_t (T, Q)`, the sum over faces of
    `log(1 - D)`, and `rgb (C, T, Q)` (C = 0 when `faces.colours` has no channels)."""
    log_t, rgb, _, _ = _one_view_at_a_time(_forward, st)(faces, scalars, valid)
    return log_t, rgb


def _stream_fwd(faces, scalars, valid, st):
    log_t, rgb, log_z, work = _one_view_at_a_time(_forward, st)(faces, scalars, valid)
    return (log_t, rgb), (faces, scalars, work, rgb, log_z)


def _stream_bwd(st, residuals, cotangents):
    faces, scalars, work, rgb, log_z = residuals
    g_log_t, g_rgb = cotangents
    g_faces, g_scalars = _one_view_at_a_time(_backward, st)(
        faces, scalars, work, rgb, log_z, g_log_t, g_rgb
    )
    return g_faces, g_scalars, None


stream.defvjp(_stream_fwd, _stream_bwd)
