"""Public entry points: mesh + camera (+ lights) -> silhouette or RGBA image.

The pipeline, as data flows: project the faces to the screen; for (pixel, face) pairs compute
signed distances, barycentrics and depth; turn distances into coverage; shade; aggregate. The
pair stage runs either densely (`method="dense"`, the reference) or per screen tile over
candidate faces (`method="tiled"`, `softjax.tiled`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from softjax import blend, tiled
from softjax._checks import is_concrete
from softjax.camera import Camera, pixel_centers
from softjax.config import RasterConfig
from softjax.mesh import Mesh, face_normals
from softjax.raster import corners, fragments, interpolate, project
from softjax.shading import Lights, Material, light_terms, phong, vertex_normals
from softjax.texture import sample as texture_sample


def _check_args(mesh, camera, cfg, lights=None) -> None:
    for value, cls, name in ((mesh, Mesh, "mesh"), (camera, Camera, "camera"),
                             (cfg, RasterConfig, "cfg")):  # fmt: skip
        if not isinstance(value, cls):
            got = type(value).__name__
            raise TypeError(f"`{name}` must be a softjax {cls.__name__}, got {got}")
    if lights is not None and not isinstance(lights, Lights):
        raise TypeError(f"`lights` must be a softjax Lights or None, got {type(lights).__name__}")
    if mesh.verts.ndim != 2:
        raise ValueError(
            f"`mesh.verts` must have shape (V, 3), got {tuple(mesh.verts.shape)}; to render "
            "a batch of meshes use jax.vmap"
        )
    if camera.eye.ndim != 1:
        raise ValueError(
            f"`camera` holds a batch of cameras (eye shape {tuple(camera.eye.shape)}); "
            "render a batch with jax.vmap(sj.render, in_axes=(None, 0, None))"
        )


SHADING_MODES = ("flat", "gouraud", "phong")


def _viewer(camera: Camera):
    """What `phong` needs to find the view direction: the camera centre (perspective), or a
    point far behind the camera along its axis (orthographic: parallel view rays)."""
    if camera.orthographic:
        return camera.eye - 1e6 * camera.rotation[2]
    return camera.eye


@dataclasses.dataclass(frozen=True)
class _Shader:
    """Turns interpolated corner attributes `(A, ...)` into colours `(3, ...)` per fragment.

    albedo: "colour" (the first 3 attributes) or "uv" (the first 2, sampled from the texture).
    lighting: None (the albedo), "terms" (the next 6: colour = albedo * A + S, light terms
      from flat or Gouraud shading) or "phong" (the next 6: normal and world position, lit
      here). Frozen and compared by value, so equal shaders reuse compilations.
    """

    albedo: str
    lighting: str | None
    wrap: str = "clamp"

    def __call__(self, attrs, params):
        texture, lights, material, eye = params
        if self.albedo == "uv":
            albedo, rest = texture_sample(texture, attrs[0:2], self.wrap), attrs[2:]
        else:
            albedo, rest = attrs[0:3], attrs[3:]
        if self.lighting is None:
            return albedo
        if self.lighting == "terms":
            return albedo * rest[0:3] + rest[3:6]
        return phong(albedo, rest[0:3], rest[3:6], eye, lights, material)


def _corner_attributes(mesh: Mesh, camera: Camera, lights, material, shading: str):
    """`(F, 3, A)` attributes of each face corner, the per-fragment shader (None: the
    attributes are the colours) and its parameters.

    Without a texture, flat and Gouraud shading light faces or vertices here and the corners
    carry colours. With a texture the corners carry UVs plus the light terms (the lit colour
    is affine in the albedo: `albedo * A + S`), and the shader samples the texture per
    fragment. Phong passes normals and positions on and lights every fragment."""
    textured = mesh.texture is not None
    faces, verts = mesh.faces, mesh.verts
    albedo = mesh.uvs[mesh.face_uvs] if textured else mesh.colors[faces]  # (F, 3, 2 | 3)
    kind = "uv" if textured else "colour"
    texture = mesh.texture  # None without a texture
    if lights is None:
        if not textured:
            return albedo, None, ()
        return albedo, _Shader(kind, None, mesh.texture_wrap), (texture, None, None, None)
    lights, material = jax.tree.map(lambda x: jnp.asarray(x, verts.dtype), (lights, material))
    eye = _viewer(camera)
    if shading == "phong":
        attrs = jnp.concatenate([albedo, vertex_normals(verts, faces)[faces], verts[faces]], -1)
        return attrs, _Shader(kind, "phong", mesh.texture_wrap), (texture, lights, material, eye)
    if shading == "flat":
        # The face's normal and centroid for all three corners.
        normal = jnp.broadcast_to(face_normals(verts, faces)[:, None, :], (*faces.shape, 3))
        point = jnp.broadcast_to(jnp.mean(verts[faces], axis=1)[:, None, :], normal.shape)
    else:  # gouraud: at the vertices, then to the corners
        normal, point = vertex_normals(verts, faces)[faces], verts[faces]
    gain, offset = (x.T for x in light_terms(normal.T, point.T, eye, lights, material))
    if not textured:
        return albedo * gain + offset, None, ()
    attrs = jnp.concatenate([albedo, gain, offset], axis=-1)
    return attrs, _Shader(kind, "terms", mesh.texture_wrap), (texture, None, None, None)


def _with_sentinel(tris):
    """`(9, F + 1)` corner fields and `(F + 1,)` validity of the faces plus one sentinel face
    at index F (finite depth, never valid) that padded list slots point at."""
    geom = jnp.stack(corners(tris.xy, tris.z))  # (9, F)
    sentinel = jnp.zeros((9, 1), geom.dtype).at[6:].set(1.0)
    valid = jnp.concatenate([tris.valid, jnp.zeros(1, bool)])
    return jnp.concatenate([geom, sentinel], axis=1), valid


# Jitted so that eager calls compile once per shape and config rather than tracing the
# tiled path's loops on every call; inside a user's jit/vmap/grad it is simply inlined.
@functools.partial(jax.jit, static_argnames=("shader",))
def _aggregate(mesh: Mesh, camera: Camera, cfg: RasterConfig, corner_colours, shader=None,
               shade=()):  # fmt: skip
    """Log-transmittance `(H, W)` and, when `corner_colours (F, 3, A)` has A > 0, RGB
    `(H, W, C)`, by the method `cfg` names. `shader(attrs, shade)` turns interpolated
    attributes into colours per (pixel, face) pair; None takes them as colours."""
    dtype = mesh.verts.dtype
    camera = jax.tree.map(lambda x: jnp.asarray(x, dtype), camera)
    tris = project(mesh.verts, mesh.faces, camera, cfg.cull_backfaces)
    perspective = not camera.orthographic
    with_colour = corner_colours.shape[-1] > 0

    if cfg.method == "dense":
        pix = pixel_centers(cfg.image_size, dtype)
        frags = fragments(pix[:, :1], pix[:, 1:], corners(tris.xy, tris.z), perspective)
        valid = tris.valid[None, :] & (frags.dist2 >= -cfg.cull_dist2)
        logits = frags.dist2 / cfg.sigma
        log_t = blend.log_transmittance(logits, valid).reshape(cfg.image_size)
        if not with_colour:
            return log_t, None
        colours = interpolate(frags.bary, jnp.transpose(corner_colours, (1, 2, 0))[:, :, None])
        if shader is not None:
            # (A, P, F) attributes -> (3, P, F) colours
            colours = shader(colours, shade)
        rgb = blend.softmax_colour(
            logits, frags.z, colours, valid, jnp.asarray(cfg.background, dtype),
            near=camera.near, far=camera.far, gamma=cfg.gamma, eps=cfg.eps,
        )  # fmt: skip
        return log_t, rgb.reshape(*cfg.image_size, -1)

    static = tiled.static_settings(cfg, mesh.num_faces, perspective, shader)
    geom, valid = _with_sentinel(tris)
    faces = tiled.FaceData(
        geom, jnp.pad(jnp.transpose(corner_colours, (1, 2, 0)), ((0, 0), (0, 0), (0, 1)))
    )
    scalars = tiled.Scalars(
        blend.softmax_scale(cfg.gamma, camera.near, camera.far), camera.far, shade
    )
    log_t, rgb = tiled.stream(faces, scalars, valid, static)
    log_t = tiled.untile(log_t, cfg.image_size, cfg.tile_size)
    if not with_colour:
        return log_t, None
    return log_t, jnp.moveaxis(tiled.untile(rgb, cfg.image_size, cfg.tile_size), 0, -1)


def render_silhouette(mesh: Mesh, camera: Camera, cfg: RasterConfig) -> jax.Array:
    """Soft silhouette `1 - prod_f (1 - D_f)`.

    Args:
      mesh: the mesh to draw.
      camera: a single camera (use `jax.vmap` for a batch).
      cfg: static settings (image size, sigma, method).

    Returns:
      `(H, W)` alpha in [0, 1], in the dtype of `mesh.verts`.
    """
    _check_args(mesh, camera, cfg)
    no_colour = jnp.zeros((mesh.num_faces, 3, 0), mesh.verts.dtype)
    log_t, _ = _aggregate(mesh, camera, cfg, no_colour)
    return blend.silhouette_from_log_transmittance(log_t)


def render(
    mesh: Mesh,
    camera: Camera,
    cfg: RasterConfig,
    lights: Lights | None = None,
    material: Material | None = None,
    shading: str = "flat",
):
    """Soft RGBA image (SoftRas aggregation).

    Colours are the mesh's vertex colours interpolated with perspective-correct barycentrics
    (clamped to the triangle outside it), lit by the Phong model (`softjax.shading`) when
    `lights` is given. RGB is a softmax over faces weighted by coverage and depth, with the
    background as one more candidate; it is not premultiplied: near an edge it keeps the
    face's colour and it becomes `cfg.background` where every face is beyond the
    `cfg.dist_eps` cull distance (alpha below about `dist_eps`).

    Faces with a corner at view depth <= `camera.near` are not drawn (culled, not clipped).
    Geometry beyond `camera.far` is still drawn; its depth weight falls below the background's.

    Args:
      mesh: the mesh to draw.
      camera: a single camera (use `jax.vmap` for a batch).
      cfg: static settings.
      lights: optional `Lights`; None renders unlit vertex colours.
      material: optional `Material` (with `lights`); None is `Material()`: ka = kd = 1,
        no highlights, i.e. SoftRas's Lambert shading.
      shading: where lighting is evaluated (static): "flat" once per face with its normal
        and centroid (SoftRas), "gouraud" at the vertices with smooth vertex normals and
        interpolated, "phong" at every fragment with interpolated smooth normals and
        positions.

    Returns:
      `(H, W, 4)` RGBA in the dtype of `mesh.verts`; `rgba[..., 3]` equals
      `render_silhouette(mesh, camera, cfg)`.
    """
    _check_args(mesh, camera, cfg, lights)
    if shading not in SHADING_MODES:
        raise ValueError(f"`shading` must be one of {SHADING_MODES}, got {shading!r}")
    if material is not None:
        if not isinstance(material, Material):
            raise TypeError(f"`material` must be a softjax Material, got {type(material).__name__}")
        if lights is None:
            raise ValueError("`material` needs `lights`: without lights colours are unlit")
    attrs, shader, shade = _corner_attributes(
        mesh, camera, lights, Material() if material is None else material, shading
    )
    log_t, rgb = _aggregate(mesh, camera, cfg, attrs, shader, shade)
    alpha = blend.silhouette_from_log_transmittance(log_t)
    return jnp.concatenate([rgb, alpha[..., None]], axis=-1)


def fit_pair_capacity(mesh: Mesh, camera: Camera, cfg: RasterConfig, margin: float = 1.25):
    """`cfg` with `pair_capacity` sized so that every view of `mesh` bins in one round.

    The tiled path bins (tile, face) candidate pairs `cfg.pair_capacity` at a time and takes
    further rounds for views with more (same image, more time). This counts the pairs of each
    view eagerly and returns `dataclasses.replace(cfg, pair_capacity=ceil(margin * max))`.
    Call it once, outside `jit`, on a representative mesh (for example the initial or target
    mesh of a fit), then use the returned config everywhere.

    Args:
      mesh: the mesh, with concrete (non-traced) arrays.
      camera: one camera or a batch of cameras (fields with a leading batch axis).
      cfg: the settings to size; `cfg.method` is not changed.
      margin: head room above the largest count, at least 1.

    Returns:
      A `RasterConfig`.
    """
    _check_args(mesh, jax.tree.map(lambda x: x[0], camera) if camera.eye.ndim == 2 else camera,
                cfg)  # fmt: skip
    if not all(is_concrete(x) for x in jax.tree.leaves((mesh, camera))):
        raise ValueError("`fit_pair_capacity` counts pairs eagerly: call it outside jit/vmap/grad")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 1):
        raise ValueError(f"`margin` must be a finite number >= 1, got {margin!r}")
    st = tiled.static_settings(cfg, mesh.num_faces, not camera.orthographic)

    def count(cam):
        cam = jax.tree.map(lambda x: jnp.asarray(x, mesh.verts.dtype), cam)
        tris = project(mesh.verts, mesh.faces, cam, cfg.cull_backfaces)
        geom, valid = _with_sentinel(tris)
        return tiled.bin_faces(geom, valid, st).end[-1]

    counts = jax.jit(jax.vmap(count) if camera.eye.ndim == 2 else count)(camera)
    return dataclasses.replace(cfg, pair_capacity=max(1, math.ceil(margin * int(jnp.max(counts)))))
