"""Losses for fitting meshes to images: image losses, soft IoU and mesh regularisers.

All losses are pure `jax.numpy` functions that work under `jit`, `grad` and `vmap`, with finite
values and gradients for degenerate (zero-area) faces and coincident vertices. The mesh
structures the regularisers need (`uniform_laplacian`, `cotangent_laplacian`, `mesh_edges`,
`face_pairs`, `dihedral_quads`) depend on the faces only: build them once, eagerly, with numpy
from concrete `faces`, then pass them to a jitted function as arguments or close over them. A
regulariser is then a function of the vertices alone, e.g. `jax.vmap(lambda v:
cotangent_laplacian_loss(v, lap))(batch_of_verts)`.

Arguments are checked where they come in: a wrong shape or dtype raises a `ValueError` (a wrong
kind of object a `TypeError`) naming the argument and what was expected. Shapes are static, so
shape checks also run under `jit` and, per example, under `vmap`; index ranges are checked
whenever the indices are concrete (numpy arrays, or closed over), not when they are traced.
The laplacians record their vertex count, so `verts` must match it exactly. `mesh_edges`,
`dihedral_quads` and `face_pairs` are plain index arrays without one: too few vertices show as
an index out of range, but extra vertices cannot be told from vertices in no face.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from softjax._checks import as_float_array, as_int, check_shape, host_values, is_concrete
from softjax._numerics import HIGHEST, safe_div, safe_norm, safe_normalize, smax
from softjax.mesh import face_normals

# --- argument checks ----------------------------------------------------------------------------


def _check_shape(x, shape: tuple, name: str, hints=()) -> None:
    """`check_shape`, with the reasons a caller most likely got it wrong appended."""
    try:
        check_shape(x, shape, name)
    except ValueError as err:
        more = f" ({'; '.join(hints)})" if hints else ""
        raise ValueError(f"{err}{more}") from None


def _check_broadcasts_to(x, shape: tuple, name: str) -> None:
    """`x` may stretch to `pred`'s `shape` under NumPy rules but never enlarge it: the mean
    would then count each element of `pred` several times."""
    try:
        ok = np.broadcast_shapes(x.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        hint = ""
        if name == "mask" and x.ndim and tuple(x.shape) == tuple(shape[:-1]):
            hint = " (for an (H, W, C) image pass an (H, W, 1) mask, e.g. `mask[..., None]`)"
        raise ValueError(
            f"`{name}` must have the shape of `pred` {tuple(shape)} or broadcast to it, "
            f"got {tuple(x.shape)}{hint}"
        )


def _real_array(x, name: str, dtype=None):
    """`x` as a JAX array of a bool, integer or floating dtype, cast to `dtype` if given."""
    try:
        arr = jnp.asarray(x)
    except TypeError:
        raise TypeError(f"`{name}` must be a numeric array, got {type(x).__name__}") from None
    if not (
        arr.dtype == jnp.bool_
        or jnp.issubdtype(arr.dtype, jnp.integer)
        or jnp.issubdtype(arr.dtype, jnp.floating)
    ):
        raise ValueError(f"`{name}` must be real (bool, integer or floating), got {arr.dtype}")
    return arr if dtype is None else arr.astype(dtype)


def _index_array(idx, shape: tuple, name: str, size=None, what: str = ""):
    """`idx`, checked to be an integer index array of `shape` (None: any size) into `size`
    items (None: unknown); returned unconverted, so numpy input stays concrete under `jit`.

    The range is checked when `idx` is concrete: under `jit` an out-of-range gather is clamped
    to the last item instead of failing, which would give silently wrong losses.
    """
    if not hasattr(idx, "dtype"):
        idx = np.asarray(idx)
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise ValueError(f"`{name}` must have an integer dtype, got {idx.dtype}")
    check_shape(idx, shape, name)
    host = host_values(idx) if idx.size else None
    if host is None:
        return idx
    lo, hi = int(host.min()), int(host.max())
    if size is None and lo < 0:
        raise ValueError(f"`{name}` indices must be non-negative, got a minimum of {lo}")
    if size is not None and (lo < 0 or hi >= size):
        raise ValueError(
            f"`{name}` indices must lie in [0, {size - 1}] ({what}), got values in [{lo}, {hi}]"
        )
    return idx


def _mesh_verts(verts, num_verts=None, built_by=None):
    """`verts` as a floating `(V, 3)` array; `num_verts` is V when a structure fixes it."""
    verts = as_float_array(verts, "verts")
    hints = []
    if built_by is not None:
        hints.append(f"`{built_by}` was built for {num_verts} vertices")
    if verts.ndim == 3:
        hints.append("these losses take one mesh: map over a batch of meshes with `jax.vmap`")
    _check_shape(verts, (num_verts, 3), "verts", hints)
    return verts


def _vertex_count(verts) -> str:
    return f"there are {verts.shape[0]} vertices in `verts`"


def _check_structure(lap, cls, builder: str) -> None:
    # Both laplacians are NamedTuples, so a swapped one would otherwise fail on a missing field.
    if not isinstance(lap, cls):
        raise TypeError(
            f"`lap` must be a {cls.__name__} from `{builder}(faces, num_verts)`, "
            f"got {type(lap).__name__}"
        )


def _faces_array(faces, num_verts=None) -> np.ndarray:
    """Concrete `(F, 3)` integer faces as int64 numpy, for the eager structure builders."""
    if not is_concrete(faces):
        raise TypeError(
            "`faces` must be concrete: build the mesh structures once, outside `jit`/`vmap`"
        )
    faces = np.asarray(faces)
    if num_verts is None:
        _index_array(faces, (None, 3), "faces")
    else:
        num_verts = as_int(num_verts, "num_verts", minimum=0)
        _index_array(faces, (None, 3), "faces", num_verts, f"`num_verts` is {num_verts}")
    return faces.astype(np.int64)


# --- image losses -------------------------------------------------------------------------------


def _masked_mean(err, mask):
    """Mean of `err`, or its `mask`-weighted mean; 0 with zero gradient for an empty mask."""
    if mask is None:
        return jnp.mean(err)
    mask = _real_array(mask, "mask", err.dtype)
    _check_broadcasts_to(mask, err.shape, "mask")
    weights = jnp.broadcast_to(mask, err.shape)
    return safe_div(jnp.sum(weights * err), jnp.sum(weights))


def _image_pred(pred):
    pred = _real_array(pred, "pred")
    if not jnp.issubdtype(pred.dtype, jnp.floating):
        pred = pred.astype(jnp.result_type(float))
    return pred


def _image_pair(pred, target):
    pred = _image_pred(pred)
    target = _real_array(target, "target", pred.dtype)
    _check_broadcasts_to(target, pred.shape, "target")
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
      target: the shape of `pred`, or one that broadcasts to exactly `pred.shape` (e.g. a
        scalar, or `(H, W, 1)` for an `(H, W, C)` image).
      mask: None, or bool or non-negative float weights whose shape broadcasts to exactly
        `pred.shape` under NumPy rules: trailing axes are aligned, and each mask axis is either
        `pred`'s size or 1; missing leading axes repeat the mask. So `(H, W)` serves `(H, W)`
        and `(B, H, W)` images; for channels-last `(H, W, C)` images pass `(H, W, 1)` (e.g.
        `mask[..., None]`), or `(H, W, C)` for per-channel weights. A mask with more
        dimensions than `pred`, or one that would enlarge it, is rejected.

    Returns:
      A scalar.

    Raises:
      ValueError: `target` or `mask` does not broadcast to exactly `pred.shape`, or an argument
        is complex.
      TypeError: an argument is not numeric.
    """
    pred, target = _image_pair(pred, target)
    return _masked_mean(jnp.square(pred - target), mask)


def l1(pred, target, mask=None):
    """Mean absolute error between images, optionally over a mask.

    `mean(|pred - target|)`, or with a mask `sum(m * |pred - target|) / sum(m)` with `m` the mask
    broadcast to `pred.shape`; 0 with zero gradient for an empty mask. Arguments, shapes and
    mask rules as in `mse`. Same as `torch.nn.functional.l1_loss(reduction="mean")` without a
    mask; the gradient of `|x|` at 0 is taken as 0. Raises as `mse`.
    """
    pred, target = _image_pair(pred, target)
    return _masked_mean(jnp.abs(pred - target), mask)


def silhouette_iou_loss(pred, target, eps: float = 1e-6):
    """Soft IoU loss of SoftRas (Liu et al., ICCV 2019, `soft_renderer/losses.py`).

    `1 - sum(p * t) / (sum(p + t - p * t) + eps)`, sums over the last two (image) axes, then the
    mean over any leading batch axes.

    Args:
      pred, target: `(..., H, W)` silhouettes in [0, 1] (soft or hard), same shape (no
        broadcasting: the sums would silently count a stretched image several times).
      eps: keeps the ratio finite when both images are empty; that case gives a loss of 1 with
        zero gradients, as in SoftRas.

    Returns:
      A scalar in [0, 1].

    Raises:
      ValueError: `pred` has fewer than two dimensions, `target` a different shape, or either
        is complex.
      TypeError: either is not numeric.
    """
    pred = _image_pred(pred)
    target = _real_array(target, "target", pred.dtype)
    if pred.ndim < 2:
        raise ValueError(f"`pred` must have shape (..., H, W), got {tuple(pred.shape)}")
    check_shape(target, pred.shape, "target")
    intersect = jnp.sum(pred * target, axis=(-2, -1))
    union = jnp.sum(pred + target - pred * target, axis=(-2, -1))
    return jnp.mean(1.0 - intersect / (union + eps))


def mesh_edges(faces) -> np.ndarray:
    """Unique undirected edges of a triangle mesh: `(E, 2)` int32, each row sorted (i < j).

    Raises:
      ValueError: `faces` is not an `(F, 3)` integer array of non-negative indices.
    """
    faces = _faces_array(faces)
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
    verts = _mesh_verts(verts)
    edges = _index_array(edges, (None, 2), "edges", verts.shape[0], _vertex_count(verts))
    edges = jnp.asarray(edges)
    target_length = _real_array(target_length, "target_length", verts.dtype)
    if target_length.ndim:
        _check_shape(target_length, (edges.shape[0],), "target_length", ["or a scalar"])
    if edges.shape[0] == 0:
        return jnp.zeros((), verts.dtype)
    lengths = safe_norm(verts[edges[:, 1]] - verts[edges[:, 0]])
    return jnp.mean(jnp.square(lengths - target_length))


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
    faces = _faces_array(faces, num_verts)
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
    _check_structure(lap, UniformLaplacian, "uniform_laplacian")
    verts = _mesh_verts(verts, lap.neighbors.shape[0], "lap")
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
    faces = _faces_array(faces, num_verts)
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
    _check_structure(lap, CotangentLaplacian, "cotangent_laplacian")
    verts = _mesh_verts(verts, lap.corners.shape[0], "lap")
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


def face_pairs(faces) -> np.ndarray:
    """Pairs of faces sharing an edge, `(E', 2)` int32 face indices, one row per edge that has
    exactly two faces (boundary and non-manifold edges are left out), for `flatten_loss`.

    Raises:
      ValueError: `faces` is not an `(F, 3)` integer array of non-negative indices.
    """
    faces = _faces_array(faces)
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
    verts = _mesh_verts(verts)
    faces = _index_array(faces, (None, 3), "faces", verts.shape[0], _vertex_count(verts))
    face_count = f"there are {faces.shape[0]} faces in `faces`"
    pairs = _index_array(pairs, (None, 2), "pairs", faces.shape[0], face_count)
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
    faces = _faces_array(faces)
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
    verts = _mesh_verts(verts)
    quads = jnp.asarray(
        _index_array(quads, (None, 4), "quads", verts.shape[0], _vertex_count(verts))
    )
    if quads.shape[0] == 0:
        return jnp.zeros((), verts.dtype)
    corners = verts[quads]  # (P, 4, 3)
    vi, vj, vk, vl = (corners[:, c] for c in range(4))
    edge = vj - vi
    n0 = safe_normalize(jnp.cross(edge, vk - vi))
    n1 = safe_normalize(jnp.cross(vl - vi, edge))
    return jnp.mean(1.0 - jnp.sum(n0 * n1, axis=-1))


__all__ = [
    "CotangentLaplacian",
    "UniformLaplacian",
    "cotangent_laplacian",
    "cotangent_laplacian_delta",
    "cotangent_laplacian_loss",
    "dihedral_quads",
    "edge_length_loss",
    "face_pairs",
    "flatten_loss",
    "l1",
    "laplacian_loss",
    "mesh_edges",
    "mse",
    "normal_consistency_loss",
    "silhouette_iou_loss",
    "uniform_laplacian",
]
