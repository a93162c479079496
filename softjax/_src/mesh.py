"""The triangle mesh as a pytree (`Mesh`), its face normals and the ico-sphere primitive."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from softjax._src.checks import (
    as_bool_array,
    as_choice,
    as_float_array,
    as_index_array,
    as_int,
    check_finite,
    check_shape,
)
from softjax._src.numerics import safe_normalize
from softjax._src.shading.texture import UV_CONVENTIONS


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
      uv_convention: how `uvs` address `texture` (and any PBR material maps, which then share
        its size): "opengl" (default; OBJ, glTF after its v flip, Blender, SoftRas), as
        above; "pytorch3d" (`TexturesUV` with its default `align_corners=True`: u = 0 and 1
        are the centres of the first and last texel columns, v = 0 and 1 those of the
        bottom and top rows; its border padding is "clamp", and it has no "wrap"); or
        "nvdiffrast" (`dr.texture` on the array as given: v = 0 is row 0, the array's
        first row). An asset's UVs and texture array then render as in that project, with
        no half-texel shift or flip. Static.
      normal_map: `(Ht', Wt', 3)` tangent-space normal map, or None: each texel encodes a unit
        normal `m = 2 c - 1` in the frame of the surface (x along the tangent, y along the
        bitangent, z along the smooth normal), sampled with the mesh's UVs (it needs the UV
        `texture`; with `uv_convention="pytorch3d"`, of the texture's size). The tangent frame
        is MikkTSpace-style: the tangent `T` is the direction of increasing u and the
        bitangent of increasing v (OpenGL's v, up the image), summed over the faces whose
        corners share a vertex, a UV vertex and mirroring (frames split at UV seams and
        mirrored charts), `T` made orthogonal to the vertex normal `N` and normalised, with
        the handedness `w = sign((N x T) . B)`; per fragment the interpolated frame gives
        `B = w N x T` and the shading normal `m_x T + m_y B + m_z N`. Phong and PBR shading
        use it (flat and Gouraud shading light before there are fragments, and refuse it);
        the "normals" output keeps the smooth normals.
      normal_map_convention: "opengl" (default: +y, green, points along increasing v) or
        "directx" (green points the other way, as in DirectX and Unreal assets). Static.
      atlas: `(F, R, R, 3)` per-face texture atlas (SoftRas's surface textures with
        `texture_res = R`): R x R texels per face, looked up by the fragment's barycentrics
        (nearest texel; `softjax._src.shading.texture.sample_atlas` gives the layout). When given it
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
                 texture_wrap="clamp", atlas=None, face_mask=None,
                 uv_convention="opengl", normal_map=None,
                 normal_map_convention="opengl"):  # fmt: skip
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
        as_choice(uv_convention, "uv_convention", UV_CONVENTIONS)
        if uv_convention == "pytorch3d" and texture_wrap == "wrap":
            raise ValueError(
                'uv_convention="pytorch3d" has no "wrap" (TexturesUV pads with the border '
                'texels): use texture_wrap="clamp"'
            )
        as_choice(normal_map_convention, "normal_map_convention", ("opengl", "directx"))
        if normal_map is not None:
            if texture is None:
                raise ValueError("a `normal_map` is sampled with the mesh's UVs: give `uvs`, "
                                 "`face_uvs` and a colour `texture` too")  # fmt: skip
            normal_map = as_float_array(normal_map, "normal_map", dtype=verts.dtype)
            check_shape(normal_map, (None, None, 3), "normal_map")
            check_finite(normal_map, "normal_map")
            if normal_map.shape[0] < 1 or normal_map.shape[1] < 1:
                raise ValueError(f"`normal_map` must not be empty, got {tuple(normal_map.shape)}")
            if uv_convention == "pytorch3d" and normal_map.shape[:2] != texture.shape[:2]:
                raise ValueError('with uv_convention="pytorch3d" the `normal_map` shares the '
                                 "texture's texel grid: give it the texture's size")  # fmt: skip
        if face_mask is not None:
            face_mask = as_bool_array(face_mask, "face_mask")
            check_shape(face_mask, (faces.shape[0],), "face_mask")

        self.verts = verts
        self.faces = faces
        self.colors = colors
        self.uvs, self.face_uvs, self.texture = uvs, face_uvs, texture
        self.texture_wrap = texture_wrap
        self.uv_convention = uv_convention
        self.normal_map, self.normal_map_convention = normal_map, normal_map_convention
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
        fields = {n: getattr(self, n) for n in (*self._LEAVES, *self._STATIC)}
        fields.update(changes)
        return Mesh(**fields)

    def __repr__(self) -> str:
        return f"Mesh(verts={_describe(self.verts)}, faces={_describe(self.faces)})"

    _LEAVES = ("verts", "faces", "colors", "uvs", "face_uvs", "texture", "atlas", "face_mask",
               "normal_map")  # fmt: skip
    _STATIC = ("texture_wrap", "uv_convention", "normal_map_convention")

    def tree_flatten(self):
        return tuple(getattr(self, n) for n in self._LEAVES), tuple(
            getattr(self, n) for n in self._STATIC
        )

    @classmethod
    def tree_unflatten(cls, aux, children):
        # Bypass __init__: transformations put tracers or placeholders in the leaves.
        obj = object.__new__(cls)
        for name, value in zip(cls._LEAVES, children, strict=True):
            setattr(obj, name, value)
        for name, value in zip(cls._STATIC, aux, strict=True):
            setattr(obj, name, value)
        return obj


def _describe(x) -> str:
    return f"{getattr(x, 'dtype', type(x).__name__)}{list(getattr(x, 'shape', ()))}"


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
