"""Triangle meshes as pytrees, and the built-in shapes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from softjax._checks import (
    as_bool_array,
    as_choice,
    as_float_array,
    as_index_array,
    as_int,
    check_finite,
    check_shape,
    host_values,
)
from softjax._numerics import safe_normalize


@jax.tree_util.register_pytree_node_class
class Mesh:
    """A triangle mesh with per-vertex colours, a UV texture or a per-face texture atlas.

    Args:
      verts: `(V, 3)` float vertex positions in world units.
      faces: `(F, 3)` integer vertex indices (stored as int32). Either winding renders; the
        counter-clockwise one (seen from outside) is "front" for lighting and culling.
      colors: `(V, 3)` per-vertex RGB in [0, 1], or None: the mesh then has no colours
        (`mesh.colors` is None) and renders white.
      uvs: `(U, 2)` texture coordinates (u, v): u = 0 is the texture image's left edge and
        v = 0 its bottom edge (the OBJ / OpenGL convention).
      face_uvs: `(F, 3)` integer indices into `uvs` for each face corner.
      texture: `(Ht, Wt, 3)` texture image, row 0 at the top; texel (i, j) is centred at
        `u = (j + 0.5) / Wt`, `v = 1 - (i + 0.5) / Ht` and sampled bilinearly. When given
        (with `uvs` and `face_uvs`) it replaces `colors` as the surface colour.
      texture_wrap: "clamp" (default: coordinates outside [0, 1] take the border texels) or
        "wrap" (the texture repeats); static.
      atlas: `(F, R, R, 3)` per-face texture atlas (SoftRas's surface textures with
        `texture_res = R`): R x R texels per face, looked up by the fragment's barycentrics
        (nearest texel; `softjax.texture.sample_atlas` gives the layout). When given it
        replaces `colors`; it cannot be combined with a UV `texture`.
      face_mask: `(F,)` bool, or None (every face is real). Faces marked False render
        nothing (no silhouette, colour, auxiliary output or face id, and no part in smooth
        vertex normals) and receive exactly zero gradient: a mesh renders as if they were
        removed. `stack_meshes` uses it to pad meshes of different sizes to one shape.
        (`replace(faces=...)` with a different face count needs a new `face_mask` too.)

    A `Mesh` is a pytree whose leaves are its arrays (absent ones are None), so it passes
    through `jit` and `vmap`. To differentiate with respect to vertices, colours, UVs or the
    texture, build the mesh inside the differentiated function, e.g.
    `jax.grad(lambda v: loss(sj.Mesh(v, faces)))(verts)` (`faces` and `face_uvs` are integer
    leaves and have no gradient).

    Raises:
      ValueError: wrong shapes or dtypes, non-finite values, or face indices out of range
        (checked when the arguments are concrete, i.e. outside `jit`).
    """

    def __init__(self, verts, faces, colors=None, uvs=None, face_uvs=None, texture=None,
                 texture_wrap="clamp", atlas=None, face_mask=None):  # fmt: skip
        verts = as_float_array(verts, "verts")
        check_shape(verts, (None, 3), "verts")
        check_finite(verts, "verts")

        faces = as_index_array(faces, "faces", verts.shape[0], "vertices")

        if colors is not None:
            colors = as_float_array(colors, "colors", dtype=verts.dtype)
            check_shape(colors, (verts.shape[0], 3), "colors")
            check_finite(colors, "colors")

        textured = [x is not None for x in (uvs, face_uvs, texture)]
        if any(textured) and not all(textured):
            raise ValueError("`uvs`, `face_uvs` and `texture` must be given together")
        if all(textured):
            uvs = as_float_array(uvs, "uvs", dtype=verts.dtype)
            check_shape(uvs, (None, 2), "uvs")
            check_finite(uvs, "uvs")
            face_uvs = as_index_array(face_uvs, "face_uvs", uvs.shape[0], "uvs")
            if face_uvs.shape[0] != faces.shape[0]:
                raise ValueError(
                    f"`face_uvs` must have one row per face ({faces.shape[0]}), got "
                    f"{face_uvs.shape[0]}"
                )
            texture = as_float_array(texture, "texture", dtype=verts.dtype)
            check_shape(texture, (None, None, 3), "texture")
            check_finite(texture, "texture")
            if texture.shape[0] < 1 or texture.shape[1] < 1:
                raise ValueError(f"`texture` must not be empty, got {tuple(texture.shape)}")
        if atlas is not None:
            if texture is not None:
                raise ValueError("give either a UV `texture` or an `atlas`, not both")
            atlas = as_float_array(atlas, "atlas", dtype=verts.dtype)
            check_shape(atlas, (faces.shape[0], None, None, 3), "atlas")
            check_finite(atlas, "atlas")
            if atlas.shape[1] != atlas.shape[2] or atlas.shape[1] < 1:
                raise ValueError(
                    f"`atlas` must hold R x R texels per face (R >= 1), got {tuple(atlas.shape)}"
                )
        as_choice(texture_wrap, "texture_wrap", ("clamp", "wrap"))
        if face_mask is not None:
            face_mask = as_bool_array(face_mask, "face_mask")
            check_shape(face_mask, (faces.shape[0],), "face_mask")

        self.verts = verts
        self.faces = faces
        self.colors = colors
        self.uvs, self.face_uvs, self.texture = uvs, face_uvs, texture
        self.texture_wrap = texture_wrap
        self.atlas = atlas
        self.face_mask = face_mask

    @property
    def num_verts(self) -> int:
        return self.verts.shape[-2]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[-2]

    def replace(self, **changes) -> Mesh:
        """A copy with some fields replaced and re-validated, e.g. `mesh.replace(verts=v)`."""
        fields = {n: getattr(self, n) for n in (*self._LEAVES, "texture_wrap")}
        fields.update(changes)
        return Mesh(**fields)

    def __repr__(self) -> str:
        return f"Mesh(verts={_describe(self.verts)}, faces={_describe(self.faces)})"

    _LEAVES = ("verts", "faces", "colors", "uvs", "face_uvs", "texture", "atlas", "face_mask")

    def tree_flatten(self):
        return tuple(getattr(self, n) for n in self._LEAVES), self.texture_wrap

    @classmethod
    def tree_unflatten(cls, aux, children):
        # Bypass __init__: transformations put tracers or placeholders in the leaves.
        obj = object.__new__(cls)
        for name, value in zip(cls._LEAVES, children, strict=True):
            setattr(obj, name, value)
        obj.texture_wrap = aux
        return obj


def _describe(x) -> str:
    return f"{getattr(x, 'dtype', type(x).__name__)}{list(getattr(x, 'shape', ()))}"


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
        if m.texture_wrap != meshes[0].texture_wrap:
            raise ValueError(f"`{what}`: mesh {i} has texture_wrap={m.texture_wrap!r}, mesh 0 "
                             f"{meshes[0].texture_wrap!r}")  # fmt: skip


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
    have the same kind of surface, the same vertex dtype and `texture_wrap`. Masks already
    set on the inputs are kept.

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
    out.texture_wrap = first.texture_wrap
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
        `texture_wrap`s, or surfaces that one mesh cannot hold (the message says what
        differs).
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
    return Mesh(**fields, texture=first.texture, texture_wrap=first.texture_wrap)


def face_normals(verts, faces):
    """Unit normals `cross(b - a, c - a)` of each face, `(F, 3)`; zero for degenerate faces."""
    tri = verts[faces]
    return safe_normalize(jnp.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))


# The 12 vertices of a regular icosahedron: cyclic permutations of (0, +-1, +-phi).
_PHI = (1.0 + 5.0**0.5) / 2.0
_ICO_VERTS = np.array(
    [
        [-1, _PHI, 0], [1, _PHI, 0], [-1, -_PHI, 0], [1, -_PHI, 0],
        [0, -1, _PHI], [0, 1, _PHI], [0, -1, -_PHI], [0, 1, -_PHI],
        [_PHI, 0, -1], [_PHI, 0, 1], [-_PHI, 0, -1], [-_PHI, 0, 1],
    ],
    dtype=np.float64,
)  # fmt: skip
_ICO_FACES = np.array(
    [
        [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
        [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
        [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
        [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
    ],
    dtype=np.int64,
)  # fmt: skip


@functools.lru_cache(maxsize=16)
def _ico_sphere_np(level: int) -> tuple[np.ndarray, np.ndarray]:
    verts = _ICO_VERTS / np.linalg.norm(_ICO_VERTS, axis=1, keepdims=True)
    faces = _ICO_FACES
    for _ in range(level):
        # Loop subdivision without smoothing: one new vertex per edge, projected to the sphere.
        edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        edges = np.sort(edges, axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        mids = verts[unique].mean(axis=1)
        mids /= np.linalg.norm(mids, axis=1, keepdims=True)
        m = inverse.reshape(3, -1) + len(verts)  # midpoint ids of edges ab, bc, ca
        a, b, c = faces.T
        faces = np.concatenate(
            [
                np.stack([a, m[0], m[2]], 1),
                np.stack([m[0], b, m[1]], 1),
                np.stack([m[2], m[1], c], 1),
                np.stack([m[0], m[1], m[2]], 1),
            ]
        )
        verts = np.concatenate([verts, mids])
    # Orient every face outward (counter-clockwise seen from outside).
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = np.sum(normal * tri.mean(axis=1), axis=1) < 0
    faces = np.where(inward[:, None], faces[:, ::-1], faces)
    return verts, faces.astype(np.int32)


def ico_sphere(level: int = 3, dtype=None) -> Mesh:
    """A unit sphere at the origin made by subdividing an icosahedron `level` times.

    Returns a `Mesh` without colours (it renders white) with `10 * 4**level + 2` vertices of
    norm 1 and `20 * 4**level` outward, counter-clockwise faces.
    """
    try:
        level = as_int(level, "level", minimum=0)
    except TypeError as e:
        raise ValueError(str(e)) from None
    if level > 8:
        raise ValueError(f"`level` must be at most 8 (1.3M faces), got {level}")
    verts, faces = _ico_sphere_np(int(level))
    dtype = dtype or jnp.result_type(float)
    return Mesh(jnp.asarray(verts, dtype=dtype), faces)
