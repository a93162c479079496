"""Projection to screen triangles and per (pixel, face) fragment geometry.

`fragments` is the unit of work of the rasterizer: given a set of pixels and a set of faces it
returns, for every pair, the signed squared distance, the perspective-correct barycentrics and
the depth. The dense reference path calls it once on all pixels x all faces; a faster path calls
it on tiles of pixels and chunks of candidate faces, with the same results.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax._numerics import cross2, safe_div, sclip, smax, smin, tiny
from softjax.camera import Camera, to_camera, to_screen


class ScreenTriangles(NamedTuple):
    """Faces after projection (shapes for F faces).

    xy: `(F, 3, 2)` screen positions of the three corners (NDC-y units, y up).
    z: `(F, 3)` view depths of the corners (positive in front; 1 where culled, to stay finite).
    valid: `(F,)` False for faces that do not render (a corner at depth <= near, or a back
      face when culling is on).
    """

    xy: jax.Array
    z: jax.Array
    valid: jax.Array


class Corners(NamedTuple):
    """Triangle corners in structure-of-arrays form: each field has the faces' shape.

    Splitting x, y and the three corners into separate arrays keeps the face axis innermost
    for the pair computations, which lets XLA vectorise them (a trailing axis of 2 or 3 does
    not). `a, b, c` are the corners, `z` their view depths.
    """

    ax: jax.Array
    ay: jax.Array
    bx: jax.Array
    by: jax.Array
    cx: jax.Array
    cy: jax.Array
    za: jax.Array
    zb: jax.Array
    zc: jax.Array


def corners(xy, z) -> Corners:
    """`xy (..., 3, 2)` and `z (..., 3)` -> `Corners` with fields of shape `(...)`."""
    return Corners(xy[..., 0, 0], xy[..., 0, 1], xy[..., 1, 0], xy[..., 1, 1],
                   xy[..., 2, 0], xy[..., 2, 1], z[..., 0], z[..., 1], z[..., 2])  # fmt: skip


class Fragments(NamedTuple):
    """Geometry of (pixel, face) pairs, each field of the broadcast pixel-by-face shape.

    dist2: squared screen distance from the pixel centre to the triangle, signed: positive
      inside, negative outside (SoftRas's convention).
    bary: three barycentrics, clamped to the triangle outside it; perspective-correct for a
      perspective camera (screen-space ones are exact for an orthographic camera).
    z: view depth at the pixel, interpolated the same way.
    """

    dist2: jax.Array
    bary: tuple[jax.Array, jax.Array, jax.Array]
    z: jax.Array


def project(verts, faces, camera: Camera, cull_backfaces: bool = False) -> ScreenTriangles:
    """Projects mesh faces to the screen.

    Faces with any corner at view depth <= `camera.near` are culled rather than clipped: they
    contribute nothing to the silhouette or colour, and their gradients are exactly zero.
    """
    cam = to_camera(camera, verts)  # (V, 3)
    vert_ok = cam[:, 2] > camera.near
    xy = to_screen(camera, cam, vert_ok)[faces]  # (F, 3, 2)
    z = jnp.where(vert_ok, cam[:, 2], 1.0)[faces]
    valid = jnp.all(vert_ok[faces], axis=-1)
    if cull_backfaces:
        area = cross2(xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0])
        valid = valid & (area > 0)
    return ScreenTriangles(xy, z, valid)


def _segment_dist2(px, py, ax, ay, bx, by):
    """Squared distance from points `p` to segments `a b` (broadcast shapes)."""
    ex, ey = bx - ax, by - ay
    dx, dy = px - ax, py - ay
    t = sclip(safe_div(dx * ex + dy * ey, ex * ex + ey * ey), 0.0, 1.0)
    dx, dy = dx - t * ex, dy - t * ey
    return dx * dx + dy * dy


def fragments(px, py, t: Corners, perspective: bool = True) -> Fragments:
    """Fragment geometry of pixel centres `(px, py)` against triangles `t`.

    `perspective` (static) says whether the screen positions came from a perspective division:
    then attributes are interpolated linearly in 1/z, otherwise linearly on the screen.

    Shapes broadcast: `px, py (P, 1)` against `t` fields `(F,)` give `(P, F)` pairs; a tiled
    caller passes `(T, Q, 1)` pixels against `(T, 1, c)` candidate faces.
    """
    dist2 = smin(
        smin(_segment_dist2(px, py, t.ax, t.ay, t.bx, t.by),
             _segment_dist2(px, py, t.bx, t.by, t.cx, t.cy)),
        _segment_dist2(px, py, t.cx, t.cy, t.ax, t.ay),
    )  # fmt: skip

    # Screen-space barycentrics from edge functions; degenerate faces get w = 0 (never inside).
    area = (t.bx - t.ax) * (t.cy - t.ay) - (t.by - t.ay) * (t.cx - t.ax)
    w0 = safe_div((t.cx - t.bx) * (py - t.by) - (t.cy - t.by) * (px - t.bx), area)
    w1 = safe_div((t.ax - t.cx) * (py - t.cy) - (t.ay - t.cy) * (px - t.cx), area)
    w2 = safe_div((t.bx - t.ax) * (py - t.ay) - (t.by - t.ay) * (px - t.ax), area)
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (jnp.abs(area) > tiny(area.dtype))
    dist2 = jnp.where(inside, dist2, -dist2)

    # Outside the triangle, clamp to its closest barycentric point (SoftRas, PyTorch3D).
    w0, w1, w2 = smax(w0, 0.0), smax(w1, 0.0), smax(w2, 0.0)
    total = w0 + w1 + w2
    w0, w1, w2 = (safe_div(w, total, fallback=1.0 / 3.0) for w in (w0, w1, w2))
    if not perspective:
        return Fragments(dist2, (w0, w1, w2), w0 * t.za + w1 * t.zb + w2 * t.zc)
    # Perspective correction: interpolate 1/z linearly in screen space.
    w0, w1, w2 = w0 / t.za, w1 / t.zb, w2 / t.zc
    inv_z = w0 + w1 + w2
    z = 1.0 / inv_z
    return Fragments(dist2, (w0 * z, w1 * z, w2 * z), z)


def interpolate(bary, values):
    """Interpolates corner values with `bary`; `values[k]` is corner k's `(C, ...)`, shaped to
    broadcast against the pairs after the channel axis: `(3, C, 1, F)` for `(P, F)` pairs gives
    `(C, P, F)`."""
    return bary[0] * values[0] + bary[1] * values[1] + bary[2] * values[2]
