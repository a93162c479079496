"""Losses for fitting meshes to images: image losses, soft IoU and mesh regularisers.

All losses are pure `jax.numpy` functions that work under `jit`, `grad` and `vmap`. The mesh
structures they need (`uniform_laplacian`, `face_pairs`, `mesh_edges`) are built once, eagerly,
with numpy from concrete `faces`; pass them to a jitted function as arguments or close over them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from softjax._numerics import HIGHEST, safe_div
from softjax.mesh import face_normals


def _masked_mean(err, mask):
    """Mean of `err`, or its `mask`-weighted mean; 0 with zero gradient for an empty mask."""
    if mask is None:
        return jnp.mean(err)
    mask = jnp.asarray(mask)
    try:
        np.broadcast_shapes(mask.shape, err.shape)
    except ValueError:
        raise ValueError(
            f"`mask` of shape {mask.shape} does not broadcast to the images' shape {err.shape}"
            " (for an (H, W, C) image pass an (H, W, 1) mask, e.g. `mask[..., None]`)"
        ) from None
    weights = jnp.broadcast_to(mask.astype(err.dtype), err.shape)
    return safe_div(jnp.sum(weights * err), jnp.sum(weights))


def _image_pair(pred, target):
    pred = jnp.asarray(pred)
    if not jnp.issubdtype(pred.dtype, jnp.floating):
        pred = pred.astype(jnp.result_type(float))
    target = jnp.asarray(target, pred.dtype)
    try:
        np.broadcast_shapes(target.shape, pred.shape)
    except ValueError:
        raise ValueError(
            f"`target` of shape {target.shape} does not broadcast to `pred`'s {pred.shape}"
        ) from None
    return pred, jnp.broadcast_to(target, pred.shape)


def mse(pred, target, mask=None):
    """Mean squared error between images, optionally over a mask.

    Without a mask, `mean((pred - target)^2)` over all elements of `pred` (every pixel,
    channel and batch entry). With a mask, the weighted mean over the masked elements,
    `sum(m * (pred - target)^2) / sum(m)`, where `m` is `mask` broadcast to `pred.shape`: a
    channel counts as its own element, so an `(H, W, 1)` mask on an `(H, W, 3)` image gives the
    mean over the selected pixels' channels. An empty mask (`sum(m) == 0`) gives 0 with zero
    gradient. Same as `torch.nn.functional.mse_loss(reduction="mean")` without a mask.

    Args:
      pred: `(...)` float array, e.g. an `(H, W)` silhouette or depth map, an `(H, W, C)` image
        or a batch `(B, H, W, C)`.
      target: the same shape as `pred`, or broadcastable to it.
      mask: None, or bool or non-negative float weights broadcastable to `pred.shape` under
        NumPy rules: `(H, W)` for `(H, W)` or `(B, H, W)` images; for channels-last images
        `(H, W, C)` pass `(H, W, 1)` (e.g. `mask[..., None]`).

    Returns:
      A scalar.

    Raises:
      ValueError: `target` or `mask` does not broadcast to `pred.shape`.
    """
    pred, target = _image_pair(pred, target)
    return _masked_mean(jnp.square(pred - target), mask)


def l1(pred, target, mask=None):
    """Mean absolute error between images, optionally over a mask.

    `mean(|pred - target|)`, or with a mask `sum(m * |pred - target|) / sum(m)` with `m` the mask
    broadcast to `pred.shape`; 0 with zero gradient for an empty mask. Arguments, shapes and
    mask rules as in `mse`. Same as `torch.nn.functional.l1_loss(reduction="mean")` without a
    mask; the gradient of `|x|` at 0 is taken as 0.
    """
    pred, target = _image_pair(pred, target)
    return _masked_mean(jnp.abs(pred - target), mask)


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
    """Pairs of faces sharing an edge, `(E', 2)` int32 face indices, one row per edge that has
    exactly two faces (boundary and non-manifold edges are left out), for `flatten_loss`."""
    faces = np.asarray(faces)
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
      verts: `(V, 3)` vertex positions; faces: `(F, 3)`; pairs: `face_pairs(faces)`.

    Returns:
      A scalar.
    """
    normals = face_normals(verts, jnp.asarray(faces))
    pairs = jnp.asarray(pairs)
    pair_normals = normals[pairs]  # (E', 2, 3)
    cos = jnp.sum(pair_normals[:, 0] * pair_normals[:, 1], axis=-1)
    return jnp.mean(jnp.square(1.0 - cos))


__all__ = [
    "UniformLaplacian",
    "face_pairs",
    "flatten_loss",
    "l1",
    "laplacian_loss",
    "mesh_edges",
    "mse",
    "silhouette_iou_loss",
    "uniform_laplacian",
]
