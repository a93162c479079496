"""Surface regularisers over edges and neighbouring faces: edge length, flatten (SoftRas) and
normal consistency (PyTorch3D), with the index structures they take."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from softjax._src.losses.checks import (
    check_shape_hinted,
    faces_array,
    index_array,
    mesh_verts,
    real_array,
    vertex_count,
)
from softjax._src.mesh import face_normals
from softjax._src.numerics import safe_norm, safe_normalize


def mesh_edges(faces) -> np.ndarray:
    """Unique undirected edges of a triangle mesh: `(E, 2)` int32, each row sorted (i < j).

    Raises:
      ValueError: `faces` is not an `(F, 3)` integer array of non-negative indices.
    """
    faces = faces_array(faces)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(edges, axis=1), axis=0).astype(np.int32)


def edge_length_loss(verts, edges, target_length: float = 0.0):
    """Edge length regulariser: `mean_e (|v_i - v_j| - target_length)^2` over the edges.

    PyTorch3D's `mesh_edge_loss` (per mesh). With `target_length=0` it is the mean squared edge
    length, which pulls vertices together and keeps faces small and even.

    Args:
      verts: `(V, 3)` floating vertex positions.
      edges: `(E, 2)` integer vertex index pairs in `[0, V)`, normally `mesh_edges(faces)`
        (each edge once); the range is checked for concrete `edges`.
      target_length: a scalar (or `(E,)` array) of desired lengths, in world units.

    Returns:
      A scalar; 0 when there are no edges. Coincident vertices have a finite gradient (the
      length's gradient is taken as 0 there).

    Raises:
      ValueError: a shape or dtype above does not hold, or an edge index is out of range.
    """
    verts = mesh_verts(verts)
    edges = index_array(edges, (None, 2), "edges", verts.shape[0], vertex_count(verts))
    edges = jnp.asarray(edges)
    target_length = real_array(target_length, "target_length", verts.dtype)
    if target_length.ndim:
        check_shape_hinted(target_length, (edges.shape[0],), "target_length", ["or a scalar"])
    if edges.shape[0] == 0:
        return jnp.zeros((), verts.dtype)
    lengths = safe_norm(verts[edges[:, 1]] - verts[edges[:, 0]])
    return jnp.mean(jnp.square(lengths - target_length))


def face_pairs(faces) -> np.ndarray:
    """Pairs of faces sharing an edge, `(E', 2)` int32 face indices, one row per edge that has
    exactly two faces (boundary and non-manifold edges are left out), for `flatten_loss`.

    Raises:
      ValueError: `faces` is not an `(F, 3)` integer array of non-negative indices.
    """
    faces = faces_array(faces)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    face_id = np.tile(np.arange(len(faces)), 3)
    _, inverse, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    keep = counts[inverse] == 2
    order = np.argsort(inverse[keep], kind="stable")
    return face_id[keep][order].reshape(-1, 2).astype(np.int32)


def flatten_loss(verts, faces, pairs):
    """Flatten loss of SoftRas: `mean_{(a, b) in pairs} (1 - n_a . n_b)^2`.

    `n_a, n_b` are the unit normals `face_normals` of two faces sharing an edge. For
    consistently oriented faces `n_a . n_b = -cos(theta)`, with theta the dihedral angle between
    the two faces' half-planes at the edge (pi when flat), so each term is SoftRas's
    `(cos(theta) + 1)^2` (Liu et al., ICCV 2019, `soft_renderer/losses.py`, `FlattenLoss`,
    which computes theta from the components of the two opposite vertices orthogonal to the
    edge). Differences from SoftRas: the mean over pairs instead of the sum, no `eps`
    regularisation, and the pairs are those of `face_pairs` (every edge with exactly two
    faces). 0 for a flat mesh, 4 for a pair folded flat onto itself. A degenerate face has a
    zero normal (its terms are 1, with zero gradient through that normal).

    Args:
      verts: `(V, 3)` floating vertex positions.
      faces: `(F, 3)` integer vertex indices in `[0, V)`.
      pairs: `(E', 2)` integer face indices in `[0, F)`, `face_pairs(faces)`.
      Index ranges are checked for concrete `faces` and `pairs`.

    Returns:
      A scalar; 0 when there are no pairs.

    Raises:
      ValueError: a shape or dtype above does not hold, or an index is out of range.
    """
    verts = mesh_verts(verts)
    faces = index_array(faces, (None, 3), "faces", verts.shape[0], vertex_count(verts))
    face_count = f"there are {faces.shape[0]} faces in `faces`"
    pairs = index_array(pairs, (None, 2), "pairs", faces.shape[0], face_count)
    faces, pairs = jnp.asarray(faces), jnp.asarray(pairs)
    if pairs.shape[0] == 0:
        return jnp.zeros((), verts.dtype)
    normals = face_normals(verts, faces)
    pair_normals = normals[pairs]  # (E', 2, 3)
    cos = jnp.sum(pair_normals[:, 0] * pair_normals[:, 1], axis=-1)
    return jnp.mean(jnp.square(1.0 - cos))


def dihedral_quads(faces) -> np.ndarray:
    """The vertices around each pair of faces sharing an edge, for `normal_consistency_loss`.

    Returns `(P, 4)` int32 rows `(i, j, k, l)`: the shared edge `(i, j)` with `i < j`, `k` the
    third vertex of the first face and `l` that of the second. Every pair of faces at an edge
    is listed, so an edge with n faces gives `n (n - 1) / 2` rows (one for a manifold edge,
    none for a boundary edge), as in PyTorch3D's `mesh_normal_consistency`. Rows are sorted by
    edge, then by face index. Faces with a repeated vertex index are skipped.

    Raises:
      ValueError: `faces` is not an `(F, 3)` integer array of non-negative indices.
    """
    faces = faces_array(faces)
    good = (
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])
    )
    faces = faces[good]
    edges = np.sort(np.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 1), -1)
    edges = edges.reshape(-1, 2)
    opposite = faces[:, [2, 0, 1]].reshape(-1)
    face_id = np.repeat(np.arange(len(faces)), 3)
    order = np.lexsort((face_id, edges[:, 1], edges[:, 0]))
    edges, opposite = edges[order], opposite[order]
    if len(edges) == 0:
        return np.zeros((0, 4), np.int32)
    _, group, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    firsts, seconds = [], []
    for gap in range(1, int(counts.max())):
        a = np.arange(len(group) - gap)
        a = a[group[a] == group[a + gap]]
        firsts.append(a)
        seconds.append(a + gap)
    if not firsts:
        return np.zeros((0, 4), np.int32)
    a, b = np.concatenate(firsts), np.concatenate(seconds)
    rank = np.lexsort((b, a))
    a, b = a[rank], b[rank]
    return np.stack([edges[a, 0], edges[a, 1], opposite[a], opposite[b]], 1).astype(np.int32)


def normal_consistency_loss(verts, quads):
    """Normal consistency loss: `mean_{(i, j, k, l) in quads} (1 - cos(n_0, n_1))`.

    For each pair of faces sharing the edge `(i, j)` with opposite vertices `k` and `l`,
    `n_0 = (v_j - v_i) x (v_k - v_i)` and `n_1 = (v_l - v_i) x (v_j - v_i)`, the two faces'
    normals oriented from the shared edge, so the loss does not depend on the faces' winding:
    `1 - cos` is 0 for a flat pair, 1 at a right angle and 2 for a pair folded onto itself.
    This is PyTorch3D's `mesh_normal_consistency` for one mesh; for consistently oriented
    faces it equals `mean(1 - n_a . n_b)` of their unit face normals. Normals are normalised
    safely: a degenerate face's normal is 0, its terms are 1 and its gradient finite.

    Args:
      verts: `(V, 3)` floating vertex positions.
      quads: `(P, 4)` integer vertex indices in `[0, V)`, from `dihedral_quads(faces)` (checked
        against V when concrete).

    Returns:
      A scalar; 0 when there are no pairs.

    Raises:
      ValueError: a shape or dtype above does not hold, or an index is out of range.
    """
    verts = mesh_verts(verts)
    quads = jnp.asarray(index_array(quads, (None, 4), "quads", verts.shape[0], vertex_count(verts)))
    if quads.shape[0] == 0:
        return jnp.zeros((), verts.dtype)
    corners = verts[quads]  # (P, 4, 3)
    vi, vj, vk, vl = (corners[:, c] for c in range(4))
    edge = vj - vi
    n0 = safe_normalize(jnp.cross(edge, vk - vi))
    n1 = safe_normalize(jnp.cross(vl - vi, edge))
    return jnp.mean(1.0 - jnp.sum(n0 * n1, axis=-1))
