"""Faces to screen triangles: the camera transform, near-plane clipping (each face becomes
two screen triangles, the second used only where the near plane cuts the face) and projection."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax._src.camera import Camera, to_camera, to_screen
from softjax._src.numerics import cross2, matmul

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


def clip_depths(tris: ScreenTriangles, interpolated, near):
    """The corner view depths `(F', 3)` of the clipped triangles `tris`, from the face's corner
    depths that `clip_attributes` interpolated, for outputs that blend depth.

    A corner made by the near-plane cut is at `near` by construction (`project` puts it
    there; a kept triangle's other corners are in front of the plane). Interpolating the
    face's corner depths there cancels: corners 1e15 to either side of the plane leave
    nothing of a `near` of 0.0075 in float32, and the depth output went negative across the
    image. The unused piece of a cut face interpolates along edges the plane does not cut,
    with weights that grow without bound (inf times a huge depth); the dense path multiplies
    a dropped triangle's values by its zero weight, and zero times inf is NaN. So cut corners
    take `near` and dropped triangles 0; the other corners keep their own depth (their
    weights are one-hot, so the interpolation is exact)."""
    cut = tris.valid[:, None] & (tris.z == near)
    return jnp.where(tris.valid[:, None], jnp.where(cut, tris.z, interpolated), 0.0)


def source_face(index):
    """The face a clipped triangle `index` (or the sentinel, mapped past the last face)
    comes from."""
    return index // PIECES
