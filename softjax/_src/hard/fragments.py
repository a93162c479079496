"""Fragments of hard visibility: per pixel, the z-buffer's face with differentiable
barycentrics and depth, and attributes interpolated with them.

Each pixel gathers its face's camera-space cross products (`face_rows`) and evaluates
homogeneous, perspective-correct barycentrics and the depth of its ray's hit (`planes_at`), so
gradients reach vertices and camera through plain JAX, also for faces cut by the near plane.
O(pixels), computed as planes (attribute axes first).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax._src.geometry.clip import PIECES
from softjax._src.numerics import materialize
from softjax._src.pixels import pixel_axes


class Fragments(NamedTuple):
    """What `sj.rasterize` finds at each pixel centre, nearest surface first.

    face_id: `(H, W)` int32 index of the face there, -1 where none (`(H, W, K)` with K layers).
    bary: `(H, W, 3)` perspective-correct barycentrics of that face's corners (0 where none;
      `(H, W, K, 3)` with layers).
    depth: `(H, W)` view depth (distance along the camera axis), `camera.far` where none
      (`(H, W, K)` with layers).
    triangle: like `face_id`, the near-plane-clipped screen triangle the pixel lies in
      (`2 * face_id` or `2 * face_id + 1`, see `project` in `softjax._src.geometry.clip`),
      which `sj.antialias` reads the edges of.

    Barycentrics and depth are differentiable with respect to the vertices and the camera;
    the indices are not.
    """

    face_id: jax.Array
    bary: jax.Array
    depth: jax.Array
    triangle: jax.Array


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


def ray_axes(center, focal, image_size, dtype, y=None):
    """Camera-space x `(W,)` of the rays through the pixel columns and y `(H,)` through the
    rows (z = 1), for a camera's `center` and `focal` `(2,)`; `y (R,)` gives the screen y of
    other rows (`pixel_axes`' formula) for `(R,)`."""
    ys, x = pixel_axes(image_size, *image_size)
    y = jnp.asarray(ys, dtype) if y is None else y
    return (jnp.asarray(x, dtype) - center[0]) / focal[0], -(y - center[1]) / focal[1]


def rays(center, focal, image_size, dtype, y=None):
    """`ray_axes` broadcast to the pixels: x and y `(H, W)` (`(R, W)` with `y`)."""
    rx, ry = ray_axes(center, focal, image_size, dtype, y)
    shape = (ry.shape[0], rx.shape[0])
    return jnp.broadcast_to(rx[None, :], shape), jnp.broadcast_to(ry[:, None], shape)


def plane_weights(g, rx, ry):
    """`(w_1, w_2, W)`: the camera rays `(rx, ry)` dotted with the `face_rows` vectors `g`
    (see there): homogeneous barycentrics and edge functions."""
    return tuple(rx * g[3 * k] + ry * g[3 * k + 1] + g[3 * k + 2] for k in range(3))


def planes_at(rows, triangle, camera, image_size, y=None) -> Planes:
    """`Planes` at the pixels whose clipped triangles are `triangle (..., H, W)` (from
    `visible_triangles`), from `face_rows` `rows (F, 10 or 12)` of the mesh seen by `camera`.
    `y (R,)`: the pixel rows' screen y when `triangle` holds R rows other than the image's
    (see `rays`)."""
    # Computed once: the indices come out of the z-buffer's tiled layout, a transpose that
    # XLA would otherwise repeat inside every gather below.
    face, triangle = materialize(
        (jnp.where(triangle >= 0, triangle // PIECES, -1).astype(jnp.int32),
         triangle.astype(jnp.int32)), triangle)  # fmt: skip
    some = face >= 0
    g = gather_planes(rows, face)  # 10 or 12 planes `(..., H, W)`
    rx, ry = rays(camera.center, camera.focal, image_size, rows.dtype, y)
    w1, w2, total = plane_weights(g, rx, ry)
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


def edges_at(g, rx, ry, focal, height: int):
    """The edge functions opposite each corner (3), >= 0 inside, of faces with `face_rows`
    `g` (at least 9 arrays) at the camera rays `(rx, ry)`, and their steps per pixel along x
    and y (2 x 3): one pixel is 2 / `height` screen units, which moves a ray by that over the
    `focal` length. Elementwise."""
    w1, w2, total = plane_weights(g, rx, ry)
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


def interpolate_fragments(values, frags: Fragments, faces):
    """`values` at each fragment: per-vertex `(V, C)` or per-corner `(F, 3, C)` (`faces (F, 3)`
    indexes the former) -> `(H, W, C)` (or `(H, W, K, C)`), zero where there is no face."""
    corner = values[faces] if values.ndim == 2 else values  # (F, 3, C)
    bary = tuple(frags.bary[..., k] for k in range(3))
    out = interpolate_planes(corner, frags.face_id, bary)
    if not out:
        return jnp.zeros((*frags.face_id.shape, 0), frags.bary.dtype)
    return jnp.stack(out, axis=-1)


def screen_derivatives(values, face, rows, camera, image_size, y=None):
    """Derivatives of interpolated attributes per pixel step, `(..., C, 2)`: `[..., 0]` one
    column to the right, `[..., 1]` one row down, at pixels showing faces `face (H, W, ...)`
    (-1: none, zero derivatives). `values (F, 3, C)` are the faces' corner values and `rows`
    their `face_rows` for `camera`; `y (R,)` the rows' screen y when `face` holds R rows
    other than the image's (see `rays`). Exact for the perspective-correct interpolation:
    with `w_k = r . A_k` linear in the ray `r` (see `face_rows`), `d(w_k / W) = (dw_k - (w_k
    / W) dW) / W`; a column moves the ray's x by `2 / (H fx)` and a row its y by `2 / (H
    fy)` (pixels are `2 / H` screen units apart, see `pixel_axes`)."""
    h, w = image_size
    g = jnp.moveaxis(rows[jnp.maximum(face, 0)], -1, 0)  # R planes (H, W, ...)
    rx, ry = ray_axes(camera.center, camera.focal, image_size, rows.dtype, y)
    extra = (1,) * (face.ndim - 2)
    wk = plane_weights(g, rx.reshape(1, w, *extra), ry.reshape(ry.shape[0], 1, *extra))
    ok = (face >= 0) & (wk[2] != 0)
    inv = 1.0 / jnp.where(ok, wk[2], 1.0)
    steps = (2.0 / (h * camera.focal[0]), 2.0 / (h * camera.focal[1]))
    d_b = []  # d b_k / (column, row) for corners 1 and 2
    for k in (0, 1):
        ratio = wk[k] * inv
        d_b.append(tuple(jnp.where(ok, (g[3 * k + a] - ratio * g[6 + a]) * inv, 0.0) * steps[a]
                         for a in (0, 1)))  # fmt: skip
    corner = values[jnp.maximum(face, 0)]  # (H, W, ..., 3, C)
    e1, e2 = corner[..., 1, :] - corner[..., 0, :], corner[..., 2, :] - corner[..., 0, :]
    out = [e1 * d_b[0][a][..., None] + e2 * d_b[1][a][..., None] for a in (0, 1)]
    return jnp.stack(out, axis=-1)


def silhouette_planes(edges, face):
    """`silhouette_edges` `(F, 3)` at the pixels' faces `face (...)`: 3 bool planes. The three
    flags travel as one int8 code, one gather instead of three."""
    code = edges[:, 0].astype(jnp.int8) + 2 * edges[:, 1].astype(jnp.int8) \
        + 4 * edges[:, 2].astype(jnp.int8)  # fmt: skip
    (code,) = gather_planes(code[:, None], face)
    return materialize(tuple((code & (1 << k)) != 0 for k in range(3)), face)
