"""Losses for fitting meshes to silhouettes: soft IoU and mesh regularisers.

All losses are pure `jax.numpy` functions that work under `jit`, `grad` and `vmap`. The mesh
structures they need (`uniform_laplacian`, `face_pairs`, `mesh_edges`) are built once, eagerly,
with numpy from concrete `faces`; pass them to a jitted function as arguments or close over them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from softjax._numerics import HIGHEST
from softjax.mesh import face_normals


def silhouette_iou_loss(pred, target, eps: float = 1e-6):
    """Soft IoU loss of SoftRas (Liu et al., ICCV 2019, `soft_renderer/losses.py`).

    `1 - sum(p * t) / (sum(p + t - p * t) + eps)`, sums over the last two (image) axes, then the
    mean over any leading batch axes.

    Args:
      pred, target: `(..., H, W)` silhouettes in [0, 1] (soft or hard), same shape.
      eps: keeps the ratio finite when both images are empty; that case gives a loss of 1 with
        zero gradients, as in SoftRas.

    Returns:
      A scalar in [0, 1].
    """
    pred = jnp.asarray(pred)
    target = jnp.asarray(target, pred.dtype)
    intersect = jnp.sum(pred * target, axis=(-2, -1))
    union = jnp.sum(pred + target - pred * target, axis=(-2, -1))
    return jnp.mean(1.0 - intersect / (union + eps))


def mesh_edges(faces) -> np.ndarray:
    """Unique undirected edges of a triangle mesh: `(E, 2)` int32, each row sorted (i < j)."""
    faces = np.asarray(faces)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(edges, axis=1), axis=0).astype(np.int32)


class UniformLaplacian(NamedTuple):
    """Padded neighbour lists of a mesh, from `uniform_laplacian`.

    neighbors: `(V, K)` int32 neighbour indices, K the largest vertex degree; padding repeats
      the vertex itself.
    weights: `(V, K)` float32 `1 / degree` for real neighbours, 0 for padding.
    """

    neighbors: np.ndarray
    weights: np.ndarray


def uniform_laplacian(faces, num_verts: int) -> UniformLaplacian:
    """Precomputes the uniform ("umbrella") Laplacian `L = I - D^-1 A` of a mesh, eagerly.

    Isolated vertices get no neighbours, so `(L v)_i = v_i`.
    """
    edges = mesh_edges(faces)
    both = np.concatenate([edges, edges[:, ::-1]])  # directed: (i, j) and (j, i)
    both = both[np.lexsort((both[:, 1], both[:, 0]))]
    degree = np.bincount(both[:, 0], minlength=num_verts)
    k = max(int(degree.max(initial=0)), 1)
    start = np.concatenate([[0], np.cumsum(degree)[:-1]])
    slot = np.arange(len(both)) - start[both[:, 0]]
    neighbors = np.tile(np.arange(num_verts, dtype=np.int32)[:, None], (1, k))
    weights = np.zeros((num_verts, k), np.float32)
    neighbors[both[:, 0], slot] = both[:, 1]
    weights[both[:, 0], slot] = 1.0 / degree[both[:, 0]]
    return UniformLaplacian(neighbors, weights)


def laplacian_loss(verts, lap: UniformLaplacian):
    """Uniform Laplacian smoothing loss: `mean_i || v_i - mean_{j in N(i)} v_j ||^2`.

    This is SoftRas's `LaplacianLoss` (which sums over vertices instead of averaging) and the
    square of PyTorch3D's `mesh_laplacian_smoothing(method="uniform")` summand.

    Args:
      verts: `(V, 3)` vertex positions.
      lap: from `uniform_laplacian(faces, V)`.

    Returns:
      A scalar.
    """
    neighbours = jnp.asarray(lap.neighbors)
    weights = jnp.asarray(lap.weights, verts.dtype)
    delta = verts - jnp.einsum("vk,vkc->vc", weights, verts[neighbours], precision=HIGHEST)
    return jnp.mean(jnp.sum(delta * delta, axis=-1))


def face_pairs(faces) -> np.ndarray:
    """Pairs of faces sharing an edge, `(E', 2)` int32 (edges with exactly two faces only)."""
    faces = np.asarray(faces)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    face_id = np.tile(np.arange(len(faces)), 3)
    _, inverse, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    keep = counts[inverse] == 2
    order = np.argsort(inverse[keep], kind="stable")
    return face_id[keep][order].reshape(-1, 2).astype(np.int32)


def flatten_loss(verts, faces, pairs):
    """Flatten loss: `mean over adjacent faces (a, b) of (1 - n_a . n_b)^2`.

    With consistently oriented faces this is SoftRas's `FlattenLoss`, `(cos(theta) + 1)^2` of the
    dihedral angle theta at each edge (averaged instead of summed); 0 for a flat mesh.

    Args:
      verts: `(V, 3)` vertex positions; faces: `(F, 3)`; pairs: `face_pairs(faces)`.
    """
    normals = face_normals(verts, jnp.asarray(faces))
    pairs = jnp.asarray(pairs)
    cos = jnp.sum(normals[pairs[:, 0]] * normals[pairs[:, 1]], axis=-1)
    return jnp.mean(jnp.square(1.0 - cos))


__all__ = [
    "UniformLaplacian",
    "face_pairs",
    "flatten_loss",
    "laplacian_loss",
    "mesh_edges",
    "silhouette_iou_loss",
    "uniform_laplacian",
]
