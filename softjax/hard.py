"""Hard rasterization: z-buffered fragments, attribute interpolation and analytic antialiasing.

The building blocks of `RasterConfig(visibility="hard")`, and of a user's own shading:

1. Visibility (not differentiated). Per pixel centre, the nearest clipped triangle whose
   interior holds it (the top-left rule on shared edges, equal depths to the lower index),
   found by the tiled z-buffer (`tiled.nearest_faces`: faces binned to the tiles under their
   screen boxes, no blur radius) or, for `method="dense"`, against every triangle. Further
   layers peel: layer k + 1 is the nearest triangle after layer k in (depth, index) order.
2. Fragments (differentiable, O(pixels)). Each pixel gathers its triangle's screen geometry
   and evaluates the same perspective-correct barycentrics and depth as the soft path at its
   centre, so gradients reach vertices and camera through plain JAX.
3. Antialiasing (differentiable, O(pixels)). Where two neighbouring pixels show different
   faces, the nearer one's triangle is tested for the edge through which the segment between
   the two centres leaves it. If that edge is a silhouette edge (no neighbouring face across
   it, or one that faces the other way), the two colours are blended by where it crosses the
   segment: the image is then a continuous function of the vertex positions along silhouette
   and occlusion edges, and its gradient reaches them (the analytic antialiasing of Laine et
   al. 2020, "Modular Primitives for High-Performance Differentiable Rendering").
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax import tiled
from softjax._numerics import cross2, sclip, smax
from softjax.camera import pixel_centers
from softjax.raster import PIECES, Triangles, fragments, geometry_rows, setup

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


def visible_triangles(tris, cfg, perspective: bool, layers: int = 1, typical_faces=None):
    """`(layers, H, W)` int32 indices of the nearest clipped triangles `tris` at each pixel
    centre (-1 where none), nearest first, by `cfg.method`. Not differentiated."""
    tris = jax.lax.stop_gradient(tris)
    pieces = tris.valid.shape[0]
    if cfg.method == "dense":
        pix = pixel_centers(cfg.image_size, tris.xy.dtype)
        frag = fragments(pix[:, :1], pix[:, 1:], setup(geometry_rows(tris.xy, tris.z)),
                         perspective)  # fmt: skip
        z = jnp.where(tris.valid[None, :] & frag.inside, frag.z, jnp.inf)  # (P, F')
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


def fragments_at(tris, triangle, image_size, perspective: bool, far) -> Fragments:
    """`Fragments` of the clipped triangles `tris` at the pixels whose triangles are given by
    `triangle (K, H, W)` (from `visible_triangles`); fields laid out `(H, W, K, ...)`."""
    layers = triangle.shape[0]
    pix = pixel_centers(image_size, tris.xy.dtype)  # (P, 2)
    tid = triangle.reshape(layers, -1)
    some = tid >= 0
    safe = jnp.where(some, tid, 0)
    t = setup(geometry_rows(tris.xy, tris.z))  # fields (3, F')
    frag = fragments(pix[:, 0], pix[:, 1], Triangles(*(f[:, safe] for f in t)), perspective)
    # Barycentrics of the clipped triangle -> of the face it comes from (its corners are
    # camera-space blends of the face's, and perspective-correct weights are camera-space
    # weights).
    bary = jnp.einsum("kpi,kpij->kpj", jnp.stack(frag.bary, -1), tris.bary[safe])
    bary = jnp.where(some[..., None], bary, 0.0)
    depth = jnp.where(some, frag.z, far)
    face = jnp.where(some, safe // PIECES, -1).astype(jnp.int32)
    h, w = image_size

    def layout(x):  # (K, P, ...) -> (H, W, K, ...)
        return jnp.moveaxis(x.reshape(layers, h, w, *x.shape[2:]), 0, 2)

    return Fragments(layout(face), layout(bary), layout(depth), layout(tid.astype(jnp.int32)))


def first_layer(frags: Fragments) -> Fragments:
    """The nearest layer of `frags`, whichever layout (`(H, W)` or `(H, W, K)`)."""
    if frags.face_id.ndim == 2:
        return frags
    return Fragments(frags.face_id[..., 0], frags.bary[..., 0, :], frags.depth[..., 0],
                     frags.triangle[..., 0])  # fmt: skip


def interpolate(values, frags: Fragments, faces):
    """`values` at each fragment: per-vertex `(V, C)` or per-corner `(F, 3, C)` (`faces (F, 3)`
    indexes the former) -> `(H, W, C)` (or `(H, W, K, C)`), zero where there is no face."""
    corner = values[faces] if values.ndim == 2 else values  # (F, 3, C)
    some = frags.face_id >= 0
    safe = jnp.where(some, frags.face_id, 0)
    picked = corner[safe]  # (..., 3, C)
    out = jnp.sum(frags.bary[..., None] * picked, axis=-2)
    return jnp.where(some[..., None], out, 0.0)


def neighbours(faces, face_mask=None):
    """`(F, 3)` the face across the edge opposite each corner (the edge joining the other two
    corners), -1 where none: a boundary edge, one shared by more than two faces, or one whose
    neighbour `face_mask` leaves out."""
    num = faces.shape[0]
    a, b = faces[:, [1, 2, 0]].reshape(-1), faces[:, [2, 0, 1]].reshape(-1)
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    half = jnp.arange(3 * num, dtype=jnp.int32)
    lo, hi, half = jax.lax.sort((lo, hi, half), num_keys=2)
    same = (lo[1:] == lo[:-1]) & (hi[1:] == hi[:-1])  # run continues from i to i + 1
    f = jnp.zeros(1, bool)
    prev, nxt = jnp.concatenate([f, same]), jnp.concatenate([same, f])
    prev2 = jnp.concatenate([f, f, same[:-1]])  # i - 1 continues from i - 2
    next2 = jnp.concatenate([same[1:], f, f])  # i + 2 continues from i + 1
    with_next = nxt & ~prev & ~next2  # a run of exactly two: i and i + 1
    with_prev = prev & ~nxt & ~prev2
    partner = jnp.where(with_next, jnp.roll(half, -1), jnp.where(with_prev, jnp.roll(half, 1), -1))
    across = jnp.zeros(3 * num, jnp.int32).at[half].set(partner)
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
    across = neighbours(faces, face_mask)
    return (across < 0) | (front[:, None] != front[jnp.maximum(across, 0)])


def triangle_silhouettes(tris, face_silhouettes):
    """`(F', 3)` bool: edge k of clipped triangle i lies on a silhouette edge of its face (an
    edge of the face whose `face_silhouettes (F, 3)` entry is set; the cut along the near
    plane and the diagonal of a split quad are not)."""
    w = tris.bary  # (F', 3 corners, 3 face corners)
    sil = jnp.repeat(face_silhouettes, PIECES, axis=0)  # (F', 3)
    start, end = jnp.array(_START), jnp.array(_END)
    # A side of the triangle lies on the face's edge opposite corner j when both its ends
    # have no weight on corner j.
    on = (w[:, start, :] == 0) & (w[:, end, :] == 0)  # (F', 3 sides, 3 face edges)
    return jnp.any(on & sil[:, None, :], axis=-1)


def antialias(image, frags: Fragments, tris, tri_silhouettes, image_size):
    """`image (H, W, C)` blended across silhouette edges (see the module docstring).

    For neighbouring pixels s (the nearer surface) and u whose faces differ, let t in [0, 1]
    be where the segment from s's centre to u's leaves s's triangle, measured from s. If the
    edge it leaves by is a silhouette edge, the pixel on the far side of the crossing from its
    own surface takes a share of the other's colour: u gains `(t - 1/2) (c_s - c_u)` when
    t > 1/2, s gains `(1/2 - t) (c_u - c_s)` when t < 1/2 (the box-filtered coverage of a
    straight edge across the pair). Each pixel sums the shares of its four neighbours.
    """
    frags = first_layer(frags)
    h, w = image_size
    pix = pixel_centers(image_size, tris.xy.dtype).reshape(h, w, 2)
    out = image
    for axis in (0, 1):
        n = image.shape[axis] - 1

        def first(x, axis=axis, n=n):
            return jax.lax.slice_in_dim(x, 0, n, axis=axis)

        def second(x, axis=axis, n=n):
            return jax.lax.slice_in_dim(x, 1, n + 1, axis=axis)

        tp, tq = first(frags.triangle), second(frags.triangle)
        fp, fq = first(frags.face_id), second(frags.face_id)
        dp, dq = first(frags.depth), second(frags.depth)
        p_front = (fp >= 0) & ((fq < 0) | (dp <= dq))
        active = (fp != fq) & ((fp >= 0) | (fq >= 0))
        tri = jnp.where(p_front, tp, tq)
        safe = jnp.maximum(tri, 0)
        xy_p, xy_q = first(pix), second(pix)
        xy_s = jnp.where(p_front[..., None], xy_p, xy_q)
        xy_u = jnp.where(p_front[..., None], xy_q, xy_p)
        corners = tris.xy[safe]  # (..., 3, 2)
        c0, c1, c2 = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]
        area = cross2(c1 - c0, c2 - c0)
        orient = jax.lax.stop_gradient(jnp.where(area < 0, -1.0, 1.0)).astype(area.dtype)
        a, b = corners[..., _START, :], corners[..., _END, :]  # (..., 3 sides, 2)
        e_s = orient[..., None] * cross2(b - a, xy_s[..., None, :] - a)  # >= 0: s is inside
        e_u = orient[..., None] * cross2(b - a, xy_u[..., None, :] - a)
        exits = e_u < 0
        gap = jnp.where(exits, e_s - e_u, 1.0)
        t = jnp.where(exits, sclip(e_s / gap, 0.0, 1.0), jnp.inf)
        side = jnp.argmin(t, axis=-1)
        t = jnp.take_along_axis(t, side[..., None], axis=-1)[..., 0]
        sil = jnp.take_along_axis(tri_silhouettes[safe], side[..., None], axis=-1)[..., 0]
        ok = active & jnp.any(exits, axis=-1) & sil
        t = jnp.where(ok, t, 0.5)
        c_p, c_q = first(image), second(image)
        c_s = jnp.where(p_front[..., None], c_p, c_q)
        c_u = jnp.where(p_front[..., None], c_q, c_p)
        w_u = smax(t - 0.5, 0.0)[..., None]
        w_s = smax(0.5 - t, 0.0)[..., None]
        d_s, d_u = w_s * (c_u - c_s), w_u * (c_s - c_u)
        d_p = jnp.where(p_front[..., None], d_s, d_u)
        d_q = jnp.where(p_front[..., None], d_u, d_s)
        pad_p = [(0, 0)] * image.ndim
        pad_q = [(0, 0)] * image.ndim
        pad_p[axis], pad_q[axis] = (0, 1), (1, 0)
        out = out + jnp.pad(d_p, pad_p) + jnp.pad(d_q, pad_q)
    return out
