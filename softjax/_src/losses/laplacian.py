"""Laplacian smoothing regularisers: uniform (SoftRas) and cotangent (PyTorch3D) weights."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from softjax._src.losses.checks import check_structure, faces_array, mesh_verts
from softjax._src.losses.surface import mesh_edges
from softjax._src.numerics import HIGHEST, safe_div, safe_norm, smax


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

    Raises:
      ValueError: `faces` is not `(F, 3)` integer, or an index is outside `[0, num_verts)`.
      TypeError: `num_verts` is not an integer.
    """
    faces = faces_array(faces, num_verts)
    num_verts = int(num_verts)
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
      verts: `(V, 3)` floating vertex positions, V as given to `uniform_laplacian`.
      lap: from `uniform_laplacian(faces, V)`.

    Returns:
      A scalar.

    Raises:
      ValueError: `verts` is not floating `(V, 3)` for the V that `lap` was built for.
      TypeError: `lap` is not a `UniformLaplacian`.
    """
    check_structure(lap, UniformLaplacian, "uniform_laplacian")
    verts = mesh_verts(verts, lap.neighbors.shape[0], "lap")
    neighbours = jnp.asarray(lap.neighbors)
    weights = jnp.asarray(lap.weights, verts.dtype)
    delta = verts - jnp.einsum("vk,vkc->vc", weights, verts[neighbours], precision=HIGHEST)
    return jnp.mean(jnp.sum(delta * delta, axis=-1))


# Relative guard on a face's doubled area |cross| against its squared edge lengths: below it
# (faces with an angle of order 1e-6 rad or less) the cotangents are clamped to at most
# 1 / (2 * _COT_EPS) in magnitude instead of growing without bound, so values and gradients
# stay finite in float32.
_COT_EPS = 1e-6


class CotangentLaplacian(NamedTuple):
    """Topology of a cotangent Laplacian, from `cotangent_laplacian`.

    faces: `(F, 3)` int32 vertex indices.
    corners: `(V, K)` int32, for each vertex the flat indices `3 f + k` of the face corners it
      occupies (`faces[f, k] == v`), K the largest number of faces at a vertex; padding is
      `3 F`, which selects a zero row.
    """

    faces: np.ndarray
    corners: np.ndarray


def cotangent_laplacian(faces, num_verts: int) -> CotangentLaplacian:
    """Precomputes, eagerly with numpy, what `cotangent_laplacian_loss` needs from the faces.

    The cotangent weights themselves depend on the vertex positions and are recomputed from the
    current vertices at every call of the loss; only the incidence (which face corners sit at
    each vertex) is fixed here. Vertices in no face get an empty row.

    Raises:
      ValueError: `faces` is not `(F, 3)` integer, or an index is outside `[0, num_verts)`.
      TypeError: `num_verts` is not an integer.
    """
    faces = faces_array(faces, num_verts)
    num_verts = int(num_verts)
    corner_vertex = faces.reshape(-1)
    order = np.argsort(corner_vertex, kind="stable")
    degree = np.bincount(corner_vertex, minlength=num_verts)
    k = max(int(degree.max(initial=0)), 1)
    start = np.concatenate([[0], np.cumsum(degree)[:-1]]).astype(np.int64)
    sorted_vertex = corner_vertex[order]
    slot = np.arange(len(order)) - start[sorted_vertex]
    corners = np.full((num_verts, k), faces.size, np.int32)
    corners[sorted_vertex, slot] = order
    return CotangentLaplacian(faces.astype(np.int32), corners)


def _cotangents(verts, faces):
    """Cotangents of the three corner angles of each face `(F, 3)`, the clamped doubled areas
    `(F,)` and the edges leaving each corner, `e1 = v_{k+1} - v_k`, `e2 = v_{k+2} - v_k`.

    `cot_k = (e1 . e2) / max(|e1 x e2|, eps * (|a|^2 + |b|^2 + |c|^2))` with `e1, e2` the edges
    leaving corner k and `a, b, c` the face's three edges; 0 for a face whose corners coincide.
    """
    tri = verts[faces]  # (F, 3 corners, 3)
    e1 = jnp.roll(tri, -1, axis=1) - tri  # corner k to corner k + 1
    e2 = jnp.roll(tri, -2, axis=1) - tri  # corner k to corner k + 2
    dots = jnp.sum(e1 * e2, axis=-1)
    double_area = safe_norm(jnp.cross(e1[:, 0], e2[:, 0]))
    sq_edges = jnp.sum(e1 * e1, axis=(-2, -1))  # e1 runs over the three edges once
    denom = smax(double_area, _COT_EPS * sq_edges)
    return safe_div(dots, denom[:, None]), denom, e1, e2


def cotangent_laplacian_delta(
    verts, lap: CotangentLaplacian, method: str = "cot", stop_weight_gradient: bool = False
):
    """Per-vertex cotangent Laplacian vectors `(V, 3)` from the current vertex positions.

    For vertex i with neighbours j, alpha_ij and beta_ij the angles opposite edge ij in its two
    faces (one for a boundary edge) and `w_ij = (cot alpha_ij + cot beta_ij) / 2`:

    - `method="cot"`: `delta_i = sum_j w_ij (v_j - v_i) / sum_j w_ij`, the row-normalised
      cotangent Laplacian. It equals PyTorch3D's `L v * norm_w - v` of
      `mesh_laplacian_smoothing(method="cot")`, where `L_ij = cot alpha_ij + cot beta_ij` and
      `norm_w = 1 / sum_j L_ij` (the factor 1/2 cancels). The weights are scale invariant, so
      `delta` scales with the mesh and is invariant to translation; on a planar mesh it lies in
      the plane. The weight sum is positive for non-degenerate faces (each face adds
      `cot b + cot c = sin a / (sin b sin c) > 0` at its corner a); where it is not above
      `1e-6` times the sum of the faces' absolute contributions (possible with degenerate
      faces only) or the vertex is in no face, `delta_i = 0` (PyTorch3D would leave `-v_i`).
      Linear precision: `delta_i = 0` at every interior vertex of a planar mesh, whatever the
      triangulation.
    - `method="cotcurv"`: `delta_i = sum_j w_ij (v_j - v_i) / (2 A_i)` with `A_i` the total area
      of the faces at vertex i, PyTorch3D's `(L v - L_sum v) * 0.25 / A_i` for "cotcurv". It
      estimates `-H n / 3` (H the mean curvature, n the outward normal; the 1/3 because
      `A_i` is three times the barycentric vertex area): `|delta_i|` is about 1/3 on a unit
      sphere, scaling as 1 / size. 0 where `A_i == 0`.

    The cotangents are computed as `dot / |cross|` per corner with the doubled area clamped
    below at `1e-6` times the face's summed squared edge lengths (active only for faces with an
    angle of order 1e-6 rad or less) and taken as 0 for faces whose three corners coincide, so
    values and gradients are finite for degenerate faces, which still carry (large, bounded)
    weights.

    Args:
      verts: `(V, 3)` floating vertex positions, V as given to `cotangent_laplacian`.
      lap: from `cotangent_laplacian(faces, V)`.
      method: "cot" or "cotcurv" (static).
      stop_weight_gradient: False (default): the gradient flows through the cotangent weights
        (and areas) as well as through the vertex differences, i.e. the exact gradient of the
        loss. True: the weights are treated as constants, as PyTorch3D does (it builds L under
        `torch.no_grad()`).

    Returns:
      `(V, 3)`.

    Raises:
      ValueError: `verts` is not floating `(V, 3)` for the V that `lap` was built for, or
        `method` is unknown.
      TypeError: `lap` is not a `CotangentLaplacian`.

    Sources: Desbrun et al., "Implicit fairing of irregular meshes using diffusion and
    curvature flow", SIGGRAPH 1999; PyTorch3D `pytorch3d.loss.mesh_laplacian_smoothing` and
    `pytorch3d.ops.cot_laplacian`.
    """
    if method not in ("cot", "cotcurv"):
        raise ValueError(f'`method` must be "cot" or "cotcurv", got {method!r}')
    check_structure(lap, CotangentLaplacian, "cotangent_laplacian")
    verts = mesh_verts(verts, lap.corners.shape[0], "lap")
    faces = jnp.asarray(lap.faces)
    corners = jnp.asarray(lap.corners)
    cot, denom, e1, e2 = _cotangents(verts, faces)
    if stop_weight_gradient:
        cot = lax.stop_gradient(cot)
        denom = lax.stop_gradient(denom)
    cot_next = jnp.roll(cot, -1, axis=1)  # at corner k + 1, opposite edge (k, k + 2)
    cot_prev = jnp.roll(cot, -2, axis=1)  # at corner k + 2, opposite edge (k, k + 1)
    # Per face corner k at vertex i: sum over the corner's two edges of cot * (v_j - v_i).
    push = cot_prev[..., None] * e1 + cot_next[..., None] * e2  # (F, 3, 3)

    if method == "cot":
        weight = cot_next + cot_prev  # the corner's share of sum_j 2 w_ij
        extra = [weight, lax.stop_gradient(jnp.abs(weight))]
    else:
        extra = [jnp.broadcast_to(denom[:, None], cot.shape)]  # the face's doubled area
    # Sum the per-corner columns over each vertex's corners in one gather; the padding index
    # 3 F selects an appended zero row.
    per_corner = jnp.concatenate([push] + [x[..., None] for x in extra], axis=-1)
    flat = per_corner.reshape(-1, per_corner.shape[-1])
    flat = jnp.concatenate([flat, jnp.zeros((1, flat.shape[-1]), flat.dtype)])
    sums = jnp.sum(flat[corners], axis=1)  # (V, 3 + len(extra))
    num = sums[:, :3]  # sum_j 2 w_ij (v_j - v_i)
    if method == "cot":
        total, scale = sums[:, 3], sums[:, 4]
        ok = total > 1e-6 * scale
        return jnp.where(ok[:, None], num / jnp.where(ok, total, 1.0)[:, None], 0.0)
    return safe_div(num, 2.0 * sums[:, 3:4])  # / (4 A_i), the column holding 2 A_i


def cotangent_laplacian_loss(
    verts, lap: CotangentLaplacian, method: str = "cot", stop_weight_gradient: bool = False
):
    """Cotangent Laplacian smoothing loss: `mean_i |delta_i|` over all V vertices.

    `delta` is `cotangent_laplacian_delta(verts, lap, method, stop_weight_gradient)`; the norm
    is not squared and vertices in no face contribute 0. This is PyTorch3D's
    `mesh_laplacian_smoothing(meshes, method="cot")` (or "cotcurv") for one mesh, except that
    by default the gradient also flows through the cotangent weights (PyTorch3D computes them
    under `torch.no_grad()`; pass `stop_weight_gradient=True` for that). Both are invariant to
    translation; "cot" scales linearly with the mesh (its weights are scale invariant) and is 0
    on the interior vertices of any planar mesh, "cotcurv" scales as 1 / size.

    Args:
      verts: `(V, 3)` floating vertex positions, V as given to `cotangent_laplacian`.
      lap: from `cotangent_laplacian(faces, V)`.
      method: "cot" (default) or "cotcurv", see `cotangent_laplacian_delta`.
      stop_weight_gradient: treat the cotangent weights as constants in the gradient.

    Returns:
      A scalar; finite, with finite gradients, for degenerate faces and coincident vertices
      (the norm's gradient is taken as 0 where `delta_i == 0`).

    Raises:
      As `cotangent_laplacian_delta`.
    """
    delta = cotangent_laplacian_delta(verts, lap, method, stop_weight_gradient)
    return jnp.mean(safe_norm(delta))
