"""Analytic antialiasing of silhouette and occlusion edges (Laine et al. 2020, "Modular
Primitives for High-Performance Differentiable Rendering").

Where two neighbouring pixels show different faces, the nearer one's face is tested for the
edge through which the segment between the two centres leaves it (its edge functions, stepped
from the pixel's own centre). If that edge is a silhouette edge (no neighbouring face across
it, or one that faces the other way), the two colours are blended by where it crosses the
segment: the image is then a continuous function of the vertex positions along silhouette and
occlusion edges, and its gradient reaches them. O(pixels) forward; the pairs that can blend
are listed and only they are computed, forward and (recomputed, by hand) backward.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax._src.hard.fragments import Planes, edges_at, gather_planes, ray_axes, rays
from softjax._src.numerics import materialize
from softjax._src.pixels import pixel_axes, shifted

# The two kinds of neighbouring pixel pairs: (row step, column step, the sign that turns the
# per-pixel steps of the edge functions (`edges_at`) along x (index 0) or y (index 1) into
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
        return shifted(x, di, dj, fill)

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
            right = shifted(image[c], di, dj, 0.0)
            # L takes a share of R's colour where the edge lies past the middle of the
            # segment on R's side, and R (at L's index, moved back to R) of L's.
            out[c] = out[c] + keep * (right - image[c])
            out[c] = out[c] + shifted(give * (image[c] - right), -di, -dj, 0.0)
        out = materialize(out, face)
    return tuple(out)


def _blend_dense_bwd(image, edges, steps, face, depth, silhouettes, g):
    d_image = list(g)
    d_edges = [jnp.zeros_like(e) for e in edges]
    d_steps = [[jnp.zeros_like(v) for v in steps[a]] for a in range(2)]
    for di, dj, axis, sign in _PAIRS:
        crossing = _dense_crossing(face, depth, edges, steps, silhouettes, di, dj, axis, sign)
        to_left, to_right, *de = _pair_grads(
            crossing, g, [shifted(x, di, dj, 0.0) for x in g], image,
            [shifted(x, di, dj, 0.0) for x in image], sign,
            lambda t: materialize(t, face))  # fmt: skip
        left_e, right_e, left_delta, right_delta = materialize(de, face)
        for c in range(len(image)):
            d_image[c] = d_image[c] + to_left[c] + shifted(to_right[c], -di, -dj, 0.0)
        for k in range(3):
            d_edges[k] = d_edges[k] + left_e[k] + shifted(right_e[k], -di, -dj, 0.0)
            d_steps[axis][k] = (d_steps[axis][k] + left_delta[k]
                                + shifted(right_delta[k], -di, -dj, 0.0))  # fmt: skip
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
        face_r = shifted(face, di, dj, -2)
        pair = (face != face_r) & (face != -2) & (face_r != -2)
        maybe.append((pair & (any_sil | shifted(any_sil, di, dj, False))).reshape(-1))
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
    """`edges_at` the pixels' own faces: every pixel's as planes, or at the flat pixel
    indices `index` as vectors."""
    w = scene.face.shape[1]
    if index is None:
        g = gather_planes(rows[:, :9], scene.face)
        rx, ry = rays(center, focal, (height, w), rows.dtype, scene.y)
    else:
        at = rows[:, :9][jnp.maximum(scene.face.reshape(-1)[index], 0)]
        rx, ry = ray_axes(center, focal, (height, w), rows.dtype, scene.y)
        rx, ry = rx[index % w], ry[index // w]
        # Computed once, also in the backward pass, where XLA would otherwise recompute the
        # gathers and rays for each of the rows' columns.
        at, rx, ry = materialize((at, rx, ry), index)
        g = [at[:, k] for k in range(9)]
    return edges_at(g, rx, ry, focal, height)


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


def blend_capacity(shape) -> int:
    """Pairs (of both kinds together) that `antialias` computes per round at an `(H, W)`
    image: enough for a silhouette across the image a few times over (more take further
    rounds)."""
    return max(256, 4 * (shape[0] + shape[1]))


def antialias_planes(image, p: Planes, silhouettes, rows, camera, image_size, y=None,
                     capacity=None):  # fmt: skip
    """`image` (C planes `(R, W)`) blended across silhouette edges (see the module
    docstring), at the nearest layer `p` (its `face` and `depth`, no layer axis) of faces
    with `face_rows` `rows` seen by `camera` in an image of `image_size`; `silhouettes` (3
    planes) says which of each pixel's face's edges are silhouette edges
    (`silhouette_planes`); `y (R,)` the rows' screen y when the planes hold other rows than
    the image's (see `rays`; faces -2 mark rows outside the image).

    For each pair of neighbouring pixels (L and the one to its right or below, R) whose faces
    differ, let s be the one showing the nearer surface (or the only one showing any; depth
    ties go to L) and x in [0, 1] where the segment from L's centre to R's leaves s's face.
    If the edge it leaves by is a silhouette edge, the pixel on the far side of the crossing
    from its own surface takes a share of the other's colour: L gains `(1/2 - x) (c_R - c_L)`
    when x < 1/2, R gains `(x - 1/2) (c_L - c_R)` when x > 1/2 (the box-filtered coverage of
    a straight edge across the pair). Edge functions are linear on the screen, so s steps
    its face's three from its own centre to the other's (`edges_at`), and the backward
    pass (written by hand) recomputes the crossings rather than storing them.

    Only pairs whose faces differ and where one of the two faces has a silhouette edge can
    blend. By default (`capacity=None`) those are listed first and only they are computed, in
    rounds of `blend_capacity(image size)` pairs (a few hundred pairs at 256x256, against 130k
    pairs in all); `capacity=0` computes every pair as planes instead, and an integer sets
    the round size. The result is the same either way.
    """
    if capacity is None:
        capacity = blend_capacity(p.face.shape)
    elif capacity == 0:
        capacity = None  # every pair, as planes (see `_blend`)
    dtype = rows.dtype
    y = jnp.asarray(pixel_axes(image_size, *image_size)[0], dtype) if y is None else y
    scene = _Scene(p.face, p.depth, tuple(silhouettes), rows, camera.center.astype(dtype),
                   camera.focal.astype(dtype), y)  # fmt: skip
    return list(_blend(tuple(image), scene, image_size[0], capacity))
