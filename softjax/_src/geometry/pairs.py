"""Pair geometry, the unit of work of the rasterizer: for (pixel, face) pairs, the signed squared
distance, whether the pixel centre is inside, the perspective-correct barycentrics and the depth.

The dense reference calls it once on all pixels x all faces; the tiled path on tiles of pixels
and chunks of candidate faces, with the same results."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax._src.geometry.triangles import Triangles
from softjax._src.numerics import decided_once, sclip, smax, smin


class PairGeometry(NamedTuple):
    """Geometry of (pixel, face) pairs, each field of the broadcast pixel-by-face shape.

    dist2: squared screen distance from the pixel centre to the triangle, signed: positive
      inside, negative outside (SoftRas's convention).
    inside: whether the pixel centre belongs to the triangle. A centre exactly on an edge
      belongs to exactly one of the two triangles that share the edge (a top-left rule), so a
      z-buffer has no holes or double hits along shared edges.
    bary: three barycentrics, clamped to the triangle outside it; perspective-correct for a
      perspective camera (screen-space ones are exact for an orthographic camera).
    z: view depth at the pixel, interpolated the same way.
    wmin: the smallest screen-space barycentric, unclamped (positive inside; -inf for a
      degenerate face): SoftRas's barycentric distance.
    """

    dist2: jax.Array
    inside: jax.Array
    bary: tuple[jax.Array, jax.Array, jax.Array]
    z: jax.Array
    wmin: jax.Array


def _nearest_edge(d2s):
    """The index of the smallest of the three edges' squared distances `d2s`, the first among
    equals, and that distance, with the choice made once. Beyond a vertex the two edges that
    meet there are equally near, often to the last bit; were the comparison repeated in each
    consumer (see `decided_once`), copies that disagree would route a gradient through one
    edge's origin and the other's direction, and move vertices that do not move the
    distance."""
    first = jnp.where(d2s[1] < d2s[0], 1, 0)
    near = jnp.where(d2s[2] < jnp.where(first == 1, d2s[1], d2s[0]), 2, first)
    near = decided_once(near.astype(jnp.int32))
    return near, jax.lax.select_n(near, *d2s)


class PairParts(NamedTuple):
    """`PairGeometry` with the intermediates that its closed-form derivative (`pair_vjp`)
    reuses; fields after `frag` are per edge or corner k, each of the pair shape.

    r: `(rx, ry)` of each edge, the pixel centre relative to the edge's origin.
    e: the edge functions. w: the screen barycentrics (`e * weight`), unclamped.
    uq: `(u, qx, qy)` of each edge: the closest point's parameter on the segment and the
      offset from it to the pixel centre.
    near: the nearest edge's index. b: the clamped, normalised screen barycentrics.
    total: the sum they were normalised by (`good` where it is positive).
    """

    frag: PairGeometry
    r: tuple
    e: tuple
    w: tuple
    uq: tuple
    near: jax.Array
    b: tuple
    total: jax.Array
    good: jax.Array


def pair_parts(px, py, t: Triangles, perspective: bool = True) -> PairParts:
    """`pair_geometry` with its intermediates (see `PairParts`)."""
    d2s, inside, w, r, e_s, uq = [], True, [], [], [], []
    for k in range(3):
        dx, dy = t.dx[k], t.dy[k]
        rx, ry = px - t.ox[k], py - t.oy[k]
        e = dx * ry - dy * rx  # the edge function, exactly opposite for a shared edge
        s = e * t.sign[k]
        inside = inside & ((s > 0) | ((s == 0) & (t.owns[k] > 0)))
        w.append(e * t.weight[k])  # screen barycentric of corner k
        # Squared distance to the edge segment. The closest point's parameter u minimises it,
        # so its derivative does not enter the distance's (envelope theorem): no gradient.
        u = jax.lax.stop_gradient(sclip((rx * dx + ry * dy) * t.inv_len2[k], 0.0, 1.0))
        qx, qy = rx - u * dx, ry - u * dy
        d2s.append(qx * qx + qy * qy)
        r.append((rx, ry))
        e_s.append(e)
        uq.append((u, qx, qy))
    near, dist2 = _nearest_edge(d2s)
    dist2 = jnp.where(inside, dist2, -dist2)
    wmin = jnp.where(t.sign[0] != 0, smin(smin(w[0], w[1]), w[2]), -jnp.inf)

    # Outside the triangle, clamp to its closest barycentric point (SoftRas, PyTorch3D).
    w0, w1, w2 = (smax(wk, 0.0) for wk in w)
    total = w0 + w1 + w2
    good = total > 0
    w0, w1, w2 = (jnp.where(good, wk / jnp.where(good, total, 1.0), 1.0 / 3.0)
                  for wk in (w0, w1, w2))  # fmt: skip
    parts = (tuple(r), tuple(e_s), tuple(w), tuple(uq), near, (w0, w1, w2), total, good)
    za, zb, zc = t.z[0], t.z[1], t.z[2]
    if not perspective:
        frag = PairGeometry(dist2, inside, (w0, w1, w2), w0 * za + w1 * zb + w2 * zc, wmin)
        return PairParts(frag, *parts)
    # Perspective correction: interpolate 1/z linearly in screen space.
    w0, w1, w2 = w0 / za, w1 / zb, w2 / zc
    inv_z = w0 + w1 + w2
    z = 1.0 / inv_z
    return PairParts(PairGeometry(dist2, inside, (w0 * z, w1 * z, w2 * z), z, wmin), *parts)


def pair_geometry(px, py, t: Triangles, perspective: bool = True) -> PairGeometry:
    """Fragment geometry of pixel centres `(px, py)` against triangles `t` (from `setup`).

    `perspective` (static) says whether the screen positions came from a perspective division:
    then attributes are interpolated linearly in 1/z, otherwise linearly on the screen.

    Shapes broadcast: `px, py (P, 1)` against `t` fields `(3, F)` give `(P, F)` pairs; a tiled
    caller passes `(T, Q, 1)` pixels against `(3, T, 1, c)` candidate faces.
    """
    return pair_parts(px, py, t, perspective).frag


def _dot3(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def pair_vjp(parts: PairParts, t: Triangles, perspective: bool, g_dist2=None, g_wmin=None,
             g_z=None, g_bary=None):  # fmt: skip
    """The closed-form derivative of `pair_geometry`: per-pair cotangents of the triangles'
    differentiated fields from those of `dist2`, `wmin`, `z` and the three `bary` (None for
    none). Returns 18 arrays of the pair shape, in the order of `to_rows` (ox, oy, dx, dy,
    weight, z, three corners or edges each), None for those that get no cotangent; the
    caller sums them over its pixels.

    The chain, as reverse-mode differentiation of `pair_parts` takes it (the same selections
    and clamps), written out: bary -> (perspective) `v_k = b_k / z_k`, `z = 1 / sum v` ->
    normalisation `b = W / sum W` -> clamp `W = max(w, 0)` -> `w = e * weight` -> edge
    function `e = dx ry - dy rx` with `r = p - o`; and the nearest edge's squared distance
    `|r - u d|^2` (`u` held: the envelope theorem)."""
    frag = parts.frag
    none = [None, None, None]
    g_w, g_zc = none, none  # None: no cotangent (kept apart: XLA does not drop x * 0)
    if g_z is not None or g_bary is not None:
        if perspective:  # v_k = b_k / z_k, z = 1 / sum(v), bary_k = v_k z
            g_v = [None if g_z is None else -g_z * frag.z * frag.z] * 3
            if g_bary is not None:
                dot = _dot3(g_bary, frag.bary)
                g_v = [_add((g - dot) * frag.z, gv) for g, gv in zip(g_bary, g_v, strict=True)]
            g_b = [g_v[k] / t.z[k] for k in range(3)]
            g_zc = [-g_b[k] * parts.b[k] / t.z[k] for k in range(3)]
        else:  # bary = b, z = sum(b_k z_k)
            g_b = g_bary if g_bary is not None else [None] * 3
            if g_z is not None:
                g_b = [_add(g_b[k], g_z * t.z[k]) for k in range(3)]
                g_zc = [g_z * parts.b[k] for k in range(3)]
        dot = _dot3(g_b, parts.b)
        inv_total = 1.0 / jnp.where(parts.good, parts.total, 1.0)
        g_w = [jnp.where(parts.good & (parts.w[k] >= 0.0), (g_b[k] - dot) * inv_total, 0.0)
               for k in range(3)]  # fmt: skip
    if g_wmin is not None:  # smin(smin(w0, w1), w2): the first of equals
        w = parts.w
        first = w[0] <= w[1]
        last = jnp.where(first, w[0], w[1]) > w[2]
        pick = (~last & first, ~last & ~first, last)
        g_wmin = jnp.where(t.sign[0] != 0, g_wmin, 0.0)
        g_w = [_add(g_w[k], jnp.where(pick[k], g_wmin, 0.0)) for k in range(3)]
    g_ox, g_oy, g_dx, g_dy, g_weight = [], [], [], [], []
    for k in range(3):
        (rx, ry), e = parts.r[k], parts.e[k]
        gx = gy = g_rx = g_ry = None
        if g_w[k] is not None:
            g_e = g_w[k] * t.weight[k]
            g_weight.append(g_w[k] * e)
            gx, gy = g_e * ry, -g_e * rx
            g_rx, g_ry = -g_e * t.dy[k], g_e * t.dx[k]
        else:
            g_weight.append(None)
        if g_dist2 is not None:
            u, qx, qy = parts.uq[k]
            g_q = jnp.where(parts.near == k, jnp.where(frag.inside, g_dist2, -g_dist2), 0.0)
            g_qx, g_qy = 2.0 * qx * g_q, 2.0 * qy * g_q
            g_rx, g_ry = _add(g_rx, g_qx), _add(g_ry, g_qy)
            gx, gy = _add(gx, -u * g_qx), _add(gy, -u * g_qy)
        g_ox.append(None if g_rx is None else -g_rx)
        g_oy.append(None if g_ry is None else -g_ry)
        g_dx.append(gx)
        g_dy.append(gy)
    return g_ox + g_oy + g_dx + g_dy + g_weight + g_zc


def _add(a, b):
    """`a + b` where None stands for zero."""
    return b if a is None else a if b is None else a + b


def visible_depth(px, py, t: Triangles, perspective: bool = True):
    """What a z-buffer needs of each pair, at less cost than `pair_geometry`: the view depth where
    the pixel centre is inside the triangle (the same inside test, shared edges included),
    +inf elsewhere. Shapes broadcast as in `pair_geometry`."""
    inside, w = True, []
    for k in range(3):
        e = t.dx[k] * (py - t.oy[k]) - t.dy[k] * (px - t.ox[k])
        s = e * t.sign[k]
        inside = inside & ((s > 0) | ((s == 0) & (t.owns[k] > 0)))
        w.append(e * t.weight[k])  # screen barycentrics, summing to 1 inside
    if perspective:
        inv_z = w[0] / t.z[0] + w[1] / t.z[1] + w[2] / t.z[2]
        z = 1.0 / jnp.where(inside, inv_z, 1.0)
    else:
        z = w[0] * t.z[0] + w[1] * t.z[1] + w[2] * t.z[2]
    return jnp.where(inside, z, jnp.inf)


def pair_derivatives(bary, z, t: Triangles, values, perspective: bool, height: int):
    """Screen derivatives of attributes interpolated at pairs, per pixel step: `(C, 2,
    ...)`, `[:, 0]` one column to the right and `[:, 1]` one row down, of the perspective-
    correct interpolation of each pair's own face (its plane extended past its edges).

    `bary` and `z` are `pair_geometry`'s (clamped to the triangle outside it: the derivative
    is taken at that nearest point of the face), `t` the faces' `Triangles`, `values` the
    corner values laid out as for `interpolate_pairs`, `height` the image's in pixels. With
    the screen barycentrics `w_k` (affine: `dw_k = weight_k (-dy_k, dx_k)` per screen unit)
    and the corners' depths `z_k`, the interpolated barycentric `b_k = (w_k / z_k) z` has
    `db_k = z (dw_k / z_k - b_k sum_j dw_j / z_j)` (orthographic: `db_k = dw_k`); a column
    is `2 / height` screen units along x, a row as much down y."""
    step = 2.0 / height
    out = []
    for sx, sy in ((step, 0.0), (0.0, -step)):
        dw = [t.weight[k] * (t.dx[k] * sy - t.dy[k] * sx) for k in range(3)]
        if perspective:
            du = [dw[k] / t.z[k] for k in range(3)]
            total = du[0] + du[1] + du[2]
            db = [z * (du[k] - bary[k] * total) for k in range(3)]
        else:  # constant over the face: broadcast to the pairs
            db = [jnp.broadcast_to(x, bary[0].shape) for x in dw]
        out.append(interpolate_pairs(db, values))
    return jnp.stack(out, axis=1)


def interpolate_pairs(bary, values):
    """Interpolates corner values with `bary`; `values[k]` is corner k's `(C, ...)`, shaped to
    broadcast against the pairs after the channel axis: `(3, C, 1, F)` for `(P, F)` pairs gives
    `(C, P, F)`."""
    return bary[0] * values[0] + bary[1] * values[1] + bary[2] * values[2]
