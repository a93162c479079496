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
import numpy as np

from softjax import blend, coverage, hard, tiled
from softjax._checks import as_finite_real, as_int, host_values, is_concrete
from softjax.camera import Camera, pixel_centers, to_camera
from softjax.config import RasterConfig
from softjax.mesh import Mesh, face_normals
from softjax.raster import (
    PIECES,
    clip_attributes,
    fragments,
    geometry_rows,
    project,
    setup,
    source_face,
)
from softjax.raster import interpolate as interpolate_pairs
from softjax.shading import Lights, Material, light_terms, phong, vertex_normals
from softjax.texture import sample as texture_sample
from softjax.texture import sample_atlas as texture_atlas_sample


def _check_args(mesh, camera, cfg, lights=None, material=None) -> None:
    for value, cls, name in ((mesh, Mesh, "mesh"), (camera, Camera, "camera"),
                             (cfg, RasterConfig, "cfg")):  # fmt: skip
        if not isinstance(value, cls):
            got = type(value).__name__
            raise TypeError(f"`{name}` must be a softjax {cls.__name__}, got {got}")
    if lights is not None and not isinstance(lights, Lights):
        raise TypeError(f"`lights` must be a softjax Lights or None, got {type(lights).__name__}")
    if material is not None:
        if not isinstance(material, Material):
            raise TypeError(f"`material` must be a softjax Material, got {type(material).__name__}")
        if lights is None:
            raise ValueError("`material` needs `lights`: without lights colours are unlit")
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


def compute_dtype(dtype):
    """The precision geometry, shading and reductions run in: at least float32.

    Half-precision coordinates cannot resolve pixels (float16 has 11 bits), and sums over
    many faces lose what little they have, so float16 and bfloat16 inputs are rendered in
    float32 and the images are returned in the input's dtype; float64 stays float64.
    """
    return jnp.promote_types(dtype, jnp.float32)


def _in_dtype(tree, dtype):
    """`tree` with its floating leaves cast to `dtype` (integer leaves kept)."""

    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def _viewer(camera: Camera):
    """What `phong` needs to find the view direction: the camera centre (perspective), or a
    point far behind the camera along its axis (orthographic: parallel view rays)."""
    if camera.orthographic:
        return camera.eye - 1e6 * camera.rotation[2]
    return camera.eye


@dataclasses.dataclass(frozen=True)
class _Shader:
    """Turns interpolated corner attributes `(A, ...)` into colours per fragment, followed by
    `passthrough` auxiliary channels: `(3 + passthrough, ...)`.

    albedo: "colour" (the first 3 attributes), "uv" (the first 2, sampled from the texture)
      or "atlas" (the first 3 are the face's barycentrics, looking up its texels; `face` is
      the clipped triangle's index, 2f or 2f + 1 for face f).
    lighting: None (the albedo), "terms" (the next 6: colour = albedo * A + S, light terms
      from flat or Gouraud shading) or "phong" (the next 6: normal and world position, lit
      here).
    passthrough: the last attributes, copied to the output after the colour (depth, normals).
    Frozen and compared by value, so equal shaders reuse compilations.
    """

    albedo: str
    lighting: str | None
    wrap: str = "clamp"
    passthrough: int = 0

    @property
    def channels(self) -> int:
        return 3 + self.passthrough

    def __call__(self, attrs, face, params):
        texture, lights, material, eye = params
        if self.passthrough:
            attrs, extra = attrs[: -self.passthrough], attrs[-self.passthrough :]
        if self.albedo == "uv":
            albedo, rest = texture_sample(texture, attrs[0:2], self.wrap), attrs[2:]
        elif self.albedo == "atlas":
            albedo = texture_atlas_sample(texture, attrs[0:3], source_face(face))
            rest = attrs[3:]
        else:
            albedo, rest = attrs[0:3], attrs[3:]
        if self.lighting == "terms":
            albedo = albedo * rest[0:3] + rest[3:6]
        elif self.lighting == "phong":
            albedo = phong(albedo, rest[0:3], rest[3:6], eye, lights, material)
        if not self.passthrough:
            return albedo
        return jnp.concatenate([jnp.broadcast_to(albedo, (3, *extra.shape[1:])), extra])


# Corner attributes whose interpolation gives a fragment's barycentrics.
_CORNER_BARY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def _corner_attributes(mesh: Mesh, camera: Camera, lights, material, shading: str):
    """`(F, 3, A)` attributes of each face corner, the per-fragment shader (None: the
    attributes are the colours) and its parameters.

    Without a texture, flat and Gouraud shading light faces or vertices here and the corners
    carry colours. With a texture (UV map or atlas) the corners carry UVs or barycentrics plus
    the light terms (the lit colour is affine in the albedo: `albedo * A + S`), and the shader
    samples the texture per fragment. Phong passes normals and positions on and lights every
    fragment."""
    faces, verts = mesh.faces, mesh.verts
    if mesh.texture is not None:
        kind, texture, albedo = "uv", mesh.texture, mesh.uvs[mesh.face_uvs]  # (F, 3, 2)
    elif mesh.atlas is not None:
        bary = jnp.asarray(_CORNER_BARY, verts.dtype)
        kind, texture, albedo = "atlas", mesh.atlas, jnp.broadcast_to(bary, (*faces.shape, 3))
    elif mesh.colors is not None:
        kind, texture, albedo = "colour", None, mesh.colors[faces]  # (F, 3, 3)
    else:
        kind, texture, albedo = "colour", None, jnp.ones((*faces.shape, 3), verts.dtype)
    sampled = kind != "colour"
    if lights is None:
        if not sampled:
            return albedo, None, ()
        return albedo, _Shader(kind, None, mesh.texture_wrap), (texture, None, None, None)
    eye = _viewer(camera)
    if shading == "phong":
        smooth = vertex_normals(verts, faces, mesh.face_mask)[faces]
        attrs = jnp.concatenate([albedo, smooth, verts[faces]], -1)
        return attrs, _Shader(kind, "phong", mesh.texture_wrap), (texture, lights, material, eye)
    normal, point = _corner_normals(verts, faces, shading, mesh.face_mask)
    gain, offset = (x.T for x in light_terms(normal.T, point.T, eye, lights, material))
    if not sampled:
        return albedo * gain + offset, None, ()
    attrs = jnp.concatenate([albedo, gain, offset], axis=-1)
    return attrs, _Shader(kind, "terms", mesh.texture_wrap), (texture, None, None, None)


def _corner_normals(verts, faces, shading: str, face_mask=None):
    """`(F, 3, 3)` normals and points at which a face's corners are lit: the face's normal
    and centroid for flat shading, the vertices' smooth normals (over the faces `face_mask`
    keeps) and positions otherwise."""
    if shading == "flat":
        normal = jnp.broadcast_to(face_normals(verts, faces)[:, None, :], (*faces.shape, 3))
        return normal, jnp.broadcast_to(jnp.mean(verts[faces], axis=1)[:, None, :], normal.shape)
    return vertex_normals(verts, faces, face_mask)[faces], verts[faces]


def _face_ids(nearest):
    """Clipped-triangle indices (-1 for none) -> the faces they come from."""
    return jnp.where(nearest >= 0, source_face(nearest), -1).astype(jnp.int32)


# Jitted so that eager calls compile once per shape and config rather than tracing the
# tiled path's loops on every call; inside a user's jit/vmap/grad it is simply inlined.
@functools.partial(jax.jit, static_argnames=("shader", "face_ids"))
def _aggregate(mesh: Mesh, camera: Camera, cfg: RasterConfig, blur, corner_colours,
               shader=None, shade=(), face_ids=False):  # fmt: skip
    """Alpha `(H, W)` and, when `corner_colours (F, 3, A)` has A > 0, RGB `(H, W, C)`, by
    the method `cfg` names. `shader(attrs, face, shade)` turns interpolated attributes into
    colours per (pixel, face) pair; None takes them as colours. With `face_ids`, also the
    nearest face whose interior holds each pixel centre `(H, W)` (-1 for none), else None.
    `blur = (sigma, gamma, t_conorm_p)` are scalars, traced so that new values reuse the
    compilation. Everything is in the dtype of `mesh.verts` (see `compute_dtype`)."""
    dtype = mesh.verts.dtype
    sigma, gamma, p = (jnp.asarray(x, dtype) for x in blur)
    tris = project(mesh.verts, mesh.faces, camera, cfg.cull_backfaces, mesh.face_mask)
    perspective = not camera.orthographic
    with_colour = corner_colours.shape[-1] > 0
    corner_colours = clip_attributes(tris, corner_colours)  # (F', 3, A)
    pieces = tris.valid.shape[0]
    faces_kept = mesh.num_faces if mesh.face_mask is None else jnp.sum(mesh.face_mask)
    winner_needed = face_ids or (with_colour and cfg.color == "hard")

    if cfg.method == "dense":
        # Every pixel against every clipped triangle: 2F pieces, most second pieces unused.
        # (Choosing the first pieces alone by a `lax.cond` when no face needs a second one
        # halves the forward pass, but reverse mode then keeps both branches' residuals.)
        total, rgb, nearest = _dense(cfg, camera, sigma, gamma, p, shader, shade,
                                     winner_needed, with_colour, tris, corner_colours)  # fmt: skip
    else:
        static = tiled.static_settings(cfg, pieces, perspective, shader, mesh.num_faces)
        faces, valid = tiled.face_data(tris, corner_colours)
        nearest = None
        if winner_needed:
            nearest = tiled.nearest_faces(faces, valid, static)[0][0]
        scalars = tiled.Scalars(blend.softmax_scale(gamma, camera.near, camera.far), camera.far,
                                sigma, gamma, p, shade)  # fmt: skip
        winner = nearest if with_colour and cfg.color == "hard" else None
        total, rgb = tiled.stream(faces, scalars, valid, winner, static)
        total = tiled.untile(total, cfg.image_size, cfg.tile_size)
        if nearest is not None:
            nearest = tiled.untile(nearest, cfg.image_size, cfg.tile_size)
        if with_colour:
            rgb = jnp.moveaxis(tiled.untile(rgb, cfg.image_size, cfg.tile_size), 0, -1)
    alpha = blend.alpha_from(total, p, cfg.alpha, faces_kept)
    return alpha, rgb if with_colour else None, _face_ids(nearest) if face_ids else None


def _dense(cfg, camera, sigma, gamma, p, shader, shade, winner_needed, with_colour, tris,
           corner_colours):  # fmt: skip
    """`_aggregate`'s dense reference: every pixel against every clipped triangle in `tris`.
    Returns the silhouette's reduction `(H, W)`, RGB `(H, W, C)` (or None) and, if
    `winner_needed`, the nearest covering triangle of each pixel `(H, W)` (-1 for none)."""
    dtype = tris.xy.dtype
    pix = pixel_centers(cfg.image_size, dtype)
    frags = fragments(pix[:, :1], pix[:, 1:], setup(geometry_rows(tris.xy, tris.z)),
                      not camera.orthographic)  # fmt: skip
    ok, (log_d, log_1md) = coverage.pair_coverage(frags, sigma, cfg.model, tris.valid[None, :])
    terms = blend.alpha_terms(log_d, log_1md, ok, p, cfg.alpha)
    if cfg.alpha == "max":
        # The arg-max face takes the gradient (the first, i.e. lowest index, among ties).
        first = jnp.argmax(terms, axis=-1)
        total = jnp.take_along_axis(terms, first[:, None], axis=-1)[:, 0]
    elif cfg.alpha == "hard":
        total = jnp.max(jax.lax.stop_gradient(terms), axis=-1)
    else:
        total = jnp.sum(terms, axis=-1)
    total = total.reshape(cfg.image_size)
    nearest = None
    if winner_needed:
        # The nearest depth, ties to the lowest index (argmin takes the first).
        z = hard.dense_depths(tris, cfg.image_size, not camera.orthographic)
        nearest = jnp.where(jnp.isfinite(jnp.min(z, axis=-1)), jnp.argmin(z, axis=-1), -1)
    if not with_colour:
        return total, None, _image(nearest, cfg)
    colours = interpolate_pairs(frags.bary, jnp.transpose(corner_colours, (1, 2, 0))[:, :, None])
    if shader is not None:
        # (A, P, F') attributes -> (C, P, F') colours
        colours = shader(colours, jnp.arange(tris.valid.shape[0])[None, :], shade)
    background = tiled.background_values(cfg.background, colours.shape[0], dtype)
    if cfg.color == "hard":
        face = jnp.arange(tris.valid.shape[0])[None, :]
        log_w = blend.hard_logits(face, nearest[:, None], dtype)
        rgb = blend.softmax(log_w, blend.hard_background_logit(nearest, dtype), colours,
                            background)  # fmt: skip
    else:
        rgb = blend.softmax_colour(log_d, frags.z, colours, ok, background, near=camera.near,
                                   far=camera.far, gamma=gamma, eps=cfg.eps)  # fmt: skip
    return total, rgb.reshape(*cfg.image_size, -1), _image(nearest, cfg)


def _image(per_pixel, cfg: RasterConfig):
    """`(H * W,)` -> `(H, W)`; None stays None."""
    return None if per_pixel is None else per_pixel.reshape(cfg.image_size)


def _planes(mesh: Mesh, camera: Camera, cfg: RasterConfig, tris, layers):
    """`hard.Planes` `(..., K, H, W)` of `mesh`, whose clipped triangles are `tris` (no layer
    axis when `layers` is None)."""
    perspective = not camera.orthographic
    triangle = hard.visible_triangles(tris, cfg, perspective, layers or 1, mesh.num_faces)
    if layers is None:
        triangle = triangle[0]
    rows = hard.face_rows(to_camera(camera, mesh.verts), mesh.faces, camera.orthographic)
    return hard.planes_at(rows, triangle, camera, cfg.image_size)


def _antialias(image, p: hard.Planes, mesh: Mesh, camera: Camera):
    """`hard.antialias` of `image (C, H, W)` at the nearest layer `p` (no layer axis)."""
    cam_verts = to_camera(camera, mesh.verts)
    edges = hard.silhouette_edges(cam_verts, mesh.faces, camera.orthographic, mesh.face_mask)
    sil = hard.silhouette_planes(edges, p.face)
    rows = hard.face_rows(cam_verts, mesh.faces, camera.orthographic)
    return hard.antialias(image, p, sil, rows, camera, p.face.shape)


@functools.partial(jax.jit, static_argnames=("layers",))
def _rasterize(mesh: Mesh, camera: Camera, cfg: RasterConfig, layers: int):
    tris = project(mesh.verts, mesh.faces, camera, cfg.cull_backfaces, mesh.face_mask)
    p = _planes(mesh, camera, cfg, tris, None if layers == 1 else layers)
    return hard.to_fragments(p, layers > 1)


# Above this many pixels the hard path shades in strips of rows (about `_STRIP_PIXELS` each)
# and recomputes each strip's per-pixel planes in the backward pass instead of storing them:
# memory then grows with the strip, not the image (at 1024x1024 the stored planes took
# ~4 MB each, a few hundred MB in all), while at smaller sizes one pass is faster.
_STRIP_ABOVE = 512 * 512
_STRIP_PIXELS = 2**17


@functools.partial(jax.jit, static_argnames=("shader",))
def _hard(mesh: Mesh, camera: Camera, cfg: RasterConfig, corner_attrs, shader=None, shade=()):
    """`visibility="hard"`: the z-buffered surface shaded per pixel. Returns the colours
    `(H, W, C)` (the first three antialiased, any auxiliary channels as interpolated), the
    antialiased coverage `(H, W)`, face ids `(H, W)` and depth `(H, W)`."""
    dtype = mesh.verts.dtype
    h, w = cfg.image_size
    tris = project(mesh.verts, mesh.faces, camera, cfg.cull_backfaces, mesh.face_mask)
    perspective = not camera.orthographic
    triangle = hard.visible_triangles(tris, cfg, perspective, 1, mesh.num_faces)[0]
    edges = hard.silhouette_edges(
        jax.lax.stop_gradient(to_camera(camera, mesh.verts)), mesh.faces, camera.orthographic,
        mesh.face_mask)  # fmt: skip

    def pixels(verts, camera, corner_attrs, shade, triangle, y=None, inside=None):
        # `triangle (R, W)`; `y (R,)` and `inside (R,)` (which rows lie in the image) for a
        # strip of rows with one row of its neighbours above and below.
        rows = hard.face_rows(to_camera(camera, verts), mesh.faces, camera.orthographic)
        p = hard.planes_at(rows, triangle, camera, cfg.image_size, y=y)
        some = p.face >= 0
        rgb = []  # channel planes (see `hard.Planes`)
        if corner_attrs.shape[-1]:
            rgb = hard.interpolate_planes(corner_attrs, p.face, p.bary)
            if shader is not None:
                rgb = list(shader(jnp.stack(rgb), jnp.maximum(p.triangle, 0), shade))
            bg = tiled.background_values(cfg.background, len(rgb), dtype)
            rgb = [jnp.where(some, x, bg[i]) for i, x in enumerate(rgb)]
        sil = hard.silhouette_planes(edges, p.face)
        q = p if inside is None else p._replace(face=jnp.where(inside[:, None], p.face, -2))
        colour = hard.antialias([*rgb[:3], some.astype(dtype)], q, sil, rows, camera,
                                cfg.image_size, y)  # fmt: skip
        out = (colour, rgb[3:], p.face, p.depth)
        return out if inside is None else jax.tree.map(lambda x: x[1:-1], out)

    if h * w <= _STRIP_ABOVE:
        colour, extra, face, depth = pixels(mesh.verts, camera, corner_attrs, shade, triangle)
    else:
        size = max(1, _STRIP_PIXELS // w)
        count = -(-h // size)
        # Rows -1 .. count * size: each strip reads one row past each end, which the
        # antialiasing of its own rows needs; rows outside the image show nothing.
        padded = jnp.pad(triangle, ((1, count * size - h + 1), (0, 0)), constant_values=-1)
        index = np.arange(-1, count * size + 1)
        ys = jnp.asarray(1 - (2 * index + 1) / h, dtype)  # `camera.pixel_axes`' formula
        inside = jnp.asarray((index >= 0) & (index < h))

        @jax.checkpoint
        def strip(i):
            cut = functools.partial(jax.lax.dynamic_slice_in_dim, start_index=i * size,
                                    slice_size=size + 2, axis=0)  # fmt: skip
            return pixels(mesh.verts, camera, corner_attrs, shade, cut(padded), cut(ys),
                          cut(inside))  # fmt: skip

        parts = jax.lax.map(strip, jnp.arange(count))

        def join(x):  # (count, size, W) -> (H, W)
            return x.reshape(count * size, w)[:h]

        colour, extra, face, depth = jax.tree.map(join, parts)
    rgb = (
        jnp.stack([*colour[:-1], *extra], axis=-1)
        if corner_attrs.shape[-1]
        else jnp.zeros((*cfg.image_size, 0), dtype)
    )
    return rgb, colour[-1], face, depth


def _run(cfg: RasterConfig, *args, **kwargs):
    """`_aggregate(*args)`, with a clear message where the tiled path's reverse-mode-only
    derivative meets forward-mode differentiation."""
    try:
        return _aggregate(*args, **kwargs)
    except TypeError as e:
        if cfg.method == "tiled" and "custom_vjp" in str(e):
            raise TypeError(
                'method="tiled" supports reverse-mode derivatives (jax.grad, jax.vjp, '
                "jax.jacrev) only: it defines its own memory-saving backward pass. For "
                "forward-mode derivatives (jax.jvp, jax.jacfwd, jax.hessian) use "
                'sj.RasterConfig(..., method="dense"), which gives the same images.'
            ) from e
        raise


def _reverse_only(fn, *args, **kwargs):
    """`fn(*args)` of the hard path, with a clear message where forward-mode
    differentiation meets its custom backward passes."""
    try:
        return fn(*args, **kwargs)
    except TypeError as e:
        if "custom_vjp" in str(e):
            raise TypeError(
                'visibility="hard" (sj.rasterize, sj.antialias) supports reverse-mode '
                "derivatives (jax.grad, jax.vjp, jax.jacrev) only: parts of it define their "
                "own backward pass. For forward-mode derivatives (jax.jvp, jax.jacfwd, "
                'jax.hessian) render with visibility="soft", method="dense".'
            ) from e
        raise


def _empty(cfg: RasterConfig, channels: int, dtype):
    """What an empty mesh renders: alpha 0, the background, no face ids."""
    rgb = jnp.broadcast_to(tiled.background_values(cfg.background, channels, dtype),
                           (*cfg.image_size, channels))  # fmt: skip
    return jnp.zeros(cfg.image_size, dtype), rgb, jnp.full(cfg.image_size, -1, jnp.int32)


_EXPLICIT_HINT = (
    "softjax renders sharded batches under JAX's automatic sharding: with a device mesh whose "
    "axes are Explicit (the default of jax.make_mesh), make the mesh with "
    "axis_types=(jax.sharding.AxisType.Auto,), or wrap the batched call in "
    "jax.sharding.auto_axes(fn, out_sharding=P('views')), or use jax.shard_map"
)


def _explain_sharding_errors(fn):
    """`fn` re-raising JAX's sharding-type errors (explicit sharding mode) with the hint
    above, as the same kind of error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if type(e).__name__ != "ShardingTypeError" or _EXPLICIT_HINT in str(e):
                raise
            raise type(e)(f"{e}\n\n{_EXPLICIT_HINT}") from e

    return wrapper


@_explain_sharding_errors
def render_silhouette(mesh: Mesh, camera: Camera, cfg: RasterConfig, *, sigma=None,
                      t_conorm_p=None) -> jax.Array:  # fmt: skip
    """Soft silhouette `1 - prod_f (1 - D_f)` (with the default `cfg.alpha`; in general the
    T-conorm `cfg.alpha` of the coverages `cfg.coverage`).

    Args:
      mesh: the mesh to draw.
      camera: a single camera (use `jax.vmap` for a batch).
      cfg: static settings (image size, sigma, method, coverage and aggregation).
      sigma, t_conorm_p: optional scalars replacing `cfg.sigma` and the T-conorm's
        parameter; they may be traced (a schedule inside a jitted step), and new values do
        not recompile.

    Returns:
      `(H, W)` alpha in [0, 1], in the dtype of `mesh.verts` (computed in at least float32).
    """
    _check_args(mesh, camera, cfg)
    out_dtype = mesh.verts.dtype
    dtype = compute_dtype(out_dtype)
    if mesh.num_faces == 0:
        return jnp.zeros(cfg.image_size, out_dtype)
    blur = _in_dtype(_blur(cfg, sigma, None, t_conorm_p), dtype)
    mesh, camera = _in_dtype((mesh, camera), dtype)
    no_colour = jnp.zeros((mesh.num_faces, 3, 0), dtype)
    # The shading and colour settings do not change a silhouette: one compilation serves
    # them all.
    cfg = dataclasses.replace(cfg, shading="flat", aovs=(), color="softmax")
    if cfg.visibility == "hard":
        return _reverse_only(_hard, mesh, camera, cfg, no_colour)[1].astype(out_dtype)
    return _run(cfg, mesh, camera, cfg, blur, no_colour)[0].astype(out_dtype)


def _blur(cfg: RasterConfig, sigma, gamma, t_conorm_p):
    """`(sigma, gamma, t_conorm_p)`: the overrides where given (checked where their values
    can be read), else `cfg`'s (1 for a T-conorm without a parameter, which ignores it)."""
    if t_conorm_p is not None and cfg.alpha not in blend.T_CONORM_P:
        raise ValueError(f'alpha="{cfg.alpha}" takes no `t_conorm_p`')
    p = 1.0 if cfg.p is None else cfg.p
    out = []
    for name, value, default in (("sigma", sigma, cfg.sigma), ("gamma", gamma, cfg.gamma),
                                 ("t_conorm_p", t_conorm_p, p)):  # fmt: skip
        if value is None:
            out.append(default)
            continue
        if isinstance(value, (bool, str)) or not (
            isinstance(value, (int, float)) or jnp.issubdtype(jnp.result_type(value), jnp.number)
        ):
            raise TypeError(f"`{name}` must be a real scalar, got {type(value).__name__}")
        if jnp.ndim(value) != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {jnp.shape(value)}")
        v = host_values(value)
        if v is not None and name == "t_conorm_p":
            blend.check_t_conorm_p(cfg.alpha, as_finite_real(v, name))
        elif v is not None:
            as_finite_real(v, name, positive=True)
        out.append(value)
    return tuple(out)


_MOVED = ("shading", "aovs")


@_explain_sharding_errors
def render(
    mesh: Mesh,
    camera: Camera,
    cfg: RasterConfig,
    lights: Lights | None = None,
    material: Material | None = None,
    *,
    sigma=None,
    gamma=None,
    t_conorm_p=None,
    **moved,
):
    """Soft RGBA image (SoftRas aggregation), and optionally depth, normals and face ids.

    (With the default `cfg.coverage`, `cfg.alpha` and `cfg.color`; the other members of the
    soft-rasterizer family change how coverage is computed from the distance, how alpha
    aggregates it and whether the colour is the softmax or the nearest face's: see
    `RasterConfig`.)

    Colours are the mesh's vertex colours (or texture) interpolated with perspective-correct
    barycentrics (clamped to the triangle outside it), lit by the Phong model
    (`softjax.shading`) when `lights` is given, where `cfg.shading` says. RGB is a softmax over
    faces weighted by coverage and depth, with the background as one more candidate; it is
    not premultiplied: near an edge it keeps the face's colour and it becomes
    `cfg.background` where every face is beyond the `cfg.dist_eps` cull distance (alpha below
    about `dist_eps`).

    Geometry crossing `camera.near` is clipped there in camera space (a face in front of it
    is drawn whole, one crossing it is cut along it, one behind it is not drawn), so walls
    and floors that pass beside or behind the camera still render, and images and gradients
    move continuously (but for the two seams of the two-triangle split, see
    `raster.project`). Geometry beyond `camera.far` is still drawn; its depth weight falls
    below the background's. An empty mesh renders the background.

    Every argument other than `cfg` is an array pytree, so `jax.jit(sj.render)` needs no
    `static_argnames`; the shading mode and auxiliary outputs are `cfg.shading` and
    `cfg.aovs`.

    With `cfg.visibility="hard"` the image is instead the z-buffered surface (`sj.rasterize`)
    shaded per pixel, with the background where no face is, antialiased across silhouette
    and occlusion edges (`sj.antialias`, also for alpha); depth, normals and face ids then
    come from the z-buffer as they are, and `sigma` and `gamma` play no part.

    Args:
      mesh: the mesh to draw.
      camera: a single camera (use `jax.vmap` for a batch).
      cfg: static settings, including `shading` ("flat", "gouraud" or "phong": where the
        lights are evaluated) and `aovs`.
      lights: optional `Lights`; None renders unlit colours ("gouraud" and "phong" need
        lights, unless they only choose smooth normals for the "normals" output).
      material: optional `Material` (with `lights`); None is `Material()`: ka = kd = 1,
        no highlights, i.e. SoftRas's Lambert shading.
      sigma, gamma, t_conorm_p: optional scalars replacing `cfg.sigma`, `cfg.gamma` and the
        T-conorm's parameter (`cfg.t_conorm_p`). They may be traced (e.g. `schedule(step)`
        inside a jitted training step): new values reuse the compilation, where a new `cfg`
        compiles anew. `cfg.sigma` still sizes the tiled path's default `pair_capacity`: a
        larger sigma only takes more binning rounds.

    Auxiliary outputs (`cfg.aovs`), any of
      "depth": `(H, W)` view depth (distance along the camera axis), blended by the same
        softmax as the colour with the background at `camera.far`: in the hard limit (small
        sigma and gamma) the nearest surface's depth, and `far` where no face is;
      "normals": `(H, W, 3)` world-space normals blended the same way with a zero
        background: the face normals for flat shading, interpolated smooth vertex normals
        otherwise (not renormalised after blending);
      "face_id": `(H, W)` int32 index of the nearest face whose interior holds the pixel
        centre (a hard z-buffer, -1 where none; no gradient). A centre on an edge shared by
        two faces belongs to exactly one of them (a top-left rule), and equal depths go to
        the lower face index, whatever the method, tiles, chunks or batch (depths that
        differ only by rounding, as for coplanar overlaps, may round differently in the two
        methods).
    Depth and normals ride the colour pass as extra channels and are differentiable like the
    colour; face ids take a forward-only pass over the same tiles.

    Returns:
      `(H, W, 4)` RGBA in the dtype of `mesh.verts` (computed in at least float32, see
      `compute_dtype`); `rgba[..., 3]` equals `render_silhouette(mesh, camera, cfg)`. With
      `cfg.aovs`, the pair `(rgba, outputs)` with `outputs` a dict from each requested name
      to its image.
    """
    for name in moved:
        if name in _MOVED:
            raise TypeError(
                f"`{name}` is a static setting of RasterConfig: "
                f"sj.RasterConfig(..., {name}=...), so that jax.jit(sj.render) needs no "
                "static_argnames"
            )
        raise TypeError(f"render() got an unexpected keyword argument {name!r}")
    _check_args(mesh, camera, cfg, lights, material)
    # Without lights, a shading mode only chooses which normals the "normals" output shows.
    if lights is None and cfg.shading != "flat" and "normals" not in cfg.aovs:
        raise ValueError(
            f'`cfg.shading="{cfg.shading}"` lights the mesh but no `lights` were given; pass '
            "sj.Lights(...) or leave shading at its default for unlit colours"
        )
    aovs = cfg.aovs
    out_dtype = mesh.verts.dtype
    dtype = compute_dtype(out_dtype)
    blur = _in_dtype(_blur(cfg, sigma, gamma, t_conorm_p), dtype)
    mesh, camera, lights, material = _in_dtype(
        (mesh, camera, lights, Material() if material is None else material), dtype
    )
    attrs, shader, shade = _corner_attributes(mesh, camera, lights, material, cfg.shading)
    extra = _aov_attributes(mesh, camera, aovs, cfg.shading)
    if extra is not None:
        if shader is None:
            shader, shade = _Shader("colour", None), (None, None, None, None)
        shader = dataclasses.replace(shader, passthrough=extra.shape[-1])
        attrs = jnp.concatenate([attrs, extra], axis=-1)
    depth = None
    if mesh.num_faces == 0:
        channels = 3 if shader is None else shader.channels
        alpha, rgb, nearest = _empty(cfg, channels, dtype)
    elif cfg.visibility == "hard":
        rgb, alpha, nearest, depth = _reverse_only(_hard, mesh, camera, cfg, attrs, shader, shade)
    else:
        alpha, rgb, nearest = _run(
            cfg, mesh, camera, cfg, blur, attrs, shader, shade, face_ids="face_id" in aovs
        )
    rgba = jnp.concatenate([rgb[..., :3], alpha[..., None]], axis=-1).astype(out_dtype)
    if not aovs:
        return rgba
    outputs, extra = {}, rgb[..., 3:]
    if "depth" in aovs:
        # Channel 0 blends the faces' depths with a zero background; the last one blends 1,
        # so one minus it is the background's share, which sits at `far`.
        if depth is None:
            depth = extra[..., 0] + (1.0 - extra[..., -1]) * camera.far
        outputs["depth"] = depth.astype(out_dtype)
    if "normals" in aovs:
        start = 1 if "depth" in aovs else 0
        outputs["normals"] = extra[..., start : start + 3].astype(out_dtype)
    if "face_id" in aovs:
        outputs["face_id"] = nearest
    return rgba, {name: outputs[name] for name in aovs}


def _aov_attributes(mesh: Mesh, camera: Camera, aovs, shading: str):
    """`(F, 3, K)` corner attributes passed through the shader for depth and normals (view
    depth, normals, then a constant 1 whose blend is the faces' share), or None."""
    parts = []
    if "depth" in aovs:
        parts.append(to_camera(camera, mesh.verts)[mesh.faces][..., 2:3])
    if "normals" in aovs:
        parts.append(_corner_normals(mesh.verts, mesh.faces, shading, mesh.face_mask)[0])
    if not parts:
        return None
    if "depth" in aovs:
        parts.append(jnp.ones_like(parts[0][..., :1]))
    return jnp.concatenate(parts, axis=-1)


@_explain_sharding_errors
def rasterize(mesh: Mesh, camera: Camera, cfg: RasterConfig, layers: int = 1) -> hard.Fragments:
    """Hard rasterization: the faces seen at each pixel centre, nearest first.

    A z-buffer over the near-plane-clipped faces (as in `render`): the nearest face whose
    interior holds each pixel centre. A centre on an edge shared by two faces belongs to
    exactly one of them (a top-left rule) and equal depths go to the lower face index, whatever
    the method, tiles, chunks or batch. With `layers=K`, layer k + 1 is the nearest face after
    layer k in (depth, index) order (depth peeling), PyTorch3D's `faces_per_pixel` layout.
    `cfg.visibility`, `sigma` and `gamma` play no part; `cfg.cull_backfaces` drops faces that
    appear clockwise, and `method="tiled"` bins faces to the tiles under their screen boxes.

    Args:
      mesh: the mesh.
      camera: a single camera (use `jax.vmap` for a batch).
      cfg: static settings (image size, method, tiles).
      layers: how many surfaces to find per pixel (static), at least 1.

    Returns:
      `sj.Fragments`: `face_id` `(H, W)` int32 (-1 where none), `bary` `(H, W, 3)`
      perspective-correct barycentrics of the face's corners, `depth` `(H, W)` view depth
      (`camera.far` where none) and `triangle` (the clipped triangle, for `sj.antialias`);
      with `layers > 1`, `(H, W, K)`, `(H, W, K, 3)`, `(H, W, K)` and `(H, W, K)`. `bary`
      and `depth` are in the dtype of `mesh.verts` (computed in at least float32) and
      differentiable with respect to the vertices and the camera.
    """
    _check_args(mesh, camera, cfg)
    layers = as_int(layers, "layers", minimum=1)
    out_dtype = mesh.verts.dtype
    dtype = compute_dtype(out_dtype)
    mesh, camera = _in_dtype((mesh, camera), dtype)
    if mesh.num_faces == 0:
        none = jnp.full((*cfg.image_size, layers), -1, jnp.int32)
        frags = hard.Fragments(none, jnp.zeros((*none.shape, 3), dtype),
                               jnp.full(none.shape, camera.far, dtype), none)  # fmt: skip
    else:
        frags = _reverse_only(_rasterize, mesh, camera, cfg, layers)
    if layers == 1:
        frags = hard.first_layer(frags)
    return frags._replace(bary=frags.bary.astype(out_dtype), depth=frags.depth.astype(out_dtype))


def _check_fragments(fragments, mesh: Mesh) -> None:
    if not isinstance(fragments, hard.Fragments):
        raise TypeError(
            f"`fragments` must be the sj.Fragments of sj.rasterize, got {type(fragments).__name__}"
        )
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a softjax Mesh, got {type(mesh).__name__}")


def interpolate(values, fragments: hard.Fragments, mesh: Mesh) -> jax.Array:
    """Attributes at each fragment, interpolated with its barycentrics.

    Args:
      values: per-vertex `(V, C)` attributes (colours, UVs, normals, positions, features) or
        per-corner `(F, 3, C)` ones (e.g. `mesh.uvs[mesh.face_uvs]`).
      fragments: `sj.rasterize(mesh, ...)`'s result, with or without layers.
      mesh: the mesh that was rasterized.

    Returns:
      `(H, W, C)` (with layers `(H, W, K, C)`), zero where there is no face; differentiable
      in `values` and, through the barycentrics, in the vertices and camera.
    """
    _check_fragments(fragments, mesh)
    values = jnp.asarray(values)
    v, f = mesh.verts.shape[0], mesh.num_faces
    if not (values.ndim == 2 and values.shape[0] == v) and not (
        values.ndim == 3 and values.shape[:2] == (f, 3)
    ):
        raise ValueError(
            f"`values` must be per-vertex ({v}, C) or per-corner ({f}, 3, C) attributes of the "
            f"mesh, got shape {tuple(values.shape)}"
        )
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(fragments.bary.dtype)
    return _reverse_only(hard.interpolate, values, fragments, mesh.faces)


def antialias(image, fragments: hard.Fragments, mesh: Mesh, camera: Camera) -> jax.Array:
    """Analytic antialiasing of silhouette and occlusion edges (after Laine et al. 2020).

    Where two neighbouring pixels (in a row or a column) show different faces, the nearer
    pixel's triangle is tested for the edge through which the segment joining the two centres
    leaves it. If that edge is a silhouette edge of the mesh (no face continues across it, or
    the face across it faces the other way), the two pixels' colours are blended by where the
    edge crosses the segment, as a box filter over a straight edge would: the pixel past the
    crossing takes `|t - 1/2|` of the other's colour, t the crossing's position from the nearer
    centre. The result is a continuous function of the vertex positions along silhouettes, so
    its gradient reaches them; interior edges, where colours are continuous anyway, are left
    alone, and so are pixels away from silhouettes (their gradients are plain interpolation's).

    Args:
      image: `(H, W, C)` or `(H, W)` values per pixel, e.g. colours shaded from `fragments`
        with the background where `face_id` is -1, and a coverage channel (1 on faces, 0
        elsewhere) to get an antialiased alpha.
      fragments: `sj.rasterize(mesh, camera, cfg)` (with layers, the nearest one is used).
      mesh, camera: what was rasterized. Windings must agree across shared edges, as for any
        consistently oriented mesh.

    Returns:
      The antialiased image, shaped like `image`.
    """
    _check_fragments(fragments, mesh)
    if not isinstance(camera, Camera):
        raise TypeError(f"`camera` must be a softjax Camera, got {type(camera).__name__}")
    image = jnp.asarray(image)
    frags = hard.first_layer(fragments)
    flat = image.ndim == 2
    if image.shape[:2] != frags.face_id.shape or image.ndim not in (2, 3):
        raise ValueError(
            f"`image` must be (H, W) or (H, W, C) with (H, W) = {frags.face_id.shape} like the "
            f"fragments, got shape {tuple(image.shape)}"
        )
    if mesh.num_faces == 0:
        return image
    dtype = compute_dtype(image.dtype)
    mesh, camera = _in_dtype((mesh, camera), dtype)
    # The depths the fragments were ordered by.
    p = hard.Planes(frags.face_id, frags.triangle, None, frags.depth)
    planes = [image] if flat else [image[..., c] for c in range(image.shape[-1])]
    out = _reverse_only(_antialias, [x.astype(dtype) for x in planes], p, mesh, camera)
    return (out[0] if flat else jnp.stack(out, axis=-1)).astype(image.dtype)


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
    hard_only = cfg.visibility == "hard"  # binned with no blur radius
    st = tiled.static_settings(cfg, PIECES * mesh.num_faces, not camera.orthographic,
                               typical_faces=mesh.num_faces, hard=hard_only)  # fmt: skip
    dtype = compute_dtype(mesh.verts.dtype)
    mesh, camera = _in_dtype((mesh, camera), dtype)

    def count(cam):
        tris = project(mesh.verts, mesh.faces, cam, cfg.cull_backfaces, mesh.face_mask)
        faces, valid = tiled.face_data(tris, jnp.zeros((tris.valid.shape[0], 3, 0), tris.xy.dtype))
        # Each block of faces is binned in rounds of its own.
        reach = 0.0 if hard_only else tiled.reach2(faces, cfg.sigma, cfg.model)
        bins = tiled.bin_faces(faces, valid, st, reach)
        return jnp.max(tiled.num_pairs(bins))

    counts = jax.jit(jax.vmap(count) if camera.eye.ndim == 2 else count)(camera)
    return dataclasses.replace(cfg, pair_capacity=max(1, math.ceil(margin * int(jnp.max(counts)))))
