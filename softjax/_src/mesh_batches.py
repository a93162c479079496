"""Several meshes as one: padded into a batch for `vmap` (`stack_meshes`) or joined into one
scene (`join_meshes`)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from softjax._src.checks import host_values
from softjax._src.mesh import Mesh


def _surface_kind(mesh: Mesh) -> str:
    if mesh.texture is not None:
        return "a UV texture"
    if mesh.atlas is not None:
        return "a texture atlas"
    return "vertex colours" if mesh.colors is not None else "no colours"


def _check_meshes(meshes, what: str) -> list:
    if isinstance(meshes, Mesh):
        raise TypeError(f"`{what}` takes a sequence of Mesh objects, got a single Mesh")
    try:
        meshes = list(meshes)
    except TypeError:
        raise TypeError(f"`{what}` takes a sequence of Mesh objects, got "
                        f"{type(meshes).__name__}") from None  # fmt: skip
    if not meshes:
        raise ValueError(f"`{what}` needs at least one mesh")
    for i, m in enumerate(meshes):
        if not isinstance(m, Mesh):
            raise TypeError(f"`{what}`: item {i} is a {type(m).__name__}, not a softjax Mesh")
        if m.verts.ndim != 2:
            raise ValueError(
                f"`{what}`: mesh {i} is already batched (verts {tuple(m.verts.shape)}); pass "
                "single meshes"
            )
    first = meshes[0]
    for i, m in enumerate(meshes[1:], 1):
        if m.verts.dtype != first.verts.dtype:
            raise ValueError(
                f"`{what}`: mesh {i} has {m.verts.dtype} vertices, mesh 0 {first.verts.dtype}"
            )
    return meshes


def _check_same_wrap(meshes, what: str) -> None:
    for i, m in enumerate(meshes[1:], 1):
        # Atlases are not read through UVs: only UV textures must agree on the convention.
        names = ("texture_wrap",)
        if m.texture is not None:
            names = ("texture_wrap", "uv_convention")
            if m.normal_map is not None:
                names += ("normal_map_convention",)
            if (m.normal_map is None) != (meshes[0].normal_map is None) or (
                m.normal_map is not None and m.normal_map.shape != meshes[0].normal_map.shape
            ):
                raise ValueError(f"`{what}`: mesh {i} and mesh 0 differ in their normal maps "
                                 "(one has none, or their sizes differ)")  # fmt: skip
        for name in names:
            if getattr(m, name) != getattr(meshes[0], name):
                raise ValueError(f"`{what}`: mesh {i} has {name}={getattr(m, name)!r}, mesh 0 "
                                 f"{getattr(meshes[0], name)!r}")  # fmt: skip


def _check_same_atlas_resolution(meshes, what: str) -> None:
    first = meshes[0].atlas
    for i, m in enumerate(meshes[1:], 1):
        if m.atlas.shape[1:] != first.shape[1:]:
            raise ValueError(
                f"`{what}`: mesh {i}'s atlas has {m.atlas.shape[1]} x {m.atlas.shape[2]} "
                f"texels per face, mesh 0's {first.shape[1]} x {first.shape[2]}; the meshes "
                "need the same resolution"
            )


def _pad(x, rows: int, value=0):
    return jnp.pad(x, ((0, rows - x.shape[0]),) + ((0, 0),) * (x.ndim - 1),
                   constant_values=value)  # fmt: skip


def _mask_of(mesh: Mesh):
    if mesh.face_mask is None:
        return jnp.ones(mesh.num_faces, bool)
    return mesh.face_mask


def stack_meshes(meshes) -> Mesh:
    """One batched `Mesh` from meshes of different sizes, padded to the largest.

    The result's arrays have a leading batch axis `B = len(meshes)`: `verts (B, Vmax, 3)`,
    `faces (B, Fmax, 3)` and `face_mask (B, Fmax)`, with the other fields stacked the same
    way. Mesh b keeps its vertices and faces at the front; the padding vertices sit at the
    origin and the padding faces are `[0, 0, 0]` with `face_mask` False, so they render
    nothing and get zero gradient: each element renders exactly as the mesh alone. Render the
    batch with `jax.vmap(sj.render, in_axes=(0, None, None))` (one camera) or
    `in_axes=(0, 0, None)` (one camera per mesh); index it with
    `jax.tree.map(lambda x: x[b], batch)`.

    Vertex colours, UV textures (padded `uvs` and `face_uvs`; the texture images must have
    the same size) and atlases (padded faces; the same resolution) stack; every mesh must
    have the same kind of surface, the same vertex dtype and `texture_wrap` (and UV textures
    the same `uv_convention`, and normal maps on all or none, of one size and convention).
    Masks already set on the inputs are kept.

    Args:
      meshes: a sequence of single (unbatched) `Mesh` objects.

    Returns:
      A `Mesh` whose leaves have a leading batch axis (not a valid single mesh: use it
      through `jax.vmap`).

    Raises:
      ValueError: an empty sequence, or meshes that differ in a way that cannot be padded
        (the message says what differs).
    """
    meshes = _check_meshes(meshes, "stack_meshes")
    first = meshes[0]
    for i, m in enumerate(meshes[1:], 1):
        if _surface_kind(m) != _surface_kind(first):
            raise ValueError(f"`stack_meshes`: mesh {i} has {_surface_kind(m)}, mesh 0 has "
                             f"{_surface_kind(first)}; give every mesh the same kind")  # fmt: skip
        if (m.colors is None) != (first.colors is None):
            has = ("has no", "has") if m.colors is None else ("has", "has no")
            raise ValueError(f"`stack_meshes`: mesh {i} {has[0]} vertex colours, mesh 0 "
                             f"{has[1]}; give every mesh colours or none")  # fmt: skip
        if m.texture is not None and m.texture.shape != first.texture.shape:
            raise ValueError(
                f"`stack_meshes`: mesh {i}'s texture is {tuple(m.texture.shape)}, mesh 0's "
                f"{tuple(first.texture.shape)}; stacking needs images of the same size"
            )
    _check_same_wrap(meshes, "stack_meshes")
    if first.atlas is not None:
        _check_same_atlas_resolution(meshes, "stack_meshes")
    v = max(m.num_verts for m in meshes)
    f = max(m.num_faces for m in meshes)

    def stack(name, rows, value=0):
        if getattr(first, name) is None:
            return None
        return jnp.stack([_pad(getattr(m, name), rows, value) for m in meshes])

    out = object.__new__(Mesh)
    out.verts, out.faces, out.colors = stack("verts", v), stack("faces", f), stack("colors", v)
    out.uvs = None
    if first.uvs is not None:
        out.uvs = stack("uvs", max(m.uvs.shape[0] for m in meshes))
    out.face_uvs, out.atlas = stack("face_uvs", f), stack("atlas", f)
    out.texture = None if first.texture is None else jnp.stack([m.texture for m in meshes])
    out.normal_map = None
    if first.normal_map is not None:
        out.normal_map = jnp.stack([m.normal_map for m in meshes])
    for name in Mesh._STATIC:
        setattr(out, name, getattr(first, name))
    out.face_mask = jnp.stack([_pad(_mask_of(m), f, False) for m in meshes])
    return out


def _same_values(a, b) -> bool:
    """The same array, or equal shapes and values where both can be read."""
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    va, vb = host_values(a), host_values(b)
    return va is not None and vb is not None and bool(np.array_equal(va, vb))


def join_meshes(meshes) -> Mesh:
    """One scene from several meshes: their vertices and faces concatenated, each mesh's
    face indices offset by the vertices before it.

    Mesh k's vertices follow those of meshes 0..k-1 and its faces follow theirs, so the
    objects render together with occlusion between them resolved per pixel like that of
    any faces, and a face id in the joined scene is the face's index in the concatenation.
    Vertex colours join (a mesh without colours joins as white, which is how it renders);
    atlases of the same resolution join; UV-textured meshes join only when they share one
    texture image (the same array, or equal values), since the joined mesh holds one
    texture. `face_mask`s are kept (a mesh without one joins with all its faces real).

    Args:
      meshes: a sequence of single (unbatched) `Mesh` objects.

    Returns:
      A single `Mesh`.

    Raises:
      ValueError: an empty sequence, different vertex dtypes, textured meshes with different
        `texture_wrap`s (or UV-textured ones with different `uv_convention`s), or surfaces
        that one mesh cannot hold (the message says what differs).
    """
    meshes = _check_meshes(meshes, "join_meshes")
    first = meshes[0]
    kinds = {_surface_kind(m) for m in meshes}
    offsets = np.cumsum([0] + [m.num_verts for m in meshes])[:-1]
    faces = jnp.concatenate([m.faces + int(o) for m, o in zip(meshes, offsets, strict=True)])
    verts = jnp.concatenate([m.verts for m in meshes])
    mask = None
    if any(m.face_mask is not None for m in meshes):
        mask = jnp.concatenate([_mask_of(m) for m in meshes])
    fields = dict(verts=verts, faces=faces, face_mask=mask)
    if kinds <= {"vertex colours", "no colours"}:
        if "vertex colours" in kinds:
            fields["colors"] = jnp.concatenate(
                [m.colors if m.colors is not None else jnp.ones_like(m.verts) for m in meshes]
            )
        return Mesh(**fields)
    if len(kinds) > 1:
        raise ValueError(f"`join_meshes`: the meshes have {sorted(kinds)}; join meshes with "
                         "the same kind of textured surface")  # fmt: skip
    _check_same_wrap(meshes, "join_meshes")
    if first.atlas is not None:
        _check_same_atlas_resolution(meshes, "join_meshes")
        fields["atlas"] = jnp.concatenate([m.atlas for m in meshes])
        return Mesh(**fields, texture_wrap=first.texture_wrap)
    for i, m in enumerate(meshes[1:], 1):
        if not _same_values(m.texture, first.texture):
            raise ValueError(
                f"`join_meshes`: mesh {i} has its own UV texture image; a joined mesh holds one "
                "texture, so UV-textured meshes join only when they share the same texture "
                "array (pack their images into one and remap the UVs)"
            )
    uv_offsets = np.cumsum([0] + [m.uvs.shape[0] for m in meshes])[:-1]
    fields["uvs"] = jnp.concatenate([m.uvs for m in meshes])
    fields["face_uvs"] = jnp.concatenate(
        [m.face_uvs + int(o) for m, o in zip(meshes, uv_offsets, strict=True)]
    )
    for i, m in enumerate(meshes[1:], 1):
        if first.normal_map is not None and not _same_values(m.normal_map, first.normal_map):
            raise ValueError(f"`join_meshes`: mesh {i} has its own normal map; a joined mesh "
                             "holds one, as for the texture")  # fmt: skip
    return Mesh(**fields, texture=first.texture, normal_map=first.normal_map,
                **{name: getattr(first, name) for name in Mesh._STATIC})  # fmt: skip
