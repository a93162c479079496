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

from softjax._numerics import cross2, safe_div, tiny
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


class Fragments(NamedTuple):
    """Geometry of every (pixel, face) pair (shapes for P pixels and F faces).

    dist2: `(P, F)` squared screen distance from the pixel centre to the triangle, signed:
      positive inside, negative outside (SoftRas's convention).
    bary: `(P, F, 3)` perspective-correct barycentrics, clamped to the triangle outside it.
    z: `(P, F)` perspective-correct view depth at the pixel.
    """

    dist2: jax.Array
    bary: jax.Array
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


def _segment_dist2(p, a, b):
    """Squared distance from points `p (P, 1, 2)` to segments `a b (F, 2)` -> `(P, F)`."""
    ab = b - a
    t = jnp.clip(safe_div(jnp.sum((p - a) * ab, -1), jnp.sum(ab * ab, -1)), 0.0, 1.0)
    d = p - a - t[..., None] * ab
    return jnp.sum(d * d, -1)


def fragments(pixels, tris: ScreenTriangles) -> Fragments:
    """Fragment geometry of every pixel in `pixels (P, 2)` against every face in `tris`."""
    p = pixels[:, None, :]  # (P, 1, 2)
    a, b, c = tris.xy[:, 0], tris.xy[:, 1], tris.xy[:, 2]  # (F, 2) each

    dist2 = jnp.minimum(
        jnp.minimum(_segment_dist2(p, a, b), _segment_dist2(p, b, c)), _segment_dist2(p, c, a)
    )

    # Screen-space barycentrics from edge functions; degenerate faces get w = 0 (never inside).
    area = cross2(b - a, c - a)  # (F,)
    edge = jnp.stack([cross2(c - b, p - b), cross2(a - c, p - c), cross2(b - a, p - a)], -1)
    w = safe_div(edge, area[:, None])  # (P, F, 3)
    inside = jnp.all(w >= 0, axis=-1) & (jnp.abs(area) > tiny(area.dtype))
    dist2 = jnp.where(inside, dist2, -dist2)

    # Outside the triangle, clamp to its closest barycentric point (SoftRas, PyTorch3D).
    w = jnp.maximum(w, 0.0)
    w = safe_div(w, jnp.sum(w, -1, keepdims=True), fallback=1.0 / 3.0)
    # Perspective correction: interpolate 1/z linearly in screen space.
    w_over_z = w / tris.z[None]
    inv_z = jnp.sum(w_over_z, -1)
    bary = w_over_z / inv_z[..., None]
    return Fragments(dist2, bary, 1.0 / inv_z)
