"""Tangent-space normal maps: the tangent frame of each face corner, derived from the UVs
(MikkTSpace-style), and the shading normal a normal-map texel gives in it."""

from __future__ import annotations

import jax.numpy as jnp

from softjax._src.numerics import safe_normalize


def corner_tangents(verts, faces, uvs, face_uvs, normals, face_mask=None):
    """`(F, 3, 4)` per face corner: the unit tangent `T` (3) and the handedness `w` (+-1).

    `uvs (U, 2)` are OpenGL UVs (v up the image) indexed by `face_uvs (F, 3)`; `normals (F,
    3, 3)` the corners' smooth normals. Per face, with edges `e1`, `e2` from corner 0 and
    their UV steps `d1`, `d2`, the directions of increasing u and v are `t = e1 d2v - e2
    d1v` and `b = e2 d1u - e1 d2u` (divided by the UV area `r = d1u d2v - d2u d1v`, whose
    magnitude weights each face's contribution: multiplied by `sign(r)` here instead, so a
    face of zero UV area adds nothing). They are summed over the corners that share a
    vertex, a UV vertex and the sign of `r` (as MikkTSpace merges corners: frames split at
    UV seams and where a chart is mirrored, also when the two sides share UV indices), `T`
    is made orthogonal to the corner's normal `N` and normalised, and `w = sign((N x T) .
    B)` (+1 where that is 0). Faces that `face_mask` leaves out add nothing."""
    p, t = verts[faces], uvs[face_uvs]  # (F, 3, 3), (F, 3, 2)
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    r = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    s = jnp.sign(r)[:, None]
    if face_mask is not None:
        s = jnp.where(face_mask[:, None], s, 0.0)
    tan = (e1 * d2[:, 1:] - e2 * d1[:, 1:]) * s
    bit = (e2 * d1[:, :1] - e1 * d2[:, :1]) * s
    # Group the corners by (vertex, UV vertex, mirrored): a sort, so it runs under jit.
    n = faces.size
    keys = jnp.stack([faces.reshape(-1), face_uvs.reshape(-1),
                      jnp.repeat(r < 0, 3).astype(faces.dtype)], -1)  # fmt: skip
    _, group = jnp.unique(keys, axis=0, size=n, fill_value=0, return_inverse=True)
    group = group.reshape(-1)
    sum_t = jnp.zeros((n, 3), verts.dtype).at[group].add(jnp.repeat(tan, 3, 0))
    sum_b = jnp.zeros((n, 3), verts.dtype).at[group].add(jnp.repeat(bit, 3, 0))
    tc, bc = sum_t[group].reshape(faces.shape + (3,)), sum_b[group].reshape(faces.shape + (3,))
    tc = safe_normalize(tc - jnp.sum(tc * normals, -1, keepdims=True) * normals)
    w = jnp.where(jnp.sum(jnp.cross(normals, tc) * bc, -1) < 0, -1.0, 1.0).astype(verts.dtype)
    return jnp.concatenate([tc, w[..., None]], -1)


def mapped_normal(texel, normal, frame, convention: str = "opengl"):
    """The shading normal `(3, ...)` of normal-map samples `texel (3, ...)` (in [0, 1],
    encoding `m = 2 texel - 1`; "directx" flips `m_y`) at fragments with the interpolated
    smooth normal `normal (3, ...)` and tangent frame `frame (4, ...)` (`corner_tangents`,
    interpolated): `m_x T + m_y w (N x T) + m_z N`, not normalised (the lighting does)."""
    m = 2.0 * texel - 1.0
    my = -m[1] if convention == "directx" else m[1]
    t, w = frame[0:3], frame[3]
    b = w * jnp.cross(normal, t, axis=0)
    return m[0] * t + my * b + m[2] * normal
