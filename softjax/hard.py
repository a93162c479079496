"""Hard rasterization: z-buffered fragments, attribute interpolation and analytic antialiasing.

The building blocks of `RasterConfig(visibility="hard")`, and of a user's own shading:

1. Visibility (not differentiated). Per pixel centre, the nearest clipped triangle whose
   interior holds it (the top-left rule on shared edges, equal depths to the lower index),
   found by the tiled z-buffer (`tiled.nearest_faces`: faces binned to the tiles under their
   screen boxes, no blur radius) or, for `method="dense"`, against every triangle. Further
   layers peel: layer k + 1 is the nearest triangle after layer k in (depth, index) order.
2. Fragments (differentiable, O(pixels)). Each pixel gathers its face's camera-space cross
   products (`face_rows`) and evaluates homogeneous, perspective-correct barycentrics and the
   depth of its ray's hit (`planes_at`), so gradients reach vertices and camera through plain
   JAX, also for faces cut by the near plane.
3. Antialiasing (differentiable, O(pixels)). Where two neighbouring pixels show different
   faces, the nearer one's face is tested for the edge through which the segment between
   the two centres leaves it (its edge functions, stepped from the pixel's own centre).
   If that edge is a silhouette edge (no neighbouring face across
   it, or one that faces the other way), the two colours are blended by where it crosses the
   segment: the image is then a continuous function of the vertex positions along silhouette
   and occlusion edges, and its gradient reaches them (the analytic antialiasing of Laine et
   al. 2020, "Modular Primitives for High-Performance Differentiable Rendering").
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax import tiled
from softjax._numerics import materialize
from softjax.camera import pixel_axes, pixel_centers
from softjax.raster import PIECES, geometry_rows, setup, visible_depth

_START, _END = (1, 2, 0), (2, 0, 1)  # edge k of a triangle joins the corners other than k


class Fragments(NamedTuple):
    """What `sj.rasterize` finds at each pixel centre, nearest surface first.

    face_id: `(H, W)` int32 index of the face there, -1 where none (`(H, W, K)` with K layers).
    bary: `(H, W, 3)` perspective-correct barycentrics of that face's corners (0 where none;
      `(H, W, K, 3)` with layers).
    depth: `(H, W)` view depth (distance along the camera axis), `camera.far` where none
      (`(H, W, K)` with layers).
    triangle: like `face_id`, the near-plane-clipped screen triangle the pixel lies in
      (`2 * face_id` or `2 * face_id + 1`, see `softjax.raster.project`), which `sj.antialias`
      reads the edges of.

    Barycentrics and depth are differentiable with respect to the vertices and the camera;
    the indices are not.
    """

    face_id: jax.Array
    bary: jax.Array
    depth: jax.Array
    triangle: jax.Array


def dense_depths(tris, image_size, perspective: bool):
    """`(H * W, F')` view depth of each clipped triangle of `tris` at each pixel centre that it
    holds (`raster.visible_depth`: the tiled z-buffer's test), inf elsewhere and for empty
    slots. All pairs at once: for the dense method. Not differentiated."""
    tris = jax.lax.stop_gradient(tris)
    pix = pixel_centers(image_size, tris.xy.dtype)
    t = setup(geometry_rows(tris.xy, tris.z))
    return jnp.where(tris.valid[None, :], visible_depth(pix[:, :1], pix[:, 1:], t, perspective),
                     jnp.inf)  # fmt: skip


def visible_triangles(tris, cfg, perspective: bool, layers: int = 1, typical_faces=None):
    """`(layers, H, W)` int32 indices of the nearest clipped triangles `tris` at each pixel
    centre (-1 where none), nearest first, by `cfg.method`. Not differentiated."""
    tris = jax.lax.stop_gradient(tris)
    pieces = tris.valid.shape[0]
    if cfg.method == "dense":
        z = dense_depths(tris, cfg.image_size, perspective)  # (P, F')
        index = jnp.arange(pieces, dtype=jnp.int32)[None, :]
        z_after = jnp.full(z.shape[:1], -jnp.inf, z.dtype)
        id_after = jnp.full(z.shape[:1], -1, jnp.int32)
        ids = []
        for _ in range(layers):
            later = (z > z_after[:, None]) | ((z == z_after[:, None]) & (index > id_after[:, None]))
            zl = jnp.where(later, z, jnp.inf)
            best = jnp.argmin(zl, axis=-1).astype(jnp.int32)  # the first of equal depths
            z_after = jnp.take_along_axis(zl, best[:, None], axis=-1)[:, 0]
            id_after = jnp.where(jnp.isfinite(z_after), best, -1)
            ids.append(id_after.reshape(cfg.image_size))
        return jnp.stack(ids)
    st = tiled.static_settings(cfg, pieces, perspective, typical_faces=typical_faces, hard=True)
    faces, valid = tiled.face_data(tris, jnp.zeros((pieces, 3, 0), tris.xy.dtype))
    ids, _ = tiled.nearest_faces(faces, valid, st, layers)
    return tiled.untile(ids, cfg.image_size, cfg.tile_size)


class Planes(NamedTuple):
    """Per-pixel fragment data in planes (attribute axes first, then the pixels' `(..., H, W)`):
    how the hard path computes. On a CPU, XLA adds whole planes far faster than it reduces
    short inner axes (the backward pass of a broadcast over an inner axis of 3 measured 10x
    slower than the forward), so corners and channels are kept as leading axes.

    face, triangle: `(..., H, W)` int32 face and clipped-triangle indices (-1: none).
    bary: 3 planes, the barycentrics of the face's corners; depth: `(..., H, W)`.
    Each "plane" is an `(..., H, W)` array and a group of them a tuple (see `gather_planes`).
    """

    face: jax.Array
    triangle: jax.Array
    bary: jax.Array
    depth: jax.Array


def gather_planes(rows, index):
    """`rows (N, R)` at `index (...)` (clamped to 0 for -1) as a tuple of R planes `(...)`, one
    column at a time: the backward pass then scatters each plane's cotangent as it is. (A
    gather of rows needs them transposed, and XLA's CPU backend fuses that transpose with
    everything that computes them, recomputed element by element: measured 20x slower.)
    Planes stay separate arrays: slicing a stacked array costs a padded copy per slice in the
    backward pass."""
    at = jnp.maximum(index, 0)
    return materialize(tuple(rows[:, r][at] for r in range(rows.shape[1])), index)


def face_rows(cam_verts, faces, orthographic: bool):
    """Per face: three vectors `A_1 = e2 x a`, `A_2 = a x e1`, `A_W = e1 x e2` (with a, b, c
    its corners in camera coordinates, `e1 = b - a`, `e2 = c - a`; for an orthographic camera
    corners `(x, y, 1)`), then what gives the depth: for a perspective camera `D = a . A_W`
    (`(F, 10)`), for an orthographic one the corners' depths (`(F, 12)`). A camera ray
    `r = (x/z, y/z, 1)` (orthographic: `(x, y, 1)`) meets the face's plane at barycentrics
    `(W - w_1 - w_2, w_1, w_2) / W` with `w = r . A`, and (perspective) at depth `D / W`:
    homogeneous barycentrics, perspective-correct and valid for faces cut by the near plane.
    Built from edge vectors rather than `b x c` and the like, they keep float32 precision for
    faces far from the camera."""
    p = cam_verts[faces]  # (F, 3, 3)
    z = p[..., 2]
    if orthographic:
        p = p.at[..., 2].set(1.0)
    a, e1, e2 = p[:, 0], p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    normal = jnp.cross(e1, e2)
    depth = z if orthographic else jnp.sum(a * normal, axis=1, keepdims=True)
    return jnp.concatenate([jnp.cross(e2, a), jnp.cross(a, e1), normal, depth], axis=1)


def _ray_axes(center, focal, image_size, dtype, y=None):
    """Camera-space x `(W,)` of the rays through the pixel columns and y `(H,)` through the
    rows (z = 1), for a camera's `center` and `focal` `(2,)`; `y (R,)` gives the screen y of
    other rows (`camera.pixel_axes`' formula) for `(R,)`."""
    ys, x = pixel_axes(image_size, *image_size)
    y = jnp.asarray(ys, dtype) if y is None else y
    return (jnp.asarray(x, dtype) - center[0]) / focal[0], -(y - center[1]) / focal[1]


def _rays(center, focal, image_size, dtype, y=None):
    """`_ray_axes` broadcast to the pixels: x and y `(H, W)` (`(R, W)` with `y`)."""
    rx, ry = _ray_axes(center, focal, image_size, dtype, y)
    shape = (ry.shape[0], rx.shape[0])
    return jnp.broadcast_to(rx[None, :], shape), jnp.broadcast_to(ry[:, None], shape)


def _plane_weights(g, rx, ry):
    """`(w_1, w_2, W)`: the camera rays `(rx, ry)` dotted with the `face_rows` vectors `g`
    (see there): homogeneous barycentrics and edge functions."""
    return tuple(rx * g[3 * k] + ry * g[3 * k + 1] + g[3 * k + 2] for k in range(3))


def planes_at(rows, triangle, camera, image_size, y=None) -> Planes:
    """`Planes` at the pixels whose clipped triangles are `triangle (..., H, W)` (from
    `visible_triangles`), from `face_rows` `rows (F, 10 or 12)` of the mesh seen by `camera`.
    `y (R,)`: the pixel rows' screen y when `triangle` holds R rows other than the image's
    (see `_rays`)."""
    # Computed once: the indices come out of the z-buffer's tiled layout, a transpose that
    # XLA would otherwise repeat inside every gather below.
    face, triangle = materialize(
        (jnp.where(triangle >= 0, triangle // PIECES, -1).astype(jnp.int32),
         triangle.astype(jnp.int32)), triangle)  # fmt: skip
    some = face >= 0
    g = gather_planes(rows, face)  # 10 or 12 planes `(..., H, W)`
    rx, ry = _rays(camera.center, camera.focal, image_size, rows.dtype, y)
    w1, w2, total = _plane_weights(g, rx, ry)
    ok = some & (total != 0)
    inv = 1.0 / jnp.where(ok, total, 1.0)
    b1, b2 = jnp.where(ok, w1 * inv, 0.0), jnp.where(ok, w2 * inv, 0.0)
    bary = (jnp.where(ok, 1.0 - b1 - b2, 0.0), b1, b2)
    if len(g) == 10:  # perspective: the ray's depth where it meets the plane
        depth = jnp.where(ok, g[9] * inv, camera.far)
    else:
        depth = jnp.where(ok, bary[0] * g[9] + bary[1] * g[10] + bary[2] * g[11], camera.far)
    bary, depth = materialize((bary, depth), face)
    return Planes(face, triangle, bary, depth)


def _edges_at(g, rx, ry, focal, height: int):
    """The edge functions opposite each corner (3), >= 0 inside, of faces with `face_rows`
    `g` (at least 9 arrays) at the camera rays `(rx, ry)`, and their steps per pixel along x
    and y (2 x 3): one pixel is 2 / `height` screen units, which moves a ray by that over the
    `focal` length. Elementwise."""
    w1, w2, total = _plane_weights(g, rx, ry)
    side = jax.lax.stop_gradient(jnp.where(total < 0, -1.0, 1.0)).astype(total.dtype)
    edges = (side * (total - w1 - w2), side * w1, side * w2)
    dx, dy = 2.0 / height / focal[0], -2.0 / height / focal[1]
    gx = (g[6] - g[0] - g[3], g[0], g[3])
    gy = (g[7] - g[1] - g[4], g[1], g[4])
    return edges, (tuple(side * v * dx for v in gx), tuple(side * v * dy for v in gy))


def to_fragments(p: Planes, layers: bool) -> Fragments:
    """The public layout: `(H, W)` fields (or `(H, W, K)` from `(K, H, W)` planes with
    `layers`), barycentrics last."""

    def layout(x):
        return jnp.moveaxis(x, 0, -1) if layers else x

    bary = jnp.stack([layout(b) for b in p.bary], axis=-1)
    return Fragments(layout(p.face), bary, layout(p.depth), layout(p.triangle))


def first_layer(frags: Fragments) -> Fragments:
    """The nearest layer of `frags`, whichever layout (`(H, W)` or `(H, W, K)`)."""
    if frags.face_id.ndim == 2:
        return frags
    return Fragments(frags.face_id[..., 0], frags.bary[..., 0, :], frags.depth[..., 0],
                     frags.triangle[..., 0])  # fmt: skip


def interpolate_planes(corner, face, bary):
    """Per-corner values `corner (F, 3, C)` at fragments of faces `face (...)` with barycentric
    planes `bary` (3) -> C planes `(...)`, zero where `face` is -1."""
    num, _, c = corner.shape
    v = gather_planes(corner.reshape(num, 3 * c), face)  # corner k, channel i at k * C + i
    # Channel by channel: the backward pass of a broadcast over channels would reduce over
    # them, which XLA's CPU backend does far slower than adding planes.
    some = face >= 0
    out = [jnp.where(some, bary[0] * v[i] + bary[1] * v[c + i] + bary[2] * v[2 * c + i], 0.0)
           for i in range(c)]  # fmt: skip
    return materialize(out, face)


def interpolate(values, frags: Fragments, faces):
    """`values` at each fragment: per-vertex `(V, C)` or per-corner `(F, 3, C)` (`faces (F, 3)`
    indexes the former) -> `(H, W, C)` (or `(H, W, K, C)`), zero where there is no face."""
    corner = values[faces] if values.ndim == 2 else values  # (F, 3, C)
    bary = tuple(frags.bary[..., k] for k in range(3))
    out = interpolate_planes(corner, frags.face_id, bary)
    if not out:
        return jnp.zeros((*frags.face_id.shape, 0), frags.bary.dtype)
    return jnp.stack(out, axis=-1)


# Up to this many faces, XLA may compute a constant mesh's edge neighbours while compiling.
_FOLD_FACES = 2**15


def neighbours(faces, face_mask=None, num_verts=None):
    """`(F, 3)` the face across the edge opposite each corner (the edge joining the other two
    corners), -1 where none: a boundary edge, one shared by more than two faces, or one whose
    neighbour `face_mask` leaves out. `num_verts` (static; default: unknown) lets the two
    corner indices of an edge pack into one sort key."""
    num = faces.shape[0]
    if num > _FOLD_FACES:
        # Faces closed over by a jitted function are constants, and XLA would sort them while
        # compiling: at 80k faces that took ~10 s and 0.1 GB, at run time it takes ~25 ms.
        faces = jax.lax.optimization_barrier(faces)
    a, b = faces[:, [1, 2, 0]].reshape(-1), faces[:, [2, 0, 1]].reshape(-1)
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    half = jnp.arange(3 * num, dtype=jnp.int32)
    if num_verts is not None and num_verts <= 2**16:
        # One uint32 key per half-edge, sorted alone (XLA's CPU sort of one array is ~10x
        # faster than of a (key, key, index) triple); each half-edge finds the start of its
        # key's run, where the run's size and its least and greatest half-edge collect.
        key = lo.astype(jnp.uint32) * num_verts + hi.astype(jnp.uint32)
        start = jnp.searchsorted(jax.lax.sort(key), key, side="left").astype(jnp.int32)
        size = jnp.zeros(3 * num, jnp.int32).at[start].add(1)[start]
        least = jnp.full(3 * num, 3 * num, jnp.int32).at[start].min(half)[start]
        most = jnp.full(3 * num, -1, jnp.int32).at[start].max(half)[start]
        across = jnp.where(size == 2, least + most - half, -1)
    else:
        lo, hi, order = jax.lax.sort((lo, hi, half), num_keys=2)
        same = (lo[1:] == lo[:-1]) & (hi[1:] == hi[:-1])  # run continues from i to i + 1
        f = jnp.zeros(1, bool)
        prev, nxt = jnp.concatenate([f, same]), jnp.concatenate([same, f])
        prev2 = jnp.concatenate([f, f, same[:-1]])  # i - 1 continues from i - 2
        next2 = jnp.concatenate([same[1:], f, f])  # i + 2 continues from i + 1
        with_next = nxt & ~prev & ~next2  # a run of exactly two: i and i + 1
        with_prev = prev & ~nxt & ~prev2
        partner = jnp.where(with_next, jnp.roll(order, -1),
                            jnp.where(with_prev, jnp.roll(order, 1), -1))  # fmt: skip
        across = jnp.zeros(3 * num, jnp.int32).at[order].set(partner)
    face = jnp.where(across >= 0, across // 3, -1).reshape(num, 3)
    if face_mask is not None:
        face = jnp.where((face >= 0) & face_mask[jnp.maximum(face, 0)], face, -1)
    return face


def silhouette_edges(cam_verts, faces, orthographic: bool, face_mask=None):
    """`(F, 3)` bool: the edge opposite each corner is a silhouette edge, across which the
    surface does not continue on screen: no neighbouring face there, or the neighbour faces
    the other way (one seen from the front, the other from the back). `cam_verts (V, 3)` are
    in camera coordinates. A mesh's windings must agree across shared edges."""
    p = cam_verts[faces]  # (F, 3, 3)
    normal = jnp.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    view = jnp.asarray([0.0, 0.0, 1.0], p.dtype) if orthographic else p[:, 0]
    front = jax.lax.stop_gradient(jnp.sum(normal * view, axis=-1)) < 0
    across = neighbours(faces, face_mask, cam_verts.shape[0])
    return (across < 0) | (front[:, None] != front[jnp.maximum(across, 0)])


def silhouette_planes(edges, face):
    """`silhouette_edges` `(F, 3)` at the pixels' faces `face (...)`: 3 bool planes. The three
    flags travel as one int8 code, one gather instead of three."""
    code = edges[:, 0].astype(jnp.int8) + 2 * edges[:, 1].astype(jnp.int8) \
        + 4 * edges[:, 2].astype(jnp.int8)  # fmt: skip
    (code,) = gather_planes(code[:, None], face)
    return materialize(tuple((code & (1 << k)) != 0 for k in range(3)), face)


def _shifted(x, di: int, dj: int, fill):
    """`x (..., H, W)` at pixel (i + di, j + dj), `fill` past the image's edge."""
    h, w = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(max(-di, 0), max(di, 0)), (max(-dj, 0), max(dj, 0))]
    x = jnp.pad(x, pad, constant_values=fill)
    return x[..., max(di, 0) : max(di, 0) + h, max(dj, 0) : max(dj, 0) + w]


# The two kinds of neighbouring pixel pairs: (row step, column step, the sign that turns the
# per-pixel steps of the edge functions (`_edges_at`) along x (index 0) or y (index 1) into
# the step from the first pixel of a pair to the second). Rows go down the screen, so y
# falls by one per row.
_PAIRS = ((0, 1, 0, 1.0), (1, 0, 1, -1.0))


def _crossing(face, face_r, depth, depth_r, e_l, e_r, step_l, step_r, sil_l, sil_r):
    """Where the edge between pixels L and R crosses the segment between their centres, from
    the nearer of the two (s), elementwise over pairs given by their values at L and at R:
    faces (-1: none, -2: past the image or no pair), depths, edge functions, their steps from
    L towards R (3 each) and silhouette flags (3 each). Returns `on_left` (s = L; otherwise
    s = R, where the pair is blended at all), `x` in [0, 1] from L's centre (1/2 where nothing
    is blended), the winning edge's one-hot `win` (3), the edge functions `e` and steps
    `delta` from s towards the other pixel (3 each: those of s), and `unclipped` (the
    crossing lies on the segment, ends included: the gradient passes)."""
    differ = face != face_r
    # Depth ties go to L (the first pixel of the pair), the same rule for every pair.
    on_left = (face >= 0) & (face_r != -2) & differ & ((face_r < 0) | (depth <= depth_r))
    on_right = (face_r >= 0) & (face != -2) & differ & ((face < 0) | (depth_r < depth))
    e = tuple(jnp.where(on_left, e_l[k], e_r[k]) for k in range(3))
    delta = tuple(jnp.where(on_left, step_l[k], -step_r[k]) for k in range(3))
    sil = tuple(jnp.where(on_left, sil_l[k], sil_r[k]) for k in range(3))
    t, best, win_sil, unclipped = jnp.inf, jnp.full(face.shape, -1, jnp.int32), False, False
    for k in range(3):
        exits = e[k] + delta[k] < 0  # the segment leaves the face through edge k
        raw = e[k] / jnp.where(exits, -delta[k], 1.0)
        t_k = jnp.where(exits, jnp.clip(raw, 0.0, 1.0), jnp.inf)
        better = t_k < t  # the first exit; of equal ones, the lowest edge
        t, best = jnp.where(better, t_k, t), jnp.where(better, k, best)
        win_sil = jnp.where(better, sil[k], win_sil)
        unclipped = jnp.where(better, (raw >= 0.0) & (raw <= 1.0), unclipped)
    ok = (on_left | on_right) & jnp.isfinite(t) & win_sil
    t = jnp.where(ok, t, 0.5)
    x = jnp.where(on_left, t, 1.0 - t)
    win = tuple(ok & (best == k) for k in range(3))
    return on_left, x, win, e, delta, ok & unclipped


def _pair_steps(steps, axis: int, sign: float):
    """The edge functions' steps from a pixel to its neighbour along `axis` (3 planes)."""
    return tuple(sign * v for v in steps[axis])


def _share(x):
    """What each pixel of a pair takes of the other's colour: L `keep`, R `give`."""
    return jnp.maximum(0.5 - x, 0.0), jnp.maximum(x - 0.5, 0.0)


def _pair_grads(crossing, g_l, g_r, c_l, c_r, sign, barrier=lambda t: t):
    """The backward pass of pairs, elementwise: from the crossings (`_crossing`), the output
    cotangents `g_*` and colours `c_*` (C each) at L and R, the cotangents of the colours,
    edge functions and steps (per-pixel, not per-pair, steps: `sign`, the pairs' sign in
    `_PAIRS`, one for all or per pair) that go to L and to R. `barrier` marks values that
    are computed once."""
    on_left, x, win, e, delta, unclipped = crossing
    keep, give = _share(x)
    near_left, near_right = x < 0.5, x > 0.5
    d_x, to_left, to_right = 0.0, [], []
    for c in range(len(c_l)):
        # out_L += keep (c_R - c_L); out_R += give (c_L - c_R)
        to_left.append(give * g_r[c] - keep * g_l[c])
        to_right.append(keep * g_l[c] - give * g_r[c])
        d_x = d_x - (c_r[c] - c_l[c]) * jnp.where(
            near_left, g_l[c], jnp.where(near_right, g_r[c], 0.0)
        )
    # x = t from L, 1 - t from R; t = e / -delta of the winning edge.
    d_t = jnp.where(unclipped, jnp.where(on_left, d_x, -d_x), 0.0)
    to_left, to_right, d_t = barrier((to_left, to_right, d_t))
    left_e, right_e, left_delta, right_delta = [], [], [], []
    for k in range(3):
        inv = 1.0 / jnp.where(win[k], -delta[k], 1.0)
        d_e = jnp.where(win[k], d_t * inv, 0.0)
        d_delta = jnp.where(win[k], d_t * e[k] * inv * inv, 0.0)
        left_e.append(jnp.where(on_left, d_e, 0.0))
        right_e.append(jnp.where(on_left, 0.0, d_e))
        left_delta.append(jnp.where(on_left, sign * d_delta, 0.0))
        right_delta.append(jnp.where(on_left, 0.0, -sign * d_delta))
    return to_left, to_right, left_e, right_e, left_delta, right_delta


def _dense_crossing(face, depth, edges, steps, silhouettes, di, dj, axis, sign):
    """`_crossing` of every pixel L with R = (i + di, j + dj), as planes at L's index."""
    step = _pair_steps(steps, axis, sign)

    def right(x, fill):
        return _shifted(x, di, dj, fill)

    return materialize(_crossing(
        face, right(face, -2), depth, right(depth, jnp.inf), edges,
        [right(v, 0.0) for v in edges], step, [right(v, 0.0) for v in step], silhouettes,
        [right(v, False) for v in silhouettes]), face)  # fmt: skip


def _blend_dense(image, edges, steps, face, depth, silhouettes):
    out = list(image)
    for di, dj, axis, sign in _PAIRS:
        _, x, *_ = _dense_crossing(face, depth, edges, steps, silhouettes, di, dj, axis, sign)
        keep, give = materialize(_share(x), face)
        for c in range(len(image)):
            right = _shifted(image[c], di, dj, 0.0)
            # L takes a share of R's colour where the edge lies past the middle of the
            # segment on R's side, and R (at L's index, moved back to R) of L's.
            out[c] = out[c] + keep * (right - image[c])
            out[c] = out[c] + _shifted(give * (image[c] - right), -di, -dj, 0.0)
        out = materialize(out, face)
    return tuple(out)


def _blend_dense_bwd(image, edges, steps, face, depth, silhouettes, g):
    d_image = list(g)
    d_edges = [jnp.zeros_like(e) for e in edges]
    d_steps = [[jnp.zeros_like(v) for v in steps[a]] for a in range(2)]
    for di, dj, axis, sign in _PAIRS:
        crossing = _dense_crossing(face, depth, edges, steps, silhouettes, di, dj, axis, sign)
        to_left, to_right, *de = _pair_grads(
            crossing, g, [_shifted(x, di, dj, 0.0) for x in g], image,
            [_shifted(x, di, dj, 0.0) for x in image], sign,
            lambda t: materialize(t, face))  # fmt: skip
        left_e, right_e, left_delta, right_delta = materialize(de, face)
        for c in range(len(image)):
            d_image[c] = d_image[c] + to_left[c] + _shifted(to_right[c], -di, -dj, 0.0)
        for k in range(3):
            d_edges[k] = d_edges[k] + left_e[k] + _shifted(right_e[k], -di, -dj, 0.0)
            d_steps[axis][k] = (d_steps[axis][k] + left_delta[k]
                                + _shifted(right_delta[k], -di, -dj, 0.0))  # fmt: skip
        d_image, d_edges, d_steps = materialize((d_image, d_edges, d_steps), face)
    return tuple(d_image), tuple(d_edges), tuple(tuple(s) for s in d_steps)


# Pairs are listed by blocks of this many consecutive pixels (in row-major order).
_BLOCK = 8


def _candidates(face, silhouettes):
    """`(2, H * W)` bool, per kind of pair (`_PAIRS`) at each L pixel: whether the pair may
    blend, that is its two faces differ and one of them, shown at its pixel, has a
    silhouette edge (`_crossing` leaves every other pair as it is)."""
    any_sil = (face >= 0) & (silhouettes[0] | silhouettes[1] | silhouettes[2])
    maybe = []
    for di, dj, _, _ in _PAIRS:
        face_r = _shifted(face, di, dj, -2)
        pair = (face != face_r) & (face != -2) & (face_r != -2)
        maybe.append((pair & (any_sil | _shifted(any_sil, di, dj, False))).reshape(-1))
    return jnp.stack(maybe)


def _listed(maybe, capacity: int, shape, body, init):
    """`body((L, R, kind, live), carry)` over rounds of the pairs that `maybe` (from
    `_candidates`) marks: `L`, `R` `(capacity,)` flat pixel indices, `kind` the index into
    `_PAIRS` and `live` (False for pairs not marked, which point at pixel 0).

    The marked pairs are found by blocks of `_BLOCK` pixels of either kind: a round takes
    `capacity // _BLOCK` blocks that hold any, listed by one scatter from a running count
    over blocks (a prefix sum over every pixel costs far more, and marked pairs are few)."""
    w = shape[1]
    size = max(1, capacity // _BLOCK)  # blocks per round
    num = -(-maybe.shape[1] // _BLOCK)  # blocks per kind
    marked = jnp.pad(maybe, ((0, 0), (0, num * _BLOCK - maybe.shape[1]))).reshape(-1)
    held = jnp.any(marked.reshape(-1, _BLOCK), axis=1)  # (2 * num,): kind 0's, then kind 1's
    before = jnp.cumsum(held, dtype=jnp.int32) - 1  # each held block's place in the list
    count = before[-1] + 1
    offsets = jnp.asarray([di * w + dj for di, dj, _, _ in _PAIRS], jnp.int32)  # L to R

    def one_round(r, carry):
        slot = before - r * size
        take = held & (slot >= 0) & (slot < size)
        block = (
            jnp.zeros(size, jnp.int32)
            .at[jnp.where(take, slot, size)]
            .set(jnp.arange(2 * num, dtype=jnp.int32), mode="drop")
        )
        at = (block[:, None] * _BLOCK + jnp.arange(_BLOCK, dtype=jnp.int32)).reshape(-1)
        live = marked[at] & jnp.repeat(r * size + jnp.arange(size) < count, _BLOCK)
        kind = at // (num * _BLOCK)
        left = jnp.where(live, at - kind * (num * _BLOCK), 0)
        return body((left, left + offsets[kind], kind, live), carry)

    return jax.lax.fori_loop(0, (count + size - 1) // size, one_round, init)


def _gathered(planes, index):
    """`planes` (a list of `(R, W)` arrays) at the flat pixel indices `index`, each gathered
    once (`materialize`: XLA would repeat the gathers inside every fusion that reads them)."""
    return materialize([x.reshape(-1)[index] for x in planes], index)


class _Scene(NamedTuple):
    """What `_blend` reads besides the image: the pixels' faces `face (R, W)` (-1: none, -2:
    a row outside the image), their `depth (R, W)` and silhouette flags (3 planes), the
    faces' `face_rows` `rows (F, 10 or 12)`, the camera's `center` and `focal` `(2,)`, and
    the rows' screen y `y (R,)`. `rows`, `center` and `focal` are differentiated."""

    face: jax.Array
    depth: jax.Array
    silhouettes: tuple
    rows: jax.Array
    center: jax.Array
    focal: jax.Array
    y: jax.Array


def _edges_where(rows, center, focal, scene: _Scene, height: int, index=None):
    """`_edges_at` the pixels' own faces: every pixel's as planes, or at the flat pixel
    indices `index` as vectors."""
    w = scene.face.shape[1]
    if index is None:
        g = gather_planes(rows[:, :9], scene.face)
        rx, ry = _rays(center, focal, (height, w), rows.dtype, scene.y)
    else:
        at = rows[:, :9][jnp.maximum(scene.face.reshape(-1)[index], 0)]
        rx, ry = _ray_axes(center, focal, (height, w), rows.dtype, scene.y)
        rx, ry = rx[index % w], ry[index // w]
        # Computed once, also in the backward pass, where XLA would otherwise recompute the
        # gathers and rays for each of the rows' columns.
        at, rx, ry = materialize((at, rx, ry), index)
        g = [at[:, k] for k in range(9)]
    return _edges_at(g, rx, ry, focal, height)


def _listed_crossing(scene: _Scene, height: int, pairs):
    """`_crossing` of the listed pairs `(L, R, kind, live)` (`_listed`), as `(capacity,)`
    vectors, and the edge functions and steps along each pair's axis at L and at R that it
    read (as a function of the face rows and the camera, for the backward pass)."""
    left, right, kind, live = pairs
    planes = [scene.face, scene.depth, *scene.silhouettes]
    f_l, d_l, *sil_l = _gathered(planes, left)
    f_r, d_r, *sil_r = _gathered(planes, right)
    along_x = kind == 0  # see `_PAIRS`
    sign = jnp.where(along_x, _PAIRS[0][3], _PAIRS[1][3]).astype(scene.rows.dtype)

    def edges(rows, center, focal):
        def at(index):
            e, (s_x, s_y) = _edges_where(rows, center, focal, scene, height, index)
            return e, tuple(jnp.where(along_x, a, b) for a, b in zip(s_x, s_y, strict=True))

        return *at(left), *at(right)

    e_l, s_l, e_r, s_r = edges(scene.rows, scene.center, scene.focal)
    crossing = _crossing(
        jnp.where(live, f_l, -2), jnp.where(live, f_r, -2), d_l, d_r,  # padding: no blend
        e_l, e_r, [sign * v for v in s_l], [sign * v for v in s_r], sil_l, sil_r)  # fmt: skip
    return materialize(crossing, left), edges, sign


def _blend_listed(image, scene: _Scene, height: int, capacity: int, maybe):
    def body(pairs, out):
        left, right, _, _ = pairs
        (_, x, *_), _, _ = _listed_crossing(scene, height, pairs)
        keep, give = _share(x)
        c_l, c_r = _gathered(image, left), _gathered(image, right)
        return tuple(
            o.at[left].add(keep * (c_r[c] - c_l[c])).at[right].add(give * (c_l[c] - c_r[c]))
            for c, o in enumerate(out)
        )

    out = _listed(maybe, capacity, scene.face.shape, body, tuple(x.reshape(-1) for x in image))
    return tuple(x.reshape(scene.face.shape) for x in out)


def _blend_listed_bwd(image, scene: _Scene, height: int, capacity: int, maybe, g):
    def body(pairs, acc):
        left, right, _, _ = pairs
        d_image, d_rest = acc
        crossing, edges, sign = _listed_crossing(scene, height, pairs)
        to_left, to_right, left_e, right_e, left_delta, right_delta = _pair_grads(
            crossing, _gathered(g, left), _gathered(g, right), _gathered(image, left),
            _gathered(image, right), sign, lambda t: materialize(t, left))  # fmt: skip
        d_image = tuple(d.at[left].add(to_left[c]).at[right].add(to_right[c])
                        for c, d in enumerate(d_image))  # fmt: skip
        _, pull = jax.vjp(edges, scene.rows, scene.center, scene.focal)
        # Computed once: XLA would otherwise recompute them for each of the rows' columns.
        cotangents = (tuple(left_e), tuple(left_delta), tuple(right_e), tuple(right_delta))
        d_new = pull(materialize(cotangents, left))
        return d_image, jax.tree.map(jnp.add, d_rest, d_new)

    differentiated = (scene.rows, scene.center, scene.focal)
    # The blend's share of the image cotangent, added to `g` after the loop: `g` as a loop
    # carry would be copied in first.
    zeros = tuple(jnp.zeros(scene.face.size, x.dtype) for x in g)
    init = (zeros, jax.tree.map(jnp.zeros_like, differentiated))
    d_blend, d_rest = _listed(maybe, capacity, scene.face.shape, body, init)
    return tuple(x + d.reshape(x.shape) for x, d in zip(g, d_blend, strict=True)), d_rest


def _blend_everywhere_bwd(image, scene: _Scene, height: int, g):
    (edges, steps), pull = jax.vjp(
        lambda *a: _edges_where(*a, scene, height), scene.rows, scene.center, scene.focal
    )
    d_image, d_edges, d_steps = _blend_dense_bwd(image, edges, steps, scene.face, scene.depth,
                                                 scene.silhouettes, g)  # fmt: skip
    return d_image, pull((d_edges, d_steps))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _blend(image, scene: _Scene, height: int, capacity):
    return _blend_fwd(image, scene, height, capacity)[0]


def _blend_fwd(image, scene: _Scene, height: int, capacity):
    # Nothing but the inputs (and the list of pairs) is kept: the backward pass recomputes
    # the crossings instead of storing them.
    if capacity is None:
        edges, steps = _edges_where(scene.rows, scene.center, scene.focal, scene, height)
        out = _blend_dense(image, edges, steps, scene.face, scene.depth, scene.silhouettes)
        return out, (image, scene, None)
    maybe = _candidates(scene.face, scene.silhouettes)
    return _blend_listed(image, scene, height, capacity, maybe), (image, scene, maybe)


def _blend_bwd(height, capacity, res, g):
    image, scene, maybe = res
    if capacity is None:
        d_image, (d_rows, d_center, d_focal) = _blend_everywhere_bwd(image, scene, height, g)
    else:
        d_image, (d_rows, d_center, d_focal) = _blend_listed_bwd(image, scene, height,
                                                                 capacity, maybe, g)  # fmt: skip
    d_scene = scene._replace(
        face=None, depth=None, silhouettes=None, rows=d_rows, center=d_center, focal=d_focal,
        y=jnp.zeros_like(scene.y))  # fmt: skip
    return d_image, d_scene


_blend.defvjp(_blend_fwd, _blend_bwd)


def pair_capacity(shape) -> int:
    """Pairs (of both kinds together) that `antialias` computes per round at an `(H, W)`
    image: enough for a silhouette across the image a few times over (more take further
    rounds)."""
    return max(256, 4 * (shape[0] + shape[1]))


def antialias(image, p: Planes, silhouettes, rows, camera, image_size, y=None, capacity=0):
    """`image` (C planes `(R, W)`) blended across silhouette edges (see the module
    docstring), at the nearest layer `p` (its `face` and `depth`, no layer axis) of faces
    with `face_rows` `rows` seen by `camera` in an image of `image_size`; `silhouettes` (3
    planes) says which of each pixel's face's edges are silhouette edges
    (`silhouette_planes`); `y (R,)` the rows' screen y when the planes hold other rows than
    the image's (see `_rays`; faces -2 mark rows outside the image).

    For each pair of neighbouring pixels (L and the one to its right or below, R) whose faces
    differ, let s be the one showing the nearer surface (or the only one showing any; depth
    ties go to L) and x in [0, 1] where the segment from L's centre to R's leaves s's face.
    If the edge it leaves by is a silhouette edge, the pixel on the far side of the crossing
    from its own surface takes a share of the other's colour: L gains `(1/2 - x) (c_R - c_L)`
    when x < 1/2, R gains `(x - 1/2) (c_L - c_R)` when x > 1/2 (the box-filtered coverage of
    a straight edge across the pair). Edge functions are linear on the screen, so s steps
    its face's three from its own centre to the other's (`_edges_at`), and the backward
    pass (written by hand) recomputes the crossings rather than storing them.

    Only pairs whose faces differ and where one of the two faces has a silhouette edge can
    blend. By default (`capacity=0`) those are listed first and only they are computed, in
    rounds of `pair_capacity(image size)` pairs (a few hundred pairs at 256x256, against 130k
    pairs in all); `capacity=None` computes every pair as planes instead, and an integer sets
    the round size. The result is the same either way.
    """
    if capacity == 0:
        capacity = pair_capacity(p.face.shape)
    dtype = rows.dtype
    y = jnp.asarray(pixel_axes(image_size, *image_size)[0], dtype) if y is None else y
    scene = _Scene(p.face, p.depth, tuple(silhouettes), rows, camera.center.astype(dtype),
                   camera.focal.astype(dtype), y)  # fmt: skip
    return list(_blend(tuple(image), scene, image_size[0], capacity))
