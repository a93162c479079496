"""Edge topology of a triangle mesh: the face across each edge (`EdgeTopology`, built once per
mesh by `sj.edge_topology`), and which edges are silhouette edges as seen by a camera."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class EdgeTopology(NamedTuple):
    """The edge adjacency of a mesh's faces, as `sj.edge_topology` builds it.

    across: `(F, 3)` int32, the face across the edge opposite each corner (the edge joining
      the other two corners), -1 where none: a boundary edge, an edge shared by more than two
      faces, or one whose neighbour the mesh's `face_mask` leaves out.
    """

    across: jax.Array


# Up to this many faces, XLA may compute a constant mesh's edge neighbours while compiling.
_FOLD_FACES = 2**15


def neighbours(faces, face_mask=None, num_verts=None):
    """`(F, 3)` the face across the edge opposite each corner (the edge joining the other two
    corners), -1 where none: a boundary edge, one shared by more than two faces, or one whose
    neighbour `face_mask` leaves out. `num_verts` (static; default: unknown) lets the two
    corner indices of an edge pack into one sort key."""
    num = faces.shape[0]
    if num > _FOLD_FACES:
        # Faces closed over by a jitted function are constants, and XLA would sort them while
        # compiling: at 80k faces that took ~10 s and 0.1 GB, at run time it takes ~25 ms.
        faces = jax.lax.optimization_barrier(faces)
    a, b = faces[:, [1, 2, 0]].reshape(-1), faces[:, [2, 0, 1]].reshape(-1)
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    half = jnp.arange(3 * num, dtype=jnp.int32)
    if num_verts is not None and num_verts <= 2**16:
        # One uint32 key per half-edge, sorted alone (XLA's CPU sort of one array is ~10x
        # faster than of a (key, key, index) triple); each half-edge finds the start of its
        # key's run, where the run's size and its least and greatest half-edge collect.
        key = lo.astype(jnp.uint32) * num_verts + hi.astype(jnp.uint32)
        start = jnp.searchsorted(jax.lax.sort(key), key, side="left").astype(jnp.int32)
        size = jnp.zeros(3 * num, jnp.int32).at[start].add(1)[start]
        least = jnp.full(3 * num, 3 * num, jnp.int32).at[start].min(half)[start]
        most = jnp.full(3 * num, -1, jnp.int32).at[start].max(half)[start]
        across = jnp.where(size == 2, least + most - half, -1)
    else:
        lo, hi, order = jax.lax.sort((lo, hi, half), num_keys=2)
        same = (lo[1:] == lo[:-1]) & (hi[1:] == hi[:-1])  # run continues from i to i + 1
        f = jnp.zeros(1, bool)
        prev, nxt = jnp.concatenate([f, same]), jnp.concatenate([same, f])
        prev2 = jnp.concatenate([f, f, same[:-1]])  # i - 1 continues from i - 2
        next2 = jnp.concatenate([same[1:], f, f])  # i + 2 continues from i + 1
        with_next = nxt & ~prev & ~next2  # a run of exactly two: i and i + 1
        with_prev = prev & ~nxt & ~prev2
        partner = jnp.where(with_next, jnp.roll(order, -1),
                            jnp.where(with_prev, jnp.roll(order, 1), -1))  # fmt: skip
        across = jnp.zeros(3 * num, jnp.int32).at[order].set(partner)
    face = jnp.where(across >= 0, across // 3, -1).reshape(num, 3)
    if face_mask is not None:
        face = jnp.where((face >= 0) & face_mask[jnp.maximum(face, 0)], face, -1)
    return face


def silhouette_edges(cam_verts, faces, orthographic: bool, face_mask=None, across=None):
    """`(F, 3)` bool: the edge opposite each corner is a silhouette edge, across which the
    surface does not continue on screen: no neighbouring face there, or the neighbour faces
    the other way (one seen from the front, the other from the back). `cam_verts (V, 3)` are
    in camera coordinates. A mesh's windings must agree across shared edges. `across` is
    `EdgeTopology.across` where it was built beforehand, else None (built here)."""
    p = cam_verts[faces]  # (F, 3, 3)
    normal = jnp.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    view = jnp.asarray([0.0, 0.0, 1.0], p.dtype) if orthographic else p[:, 0]
    front = jax.lax.stop_gradient(jnp.sum(normal * view, axis=-1)) < 0
    if across is None:
        across = neighbours(faces, face_mask, cam_verts.shape[0])
    return (across < 0) | (front[:, None] != front[jnp.maximum(across, 0)])
