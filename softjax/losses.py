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

from softjax._src.losses.image import (
    l1,
    mse,
    silhouette_iou_loss,
)
from softjax._src.losses.laplacian import (
    CotangentLaplacian,
    UniformLaplacian,
    cotangent_laplacian,
    cotangent_laplacian_delta,
    cotangent_laplacian_loss,
    laplacian_loss,
    uniform_laplacian,
)
from softjax._src.losses.surface import (
    dihedral_quads,
    edge_length_loss,
    face_pairs,
    flatten_loss,
    mesh_edges,
    normal_consistency_loss,
)

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
