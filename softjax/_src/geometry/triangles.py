"""Triangle setup: what the pair kernel needs of each screen triangle, computed once per face
(edges ordered so that shared edges round alike, barycentric weights, the top-left rule)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax._src.numerics import tiny


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


def _owns(dx, dy):
    """Whether a triangle owns its edge of direction (dx, dy) (walked with the interior on
    the left): true for exactly one of d and -d, so a pixel centre on an edge shared by two
    triangles, which walk it in opposite directions, belongs to one of them."""
    return (dy < 0) | ((dy == 0) & (dx < 0))
