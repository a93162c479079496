"""Memory-bounded exact SoftRas: screen tiles, per-tile candidate faces, streamed reductions.

The dense path evaluates every (pixel, face) pair and lets autodiff keep a few dozen
pixels x faces buffers. Here:

1. Binning. The image is cut into `tile_size` x `tile_size` pixel tiles. A face can only reach
   a pixel whose centre lies within its screen bounding box grown by the `dist_eps` cull
   radius `sqrt(sigma * ln(1/dist_eps - 1))` (beyond it the dense path ignores the pair too),
   so a face is a candidate of every tile in the rectangle of tiles that its grown box
   overlaps. The (tile, face) pairs are enumerated from the per-face rectangles and sorted by
   tile, which gives each tile's candidate list as one run of the sorted array (the way
   tile-based splatting renderers bin). Cost and memory follow the number of pairs, not
   tiles x faces.
2. Rounds. At most `pair_capacity` pairs are sorted at a time. When a view has more, the
   pairs are taken in consecutive rounds of that size, each streamed like the first; the
   per-pixel reductions below are associative, so the result is the same and no pair is ever
   dropped. More rounds only cost time.
3. Work items. Each tile's run is cut into chunks of `chunk` faces; a work item is one
   (tile, chunk), so the work follows the pairs that matter and empty tiles cost nothing.
4. Streaming. Items are processed in batches of about `batch_pairs` pixel-face pairs. Per pixel
   the stream keeps the silhouette's sum of per-pair terms (the log-transmittance
   `sum log(1 - D)` by default, the sum of any Archimedean T-conorm's generator `g(D)`, or a
   running maximum and its face; see `blend`) and an online softmax (running max, numerator,
   denominator), merged across items by scatter-max and scatter-add, the way FlashAttention
   streams attention.
5. Backward (`jax.custom_vjp`). Only per-pixel aggregates are saved; the backward bins again,
   walks the same batches, recomputes their terms and pulls the cotangents through them with
   `jax.vjp`. The cotangent of a face's softmax logit is `p_f * <g_rgb, c_f - rgb>` with
   `p_f = exp(log_w_f - log Z)`; that of its silhouette term is the pixel's cotangent of the
   sum (of the maximum: only at the arg-max face).

Peak memory: O(batch_pairs) for the pair terms, O(pixels) for the aggregates and
O(pair_capacity) int32 for a round of binning.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from softjax import blend, coverage
from softjax._numerics import materialize
from softjax.camera import pixel_axes
from softjax.raster import (
    GEOM,
    bounds,
    fragments,
    from_rows,
    geometry_rows,
    interpolate,
    setup,
    to_rows,
    visible_depth,
)

# Pairs binned per round when the config leaves it open, at most (64 MiB per int32 array).
MAX_DEFAULT_CAPACITY = 2**24


class FaceData(NamedTuple):
    """Per-face inputs of the stream, with one extra sentinel face at index F.

    rows, flags: `(F + 1, 18)` and `(F + 1, 9)`, the faces' `raster.Triangles`
      (`raster.to_rows`, one row per face): the differentiated fields and the constants.
    box: `(4, F + 1)` screen bounding boxes (`raster.bounds`), for binning.
    colours: `(F + 1, 3, A)` corner attributes (A = 0 for silhouettes only): colours, or
      whatever `Static.shader` turns into colours.

    Per-face data is face-major, and a batch's pairs are laid out `(B, c, Q)` (faces, then
    the tile's pixels innermost): each face's numbers are then a scalar for a vectorised loop
    over pixels. With pixels outside and faces innermost, XLA reads the gathered face rows
    with a stride inside every pair loop, or recomputes per-face work per pair (both
    measured 1.5x slower on a CPU).
    """

    rows: jax.Array
    flags: jax.Array
    box: jax.Array
    colours: jax.Array


def face_data(tris, corner_colours):
    """The stream's `FaceData` and `(F' + 1,)` validity of clipped screen triangles `tris`
    (`raster.ScreenTriangles`) with `corner_colours (F', 3, A)`, plus one sentinel at index F'
    (a point at depth 1: finite, never inside, never valid) that padded list slots point at."""
    geom = geometry_rows(tris.xy, tris.z)
    geom = jnp.concatenate([geom, jnp.zeros((GEOM, 1), geom.dtype).at[6:].set(1.0)], axis=1)
    rows, flags = to_rows(setup(geom))
    colours = jnp.pad(corner_colours, ((0, 1), (0, 0), (0, 0)))  # (F' + 1, 3, A)
    valid = jnp.concatenate([tris.valid, jnp.zeros(1, bool)])
    return FaceData(rows.T, flags.T, bounds(geom), colours), valid  # face-major


class Scalars(NamedTuple):
    """Differentiable inputs besides the faces: the colour softmax's
    `scale = 1 / (gamma * (far - near))`, `far`, the blur `sigma`, `gamma` and the T-conorm's
    parameter `p` (traced values, so schedules need no new compilation; `p` is unused by
    T-conorms without one), and `shade`, the parameters of `Static.shader` (any pytree; `()`
    without one)."""

    scale: jax.Array
    far: jax.Array
    sigma: jax.Array
    gamma: jax.Array
    p: jax.Array
    shade: object = ()


class Static(NamedTuple):
    """Hashable settings of one stream call (see `static_settings`)."""

    image_size: tuple
    tile: int
    eps: float
    model: coverage.Model  # the coverage and its cull
    alpha: str  # `RasterConfig.alpha`
    colour: str  # `RasterConfig.color`
    chunk: int
    batch: int
    capacity: int
    block: int  # faces binned together: every (tile, face) pair of a block has an int32 index
    background: tuple
    perspective: bool
    # None, or `shader(attrs (A, ...), face (...), shade) -> colours (shader.channels, ...)`
    # with `face` the pairs' face indices (the sentinel's is F).
    shader: object = None
    views: int | None = None  # `RasterConfig.parallel_views`


class Bins(NamedTuple):
    """The rectangle of tiles each face can touch (not differentiated).

    tx0, ty0: `(F',)` first tile column and row of the rectangle; width: `(F',)` its width in
    tiles; count: `(F',)` its number of tiles (0 for a face that touches none);
    end: `(K, block)` running totals of `count` within each block of `Static.block` faces
    (the last block padded with zeros); near: `(F',)` the face's nearest corner depth.
    """

    tx0: jax.Array
    ty0: jax.Array
    width: jax.Array
    count: jax.Array
    end: jax.Array
    near: jax.Array


class Tiles(NamedTuple):
    """Per-tile constants: pixel centres `px, py (T, Q)`, reference depths `z_ref (T,)` and,
    for `color="hard"`, each pixel's nearest covering face `winner (T, Q)` (-1 for none)."""

    px: jax.Array
    py: jax.Array
    z_ref: jax.Array
    winner: jax.Array | None = None


class Work(NamedTuple):
    """One round of the schedule (not differentiated).

    face: `(P + chunk,)` face ids of the round's (tile, face) pairs sorted by tile, then
      sentinels.
    item_tile, item_start, item_end: `(N,)` tile of each work item and the slice
      `[start, end)` of `face` its chunk may read (`end` closes the tile's run); N is a
      multiple of the batch size, and padding items have `start == end`.
    num_items: scalar count of real items.
    """

    face: jax.Array
    item_tile: jax.Array
    item_start: jax.Array
    item_end: jax.Array
    num_items: jax.Array


def grid_shape(image_size: tuple[int, int], tile: int) -> tuple[int, int]:
    """Rows and columns of tiles covering the image (the last ones may run past its edge)."""
    return -(-image_size[0] // tile), -(-image_size[1] // tile)


def default_capacity(num_faces: int, image_size, tile: int, chunk: int, cull_dist2: float):
    """Pairs binned per round when the config leaves it open: room for every face to touch
    the tiles that a point-sized face grown by the cull radius can reach, and for every tile to
    fill one chunk. Views where larger faces cover more tiles take further rounds."""
    ny, nx = grid_shape(image_size, tile)
    if math.isfinite(cull_dist2):
        radius_px = math.sqrt(cull_dist2) * image_size[0] / 2
        span = min(max(ny, nx), math.ceil(2 * radius_px / tile) + 2)
        per_face = min(span * span, ny * nx)
    else:
        per_face = ny * nx
    return max(1, min(max(num_faces * per_face, ny * nx * chunk), MAX_DEFAULT_CAPACITY))


def static_settings(cfg, num_faces: int, perspective: bool = True, shader=None,
                    typical_faces: int | None = None, hard: bool = False) -> Static:  # fmt: skip
    """`Static` for a `RasterConfig`, `num_faces` face slots (the sentinel comes on top), a
    perspective or orthographic camera and an optional per-pair shader (a hashable function,
    e.g. defined at module level, so that calls reuse compilations). `typical_faces` (default
    `num_faces`) is how many slots usually hold a face, which sizes the default capacity:
    the second piece of a clipped face is empty unless the face crosses the near plane.
    `hard` sizes it for binning without a blur radius (the z-buffer of `nearest_faces`)."""
    ny, nx = grid_shape(cfg.image_size, cfg.tile_size)
    typical = num_faces if typical_faces is None else typical_faces
    capacity = cfg.pair_capacity or default_capacity(
        typical + 1, cfg.image_size, cfg.tile_size, cfg.chunk, 0.0 if hard else cfg.cull_dist2
    )
    # Pair indices are int32. A face reaches at most every tile, so a block of `block` faces
    # has fewer than 2**31 pairs, a round past them included; the faces are binned block by
    # block (one block unless tiles x faces is very large), counting only pairs that exist.
    room = 2**31 - 1 - capacity - ny * nx
    if room < ny * nx:
        raise ValueError(
            f"`pair_capacity` {capacity} with {ny * nx} tiles leaves no room for int32 pair "
            "indices; use a smaller `pair_capacity` or a larger `tile_size`"
        )
    block = min(num_faces + 1, room // (ny * nx))
    q = cfg.tile_size**2
    return Static(
        cfg.image_size, cfg.tile_size, cfg.eps, cfg.model, cfg.alpha, cfg.color, cfg.chunk,
        max(1, cfg.batch_pairs // (q * cfg.chunk)), capacity, block, cfg.background,
        perspective, shader, cfg.parallel_views,
    )  # fmt: skip


def tile_grid(image_size: tuple[int, int], tile: int, dtype):
    """Pixel centres by tile, `px, py (T, tile * tile)` in screen units. Pixels past the image
    edge (when H or W is not a multiple of `tile`) are computed and cropped by `untile`.
    Broadcast from the two axes inside the program (see `camera.pixel_centers`)."""
    ny, nx = grid_shape(image_size, tile)
    y, x = pixel_axes(image_size, ny * tile, nx * tile)
    x = jnp.asarray(x, dtype).reshape(1, nx, 1, tile)  # (tile row, tile column, row, column)
    y = jnp.asarray(y, dtype).reshape(ny, 1, tile, 1)
    shape = (ny, nx, tile, tile)
    return (jnp.broadcast_to(x, shape).reshape(ny * nx, tile * tile),
            jnp.broadcast_to(y, shape).reshape(ny * nx, tile * tile))  # fmt: skip


def untile(values, image_size: tuple[int, int], tile: int):
    """`(..., T, tile * tile)` per-tile values -> `(..., H, W)` image."""
    h, w = image_size
    ny, nx = grid_shape(image_size, tile)
    lead = values.shape[:-2]
    img = values.reshape(*lead, ny, nx, tile, tile)
    img = jnp.swapaxes(img, -3, -2).reshape(*lead, ny * tile, nx * tile)
    return img[..., :h, :w]


def reach2(faces: FaceData, sigma, model: coverage.Model):
    """The squared screen distance outside its box within which a face can take part (not
    differentiated; inf when nothing is culled): a scalar, or per face `(F' + 1,)` for the
    barycentric distance, whose reach `c` in barycentric units grows a triangle by at most
    `2 c` times its largest edge component."""
    r2 = jnp.asarray(coverage.reach2(jax.lax.stop_gradient(sigma), model), faces.rows.dtype)
    if model.distance == "barycentric":
        t = _triangles(jax.lax.stop_gradient(faces.rows), faces.flags)
        size = 2 * jnp.max(jnp.maximum(jnp.abs(t.dx), jnp.abs(t.dy)), axis=0)
        r2 = jnp.where(size > 0, r2 * size * size, 0.0)
    return r2


def bin_faces(faces: FaceData, valid, st: Static, cull) -> Bins:
    """Tile rectangles of the `faces`: `valid (F',)`
    marks the faces that render (the sentinel is not one of them) and `cull` is the squared
    cull distance (`reach2`, a scalar or per face) by which their boxes grow."""
    h, w = st.image_size
    ny, nx = grid_shape(st.image_size, st.tile)
    rows, cols = ny * st.tile, nx * st.tile
    # The grown box must contain every pixel that the exact pair test keeps: a relative margin
    # covers the rounding of this radius and of the box against the pair's cull test.
    radius = jnp.sqrt(jax.lax.stop_gradient(cull)) * (1 + 1e-3) + 1e-6
    x_min, x_max, y_min, y_max = jax.lax.stop_gradient(faces.box)
    # Pixel (i, j) has its centre at x = (2j + 1 - W) / H, y = 1 - (2i + 1) / H (`pixel_axes`):
    # the columns and rows whose centres can lie in the grown box, rounded outwards.
    j0 = jnp.floor((x_min - radius) * (h / 2) + (w - 1) / 2)
    j1 = jnp.ceil((x_max + radius) * (h / 2) + (w - 1) / 2)
    i0 = jnp.floor((1 - y_max - radius) * (h / 2) - 0.5)
    i1 = jnp.ceil((1 - y_min + radius) * (h / 2) - 0.5)
    # NaN compares false, so a face with a NaN corner touches nothing.
    touches = valid & (j1 >= 0) & (j0 <= cols - 1) & (i1 >= 0) & (i0 <= rows - 1)

    def tile_index(v, size):
        return jnp.where(touches, jnp.clip(v, 0, size - 1), 0).astype(jnp.int32) // st.tile

    tx0, tx1, ty0, ty1 = tile_index(j0, cols), tile_index(j1, cols), tile_index(i0, rows), \
        tile_index(i1, rows)  # fmt: skip
    width = tx1 - tx0 + 1
    count = jnp.where(touches, width * (ty1 - ty0 + 1), 0)
    near = jnp.min(jax.lax.stop_gradient(_triangles(faces.rows, faces.flags).z), axis=0)
    blocks = -(-count.shape[0] // st.block)
    per_block = jnp.pad(count, (0, blocks * st.block - count.shape[0])).reshape(blocks, -1)
    return Bins(tx0, ty0, width, count, jnp.cumsum(per_block, axis=1, dtype=jnp.int32), near)


def num_pairs(bins: Bins):
    """`(K,)` (tile, face) pairs of each block of faces."""
    return bins.end[:, -1]


def _num_rounds(bins: Bins, k, st: Static):
    return (bins.end[k, -1] + st.capacity - 1) // st.capacity


def _for_each_round(bins: Bins, st: Static, body, init):
    """`body(k, r, carry)` over every round `r` of every block `k` of faces."""

    def one_block(k, carry):
        return jax.lax.fori_loop(0, _num_rounds(bins, k, st), lambda r, c: body(k, r, c), carry)

    # Inside `shard_map` the bins vary over the inputs' axes (`_per_view`), and so must the
    # carry that the body returns.
    init = _vary(init, _varying_axes(bins))
    if bins.end.shape[0] == 1:
        return one_block(0, init)
    return jax.lax.fori_loop(0, bins.end.shape[0], one_block, init)


def _pairs(bins: Bins, k, r, st: Static):
    """Block `k`'s round `r` of (tile, face) pairs in enumeration order: tile ids `(P,)` (the
    tile count T past the last pair) and face ids `(P,)` (the sentinel past the last pair)."""
    ny, nx = grid_shape(st.image_size, st.tile)
    sentinel = bins.count.shape[0] - 1
    end = bins.end[k]
    p = r * st.capacity + jnp.arange(st.capacity, dtype=jnp.int32)
    real = p < end[-1]
    # The face of pair p is the first whose running total passes p.
    local_face = jnp.where(real, jnp.searchsorted(end, p, side="right"), 0)
    face = jnp.where(real, k * st.block + local_face, sentinel)
    local = p - (end[local_face] - bins.count[face])
    width = bins.width[face]
    tile = (bins.ty0[face] + local // width) * nx + bins.tx0[face] + local % width
    return jnp.where(real, tile, ny * nx).astype(jnp.int32), face.astype(jnp.int32)


def reference_depths(bins: Bins, far, st: Static):
    """Per tile, the nearest corner depth among its candidate faces (`far` for none).

    Every pixel depth of a candidate is at least this (a perspective-correct depth is a
    weighted harmonic mean of corner depths), and softmax logits relative to it keep float32
    precision where `zn / gamma` would not.
    """
    ny, nx = grid_shape(st.image_size, st.tile)

    def one_round(k, r, z_ref):
        tile, face = _pairs(bins, k, r, st)
        return z_ref.at[tile].min(bins.near[face], mode="drop")

    z_ref = _for_each_round(bins, st, one_round, jnp.full(ny * nx, jnp.inf, bins.near.dtype))
    return jnp.where(jnp.isfinite(z_ref), z_ref, far)


def schedule(bins: Bins, k, r, st: Static) -> Work:
    """Sorts block `k`'s round `r` of pairs by tile and cuts each tile's run into (tile,
    chunk) items."""
    num_tiles = int(np.prod(grid_shape(st.image_size, st.tile)))
    tile, face = _pairs(bins, k, r, st)
    # Sorted by tile, then face (enumeration order), as one int32 key: a block's pairs have
    # `tile * block + local face < 2**31` (see `static_settings`), and XLA sorts one array
    # several times faster than a (key, value) pair of arrays.
    sentinel = bins.count.shape[0] - 1
    last = jnp.iinfo(jnp.int32).max
    key = jnp.where(tile < num_tiles, tile * st.block + (face - k * st.block), last)
    key = jax.lax.sort(key)
    real = key != last
    tile = jnp.where(real, key // st.block, num_tiles).astype(jnp.int32)
    face = jnp.where(real, k * st.block + key % st.block, sentinel).astype(jnp.int32)
    count = jnp.zeros(num_tiles, jnp.int32).at[tile].add(1, mode="drop")
    run_end = jnp.cumsum(count, dtype=jnp.int32)
    per_tile = (count + st.chunk - 1) // st.chunk
    items_end = jnp.cumsum(per_tile, dtype=jnp.int32)
    # A round has at most one part-filled chunk per tile that appears in it.
    slots = min(num_tiles, st.capacity) + st.capacity // st.chunk
    slots = -(-slots // st.batch) * st.batch
    i = jnp.arange(slots, dtype=jnp.int32)
    real = i < items_end[-1]
    item_tile = jnp.where(real, jnp.searchsorted(items_end, i, side="right"), 0).astype(jnp.int32)
    k = i - (items_end[item_tile] - per_tile[item_tile])  # the item's chunk within its tile
    run_start = run_end[item_tile] - count[item_tile]
    item_start = jnp.where(real, run_start + k * st.chunk, 0)
    item_end = jnp.where(real, run_end[item_tile], 0)
    face = jnp.concatenate([face, jnp.full(st.chunk, sentinel, jnp.int32)])
    return Work(face, item_tile, item_start, item_end, items_end[-1])


def _backward_batch(st: Static) -> int:
    """Items per batch in the backward pass: half the forward's when that divides it. The
    backward keeps more per pair (the terms and their vjp), and smaller batches stay in cache:
    on a 2-core CPU this measured 15-20% faster than the forward's batch size."""
    return st.batch // 2 if st.batch % 2 == 0 else st.batch


def _batch(work: Work, b, sentinel: int, st: Static, size: int):
    """Tile ids `(B,)` and face ids `(B, chunk)` of batch `b` of `size` items (a divisor of
    `st.batch`); past a tile's run, the sentinel."""
    first = b * size
    tile, start, end = (jax.lax.dynamic_slice_in_dim(a, first, size)
                        for a in (work.item_tile, work.item_start, work.item_end))  # fmt: skip
    slot = start[:, None] + jnp.arange(st.chunk)[None, :]
    return tile, jnp.where(slot < end[:, None], work.face[slot], sentinel)


def _gather(faces: FaceData, idx) -> FaceData:
    """What the pair kernel needs of the batch's faces `idx (B, c)`: fields `(B, c, ...)`
    (no boxes). Per-face data is set up once for the mesh and gathered here, not recomputed
    per batch: XLA fuses per-face work into the per-pair loops, which repeats it per pair."""
    return FaceData(faces.rows[idx], faces.flags[idx], None, faces.colours[idx])


def _triangles(rows, flags):
    """`raster.Triangles` of face-major `rows (..., 18)`, `flags (..., 9)`; fields `(3, ...)`."""
    return from_rows(jnp.moveaxis(rows, -1, 0), jnp.moveaxis(flags, -1, 0))


def _terms(batch: FaceData, scalars: Scalars, tiles: Tiles, tile, idx, sentinel, st: Static):
    """Pair terms of one batch of items: `tile (B,)`, face ids `idx (B, c)` and their data
    `batch = _gather(faces, idx)` (the backward differentiates with respect to it, so that its
    cotangents are per batch, not per mesh).

    Returns the silhouette's terms `(B, c, Q)` (`blend.alpha_terms`: `log(1 - D)` by default;
    0 for pairs that take no part), the colour logits `(B, c, Q)` (`log D + (zn - zn_ref) /
    gamma`, -inf for those pairs; with `color="hard"` 0 for each pixel's nearest covering
    face, -inf for the others) and the interpolated colours `(C, B, c, Q)` (None for the last
    two when there are no attributes).
    """
    tri = _triangles(batch.rows[:, :, None, :], batch.flags[:, :, None, :])  # (3, B, c, 1)
    px, py = tiles.px[tile][:, None, :], tiles.py[tile][:, None, :]  # (B, 1, Q)
    frag = fragments(px, py, tri, st.perspective)
    real = (idx != sentinel)[:, :, None]
    ok, (log_d, log_1md) = coverage.pair_coverage(frag, scalars.sigma, st.model, real)
    terms = blend.alpha_terms(log_d, log_1md, ok, scalars.p, st.alpha)
    if batch.colours.shape[-1] == 0:
        return terms, None, None
    if st.colour == "hard":
        log_w = blend.hard_logits(idx[:, :, None], tiles.winner[tile][:, None, :], px.dtype)
    else:
        z_ref = tiles.z_ref[tile][:, None, None]
        log_w = blend.colour_logits(log_d, frag.z, z_ref, scalars.scale, ok)
    corner = jnp.moveaxis(batch.colours, (2, 3), (0, 1))[..., None]  # (3, A, B, c, 1)
    colours = interpolate(frag.bary, corner)
    if st.shader is not None:
        colours = st.shader(colours, idx[:, :, None], scalars.shade)
    return terms, log_w, colours


def _channels(faces: FaceData, st: Static) -> int:
    """Colour channels of the output: 0 for silhouettes, the shader's channels after a
    shader, else A."""
    a = faces.colours.shape[-1]
    return st.shader.channels if a and st.shader is not None else a


def background_values(background, channels: int, dtype):
    """`(channels,)` background value of each output channel: the RGB background, then 0 for
    any further channels (auxiliary outputs)."""
    return jnp.asarray((*background, *(0.0,) * channels)[:channels], dtype)


def _log_bg(scalars: Scalars, tiles: Tiles, st: Static):
    """Background logit `(T, 1)` relative to the tile's reference depth, `(eps - zn_ref) /
    gamma`; with `color="hard"` per pixel `(T, Q)`, 0 where no face holds the centre."""
    if tiles.winner is not None:  # color="hard" with colours
        return blend.hard_background_logit(tiles.winner, tiles.px.dtype)
    return blend.background_logit(tiles.z_ref, scalars.far, scalars.scale, scalars.gamma,
                                  st.eps)[:, None]  # fmt: skip


def _sum_over_faces(x):
    """`x (C, B, c, Q)` summed over the faces axis as `c` unrolled adds. XLA's CPU reduction
    of that axis (and the batched matrix product an einsum would make, which transposes the
    colours first) measured several times slower than this one elementwise loop."""
    return functools.reduce(jnp.add, [x[:, :, f] for f in range(x.shape[2])])


def _for_each_batch(bins: Bins, st: Static, size: int, body, init):
    """`body(b, work, carry)` over every batch of `size` items of every round."""

    def one_round(k, r, carry):
        work = schedule(bins, k, r, st)
        num_batches = (work.num_items + size - 1) // size
        return jax.lax.fori_loop(0, num_batches, lambda b, c: body(b, work, c), carry)

    return _for_each_round(bins, st, one_round, init)


def _forward(faces: FaceData, scalars: Scalars, valid, winner, st: Static):
    """Bins, then runs every batch of items. Returns the silhouette's per-pixel reduction
    `total (T, Q)` (the sum of `blend.alpha_terms`, or their maximum), `rgb (C, T, Q)`,
    `log_z (T, Q)`, the tiles' reference depths `z_ref (T,)` and, for `alpha="max"`, the
    arg-max face of each pixel `(T, Q)` (else None), kept for the backward."""
    bins = bin_faces(faces, valid, st, reach2(faces, scalars.sigma, st.model))
    px, py = tile_grid(st.image_size, st.tile, faces.rows.dtype)
    z_ref = jax.lax.stop_gradient(reference_depths(bins, scalars.far, st))
    tiles = Tiles(px, py, z_ref, winner)
    num_tiles, q = px.shape
    c = _channels(faces, st)
    dtype = px.dtype
    sentinel = faces.rows.shape[0] - 1
    track = st.alpha == "max"
    none = jnp.iinfo(jnp.int32).max
    init = (
        jnp.zeros((num_tiles, q), dtype),  # the sum (or maximum) of the silhouette's terms
        jnp.full((num_tiles, q), none, jnp.int32) if track else None,  # the arg-max face
        jnp.broadcast_to(_log_bg(scalars, tiles, st), (num_tiles, q)),  # running max m
        jnp.ones((num_tiles, q), dtype),  # denominator relative to exp(m): the bg's weight
        jnp.broadcast_to(
            background_values(st.background, c, dtype)[:, None, None], (c, num_tiles, q)
        ),  # fmt: skip
    )

    def body(b, work, carry):
        total, arg, m, den, num = carry
        tile, idx = _batch(work, b, sentinel, st, st.batch)
        batch = _gather(faces, idx)
        terms, log_w, colours = _terms(batch, scalars, tiles, tile, idx, sentinel, st)
        if not blend.by_max(st.alpha):
            total = total.at[tile].add(jnp.sum(terms, 1))
        elif not track:
            total = total.at[tile].max(jnp.max(terms, 1))
        else:
            total, arg = _arg_max(total, arg, terms, tile, idx)
        if c == 0:
            return total, arg, m, den, num
        m_new = m.at[tile].max(jnp.max(log_w, 1))
        # Rescale only the batch's tiles; a tile listed twice gets the same value twice.
        m_b = m_new[tile]
        rescale = jnp.exp(m[tile] - m_b)  # (B, Q)
        w = jnp.exp(log_w - m_b[:, None, :])  # (B, c, Q); 0 where log_w = -inf
        den = den.at[tile].set(den[tile] * rescale).at[tile].add(jnp.sum(w, 1))
        num = num.at[:, tile].set(num[:, tile] * rescale)
        num = num.at[:, tile].add(_sum_over_faces(w[None] * colours))
        return total, arg, m_new, den, num

    total, arg, m, den, num = _for_each_batch(bins, st, st.batch, body, init)
    return total, num / den, m + jnp.log(den), z_ref, arg


def _arg_max(total, arg, terms, tile, idx):
    """The running maximum `total (T, Q)` and its face `arg` updated with a batch's `terms
    (B, c, Q)` of faces `idx (B, c)` at tiles `tile (B,)`; ties go to the lowest face index,
    whatever the order of the batches (as `jnp.argmax` over all faces would)."""
    t_b, id_b = terms[:, 0], jnp.broadcast_to(idx[:, :1], terms[:, 0].shape)
    for f in range(1, terms.shape[1]):  # unrolled, as in `_sum_over_faces`
        t_f, id_f = terms[:, f], idx[:, f, None]
        better = (t_f > t_b) | ((t_f == t_b) & (id_f < id_b))
        t_b, id_b = jnp.where(better, t_f, t_b), jnp.where(better, id_f, id_b)
    new = total.at[tile].max(t_b)
    none = jnp.iinfo(jnp.int32).max
    kept = jnp.where(total[tile] == new[tile], arg[tile], none)  # the old maximum still holds
    arg = arg.at[tile].set(kept).at[tile].min(jnp.where(t_b == new[tile], id_b, none))
    return new, arg


def _backward(faces, scalars, valid, winner, z_ref, rgb, log_z, arg, g_total, g_rgb,
              st: Static):  # fmt: skip
    """Cotangents of `faces` and `scalars` from those of `total` and `rgb`."""
    c = _channels(faces, st)
    sentinel = faces.rows.shape[0] - 1
    bins = bin_faces(faces, valid, st, reach2(faces, scalars.sigma, st.model))
    tiles = Tiles(*tile_grid(st.image_size, st.tile, faces.rows.dtype), z_ref, winner)
    zeros = ((jnp.zeros_like(faces.rows), jnp.zeros_like(faces.colours)),
             jax.tree.map(jnp.zeros_like, scalars))  # fmt: skip
    size = _backward_batch(st)

    def terms_of(batch, s, tile, idx):
        return _terms(batch, s, tiles, tile, idx, sentinel, st)

    def body(b, work, acc):
        tile, idx = _batch(work, b, sentinel, st, size)
        out, vjp = jax.vjp(lambda f, s: terms_of(f, s, tile, idx), _gather(faces, idx), scalars)
        terms, log_w, colours = out
        # A sum's cotangent reaches every pair; a maximum's only the arg-max face's.
        g_terms = jnp.broadcast_to(g_total[tile][:, None, :], terms.shape)
        if arg is not None:
            g_terms = jnp.where(idx[:, :, None] == arg[tile][:, None, :], g_terms, 0.0)
        elif blend.by_max(st.alpha):
            g_terms = jnp.zeros_like(terms)  # "hard": a step
        if c == 0:
            g = vjp((g_terms, None, None))
        else:
            p = jnp.exp(log_w - log_z[tile][:, None, :])  # each pair's softmax weight
            g_rgb_b = g_rgb[:, tile][:, :, None, :]  # (C, B, 1, Q)
            g_log_w = p * jnp.sum(g_rgb_b * (colours - rgb[:, tile][:, :, None, :]), axis=0)
            g = vjp((g_terms, g_log_w, p[None] * g_rgb_b))
        (g_rows, g_colours), g_scalars = acc
        g_batch, g_s = g
        # Scatter the batch's face cotangents into the mesh's (sentinel slots included); the
        # constants have none.
        g_rows = g_rows.at[idx].add(g_batch.rows)
        g_colours = g_colours.at[idx].add(g_batch.colours)
        return (g_rows, g_colours), jax.tree.map(jnp.add, g_scalars, g_s)

    (g_rows, g_colours), g_scalars = _for_each_batch(bins, st, size, body, zeros)
    g_faces = FaceData(g_rows, jnp.zeros_like(faces.flags), jnp.zeros_like(faces.box), g_colours)
    if c:
        # The background's share of the softmax depends on far and scale through its logit.
        p_bg = jnp.exp(_log_bg(scalars, tiles, st) - log_z)
        bg = background_values(st.background, c, rgb.dtype)[:, None, None]
        g_log_bg = p_bg * jnp.sum(g_rgb * (bg - rgb), axis=0)
        log_bg, vjp_bg = jax.vjp(lambda s: _log_bg(s, tiles, st), scalars)
        (g_bg,) = vjp_bg(jnp.sum(g_log_bg, -1, keepdims=True) if log_bg.shape[-1] == 1
                         else g_log_bg)  # fmt: skip
        g_scalars = jax.tree.map(jnp.add, g_scalars, g_bg)
    return g_faces, g_scalars


def _nearest(faces: FaceData, valid, after_z, after_id, st: Static):
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
            tile, idx = _batch(work, b, sentinel, st, size)
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
    zbuf, nearest = _for_each_round(bins, st, one_round, init)
    return zbuf, jnp.where(nearest == none, -1, nearest)


def _nearest_first(faces: FaceData, valid, st: Static):
    """`_nearest` of every face: the z-buffer."""
    return _nearest(faces, valid, None, None, st)


def nearest_faces(faces: FaceData, valid, st: Static, layers: int = 1):
    """Per-pixel nearest covering faces of `faces` (colours unused), nearest first:
    `(layers, T, Q)` int32 indices (-1 for none) and their depths `(layers, T, Q)` (inf for
    none); not differentiable. Layer k + 1 is the nearest face after layer k in (depth, index)
    order (depth peeling)."""
    faces = jax.lax.stop_gradient(faces)
    z, face = _per_view(_nearest_first, st)(faces, valid)
    ids, depths = [face], [z]
    for _ in range(layers - 1):
        z, face = _per_view(_nearest, st)(faces, valid, z, face)
        ids.append(face)
        depths.append(z)
    return jnp.stack(ids), jnp.stack(depths)


def views_in_parallel(num_views: int, setting, backend: str, devices: int, manual: bool) -> int:
    """How many views of a vmapped batch of `num_views` are rendered in lockstep (the rest
    are taken one group after another): a divisor of `num_views`.

    `setting` is `RasterConfig.parallel_views`; None chooses per backend. An accelerator
    takes the whole batch at once: one vectorised stream fills it where one view cannot. A
    CPU takes one view at a time (vectorising the streamed loops makes XLA batch their
    scatters and gathers, about 2x slower per view on a CPU), except that with several
    devices it takes one group per device, so that a jitted batch whose views are sharded
    over them is partitioned with them (a serial loop over views cannot be). Inside
    `shard_map` (`manual`), each device's share runs one view at a time.
    """
    if setting is None:
        if backend != "cpu":
            setting = num_views
        elif manual:
            setting = 1
        else:
            setting = devices
    want = max(1, min(int(setting), num_views))
    return max(d for d in range(1, want + 1) if num_views % d == 0)


def _varying_axes(tree) -> frozenset:
    """The `shard_map` axes over which any leaf of `tree` varies (empty outside one)."""
    axes = set()
    for leaf in jax.tree.leaves(tree):
        manual = getattr(jax.typeof(leaf), "manual_axis_type", None)
        axes |= set(getattr(manual, "varying", ()))
    return frozenset(axes)


def _vary(tree, axes: frozenset):
    """`tree` marked as varying over the `shard_map` axes `axes` (a no-op outside one), so
    that loop carries started from constants have the type of what the loop body returns."""
    if not axes:
        return tree

    def cast(x):
        missing = tuple(sorted(axes - _varying_axes(x)))
        return jax.lax.pcast(x, missing, to="varying") if missing else x

    return jax.tree.map(cast, tree)


@functools.lru_cache(maxsize=64)
def _per_view(fn, st: Static):
    """`fn(*args, st)` with a `vmap` rule that renders a batch of views in groups of
    `views_in_parallel` views: each group is one vectorised stream, and the groups run one
    after another (`lax.map`). Every view's result is the one it has alone.

    With p views per group, group g holds views g, g + n/p, g + 2n/p, ...: the batch's
    i-th contiguous block of n/p views is slice i of the vectorised axis in every group. So
    when the views are sharded over p devices in a jitted call, each device's block is its
    slice of that axis, which XLA partitions: each device renders only its share.
    """

    def call(*args):
        # Inside `shard_map`, every input takes the union of the inputs' varying axes, and so
        # does every loop carry derived from them (see `_for_each_round`).
        return fn(*_vary(args, _varying_axes(args)), st)

    @jax.custom_batching.custom_vmap
    def per_view(*args):
        return call(*args)

    @per_view.def_vmap
    def rule(axis_size, in_batched, *args):
        flags, treedef = jax.tree.flatten(in_batched)
        leaves = treedef.flatten_up_to(list(args))
        mapped = [x for x, f in zip(leaves, flags, strict=True) if f]
        parallel = views_in_parallel(axis_size, st.views, jax.default_backend(),
                                     jax.device_count(), bool(_varying_axes(mapped)))  # fmt: skip

        def group(xs):
            it = iter(xs)
            merged = [next(it) if f else x for x, f in zip(leaves, flags, strict=True)]
            merged = treedef.unflatten(merged)
            if parallel == 1:
                return per_view(*merged)
            axes = treedef.unflatten([0 if f else None for f in flags])
            return jax.vmap(call, in_axes=tuple(axes))(*merged)

        if parallel == 1:
            out = jax.lax.map(group, mapped)
        elif parallel == axis_size:
            out = group(mapped)
        else:
            # Views (n, ...) -> (n / p, p, ...): block i of the batch is slice i of every
            # group, so a sharded batch stays sharded along the vectorised axis.
            def split(x):
                return jnp.swapaxes(x.reshape(parallel, axis_size // parallel, *x.shape[1:]), 0, 1)

            def join(y):
                return jnp.swapaxes(y, 0, 1).reshape(axis_size, *y.shape[2:])

            out = jax.tree.map(join, jax.lax.map(group, [split(x) for x in mapped]))
        return out, jax.tree.map(lambda _: True, out)

    return per_view


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def stream(faces: FaceData, scalars: Scalars, valid, winner, st: Static):
    """Bins and streams all faces. Returns `total (T, Q)`, the sum over faces of
    `blend.alpha_terms` (for the default T-conorm `log(1 - D)`; their maximum for "max" and
    "hard"), and `rgb (C, T, Q)` (C = 0 when `faces.colours` has no channels). `winner (T,
    Q)` is each pixel's nearest covering face for `color="hard"` (else None)."""
    total, rgb, _, _, _ = _per_view(_forward, st)(faces, scalars, valid, winner)
    return total, rgb


def _stream_fwd(faces, scalars, valid, winner, st):
    total, rgb, log_z, z_ref, arg = _per_view(_forward, st)(faces, scalars, valid, winner)
    return (total, rgb), (faces, scalars, valid, winner, z_ref, rgb, log_z, arg)


def _stream_bwd(st, residuals, cotangents):
    faces, scalars, valid, winner, z_ref, rgb, log_z, arg = residuals
    g_total, g_rgb = cotangents
    g_faces, g_scalars = _per_view(_backward, st)(
        faces, scalars, valid, winner, z_ref, rgb, log_z, arg, g_total, g_rgb
    )
    return _invariant_like((g_faces, g_scalars), (faces, scalars)) + (None, None)


def _invariant_like(cotangents, primals):
    """Inside `shard_map`, each cotangent summed over the axes it varies over and its primal
    does not (a value the same on every device gets the sum of every device's share: the
    transpose of `pcast(..., to="varying")`); a no-op outside one."""

    def fix(g, x):
        extra = tuple(sorted(_varying_axes(g) - _varying_axes(x)))
        return jax.lax.psum(g, extra) if extra else g

    return tuple(jax.tree.map(fix, cotangents, primals))


stream.defvjp(_stream_fwd, _stream_bwd)
