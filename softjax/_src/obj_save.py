"""Writing a `Mesh` as a Wavefront OBJ file (with its MTL material and texture image)."""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from softjax._src.checks import is_concrete
from softjax._src.mesh import Mesh
from softjax._src.obj_load import import_io_packages, obj_path
from softjax._src.shading.texture import opengl_uv


def save_obj(path, mesh: Mesh) -> pathlib.Path:
    """Writes `mesh` as a Wavefront OBJ file and returns its path.

    Writes `v` positions and `f` faces. A textured mesh also gets `vt` coordinates, an MTL
    file `<name>.mtl` and its texture as an 8-bit PNG `<name>.png` next to the OBJ (`map_Kd`,
    with `Kd 1 1 1`). OBJ files written this way carry one UV per vertex, so vertices with
    several UVs (on UV seams) are written once per (vertex, UV) pair: `load_obj` then returns
    more vertices than `mesh` has, at the same positions, rendering the same colours
    (smooth-shading normals are computed per vertex and do not average across such seams).
    Vertex colours are written as `v x y z r g b` (8-bit precision on reading back) unless
    they are all white (the default) or the mesh is textured. `texture_wrap` is not stored;
    UVs are written in OBJ's (OpenGL's) convention, those of a mesh in another
    `uv_convention` mapped so that they read the same texels.
    Faces masked out by `face_mask` are not written (the vertices are). Existing files are
    overwritten.

    Args:
      path: the `.obj` file to write.
      mesh: a concrete `Mesh` (not one traced inside `jit`, `vmap` or `grad`).

    Raises:
      ImportError: trimesh or Pillow is not installed.
      TypeError: `mesh` is not a `Mesh` or holds traced values.
      ValueError: `path` is not a `.obj` name, or `mesh` is batched, has no faces or has a
        per-face texture atlas (which OBJ cannot hold).
    """
    trimesh, image_module = import_io_packages()
    path = obj_path(path)
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a softjax Mesh, got {type(mesh).__name__}")
    if not all(is_concrete(x) for x in jax.tree_util.tree_leaves(mesh)):
        raise TypeError(
            "save_obj needs a concrete mesh: call it outside jax.jit, jax.vmap and jax.grad"
        )
    verts = np.asarray(mesh.verts)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if verts.ndim != 2 or faces.ndim != 2:
        raise ValueError(f"save_obj writes one mesh, got a batch: {mesh!r}")
    # Masked faces are not part of the surface: they are not written.
    keep = np.ones(len(faces), bool) if mesh.face_mask is None else np.asarray(mesh.face_mask)
    faces = faces[keep]
    if len(faces) == 0:
        raise ValueError("`mesh` has no faces" + (" left unmasked" if not keep.all() else ""))
    if mesh.atlas is not None:
        raise ValueError(
            "OBJ files cannot hold a per-face texture atlas; bake it into a UV texture first"
        )
    # Fixed-point decimals: 10 keep float32 coordinates of magnitude >= 1e-2 exact.
    digits = 10 if verts.dtype.itemsize <= 4 else 17
    verts = verts.astype(np.float64)

    name = path.stem
    if mesh.texture is not None:
        # One vertex per distinct (position index, UV index) pair used by a face corner.
        corners = np.stack([faces.ravel(), np.asarray(mesh.face_uvs)[keep].ravel()], axis=1)
        pairs, inverse = np.unique(corners, axis=0, return_inverse=True)
        pixels = np.round(np.clip(np.asarray(mesh.texture, np.float64), 0.0, 1.0) * 255.0)
        material = trimesh.visual.material.SimpleMaterial(
            image=image_module.fromarray(pixels.astype(np.uint8)),
            name=name,
            diffuse=(255, 255, 255, 255),
            specular=(0, 0, 0, 255),
        )
        # OBJ's UVs follow OpenGL's rule: a mesh in another `uv_convention` is written as
        # the OpenGL UVs that read the same points of its texture.
        uvs = opengl_uv(np.asarray(mesh.uvs, np.float64), mesh.uv_convention,
                        *mesh.texture.shape[:2])  # fmt: skip
        uv = np.asarray(uvs, np.float64)[pairs[:, 1]]
        out = trimesh.Trimesh(
            verts[pairs[:, 0]],
            inverse.reshape(-1, 3),
            visual=trimesh.visual.TextureVisuals(uv=uv, material=material),
            process=False,
        )
    else:
        vertex_colors = None
        if mesh.colors is not None:
            colors = np.asarray(mesh.colors, np.float64)
            vertex_colors = None if np.all(colors == 1.0) else np.clip(colors, 0.0, 1.0)
        out = trimesh.Trimesh(verts, faces, vertex_colors=vertex_colors, process=False)

    text, assets = trimesh.exchange.obj.export_obj(
        out,
        include_normals=False,
        return_texture=True,
        mtl_name=f"{name}.mtl",
        digits=digits,
    )
    for asset, data in assets.items():  # the MTL file and the texture image
        (path.parent / asset).write_bytes(data)
    path.write_text(text, encoding="utf-8")
    return path
