"""Projection (with near-plane clipping) to screen triangles, and per (pixel, face) fragment
geometry.

`fragments` is the unit of work of the rasterizer: given a set of pixels and a set of faces it
returns, for every pair, the signed squared distance, whether the pixel centre is inside, the
perspective-correct barycentrics and the depth. The dense reference path calls it once on all
pixels x all faces; a faster path calls it on tiles of pixels and chunks of candidate faces,
with the same results.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax._numerics import cross2, decided_once, matmul, sclip, smax, smin, tiny
from softjax.camera import Camera, to_camera, to_screen

# Every face becomes two screen triangles, 2f and 2f + 1 (see `project`).
PIECES = 2


class ScreenTriangles(NamedTuple):
    """Faces after clipping and projection: `F' = 2F` triangles, 2f and 2f + 1 from face f.

    xy: `(F', 3, 2)` screen positions of the corners (NDC-y units, y up).
    z: `(F', 3)` view depths of the corners (>= near where valid; 1 elsewhere, to stay finite).
    valid: `(F',)` False for triangles that do not render: the unused second piece of a face
      that needs one, a face wholly behind the near plane, one whose screen coordinates would
      leave the floating range, or a back face when culling is on.
    bary: `(F', 3, 3)` each corner as weights of its face's original corners: corner k of
      triangle i is `sum_j bary[i, k, j] * corner_j(face i // 2)`, so attributes follow with
      `clip_attributes`.
    """

    xy: jax.Array
    z: jax.Array
    valid: jax.Array
    bary: jax.Array


class Triangles(NamedTuple):
    """What the pair kernel needs of each triangle, set up once per face by `setup`.

    Structure of arrays: every field is `(3, ...)` (one row per edge or corner) with the
    faces' shape after it, so the face axis stays innermost for the pair computations and XLA
    vectorises them. Edge k joins the two corners other than k (edge 0 is b -> c, 1 is
    c -> a, 2 is a -> b).

    ox, oy, dx, dy: edge k from its endpoint that comes first in (x, y) order to the other.
      Two triangles that share an edge get the same numbers, so their edge functions at any
      pixel are exactly opposite, however they round: a pixel centre on a shared edge is
      inside exactly one of them.
    weight: `edge_function_k * weight_k` is the screen-space barycentric of corner k (0 for
      a degenerate face).
    z: the corners' view depths.
    Constants of the inside test (not differentiated): `sign` +-1 making the edge function
    positive inside (0 for a degenerate face); `owns` 1 where the face owns the edge under the
    top-left rule (see `_owns`); `inv_len2` `1 / |edge|^2` (0 for a zero-length edge).
    """

    ox: jax.Array
    oy: jax.Array
    dx: jax.Array
    dy: jax.Array
    weight: jax.Array
    z: jax.Array
    sign: jax.Array
    owns: jax.Array
    inv_len2: jax.Array


GEOM = 9  # rows of a face's geometry: corner x (3), y (3), view depth (3)
DIFF = 6  # the differentiated fields of `Triangles` come first
_START, _END = (1, 2, 0), (2, 0, 1)  # edge k runs from corner _START[k] to corner _END[k]


def geometry_rows(xy, z):
    """Screen triangles `xy (..., 3, 2)`, `z (..., 3)` -> `(GEOM, ...)` rows."""
    return jnp.concatenate([jnp.moveaxis(xy[..., 0], -1, 0), jnp.moveaxis(xy[..., 1], -1, 0),
                            jnp.moveaxis(z, -1, 0)])  # fmt: skip


def setup(geom) -> Triangles:
    """Per-face data of triangles given as `geometry_rows` `(GEOM, ...)`."""
    x, y, z = geom[0:3], geom[3:6], geom[6:9]

    def corners(v, order):  # rows in `order`, stacked (no gather: its transpose is a scatter)
        return jnp.stack([v[i] for i in order])

    x0, y0, x1, y1 = corners(x, _START), corners(y, _START), corners(x, _END), corners(y, _END)
    swap = (x0 > x1) | ((x0 == x1) & (y0 > y1))
    ox, oy = jnp.where(swap, x1, x0), jnp.where(swap, y1, y0)
    dx, dy = jnp.where(swap, x0 - x1, x1 - x0), jnp.where(swap, y0 - y1, y1 - y0)
    len2 = dx * dx + dy * dy
    long = len2 > tiny(len2.dtype)
    inv_len2 = jnp.where(long, 1.0 / jnp.where(long, len2, 1.0), 0.0)
    area = (x[1] - x[0]) * (y[2] - y[0]) - (y[1] - y[0]) * (x[2] - x[0])
    # Degenerate: an area below rounding relative to the face's own size (not an absolute
    # threshold, so small faces in a low-precision input are still faces). Such a face is
    # never inside and its barycentrics are 0.
    ok = jnp.abs(area) > 8 * jnp.finfo(area.dtype).eps * (len2[0] + len2[1] + len2[2])
    inv_area = jnp.where(ok, 1.0 / jnp.where(ok, area, 1.0), 0.0)
    weight = jnp.where(swap, -inv_area, inv_area)
    orient = jnp.where(area < 0, -1.0, 1.0).astype(area.dtype)
    sign = jnp.where(ok, jnp.where(swap, -orient, orient), 0.0)
    # The edge walked with the interior on its left: start -> end for a counter-clockwise
    # triangle, reversed for a clockwise one.
    owns = ok & _owns(orient * (x1 - x0), orient * (y1 - y0))
    flags = (sign, owns, inv_len2)
    flags = tuple(jax.lax.stop_gradient(jnp.asarray(f, area.dtype)) for f in flags)
    return Triangles(ox, oy, dx, dy, weight, z, *flags)


def to_rows(t: Triangles):
    """`Triangles` with fields `(3, F)` -> `(rows (3 * DIFF, F), flags (9, F))`: the
    differentiated fields and the constants, as rows (structure of arrays)."""
    rows = jnp.concatenate(t, axis=0)
    return rows[: 3 * DIFF], rows[3 * DIFF :]


def from_rows(rows, flags) -> Triangles:
    """Inverse of `to_rows`, for any trailing shape."""
    fields = [rows[3 * i : 3 * i + 3] for i in range(DIFF)]
    fields += [flags[3 * i : 3 * i + 3] for i in range(len(Triangles._fields) - DIFF)]
    return Triangles(*fields)


def bounds(geom):
    """`(4, F)` screen bounding boxes (x min, x max, y min, y max) of `geometry_rows`."""
    xs, ys = geom[0:3], geom[3:6]
    return jnp.stack([jnp.min(xs, 0), jnp.max(xs, 0), jnp.min(ys, 0), jnp.max(ys, 0)])


class Fragments(NamedTuple):
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


def coordinate_bound(dtype) -> float:
    """Largest screen coordinate magnitude a triangle may have: differences and products of
    two coordinates (the edge functions and squared distances) then stay finite."""
    return float(jnp.finfo(dtype).max) ** 0.5 / 16


def project(verts, faces, camera: Camera, cull_backfaces: bool = False,
            face_mask=None) -> ScreenTriangles:  # fmt: skip
    """Clips mesh faces against the near plane in camera space and projects them.

    A face wholly in front of `camera.near` is kept as it is (piece 2f; piece 2f + 1 unused).
    A face crossing the plane is cut along it (Sutherland-Hodgman against one plane): a
    triangle with one corner in front keeps a triangle, one with two corners in front keeps a
    quad, split into the two pieces along a diagonal chosen by vertex index (so neither the
    winding nor the first corner changes the split). The cut points are computed from the
    front corner of each cut edge, so faces sharing an edge share their cut point bit for
    bit. Images and gradients move continuously with the geometry, except at the instant a
    second corner crosses the plane: the second piece then starts as a sliver along an edge,
    and like any degenerate face it blurs along its extent, a step of up to 1/4 in the soft
    alpha within the blur radius of that edge. The diagonal is an edge shared by two faces,
    with the soft silhouette's dip on it (see `render`). A face wholly behind the plane, or
    one whose screen coordinates would overflow (a huge face just past a tiny `near`), is
    dropped with zero gradient, as is a face whose `face_mask` `(F,)` entry is False.
    """
    dtype = verts.dtype
    cam = to_camera(camera, verts)[faces]  # (F, 3, 3) corners in camera coordinates
    near = camera.near
    front = cam[..., 2] > near  # (F, 3)
    n_front = jnp.sum(front, axis=-1)
    # Rotate each face's corners (keeping the winding) so that A is the lone front corner
    # (one in front) or C the lone back corner (two in front).
    lone_front = jnp.argmax(front, axis=-1)
    lone_back = jnp.argmin(front, axis=-1)
    r = jnp.where(n_front == 1, lone_front, jnp.where(n_front == 2, (lone_back + 1) % 3, 0))
    order = (r[:, None] + jnp.arange(3)) % 3  # (F, 3)
    pts = jnp.take_along_axis(cam, order[..., None], axis=1)  # (F, 3, 3) corners A, B, C
    eye = jax.nn.one_hot(order, 3, dtype=dtype)  # (F, 3, 3) their weights
    a, b, c = pts[:, 0], pts[:, 1], pts[:, 2]
    ea, eb, ec = eye[:, 0], eye[:, 1], eye[:, 2]

    def cut(p, ep, q, eq):
        """Where edge p (front) -> q (back) meets the plane, and its weights."""
        den = p[:, 2] - q[:, 2]
        ok = den > 0
        t = jnp.where(ok, (p[:, 2] - near) / jnp.where(ok, den, 1.0), 0.0)[:, None]
        point = p + t * (q - p)
        return point.at[:, 2].set(jnp.where(ok, near, point[:, 2])), ep + t * (eq - ep)

    ab, w_ab = cut(a, ea, b, eb)
    ac, w_ac = cut(a, ea, c, ec)
    bc, w_bc = cut(b, eb, c, ec)
    one, two = (n_front == 1)[:, None], (n_front == 2)[:, None]
    first = jnp.stack([a, jnp.where(one, ab, b), jnp.where(one, ac, jnp.where(two, bc, c))], 1)
    w_first = jnp.stack([ea, jnp.where(one, w_ab, eb),
                         jnp.where(one, w_ac, jnp.where(two, w_bc, ec))], 1)  # fmt: skip
    # The quad A, B, BC, CA is split along the diagonal from whichever of A and B has the
    # lower vertex index, so the split (and with it the image) does not depend on the face's
    # winding or on which corner it lists first.
    vert = jnp.take_along_axis(faces, order, axis=1)
    from_b = (two & (vert[:, 1] < vert[:, 0])[:, None])[:, :, None]
    quad_b = jnp.stack([b, bc, ac], axis=1), jnp.stack([b, ac, a], axis=1)
    first = jnp.where(from_b, quad_b[0], first)
    second = jnp.where(from_b, quad_b[1], jnp.stack([a, bc, ac], axis=1))
    w_first = jnp.where(from_b, jnp.stack([eb, w_bc, w_ac], axis=1), w_first)
    w_second = jnp.where(from_b, jnp.stack([eb, w_ac, ea], axis=1),
                         jnp.stack([ea, w_bc, w_ac], axis=1))  # fmt: skip
    tri = jnp.stack([first, second], axis=1).reshape(-1, 3, 3)  # (2F, 3, 3)
    bary = jnp.stack([w_first, w_second], axis=1).reshape(-1, 3, 3)
    valid = jnp.stack([n_front > 0, n_front == 2], axis=1)
    if face_mask is not None:
        valid = valid & face_mask[:, None]
    valid = valid.reshape(-1)

    # Screen coordinates must stay within `coordinate_bound`: |x| f <= bound z (perspective)
    # tests that without dividing.
    bound = coordinate_bound(dtype)
    depth = jnp.ones_like(tri[..., 2]) if camera.orthographic else tri[..., 2]
    span = jnp.abs(tri[..., :2]) * camera.focal + jnp.abs(camera.center)
    valid = valid & jnp.all(span <= 0.5 * bound * depth[..., None], axis=(-2, -1))
    # Double where: dropped triangles get a harmless stand-in before the division.
    stand_in = jnp.asarray([0.0, 0.0, 1.0], dtype)
    tri = jnp.where(valid[:, None, None], tri, stand_in)
    xy = to_screen(camera, tri)
    z = tri[..., 2]
    if cull_backfaces:
        valid = valid & (cross2(xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0]) > 0)
    return ScreenTriangles(xy, z, valid, bary)


def clip_attributes(tris: ScreenTriangles, values):
    """Per-corner values of the faces `(F, 3, A)` -> those of the clipped triangles
    `(F', 3, A)`: interpolated linearly in camera space at the cut points, which is what
    perspective-correct interpolation over the original face gives there."""
    per_piece = jnp.repeat(values, PIECES, axis=0)
    return matmul(tris.bary, per_piece)


def source_face(index):
    """The face a clipped triangle `index` (or the sentinel, mapped past the last face)
    comes from."""
    return index // PIECES


def _owns(dx, dy):
    """Whether a triangle owns its edge of direction (dx, dy) (walked with the interior on
    the left): true for exactly one of d and -d, so a pixel centre on an edge shared by two
    triangles, which walk it in opposite directions, belongs to one of them."""
    return (dy < 0) | ((dy == 0) & (dx < 0))


def _nearest_edge(d2s):
    """The smallest of the three edges' squared distances `d2s`, the first among equals, with
    the choice made once. Beyond a vertex the two edges that meet there are equally near,
    often to the last bit; were the comparison repeated in each consumer (see
    `decided_once`), copies that disagree would route a gradient through one edge's origin
    and the other's direction, and move vertices that do not move the distance."""
    first = jnp.where(d2s[1] < d2s[0], 1, 0)
    near = jnp.where(d2s[2] < jnp.where(first == 1, d2s[1], d2s[0]), 2, first)
    return jax.lax.select_n(decided_once(near.astype(jnp.int32)), *d2s)


def fragments(px, py, t: Triangles, perspective: bool = True) -> Fragments:
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
        return Fragments(dist2, inside, (w0, w1, w2), w0 * za + w1 * zb + w2 * zc, wmin)
    # Perspective correction: interpolate 1/z linearly in screen space.
    w0, w1, w2 = w0 / za, w1 / zb, w2 / zc
    inv_z = w0 + w1 + w2
    z = 1.0 / inv_z
    return Fragments(dist2, inside, (w0 * z, w1 * z, w2 * z), z, wmin)


def visible_depth(px, py, t: Triangles, perspective: bool = True):
    """What a z-buffer needs of each pair, at less cost than `fragments`: the view depth where
    the pixel centre is inside the triangle (the same inside test, shared edges included),
    +inf elsewhere. Shapes broadcast as in `fragments`."""
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


def interpolate(bary, values):
    """Interpolates corner values with `bary`; `values[k]` is corner k's `(C, ...)`, shaped to
    broadcast against the pairs after the channel axis: `(3, C, 1, F)` for `(P, F)` pairs gives
    `(C, P, F)`."""
    return bary[0] * values[0] + bary[1] * values[1] + bary[2] * values[2]
