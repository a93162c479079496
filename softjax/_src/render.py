"""The public renderers: `render` (RGBA and auxiliary outputs) and `render_silhouette`."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from softjax._src.camera import Camera
from softjax._src.config import RasterConfig
from softjax._src.errors import explain_sharding_errors
from softjax._src.inputs import blur_values, check_args, compute_dtype, in_dtype, topology_of
from softjax._src.mesh import Mesh
from softjax._src.pipeline.visibility import VISIBILITY, Rendered
from softjax._src.shading.aovs import aov_outputs
from softjax._src.shading.lights import Lights, Material
from softjax._src.shading.pbr import PBRMaterial
from softjax._src.shading.shaders import Shading, background_values, prepare
from softjax._src.shading.user import prepare_user


def empty_image(cfg: RasterConfig, shading: Shading, dtype) -> Rendered:
    """What an empty mesh renders: alpha 0, the background, no face ids."""
    channels = 3 if shading.shader is None else shading.shader.channels
    rgb = jnp.broadcast_to(background_values(cfg.background, channels, dtype),
                           (*cfg.image_size, channels))  # fmt: skip
    none = jnp.full(cfg.image_size, -1, jnp.int32)
    return Rendered(jnp.zeros(cfg.image_size, dtype), rgb, none, None)


@explain_sharding_errors
def render_silhouette(mesh: Mesh, camera: Camera, cfg: RasterConfig, *, sigma=None,
                      t_conorm_p=None, topology=None) -> jax.Array:  # fmt: skip
    """Soft silhouette `1 - prod_f (1 - D_f)` (with the default `cfg.alpha`; in general the
    T-conorm `cfg.alpha` of the coverages `cfg.coverage`).

    Args:
      mesh: the mesh to draw.
      camera: a single camera (use `jax.vmap` for a batch).
      cfg: static settings (image size, sigma, method, coverage and aggregation).
      sigma, t_conorm_p: optional scalars replacing `cfg.sigma` and the T-conorm's
        parameter; they may be traced (a schedule inside a jitted step), and new values do
        not recompile.
      topology: optional `sj.edge_topology(mesh)`, built once for a mesh whose faces do not
        change; `visibility="hard"` finds its silhouette edges with it instead of anew
        (the soft path does not use it).

    Returns:
      `(H, W)` alpha in [0, 1], in the dtype of `mesh.verts` (computed in at least float32).
    """
    check_args(mesh, camera, cfg)
    across = topology_of(topology, mesh)
    out_dtype = mesh.verts.dtype
    dtype = compute_dtype(out_dtype)
    if mesh.num_faces == 0:
        return jnp.zeros(cfg.image_size, out_dtype)
    blur = in_dtype(blur_values(cfg, sigma, None, t_conorm_p), dtype)
    mesh, camera = in_dtype((mesh, camera), dtype)
    unshaded = Shading(jnp.zeros((mesh.num_faces, 3, 0), dtype), None, ())
    visibility = VISIBILITY[cfg.visibility]
    out = visibility(mesh, camera, cfg, blur, unshaded, face_ids=False, across=across)
    return out.alpha.astype(out_dtype)


_MOVED = ("shading", "aovs")


@explain_sharding_errors
def render(
    mesh: Mesh,
    camera: Camera,
    cfg: RasterConfig,
    lights: Lights | None = None,
    material: Material | PBRMaterial | None = None,
    *,
    sigma=None,
    gamma=None,
    t_conorm_p=None,
    topology=None,
    shader=None,
    shader_params=None,
    attributes=None,
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
    `project`). Geometry beyond `camera.far` is still drawn; its depth weight falls
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
        Phong model's lights are evaluated; "pbr": radiometric GGX shading per fragment)
        and `aovs`.
      lights: optional `Lights`; None renders unlit colours ("gouraud", "phong" and "pbr"
        need lights, unless they only choose smooth normals for the "normals" output).
      material: optional `Material` (with `lights`); None is `Material()`: ka = kd = 1,
        no highlights, i.e. SoftRas's Lambert shading. Under `shading="pbr"` a
        `PBRMaterial` instead (None is `PBRMaterial()`: roughness 0.5, dielectric).
      sigma, gamma, t_conorm_p: optional scalars replacing `cfg.sigma`, `cfg.gamma` and the
        T-conorm's parameter (`cfg.t_conorm_p`). They may be traced (e.g. `schedule(step)`
        inside a jitted training step): new values reuse the compilation, where a new `cfg`
        compiles anew. `cfg.sigma` still sizes the tiled path's default `pair_capacity`: a
        larger sigma only takes more binning rounds.
      topology: optional `sj.edge_topology(mesh)`, built once for a mesh whose faces do not
        change; `visibility="hard"` finds its silhouette edges with it instead of anew
        (the soft path does not use it).
      shader: optional shading function of one's own, `shader(frag, params) -> (..., 3)`,
        which replaces the built-in shading (then `lights` and `material` are not given:
        pass them in `shader_params`). `frag` is a dict of interpolated attributes,
        channel-last: "position" `(..., 3)` (world), "normal" `(..., 3)` (smooth vertex
        normals interpolated, not renormalised), "uv" `(..., 2)` and "color" `(..., 3)`
        where the mesh has them, "face_id" `(...)` int32, and each of `attributes`. The
        leading shape is whatever the visibility mode evaluates at once (pixels, or
        pixel-face pairs), so the function must act elementwise over it. It is static in
        the compiled program: define it once (not a new lambda per call).
      shader_params: any pytree of arrays passed to `shader` as `params`; traced, so its
        gradients come with `jax.grad`.
      attributes: optional dict of the user's own per-vertex `(V, C)` or per-corner
        `(F, 3, C)` attributes, interpolated like the built-in ones and passed to `shader`
        by name.

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
    _reject_moved(moved)
    check_args(mesh, camera, cfg, lights, material)
    if shader is None:
        _check_lights_for(cfg, lights)
        if shader_params is not None or attributes is not None:
            raise ValueError("`shader_params` and `attributes` go with a `shader`")
    elif lights is not None or material is not None:
        raise ValueError(
            "a `shader` does all the shading: pass lights and materials to it in "
            "`shader_params` instead of `lights` and `material`"
        )
    across = topology_of(topology, mesh)
    out_dtype = mesh.verts.dtype
    dtype = compute_dtype(out_dtype)
    blur = in_dtype(blur_values(cfg, sigma, gamma, t_conorm_p), dtype)
    if material is None:
        material = PBRMaterial() if cfg.shading == "pbr" else Material()
    mesh, camera, lights, material = in_dtype((mesh, camera, lights, material), dtype)
    if shader is None:
        shading = prepare(mesh, camera, lights, material, cfg.shading, cfg.aovs,
                          cfg.texture_filter, cfg.texture_max_aniso)  # fmt: skip
    else:
        shading = prepare_user(mesh, camera, shader, shader_params, attributes, cfg.shading,
                               cfg.aovs)  # fmt: skip
    if mesh.num_faces == 0:
        out = empty_image(cfg, shading, dtype)
    else:
        visibility = VISIBILITY[cfg.visibility]
        out = visibility(mesh, camera, cfg, blur, shading, face_ids="face_id" in cfg.aovs,
                         across=across)  # fmt: skip
    return assemble(out, cfg.aovs, camera, out_dtype)


def _reject_moved(moved: dict) -> None:
    for name in moved:
        if name in _MOVED:
            raise TypeError(
                f"`{name}` is a static setting of RasterConfig: "
                f"sj.RasterConfig(..., {name}=...), so that jax.jit(sj.render) needs no "
                "static_argnames"
            )
        raise TypeError(f"render() got an unexpected keyword argument {name!r}")


def _check_lights_for(cfg: RasterConfig, lights) -> None:
    # Without lights, a shading mode only chooses which normals the "normals" output shows.
    if lights is None and cfg.shading != "flat" and "normals" not in cfg.aovs:
        raise ValueError(
            f'`cfg.shading="{cfg.shading}"` lights the mesh but no `lights` were given; pass '
            "sj.Lights(...) or leave shading at its default for unlit colours"
        )


# Jitted, as is the shading preparation (`prepare`): an eager call compiles each stage once per
# shape and setting instead of dispatching (and compiling) its operations one at a time; inside
# a user's `jit` both are simply inlined.
@functools.partial(jax.jit, static_argnames=("aovs", "out_dtype"))
def assemble(out: Rendered, aovs, camera: Camera, out_dtype):
    """`render`'s result from a visibility mode's `Rendered`: RGBA `(H, W, 4)` in `out_dtype`,
    and with `aovs` the dict of auxiliary outputs by name."""
    rgba = jnp.concatenate([out.channels[..., :3], out.alpha[..., None]], axis=-1)
    rgba = rgba.astype(out_dtype)
    if not aovs:
        return rgba
    outputs = aov_outputs(out.channels[..., 3:], aovs, camera.near, camera.far, out.depth)
    outputs = {name: x.astype(out_dtype) for name, x in outputs.items()}
    if "face_id" in aovs:
        outputs["face_id"] = out.face_id
    return rgba, {name: outputs[name] for name in aovs}
