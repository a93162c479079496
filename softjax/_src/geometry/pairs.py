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
    """The smallest of the three edges' squared distances `d2s`, the first among equals, with
    the choice made once. Beyond a vertex the two edges that meet there are equally near,
    often to the last bit; were the comparison repeated in each consumer (see
    `decided_once`), copies that disagree would route a gradient through one edge's origin
    and the other's direction, and move vertices that do not move the distance."""
    first = jnp.where(d2s[1] < d2s[0], 1, 0)
    near = jnp.where(d2s[2] < jnp.where(first == 1, d2s[1], d2s[0]), 2, first)
    return jax.lax.select_n(decided_once(near.astype(jnp.int32)), *d2s)


def pair_geometry(px, py, t: Triangles, perspective: bool = True) -> PairGeometry:
    """Fragment geometry of pixel centres `(px, py)` against triangles `t` (from `setup`).

    `perspective` (static) says whether the screen positions came from a perspective division:
    then attributes are interpolated linearly in 1/z, otherwise linearly on the screen.

    Shapes broadcast: `px, py (P, 1)` against `t` fields `(3, F)` give `(P, F)` pairs; a tiled
    caller passes `(T, Q, 1)` pixels against `(3, T, 1, c)` candidate faces.
    """
    d2s, inside, w = [], True, []
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
    dist2 = _nearest_edge(d2s)
    dist2 = jnp.where(inside, dist2, -dist2)
    wmin = jnp.where(t.sign[0] != 0, smin(smin(w[0], w[1]), w[2]), -jnp.inf)

    # Outside the triangle, clamp to its closest barycentric point (SoftRas, PyTorch3D).
    w0, w1, w2 = (smax(wk, 0.0) for wk in w)
    total = w0 + w1 + w2
    good = total > 0
    w0, w1, w2 = (jnp.where(good, wk / jnp.where(good, total, 1.0), 1.0 / 3.0)
                  for wk in (w0, w1, w2))  # fmt: skip
    za, zb, zc = t.z[0], t.z[1], t.z[2]
    if not perspective:
        return PairGeometry(dist2, inside, (w0, w1, w2), w0 * za + w1 * zb + w2 * zc, wmin)
    # Perspective correction: interpolate 1/z linearly in screen space.
    w0, w1, w2 = w0 / za, w1 / zb, w2 / zc
    inv_z = w0 + w1 + w2
    z = 1.0 / inv_z
    return PairGeometry(dist2, inside, (w0 * z, w1 * z, w2 * z), z, wmin)


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


def interpolate_pairs(bary, values):
    """Interpolates corner values with `bary`; `values[k]` is corner k's `(C, ...)`, shaped to
    broadcast against the pairs after the channel axis: `(3, C, 1, F)` for `(P, F)` pairs gives
    `(C, P, F)`."""
    return bary[0] * values[0] + bary[1] * values[1] + bary[2] * values[2]
