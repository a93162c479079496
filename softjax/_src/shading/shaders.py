"""Shaders: per-corner attributes of the faces and the per-fragment function that turns their
interpolations into colours (albedo from colours, UV textures or atlases; flat, Gouraud or
Phong lighting), plus the channels that ride along for depth and normals outputs."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from softjax._src.camera import Camera
from softjax._src.geometry.clip import source_face
from softjax._src.mesh import Mesh
from softjax._src.shading.aovs import aov_attributes
from softjax._src.shading.environment import prepare as prepare_environment
from softjax._src.shading.lights import corner_normals, light_terms, phong, vertex_normals
from softjax._src.shading.normal_map import corner_tangents, mapped_normal
from softjax._src.shading.pbr import pbr_shade
from softjax._src.shading.texture import (
    MIPMAPPED,
    mipmaps,
    opengl_uv,
    sample_atlas,
    sample_filtered,
)


def viewer(camera: Camera):
    """What `phong` needs to find the view direction: the camera centre (perspective), or a
    point far behind the camera along its axis (orthographic: parallel view rays)."""
    if camera.orthographic:
        return camera.eye - 1e6 * camera.rotation[2]
    return camera.eye


@dataclasses.dataclass(frozen=True)
class Shader:
    """Turns interpolated corner attributes `(A, ...)` into colours per fragment, followed by
    `passthrough` auxiliary channels: `(3 + passthrough, ...)`.

    albedo: "colour" (the first 3 attributes), "uv" (the first 2, sampled from the texture)
      or "atlas" (the first 3 are the face's barycentrics, looking up its texels; `face` is
      the clipped triangle's index, 2f or 2f + 1 for face f).
    lighting: None (the albedo), "terms" (the next 6: colour = albedo * A + S, light terms
      from flat or Gouraud shading), "phong" (the next 6: normal and world position, lit
      here; its parameters are `(texture, lights, (material, prepared environment or None),
      eye)`) or "pbr" (the next 8: normal, world position, roughness and metallic, lit here
      by `pbr_shade`; its parameters are `((texture, roughness map, metallic map), lights,
      prepared environment, eye)`, a map None where the attribute holds the value).
    wrap: the textures' boundary mode ("clamp" or "wrap").
    filter, max_aniso: how UV textures and material maps are sampled (`sj.texture`'s
      filters). With a mipmapped filter the parameters hold each image's pyramid
      (`mipmaps`) in its place, and the shader needs the screen derivatives of the UVs
      (`derivatives`).
    normal_map: None, or the convention ("opengl" or "directx") of a tangent-space normal
      map: then the first parameter is the pair `(texture(s), normal map)` and 4 more
      attributes after the lighting's hold the tangent frame (`normal_map.corner_tangents`).
    passthrough: the last attributes, copied to the output after the colour (depth, normals).
    Frozen and compared by value, so equal shaders reuse compilations.
    """

    albedo: str
    lighting: str | None
    wrap: str = "clamp"
    passthrough: int = 0
    filter: str = "linear"
    max_aniso: int = 8
    normal_map: str | None = None

    @property
    def channels(self) -> int:
        return 3 + self.passthrough

    @property
    def derivatives(self) -> int:
        """How many leading attributes the shader needs the screen derivatives of: the 2 UVs
        for a mipmapped filter of a UV texture, else 0."""
        return 2 if self.albedo == "uv" and self.filter in MIPMAPPED else 0

    def _sample(self, image, uv, derivs):
        """`image` (a pyramid for a mipmapped filter) at `uv (2, ...)` with the UVs' screen
        derivatives `derivs (2, 2, ...)`: `(C, ...)`."""
        return sample_filtered(image, uv, derivs, self.filter, self.wrap, self.max_aniso)

    def _normal(self, normal, frame, bumps, attrs, derivs):
        """The shading normal: the interpolated one, or the normal map's in its frame."""
        if self.normal_map is None:
            return normal
        texel = self._sample(bumps, attrs[0:2], derivs)
        return mapped_normal(texel, normal, frame, self.normal_map)

    def __call__(self, attrs, face, params, derivs=None):
        """Colours `(3 + passthrough, ...)` of attributes `attrs (A, ...)` at fragments of
        clipped triangles `face`, with `params` as `corner_attributes` gives them and, when
        `derivatives` is k > 0, the screen derivatives `derivs (k, 2, ...)` of the first k
        attributes (`[:, 0]` one pixel column to the right, `[:, 1]` one row down)."""
        texture, lights, material, eye = params
        bumps = None
        if self.normal_map is not None:
            texture, bumps = texture
        if self.lighting == "pbr":
            texture, *maps = texture
        if self.passthrough:
            attrs, extra = attrs[: -self.passthrough], attrs[-self.passthrough :]
        if self.albedo == "uv":
            albedo, rest = self._sample(texture, attrs[0:2], derivs), attrs[2:]
        elif self.albedo == "atlas":
            albedo = sample_atlas(texture, attrs[0:3], source_face(face))
            rest = attrs[3:]
        else:
            albedo, rest = attrs[0:3], attrs[3:]
        if self.lighting == "terms":
            albedo = albedo * rest[0:3] + rest[3:6]
        elif self.lighting == "phong":  # `material`: (Material, prepared environment or None)
            normal = self._normal(rest[0:3], rest[6:10], bumps, attrs, derivs)
            albedo = phong(albedo, normal, rest[3:6], eye, lights, *material)
        elif self.lighting == "pbr":  # `material`: the prepared environment map, or None
            rough, metal = (
                x if m is None else self._sample(m, attrs[0:2], derivs)[0]
                for m, x in zip(maps, (rest[6], rest[7]), strict=True)
            )
            normal = self._normal(rest[0:3], rest[8:12], bumps, attrs, derivs)
            albedo = pbr_shade(albedo, normal, rest[3:6], rough, metal, eye, lights, material)
        if not self.passthrough:
            return albedo
        return jnp.concatenate([jnp.broadcast_to(albedo, (3, *extra.shape[1:])), extra])


# Corner attributes whose interpolation gives a fragment's barycentrics.
_CORNER_BARY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def corner_attributes(mesh: Mesh, camera: Camera, lights, material, shading: str,
                      texture_filter: str = "linear", max_aniso: int = 8):  # fmt: skip
    """`(F, 3, A)` attributes of each face corner, the per-fragment shader (None: the
    attributes are the colours) and its parameters. `texture_filter` and `max_aniso` say
    how the shader samples a UV texture and material maps (see `Shader`).

    Without a texture, flat and Gouraud shading light faces or vertices here and the corners
    carry colours. With a texture (UV map or atlas) the corners carry UVs or barycentrics plus
    the light terms (the lit colour is affine in the albedo: `albedo * A + S`), and the shader
    samples the texture per fragment. Phong passes normals and positions on and lights every
    fragment."""
    faces, verts = mesh.faces, mesh.verts
    if mesh.texture is not None:
        # (F, 3, 2) UVs in `sample`'s convention
        mesh_uvs = opengl_uv(mesh.uvs, mesh.uv_convention, *mesh.texture.shape[:2])
        albedo = mesh_uvs[mesh.face_uvs]
        kind, texture = "uv", mesh.texture
    elif mesh.atlas is not None:
        bary = jnp.asarray(_CORNER_BARY, verts.dtype)
        kind, texture, albedo = "atlas", mesh.atlas, jnp.broadcast_to(bary, (*faces.shape, 3))
    elif mesh.colors is not None:
        kind, texture, albedo = "colour", None, mesh.colors[faces]  # (F, 3, 3)
    else:
        kind, texture, albedo = "colour", None, jnp.ones((*faces.shape, 3), verts.dtype)
    sampled = kind != "colour"
    # Only UV images are filtered; an atlas keeps its nearest-texel lookup.
    filtered = texture_filter if kind == "uv" else "linear"
    mipmapped = filtered in MIPMAPPED

    bumps = mesh.normal_map if kind == "uv" else None
    if bumps is not None and lights is not None and shading not in ("phong", "pbr"):
        raise ValueError(
            f'a `normal_map` perturbs the normal per fragment: shading="{shading}" lights '
            'faces or vertices before there are fragments; use shading="phong" or "pbr"'
        )

    def shader(lighting):
        return Shader(kind, lighting, mesh.texture_wrap, filter=filtered,
                      max_aniso=max_aniso if filtered == "anisotropic" else 8,
                      normal_map=mesh.normal_map_convention if bumps is not None and lighting
                      else None)  # fmt: skip

    def with_bumps(texture, attrs):
        """The shader's texture parameter and attributes with the normal map's."""
        if bumps is None:
            return texture, attrs
        frames = corner_tangents(verts, faces, mesh_uvs, mesh.face_uvs, smooth, mesh.face_mask)
        return (texture, mipmaps(bumps) if mipmapped else bumps), jnp.concatenate(
            [attrs, frames], -1
        )

    if mipmapped:
        texture = mipmaps(texture)
    if lights is None:
        if not sampled:
            return albedo, None, ()
        return albedo, shader(None), (texture, None, None, None)
    eye = viewer(camera)
    if shading in ("phong", "pbr"):  # lit per fragment: smooth normals, positions
        smooth = vertex_normals(verts, faces, mesh.face_mask)[faces]
        env = lights.environment
        env = None if env is None else prepare_environment(env, specular=shading == "pbr")
    if shading == "pbr":
        fields = (("roughness", material.roughness), ("metallic", material.metallic))
        maps = tuple(x[..., None] if x.ndim == 2 else None for _, x in fields)
        if any(m is not None for m in maps) and kind != "uv":
            raise ValueError(
                "texture maps of roughness or metallic are sampled with the mesh's UVs: give "
                "the mesh `uvs`, `face_uvs` and a colour `texture`, or per-vertex values"
            )
        if mesh.uv_convention == "pytorch3d" and any(
            m is not None and m.shape[:2] != mesh.texture.shape[:2] for m in maps
        ):
            raise ValueError(
                'with uv_convention="pytorch3d" the material maps share the UVs\' texel grid: '
                "give them the texture's size"
            )
        # A map's attribute channel is a placeholder (the shader samples the map instead).
        per_corner = [
            jnp.zeros((*faces.shape, 1), verts.dtype) if x.ndim == 2 else _per_corner(x, mesh, n)
            for n, x in fields
        ]
        attrs = jnp.concatenate([albedo, smooth, verts[faces], *per_corner], -1)
        if mipmapped:
            maps = tuple(None if m is None else mipmaps(m) for m in maps)
        textures, attrs = with_bumps((texture, *maps), attrs)
        return attrs, shader("pbr"), (textures, lights, env, eye)
    if shading == "phong":
        attrs = jnp.concatenate([albedo, smooth, verts[faces]], -1)
        textures, attrs = with_bumps(texture, attrs)
        return attrs, shader("phong"), (textures, lights, (material, env), eye)
    normal, point = corner_normals(verts, faces, shading, mesh.face_mask)
    gain, offset = (x.T for x in light_terms(normal.T, point.T, eye, lights, material))
    if not sampled:
        return albedo * gain + offset, None, ()
    attrs = jnp.concatenate([albedo, gain, offset], axis=-1)
    return attrs, shader("terms"), (texture, None, None, None)


def _per_corner(x, mesh: Mesh, name: str):
    """A material field, scalar or per vertex `(V,)`, as `(F, 3, 1)` corner values."""
    if x.ndim == 0:
        return jnp.broadcast_to(x, (*mesh.faces.shape, 1))
    if x.shape != (mesh.num_verts,):
        raise ValueError(
            f"`material.{name}` has {x.shape[0]} values, the mesh has {mesh.num_verts} vertices"
        )
    return x[mesh.faces][..., None]


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=("attrs", "params"),
    meta_fields=("shader", "depth"),
)
@dataclasses.dataclass(frozen=True)
class Shading:
    """What a visibility mode shades with: per-corner attributes `attrs (F, 3, A)`, the
    per-fragment `shader` (hashable, static in the compiled program; None takes the
    attributes as colours), its traced parameters `params` (any pytree), and `depth`, the
    attribute channel that carries the corners' view depth for the "depth" output (None
    without one). A pytree whose leaves are `attrs` and `params`' leaves, so that a jitted
    preparation returns it."""

    attrs: jax.Array
    shader: object
    params: object
    depth: int | None = None


@functools.partial(jax.jit, static_argnames=("shading", "aovs", "texture_filter", "max_aniso"))
def prepare(mesh: Mesh, camera: Camera, lights, material, shading: str, aovs=(),
            texture_filter: str = "linear", max_aniso: int = 8) -> Shading:  # fmt: skip
    """The `Shading` of `mesh` lit by `lights` and `material` the way `shading` names, with
    the auxiliary outputs `aovs` riding after the colour and textures sampled with
    `texture_filter`. One jitted program, so that an eager `render` compiles it once per
    shape and setting (inlined under a caller's `jit`)."""
    attrs, shader, params = corner_attributes(mesh, camera, lights, material, shading,
                                              texture_filter, max_aniso)  # fmt: skip
    return with_aovs(Shading(attrs, shader, params), mesh, camera, aovs, shading)


def with_aovs(base: Shading, mesh: Mesh, camera: Camera, aovs, shading: str) -> Shading:
    """`base` with the channels of the auxiliary outputs `aovs` after its attributes, passed
    through its shader (a colour-only `Shader` where `base` has none)."""
    extra = aov_attributes(mesh, camera, aovs, shading)
    if extra is None:
        return base
    attrs, shader, params = base.attrs, base.shader, base.params
    depth = attrs.shape[-1] if "depth" in aovs else None  # the first auxiliary channel
    if shader is None:
        shader, params = Shader("colour", None), (None, None, None, None)
    shader = dataclasses.replace(shader, passthrough=extra.shape[-1])
    return Shading(jnp.concatenate([attrs, extra], axis=-1), shader, params, depth)


def background_values(background, channels: int, dtype):
    """`(channels,)` background value of each output channel: the RGB background, then 0 for
    any further channels (auxiliary outputs)."""
    return jnp.asarray((*background, *(0.0,) * channels)[:channels], dtype)
