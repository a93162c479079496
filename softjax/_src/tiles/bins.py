"""Binning: which faces can touch which screen tiles, and the schedule of work items.

1. Binning. The image is cut into `tile_size` x `tile_size` pixel tiles. A face can only reach
   a pixel whose centre lies within its screen bounding box grown by the cull radius (the
   `dist_eps` radius `sqrt(sigma * ln(1/dist_eps - 1))` for soft visibility, zero for the
   z-buffer), so a face is a candidate of every tile in the rectangle of tiles that its grown
   box overlaps. The (tile, face) pairs are enumerated from the per-face rectangles and
   sorted by tile, which gives each tile's candidate list as one run of the sorted array (the
   way tile-based splatting renderers bin). Cost and memory follow the number of pairs, not
   tiles x faces.
2. Rounds. At most `pair_capacity` pairs are sorted at a time. When a view has more, the
   pairs are taken in consecutive rounds of that size, each streamed like the first; the
   per-pixel reductions are associative, so the result is the same and no pair is ever
   dropped. More rounds only cost time.
3. Work items. Each tile's run is cut into chunks of `chunk` faces; a work item is one
   (tile, chunk), so the work follows the pairs that matter and empty tiles cost nothing.

Peak memory: O(pair_capacity) int32 for a round of binning.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from softjax._src.geometry.triangles import GEOM, bounds, from_rows, geometry_rows, setup, to_rows
from softjax._src.pixels import pixel_axes
from softjax._src.soft import coverage
from softjax._src.tiles.views import vary, varying_axes

# Pairs binned per round when the config leaves it open, at most (64 MiB per int32 array).
MAX_DEFAULT_CAPACITY = 2**24


class FaceData(NamedTuple):
    """Per-face inputs of the stream, with one extra sentinel face at index F.

    rows, flags: `(F + 1, 18)` and `(F + 1, 9)`, the faces' `Triangles`
      (`to_rows`, one row per face): the differentiated fields and the constants.
    box: `(4, F + 1)` screen bounding boxes (`bounds`), for binning.
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
    (`ScreenTriangles`) with `corner_colours (F', 3, A)`, plus one sentinel at index F'
    (a point at depth 1: finite, never inside, never valid) that padded list slots point at."""
    geom = geometry_rows(tris.xy, tris.z)
    geom = jnp.concatenate([geom, jnp.zeros((GEOM, 1), geom.dtype).at[6:].set(1.0)], axis=1)
    rows, flags = to_rows(setup(geom))
    colours = jnp.pad(corner_colours, ((0, 1), (0, 0), (0, 0)))  # (F' + 1, 3, A)
    valid = jnp.concatenate([tris.valid, jnp.zeros(1, bool)])
    return FaceData(rows.T, flags.T, bounds(geom), colours), valid  # face-major


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
    # with `face` the pairs' face indices (the sentinel's is F); one whose `derivatives` is
    # k > 0 also takes the screen derivatives `(k, 2, ...)` of its first k attributes.
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
    Broadcast from the two axes inside the program (see `pixel_centers`)."""
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


def face_reach2(faces: FaceData, sigma, model: coverage.Model):
    """The squared screen distance outside its box within which a face can take part (not
    differentiated; inf when nothing is culled): a scalar, or per face `(F' + 1,)` for the
    barycentric distance, whose reach `c` in barycentric units grows a triangle by at most
    `2 c` times its largest edge component."""
    r2 = jnp.asarray(coverage.reach2(jax.lax.stop_gradient(sigma), model), faces.rows.dtype)
    if model.distance == "barycentric":
        t = face_triangles(jax.lax.stop_gradient(faces.rows), faces.flags)
        size = 2 * jnp.max(jnp.maximum(jnp.abs(t.dx), jnp.abs(t.dy)), axis=0)
        r2 = jnp.where(size > 0, r2 * size * size, 0.0)
    return r2


def bin_faces(faces: FaceData, valid, st: Static, cull) -> Bins:
    """Tile rectangles of the `faces`: `valid (F',)`
    marks the faces that render (the sentinel is not one of them) and `cull` is the squared
    cull distance (`face_reach2`, a scalar or per face) by which their boxes grow."""
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
    near = jnp.min(jax.lax.stop_gradient(face_triangles(faces.rows, faces.flags).z), axis=0)
    blocks = -(-count.shape[0] // st.block)
    per_block = jnp.pad(count, (0, blocks * st.block - count.shape[0])).reshape(blocks, -1)
    return Bins(tx0, ty0, width, count, jnp.cumsum(per_block, axis=1, dtype=jnp.int32), near)


def num_pairs(bins: Bins):
    """`(K,)` (tile, face) pairs of each block of faces."""
    return bins.end[:, -1]


def _num_rounds(bins: Bins, k, st: Static):
    return (bins.end[k, -1] + st.capacity - 1) // st.capacity


def for_each_round(bins: Bins, st: Static, body, init):
    """`body(k, r, carry)` over every round `r` of every block `k` of faces."""

    def one_block(k, carry):
        return jax.lax.fori_loop(0, _num_rounds(bins, k, st), lambda r, c: body(k, r, c), carry)

    # Inside `shard_map` the bins vary over the inputs' axes (`per_view`), and so must the
    # carry that the body returns.
    init = vary(init, varying_axes(bins))
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

    z_ref = for_each_round(bins, st, one_round, jnp.full(ny * nx, jnp.inf, bins.near.dtype))
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


def batch_of(work: Work, b, sentinel: int, st: Static, size: int):
    """Tile ids `(B,)` and face ids `(B, chunk)` of batch `b` of `size` items (a divisor of
    `st.batch`); past a tile's run, the sentinel."""
    first = b * size
    tile, start, end = (jax.lax.dynamic_slice_in_dim(a, first, size)
                        for a in (work.item_tile, work.item_start, work.item_end))  # fmt: skip
    slot = start[:, None] + jnp.arange(st.chunk)[None, :]
    return tile, jnp.where(slot < end[:, None], work.face[slot], sentinel)


def face_triangles(rows, flags):
    """`Triangles` of face-major `rows (..., 18)`, `flags (..., 9)`; fields `(3, ...)`."""
    return from_rows(jnp.moveaxis(rows, -1, 0), jnp.moveaxis(flags, -1, 0))
