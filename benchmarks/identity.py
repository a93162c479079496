"""Bit-for-bit identity of softjax's public API between a base commit and the working tree.

A refactoring that claims to change no numbers can be held to it exactly: this script renders
a fixed set of scenes through the public API alone (the names `softjax` exports: `render`,
`render_silhouette`, `rasterize`, `interpolate`, `antialias`, `Mesh`, `Camera`, `look_at`,
the lights and `Material`, `RasterConfig`, `stack_meshes`, `join_meshes`, `ico_sphere`,
`fit_pair_capacity`, `losses`, `coverage`, `load_obj` and `save_obj`), and compares every
output and every gradient, bit for bit, between the package of a base commit and that of the
working tree (committed or not).

    python benchmarks/identity.py BASE_REF              # e.g. HEAD, HEAD~5 or a commit
    python benchmarks/identity.py BASE_REF --only hard  # the cases whose names contain "hard"
    python benchmarks/identity.py BASE_REF --cache DIR  # reuse compiled programs (see below)
    python benchmarks/identity.py --list                # the cases and what each covers
    python benchmarks/identity.py --dump OUT.npz        # one side: every case into OUT.npz

The comparison exports the tree of BASE_REF with `git archive` into a temporary folder and
runs this file in `--dump` mode in two child processes at once, one with `PYTHONPATH` set to
the exported tree and one with it set to the working tree, in the same environment otherwise
(JAX on the CPU, XLA's flags as they are, a fixed hash seed). Each child reports where it
imported softjax from, which must lie inside its tree. Every case is one jitted program: the
outputs of a few renders ("members") and, for each, the gradient of a scalar loss on them
(each floating output times a fixed random weight array, summed) with respect to every
differentiable input: vertices, colours, UVs, textures, atlases, cameras, lights, materials,
blur values. Float32 throughout, but for one float64 case (under `jax.enable_x64`) and one
float16 case; all data comes from fixed seeds. The children store each case's arrays as
`case/member.output` in an `.npz` file; the parent compares every array's shape, dtype and
bytes (so NaNs and signed zeros too), prints one line per case (the arrays that differ below
it) and a summary.

Compiling the programs is nearly all of the time: each side compiles about 55 renders with
their gradients, several CPU minutes (see `--list` for the cases; `--only` picks some). With
`--cache DIR` the children run one after the other and keep their compiled programs in DIR
(JAX's persistent compilation cache, keyed by the XLA computation without source locations),
so the working tree loads every program whose computation is unchanged instead of compiling
it, and later runs load both sides'.

Exit status: 0 when every array of every case is bit-identical; 1 when an array differs, a
case or an array is missing on one side, or a case fails; 2 when a child or git fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback
import zlib

import jax
import jax.numpy as jnp
import numpy as np

# softjax is imported by the child processes only (`_import_softjax`): the parent must not
# pick a tree.
sj = None

SIZE = (16, 24)  # (H, W): small and not square
EYE = (0.6, 0.5, 2.8)
BLUR = dict(sigma=2e-3, gamma=1e-2)
# Tiles, chunks, batches and a pair capacity small enough that the tiled path bins and
# streams each view in several rounds and batches.
SMALL = dict(tile_size=4, chunk=4, batch_pairs=256, pair_capacity=64)
AOVS = ("depth", "normals", "face_id")

# The soft-rasterizer family as tests/test_family.py renders it: each coverage choice paired
# with a T-conorm in turn (the second time round in reverse order), then the hard colour.
DISTRIBUTIONS = ("logistic", "gaussian", "laplace", "cauchy", "uniform", "cubic_hermite",
                 "wigner_semicircle", "gudermannian", "reciprocal", "gumbel_max",
                 "gumbel_min", "exponential", "exponential_rev", "gamma", "gamma_rev", "levy",
                 "levy_rev", "dibr")  # fmt: skip
T_CONORMS = ("probabilistic", "max", "einstein", "hamacher", "yager", "frank", "aczel_alsina",
             "dombi", "schweizer_sklar", "sum", "hard")  # fmt: skip
_COVERAGES = [dict(coverage=d) for d in DISTRIBUTIONS] + [
    dict(distance="barycentric"), dict(squared=False),
    dict(coverage="uniform", distance="barycentric", squared=False),
]  # fmt: skip
_ALPHAS = [dict(alpha=a) for a in T_CONORMS] + [
    dict(alpha="frank", t_conorm_p=0.1), dict(alpha="schweizer_sklar", t_conorm_p=-4.0),
]  # fmt: skip
FAMILY = [{**a, **c} for a, c in zip(_ALPHAS + _ALPHAS[::-1], _COVERAGES, strict=False)] + [
    dict(color="hard"), dict(color="hard", alpha="max", coverage="cubic_hermite"),
]  # fmt: skip


# -- scenes -------------------------------------------------------------------------------


def _rng(seed: int) -> np.random.RandomState:
    return np.random.RandomState(seed)


def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def _sphere(level: int = 2, seed: int = 0):
    """Vertices, faces and vertex colours of an ico-sphere with randomly displaced vertices."""
    base = sj.ico_sphere(level)
    rng = _rng(seed)
    verts = np.asarray(base.verts, np.float64) * (
        1 + 0.15 * rng.standard_normal((base.num_verts, 1))
    )
    return _f32(verts), np.asarray(base.faces), _f32(rng.uniform(0.05, 0.95, verts.shape))


def _layers(n: int = 24, seed: int = 1):
    """`n` random triangles of random winding over the image centre: many layers, ties of
    coverage, both windings."""
    rng = _rng(seed)
    tri = rng.uniform(-1.0, 1.0, (n, 3, 3)) * np.array([1.0, 1.0, 0.5])
    tri[:, :, :2] -= 0.8 * tri[:, :, :2].mean(1, keepdims=True)
    verts = tri.reshape(-1, 3)
    return _f32(verts), np.arange(3 * n).reshape(n, 3), _f32(rng.uniform(0, 1, verts.shape))


def _spherical_uvs(verts, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Per-vertex (u, v) from longitude and latitude, scaled (beyond [0, 1] when > 1)."""
    v = np.asarray(verts, np.float64)
    u = 0.5 + np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi)
    w = 0.5 + np.arcsin(v[:, 1] / np.linalg.norm(v, axis=1)) / np.pi
    return _f32(np.stack([u, w], 1) * scale + offset)


def _camera(eye=EYE, dtype=np.float32, **kw):
    return sj.look_at(np.asarray(eye, dtype), fov=50.0, **kw)


def _eyes(n: int = 4) -> np.ndarray:
    angles = np.linspace(0.0, 2 * np.pi, n, endpoint=False) + 0.3
    return _f32(
        np.stack([2.8 * np.sin(angles), 0.4 + 0.3 * np.cos(angles), 2.8 * np.cos(angles)], 1)
    )


def _lights():
    """An ambient, a directional and a point light, coloured."""
    return sj.Lights(
        ambient=0.3,
        directional=[sj.DirectionalLight((0.4, -1.0, -0.7), (1.0, 0.9, 0.8), 0.6)],
        point=[sj.PointLight((1.5, 1.2, 2.5), (0.8, 0.9, 1.0), 0.7)],
        ambient_color=(1.0, 0.95, 0.9),
    )


def _material():
    return sj.Material(ambient=0.9, diffuse=(0.8, 0.85, 0.9), specular=0.5, shininess=12.0)


def _config(size=SIZE, **kw):
    return sj.RasterConfig(size, **{**BLUR, **kw})


# -- the machinery of a case ----------------------------------------------------------------

CASES = {}  # name -> (what it covers, function returning {output name: array})


def case(fn=None, *, name=None, doc=None):
    """Registers `fn() -> {name: array}` as a case (under `name`, or the function's name)."""

    def register(fn):
        text = doc or (fn.__doc__ or "").split("\n\n")[0]
        CASES[name or fn.__name__] = (" ".join(text.split()), fn)
        return fn

    return register(fn) if fn is not None else register


class Skip(Exception):
    """Raised by a case that cannot run here (an optional dependency is missing)."""


def _fields_of(tree):
    """`(name, value)` pairs of a softjax object by its public field names, or None."""
    fields = {
        sj.Camera: ("eye", "rotation", "focal", "center", "near", "far"),
        sj.Lights: ("ambient", "ambient_color", "directional", "point"),
        sj.DirectionalLight: ("direction", "color", "intensity"),
        sj.PointLight: ("position", "color", "intensity"),
        sj.Material: ("ambient", "diffuse", "specular", "shininess"),
        sj.Mesh: ("verts", "faces", "colors", "uvs", "face_uvs", "texture", "atlas",
                  "face_mask"),
    }  # fmt: skip
    for cls, names in fields.items():
        if isinstance(tree, cls):
            return [(n, getattr(tree, n)) for n in names]
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # Fragments, loss structures
        return list(zip(tree._fields, tree, strict=True))
    return None


def named(tree, prefix: str = "") -> dict:
    """The arrays of a nest of dicts, lists, named tuples and softjax objects, by dotted name."""
    if tree is None:
        return {}
    items = _fields_of(tree)
    if items is None and isinstance(tree, dict):
        items = list(tree.items())
    elif items is None and isinstance(tree, (list, tuple)):
        items = list(enumerate(tree))
    if items is None:
        return {prefix: tree}
    out = {}
    for key, value in items:
        out.update(named(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _floating(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _weighted_sum(name: str, x):
    """`sum(w * x)` with fixed standard normal weights `w` seeded by the output's name."""
    dtype = jnp.promote_types(jnp.result_type(x), jnp.float32)
    w = _rng(zlib.crc32(name.encode())).standard_normal(jnp.shape(x))
    return jnp.sum(jnp.asarray(w, dtype) * jnp.asarray(x, dtype))


def _value_and_grads(fn, params) -> dict:
    """`fn(params)`'s outputs, the loss on them and its gradient with respect to `params`."""

    def loss(p):
        out = named(fn(p))
        total = sum(_weighted_sum(k, x) for k, x in out.items() if _floating(x))
        return total, out

    (value, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return {"loss": value, **named(out, "out"), **named(grads, "grad")}


def run(members: dict) -> dict:
    """One jitted program for a case: `members` maps a label to `(fn, params)`, `fn(params)`
    returning a dict of outputs; each member is differentiated alone. Returns
    `{label.loss, label.out.*, label.grad.*: numpy array}`."""
    fns = {label: fn for label, (fn, _) in members.items()}
    params = {label: p for label, (_, p) in members.items()}
    program = jax.jit(lambda ps: {k: _value_and_grads(fns[k], ps[k]) for k in fns})
    results = program(params)
    return {f"{label}.{k}": np.asarray(v) for label in fns for k, v in results[label].items()}


def _mesh(p, faces, face_uvs=None, wrap="clamp"):
    """The mesh of a parameter dict: `verts` and whichever of `colors`, `uvs` and `texture`,
    `atlas` it holds."""
    uvs = p.get("uvs")
    return sj.Mesh(p["verts"], faces, p.get("colors"), uvs=uvs,
                   face_uvs=None if uvs is None else face_uvs, texture=p.get("texture"),
                   texture_wrap=wrap, atlas=p.get("atlas"))  # fmt: skip


def _images(out) -> dict:
    """`render`'s result as named outputs: the image and any auxiliary outputs."""
    if isinstance(out, tuple):
        rgba, aovs = out
        return {"rgba": rgba, **aovs}
    return {"rgba": out}


def renders(cfg, faces, **mesh_kw):
    """`fn(params)`: `sj.render` of `_mesh(params)` with `params["camera"]` and the optional
    `lights` and `material`."""

    def fn(p):
        mesh = _mesh(p, faces, **mesh_kw)
        return _images(sj.render(mesh, p["camera"], cfg, p.get("lights"), p.get("material")))

    return fn


def silhouettes(cfg, faces):
    """`fn(params)`: `sj.render_silhouette` of `params["verts"]` with `params["camera"]`."""
    return lambda p: {"alpha": sj.render_silhouette(sj.Mesh(p["verts"], faces), p["camera"], cfg)}


def params(**kw) -> dict:
    """A parameter dict without the entries that are None."""
    return {k: v for k, v in kw.items() if v is not None}


# -- members: one render each, with the parameters it is differentiated by ---------------------


def _textured_sphere(seed: int = 3, scale: float = 1.0, offset: float = 0.0):
    """A bumpy level-1 sphere with spherical UVs (scaled and shifted) and a random texture."""
    verts, faces, _ = _sphere(1, seed)
    texture = _f32(_rng(seed).uniform(0, 1, (8, 10, 3)))
    return verts, faces, _spherical_uvs(verts, scale, offset), texture


def vertex_colored(cfg, traced: bool = False):
    """Vertex colours, unlit (with `traced`, sigma and gamma passed to render as parameters)."""
    verts, faces, colors = _sphere()
    if not traced:
        return renders(cfg, faces), params(verts=verts, colors=colors, camera=_camera())

    def fn(p):
        mesh = sj.Mesh(p["verts"], faces, p["colors"])
        return {"rgba": sj.render(mesh, p["camera"], cfg, sigma=p["sigma"], gamma=p["gamma"])}

    return fn, params(verts=verts, colors=colors, camera=_camera(), sigma=np.float32(3e-3),
                      gamma=np.float32(2e-2))  # fmt: skip


def silhouette_only(cfg):
    verts, faces, _ = _sphere()
    return silhouettes(cfg, faces), params(verts=verts, camera=_camera())


def textured(cfg, wrap: str):
    """A UV texture (with "wrap", UVs beyond [0, 1]), lit by `_lights` with `_material`."""
    scale, offset = (2.2, -0.6) if wrap == "wrap" else (1.0, 0.0)
    verts, faces, uvs, image = _textured_sphere(scale=scale, offset=offset)
    p = params(verts=verts, uvs=uvs, texture=image, camera=_camera(), lights=_lights(),
               material=_material())  # fmt: skip
    return renders(cfg, faces, face_uvs=faces, wrap=wrap), p


def atlas_orthographic(cfg):
    """A per-face atlas (3 x 3 texels) lit by `_lights`, seen by an orthographic camera
    built from the parameters `eye` and `scale`."""
    verts, faces, _ = _sphere(1, seed=4)
    texels = _f32(_rng(4).uniform(0, 1, (len(faces), 3, 3, 3)))
    inner = renders(cfg, faces)

    def fn(p):
        cam = sj.look_at(p["eye"], projection="orthographic", scale=p["scale"])
        return inner({**p, "camera": cam})

    return fn, params(verts=verts, atlas=texels, lights=_lights(), material=_material(),
                      eye=_f32([0.7, 0.9, 2.5]), scale=np.float32(0.8))  # fmt: skip


def _opencv_pose(eye, at, up=(0.0, 1.0, 0.0)):
    """OpenCV's `(R, t)` of a camera at `eye` looking at `at`."""
    eye, at, up = (np.asarray(x, np.float64) for x in (eye, at, up))
    f = (at - eye) / np.linalg.norm(at - eye)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    R = np.stack([r, -np.cross(r, f), f])
    return _f32(R), _f32(-R @ eye)


OPENCV_SIZE = (18, 26)
OPENCV_K = ((12.5, 0.0, 12.8), (0.0, 12.9, 8.6), (0.0, 0.0, 1.0))  # about 70 degrees tall


def opencv_near(cfg, pixel_center: float = 0.0):
    """Camera.from_opencv(K, R, t) on an 18 x 26 image, close enough that its near plane
    (0.45) cuts the mesh (46 faces cut, 11 wholly behind it), and to_opencv's round trip."""
    verts, faces, colors = _sphere(seed=31)
    R, t = _opencv_pose((0.1, 0.15, 1.25), (0.0, 0.0, 0.0))

    def fn(p):
        cam = sj.Camera.from_opencv(p["K"], p["R"], p["t"], OPENCV_SIZE, pixel_center,
                                    near=0.45)  # fmt: skip
        rgba = sj.render(sj.Mesh(p["verts"], faces, p["colors"]), cam, cfg)
        return {"rgba": rgba, "to_opencv": cam.to_opencv(OPENCV_SIZE, pixel_center)}

    return fn, params(verts=verts, colors=colors, K=_f32(OPENCV_K), R=R, t=t)


def _cameras_of(eyes):
    return jax.vmap(lambda e: sj.look_at(e, fov=50.0))(eyes)


def views(cfg):
    """One mesh seen by four cameras: jax.vmap over jax.vmap(sj.look_at)(eyes)."""
    verts, faces, colors = _sphere(seed=10)

    def fn(p):
        render = jax.vmap(sj.render, in_axes=(None, 0, None))
        return {"rgba": render(sj.Mesh(p["verts"], faces, p["colors"]), _cameras_of(p["eyes"]),
                               cfg)}  # fmt: skip

    return fn, params(verts=verts, colors=colors, eyes=_eyes())


def stacked_views(cfg):
    """sj.stack_meshes of three meshes of different sizes, each seen by a camera of its own
    (jax.vmap over meshes and cameras)."""
    parts = [_sphere(0, seed=32), _sphere(1, seed=33), _layers(12, seed=34)]
    batch = sj.stack_meshes([sj.Mesh(v, f, c) for v, f, c in parts])

    def one(mesh, v, c, cam):
        return sj.render(mesh.replace(verts=v, colors=c), cam, cfg)

    def fn(p):
        rgba = jax.vmap(one)(batch, p["verts"], p["colors"], _cameras_of(p["eyes"]))
        return {"rgba": rgba, "face_mask": batch.face_mask}

    return fn, params(verts=batch.verts, colors=batch.colors, eyes=_eyes(3))


def joined(cfg, traced: bool = False):
    """sj.join_meshes of a coloured sphere and uncoloured triangles (with `traced`, sigma and
    gamma passed to render as parameters)."""
    (va, fa, ca), (vb, fb, _) = _sphere(1, seed=35), _layers(10, seed=36)

    def fn(p):
        scene = sj.join_meshes(
            [
                sj.Mesh(p["va"], fa, p["ca"]),
                sj.Mesh(0.6 * p["vb"] + jnp.asarray([0.3, 0.1, 1.2]), fb),
            ]
        )
        blur = {k: p[k] for k in ("sigma", "gamma") if k in p}
        return {"scene": scene, "image": sj.render(scene, _camera(), cfg, **blur)}

    blur = dict(sigma=np.float32(3e-3), gamma=np.float32(2e-2)) if traced else {}
    return fn, params(va=va, ca=ca, vb=vb, **blur)


def lit_sphere(cfg):
    """A 320-face sphere with vertex colours, lit by `_lights`."""
    verts, faces, colors = _sphere(seed=21)
    return renders(cfg, faces), params(verts=verts, colors=colors, camera=_camera(),
                                       lights=_lights())  # fmt: skip


# -- cases of the renderer ------------------------------------------------------------------------

TILED, DENSE, HARD = dict(method="tiled"), dict(method="dense"), dict(visibility="hard")


@case
def soft_tiled():
    """Soft, tiled: vertex colours; the silhouette; a wrapped UV texture, phong lit (a
    directional and a point light, a specular material) with depth, normals and face ids;
    an atlas, gouraud lit, from an orthographic camera (gradients to its eye and scale)."""
    return run({
        "colors": vertex_colored(_config(**TILED)),
        "silhouette": silhouette_only(_config(**TILED)),
        "texture_wrap_phong_aovs": textured(_config(**TILED, shading="phong", aovs=AOVS), "wrap"),
        "atlas_gouraud_orthographic": atlas_orthographic(_config(**TILED, shading="gouraud")),
    })  # fmt: skip


@case
def soft_dense():
    """Soft, dense: vertex colours with sigma and gamma traced (their gradients); the
    silhouette; a clamped UV texture, phong lit with depth, normals and face ids; an OpenCV
    camera whose near plane cuts the mesh."""
    return run({
        "colors_traced_blur": vertex_colored(_config(**DENSE), traced=True),
        "silhouette": silhouette_only(_config(**DENSE)),
        "texture_clamp_phong_aovs": textured(_config(**DENSE, shading="phong", aovs=AOVS),
                                            "clamp"),
        "opencv_near": opencv_near(_config(OPENCV_SIZE, **DENSE)),
    })  # fmt: skip


@case
def hard():
    """Hard visibility: vertex colours; the silhouette; a clamped UV texture, phong lit with
    depth, normals and face ids; an atlas, gouraud lit, from an orthographic camera."""
    return run({
        "colors": vertex_colored(_config(**HARD)),
        "silhouette": silhouette_only(_config(**HARD)),
        "texture_clamp_phong_aovs": textured(_config(**HARD, shading="phong", aovs=AOVS),
                                            "clamp"),
        "atlas_gouraud_orthographic": atlas_orthographic(_config(**HARD, shading="gouraud")),
    })  # fmt: skip


@case
def scenes_tiled():
    """Soft, tiled: Camera.from_opencv (gradients to K, R, t) on a non-square image with its
    near plane cutting the mesh, and to_opencv; four views of a mesh vmapped over
    jax.vmap(sj.look_at) cameras (gradients to the eyes), two views in lockstep;
    sj.stack_meshes of three sizes (face_mask padding) vmapped with a camera each;
    sj.join_meshes of a coloured and an uncoloured mesh, back faces culled, face ids, sigma
    and gamma traced."""
    culled = _config(**TILED, cull_backfaces=True, aovs=("face_id",))
    return run({
        "opencv_near": opencv_near(_config(OPENCV_SIZE, **TILED)),
        "views_lockstep": views(_config(**TILED, parallel_views=2)),
        "stacked_views": stacked_views(_config(**TILED)),
        "joined_culled_traced_blur": joined(culled, traced=True),
    })  # fmt: skip


@case
def scenes_hard():
    """Hard visibility: the OpenCV camera cutting the mesh (COLMAP's pixel centres);
    stacked meshes vmapped with a camera each; joined meshes, back faces culled, face ids."""
    return run({
        "opencv_near": opencv_near(_config(OPENCV_SIZE, **HARD), pixel_center=0.5),
        "stacked_views": stacked_views(_config(**HARD)),
        "joined_culled": joined(_config(**HARD, cull_backfaces=True, aovs=("face_id",))),
    })  # fmt: skip


@case
def small_capacity():
    """The tiled path in many rounds and batches (pair_capacity 64, tiles of 4, chunks of 4,
    256 pairs a batch) on 24 x 32, gouraud lit with depth and face ids: soft and hard."""
    cfg = dict(image_size=(24, 32), shading="gouraud", aovs=("depth", "face_id"), **SMALL)
    return run({"soft": lit_sphere(sj.RasterConfig(**BLUR, **cfg)),
                "hard": lit_sphere(sj.RasterConfig(**HARD, **cfg))})  # fmt: skip


# -- the soft-rasterizer family -----------------------------------------------------------------


def _label(choice: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in choice.items())


def _family(method: str, choices, traced: bool = False, **settings) -> dict:
    """One member per choice: the layered triangles rendered with it (and with `traced`,
    a Yager silhouette with sigma and t_conorm_p passed as parameters)."""
    verts, faces, colors = _layers()
    cam = _camera((0.2, 0.1, 3.0))
    p = params(verts=verts, colors=colors, camera=cam)
    members = {}
    for choice in choices:
        cfg = _config(method=method, sigma=3e-3, **settings, **choice)
        members[_label(choice)] = (renders(cfg, faces), p)
    if traced:
        cfg = _config(method=method, alpha="yager", **settings)

        def yager(q):
            alpha = sj.render_silhouette(sj.Mesh(q["verts"], faces), cam, cfg,
                                         sigma=q["sigma"], t_conorm_p=q["p"])  # fmt: skip
            return {"alpha": alpha}

        q = params(verts=verts, sigma=np.float32(3e-3), p=np.float32(1.5))
        members["yager_traced_sigma_p"] = (yager, q)
    return run(members)


def _register_family(parts: int = 4):
    for i in range(parts):
        choices = FAMILY[i::parts]
        doc = "The soft-rasterizer family, tiled in rounds of 64 pairs: "
        doc += "; ".join(map(_label, choices))
        if i == 0:
            doc += "; alpha=yager with sigma and t_conorm_p traced (their gradients)"
        case(lambda c=choices, first=i == 0: _family("tiled", c, first, **SMALL),
             name=f"family_tiled_{i + 1}", doc=doc)  # fmt: skip
    choices = FAMILY[::8]
    doc = "The soft-rasterizer family, dense: " + "; ".join(map(_label, choices))
    case(lambda: _family("dense", choices), name="family_dense", doc=doc)


_register_family()


# -- hard rasterization's building blocks, a large image, precision ----------------------------


@case
def hard_blocks():
    """sj.rasterize with 1 and 3 layers (tiled) and 3 layers (dense); sj.interpolate of
    per-vertex and per-corner values; sj.antialias of an RGBA image (and of its alpha alone)
    with 1 and 3 layers; gradients to vertices, values and camera."""
    verts, faces, colors = _sphere(seed=8)
    background = jnp.asarray([0.1, 0.2, 0.3], jnp.float32)

    def blocks(layers, method="tiled"):
        def fn(p):
            mesh = sj.Mesh(p["verts"], faces)
            frags = sj.rasterize(mesh, p["camera"], _config(method=method), layers)
            out = {"frags": frags, "colors": sj.interpolate(p["colors"], frags, mesh),
                   "corners": sj.interpolate(p["corners"], frags, mesh)}  # fmt: skip
            nearest = out["colors"][..., 0, :] if layers > 1 else out["colors"]
            covered = (frags.face_id[..., 0] if layers > 1 else frags.face_id)[..., None] >= 0
            rgb = jnp.where(covered, nearest, background)
            image = jnp.concatenate([rgb, covered.astype(rgb.dtype)], axis=-1)
            out["antialiased"] = sj.antialias(image, frags, mesh, p["camera"])
            out["antialiased_alpha"] = sj.antialias(image[..., 3], frags, mesh, p["camera"])
            return out

        return fn

    corners = _f32(_rng(8).standard_normal((len(faces), 3, 2)))
    p = params(verts=verts, colors=colors, camera=_camera(), corners=corners)
    return run({"layers1": (blocks(1), p), "layers3": (blocks(3), p),
                "layers3_dense": (blocks(3, "dense"), p)})  # fmt: skip


@case
def hard_large():
    """Hard visibility at 520 x 520 (above 512 x 512 pixels: shaded in strips of rows), a
    level-1 sphere, flat lit."""
    verts, faces, colors = _sphere(1, seed=22)
    p = params(verts=verts, colors=colors, camera=_camera(), lights=_lights())
    return run({"render": (renders(_config((520, 520), **HARD), faces), p)})


def _precision(dtype, camera_dtype=np.float32) -> dict:
    verts, faces, colors = _sphere(1, seed=23)
    verts, colors, cam = verts.astype(dtype), colors.astype(dtype), _camera(dtype=camera_dtype)
    p = params(verts=verts, colors=colors, camera=cam)
    return run({"tiled": (renders(_config(aovs=("depth",)), faces), p),
                "hard": (renders(_config(**HARD), faces), p)})  # fmt: skip


@case
def float64():
    """Float64 vertices, colours and camera (under jax.enable_x64): soft tiled with depth,
    hard."""
    with jax.enable_x64(True):
        return _precision(np.float64, np.float64)


@case
def float16():
    """Float16 vertices and colours (float32 camera): soft tiled with depth, hard; the
    gradients come back in float16."""
    return _precision(np.float16)


# -- the rest of the public API ------------------------------------------------------------------


@case
def fit_pair_capacity():
    """sj.fit_pair_capacity for one camera, a batch of cameras, hard visibility, a margin."""
    verts, faces, _ = _sphere(seed=24)
    mesh = sj.Mesh(verts, faces)
    cams = jax.vmap(lambda e: sj.look_at(e, fov=50.0))(jnp.asarray(_eyes()))
    fits = {
        "one": sj.fit_pair_capacity(mesh, _camera(), _config()),
        "batch": sj.fit_pair_capacity(mesh, cams, _config(tile_size=4)),
        "hard": sj.fit_pair_capacity(mesh, _camera(), _config(visibility="hard")),
        "margin2": sj.fit_pair_capacity(mesh, _camera(), _config(), margin=2.0),
    }
    return {k: np.asarray(cfg.pair_capacity, np.int64) for k, cfg in fits.items()}


@case
def cameras():
    """look_at (perspective, up parallel to the view, orthographic), Camera.from_opencv and
    to_opencv: every field, with gradients to eye, at, up, fov, scale, K, R and t."""
    R, t = _opencv_pose((0.5, 0.7, 2.9), (0.1, 0.0, 0.0))

    def fn(p):
        cam = sj.Camera.from_opencv(p["K"], p["R"], p["t"], OPENCV_SIZE, pixel_center=0.5)
        return {
            "look_at": sj.look_at(p["eye"], p["at"], p["up"], p["fov"], near=0.2, far=50.0),
            "up_parallel": sj.look_at(p["eye"], p["eye"] + jnp.asarray([0.0, 2.0, 0.0])),
            "orthographic": sj.look_at(p["eye"], projection="orthographic", scale=p["scale"]),
            "opencv": cam,
            "to_opencv": cam.to_opencv(OPENCV_SIZE, 0.5),
            "fov": cam.fov,
        }

    p = params(eye=_f32(EYE), at=_f32([0.1, -0.2, 0.3]), up=_f32([0.1, 1.0, 0.2]),
               fov=np.float32(55.0), scale=np.float32(0.7), K=_f32(OPENCV_K), R=R, t=t)  # fmt: skip
    return run({"cameras": (fn, p)})


@case
def constructors():
    """ico_sphere levels 0-3, Lights (default, softras), Material, stack_meshes and
    join_meshes of UV-textured and atlas meshes: every field."""
    out = {f"ico_sphere{level}": sj.ico_sphere(level) for level in range(4)}
    out["lights_default"] = sj.Lights()
    out["lights_softras"] = sj.Lights.softras(0.4, (1.0, 0.9, 0.8), 0.7, (0.9, 1.0, 1.0),
                                              (0.3, 2.0, -1.0))  # fmt: skip
    out["lights"], out["material"] = _lights(), _material()
    verts, faces, uvs, texture = _textured_sphere(seed=25)
    small = _sphere(0, seed=26)
    uv_small = _spherical_uvs(small[0])
    uv_meshes = [
        sj.Mesh(verts, faces, uvs=uvs, face_uvs=faces, texture=texture),
        sj.Mesh(small[0], small[1], uvs=uv_small, face_uvs=small[1], texture=texture),
    ]
    atlases = [sj.Mesh(verts, faces, atlas=_f32(_rng(27).uniform(0, 1, (len(faces), 2, 2, 3)))),
               sj.Mesh(small[0], small[1],
                       atlas=_f32(_rng(28).uniform(0, 1, (len(small[1]), 2, 2, 3))))]  # fmt: skip
    out["stack_textured"], out["stack_atlas"] = (sj.stack_meshes(m) for m in (uv_meshes, atlases))
    out["join_textured"], out["join_atlas"] = (sj.join_meshes(m) for m in (uv_meshes, atlases))
    return {k: np.asarray(v) for k, v in named(out).items()}


@case
def losses():
    """sj.losses: mse, l1 (with masks), silhouette IoU and every mesh regulariser with the
    structures they are built from; gradients to predictions and vertices."""
    verts, faces, _ = _sphere(seed=29)
    rng = _rng(29)
    target, mask = _f32(rng.uniform(0, 1, SIZE)), rng.uniform(0, 1, SIZE) > 0.3
    L = sj.losses
    structures = {
        "edges": L.mesh_edges(faces),
        "uniform": L.uniform_laplacian(faces, len(verts)),
        "cotangent": L.cotangent_laplacian(faces, len(verts)),
        "pairs": L.face_pairs(faces),
        "quads": L.dihedral_quads(faces),
    }
    s = structures

    def fn(p):
        v, pred = p["verts"], p["pred"]
        return {
            "mse": L.mse(pred, target), "mse_masked": L.mse(pred, target, mask),
            "l1": L.l1(pred, target), "l1_masked": L.l1(pred, target, mask),
            "iou": L.silhouette_iou_loss(pred, target),
            "edge_length": L.edge_length_loss(v, s["edges"], 0.1),
            "laplacian": L.laplacian_loss(v, s["uniform"]),
            "cot": L.cotangent_laplacian_loss(v, s["cotangent"]),
            "cotcurv": L.cotangent_laplacian_loss(v, s["cotangent"], method="cotcurv"),
            "cot_delta": L.cotangent_laplacian_delta(v, s["cotangent"]),
            "flatten": L.flatten_loss(v, faces, s["pairs"]),
            "normal_consistency": L.normal_consistency_loss(v, s["quads"]),
        }  # fmt: skip

    out = run({"losses": (fn, params(verts=verts, pred=_f32(rng.uniform(0, 1, SIZE))))})
    return {**out, **{k: np.asarray(v) for k, v in named(structures, "structures").items()}}


@case
def coverage():
    """sj.coverage: cdf and log_coverage of every distribution (gamma with shape 3 too) from
    s = -1e6 to 1e6, with gradients; quantile of each at 1e-4 and 0.3."""
    s = _f32(np.concatenate([-np.logspace(6, -3, 20), [0.0], np.logspace(-3, 6, 20)]))
    choices = [(d, d, 2.0) for d in DISTRIBUTIONS] + [("gamma_shape3", "gamma", 3.0)]

    def fn(p):
        out = {}
        for label, name, shape in choices:
            log_d, log_1md = sj.coverage.log_coverage(p["s"], name, shape)
            out[label] = {"cdf": sj.coverage.cdf(p["s"], name, shape), "log_d": log_d,
                          "log_1md": log_1md}  # fmt: skip
        return out

    out = run({"coverage": (fn, params(s=s))})
    for d in DISTRIBUTIONS:
        out[f"quantile.{d}"] = np.asarray([sj.coverage.quantile(d, q) for q in (1e-4, 0.3)])
    return out


@case
def obj_files():
    """sj.save_obj and sj.load_obj round trips of a vertex-coloured and a UV-textured mesh
    (needs the io extra: trimesh and Pillow)."""
    if not all(importlib.util.find_spec(m) for m in ("trimesh", "PIL")):
        raise Skip("trimesh or Pillow is not installed")
    verts, faces, colors = _sphere(1, seed=30)
    _, _, uvs, texture = _textured_sphere(seed=30)
    meshes = {
        "colored": sj.Mesh(verts, faces, colors),
        "textured": sj.Mesh(verts, faces, uvs=uvs, face_uvs=faces, texture=texture),
    }
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, mesh in meshes.items():
            path = sj.save_obj(pathlib.Path(folder) / f"{name}.obj", mesh)
            out[name] = sj.load_obj(path, texture_wrap="wrap")
            out[name + "_text"] = np.frombuffer(pathlib.Path(path).read_bytes(), np.uint8)
    return {k: np.asarray(v) for k, v in named(out).items()}


# -- the child: one side's arrays -------------------------------------------------------------


def _import_softjax():
    global sj
    import softjax

    sj = softjax
    return softjax.__file__


def dump(path: str, tag: str, only) -> None:
    """Runs every case (whose name contains one of `only`, if given) and writes its arrays,
    with where softjax came from and the failures, to the `.npz` file `path`."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    source = _import_softjax()
    print(f"[{tag}] softjax from {source}", file=sys.stderr, flush=True)
    arrays = {"__meta__/softjax_file": np.asarray(source)}
    names = [n for n in CASES if not only or any(o in n for o in only)]
    arrays["__meta__/cases"] = np.asarray(names)
    start = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        try:
            out = CASES[name][1]()
        except Skip as e:
            arrays[f"__skipped__/{name}"] = np.asarray(str(e))
            print(f"[{tag}] {name}: skipped ({e})", file=sys.stderr, flush=True)
            continue
        except Exception as e:  # recorded; the parent reports it and fails
            traceback.print_exc()
            arrays[f"__error__/{name}"] = np.asarray(f"{type(e).__name__}: {e}".split("\n")[0])
            continue
        seconds = time.perf_counter() - t0
        arrays[f"__time__/{name}"] = np.asarray(seconds)
        arrays.update({f"{name}/{k}": np.asarray(v) for k, v in out.items()})
        print(f"[{tag}] {name}: {len(out)} arrays, {seconds:.1f} s", file=sys.stderr, flush=True)
    arrays["__time__/total"] = np.asarray(time.perf_counter() - start)
    np.savez(path, **arrays)


# -- the parent: two children and the comparison -----------------------------------------------


def _git(root, *args) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def _export(root: str, commit: str, folder: str) -> None:
    """`git archive COMMIT | tar -x -C folder`."""
    archive = subprocess.Popen(["git", "archive", commit], cwd=root, stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", folder], stdin=archive.stdout)
    archive.stdout.close()
    if archive.wait() or untar.returncode:
        raise RuntimeError(f"could not export {commit} with git archive")


def _children(sides: dict, out: str, only, cache=None) -> dict:
    """Runs a `--dump` child per side (`{tag: tree}`), both at once, in the same environment
    but for PYTHONPATH (the tree first); returns `{tag: npz path}`. With a `cache` folder
    they run one after the other and share JAX's persistent compilation cache there."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONHASHSEED": "0"}
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=os.path.abspath(cache),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # fmt: skip
    paths, running = {}, {}
    for tag, tree in sides.items():
        paths[tag] = os.path.join(out, f"{tag}.npz")
        cmd = [sys.executable, os.path.abspath(__file__), "--dump", paths[tag], "--tag", tag]
        cmd += [a for o in only for a in ("--only", o)]
        path = os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH")) if p)
        running[tag] = subprocess.Popen(cmd, env={**env, "PYTHONPATH": path}, cwd=out)
        if cache:
            running[tag].wait()
    for tag, child in running.items():
        if child.wait():
            raise RuntimeError(f"the {tag} child failed (exit status {child.returncode})")
    return paths


def _load(path: str) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _differing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which elements of two arrays of one shape and dtype differ in any bit (NaNs too)."""

    def as_bytes(x):
        return np.ascontiguousarray(x).reshape(-1).view(np.uint8).reshape(x.size, x.itemsize)

    return np.any(as_bytes(a) != as_bytes(b), axis=1)


def _compare_array(a: np.ndarray, b: np.ndarray):
    """None when bit-identical, else `(elements that differ, max |a - b|, what)`."""
    if a.shape != b.shape or a.dtype != b.dtype:
        what = f"{a.dtype}{list(a.shape)} in the base, {b.dtype}{list(b.shape)} here"
        return max(a.size, b.size), float("nan"), what
    diff = _differing(a, b)
    if not diff.any():
        return None
    gap = float("nan")
    if a.dtype.kind in "biuf":
        with np.errstate(all="ignore"):
            d = np.abs(a.reshape(-1)[diff].astype(np.float64) - b.reshape(-1)[diff])
        gap = float(np.nanmax(d)) if not np.all(np.isnan(d)) else gap
    return int(diff.sum()), gap, f"{int(diff.sum())} of {a.size} elements"


def _case_keys(arrays: dict, name: str) -> dict:
    prefix = name + "/"
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def compare(base: dict, work: dict, verbose: int = 5) -> bool:
    """Prints one line per case and a summary; True when everything is bit-identical."""
    names = list(work["__meta__/cases"]) + [
        n for n in base["__meta__/cases"] if n not in set(work["__meta__/cases"])
    ]
    counts = dict(cases=0, arrays=0, different=0, missing=0, failed=0, skipped=0)
    for name in names:
        counts["cases"] += 1
        status, detail = _compare_case(base, work, name)
        b = _case_keys(work, name)
        counts["arrays"] += len(b)
        seconds = work.get(f"__time__/{name}")
        took = "" if seconds is None else f" {float(seconds):6.1f} s"
        line = f"{status:<10} {name:<24} {len(b):4d} arrays{took}"
        print(f"{line}  {detail[0]}" if detail else line)
        for line in detail[1 : 1 + verbose]:
            print(f"{'':<11}{line}")
        if len(detail) > 1 + verbose:
            print(f"{'':<11}... and {len(detail) - 1 - verbose} more")
        key = {"OK": None, "DIFFERENT": "different", "MISSING": "missing", "ERROR": "failed",
               "SKIPPED": "skipped"}[status]  # fmt: skip
        if key:
            counts[key] += 1
    bad = counts["different"] + counts["missing"] + counts["failed"]
    summary = f"identity: {counts['cases']} cases, {counts['arrays']} arrays"
    if not bad:
        skipped = f" ({counts['skipped']} skipped)" if counts["skipped"] else ""
        print(f"{summary}, all bit-identical{skipped}")
    else:
        parts = [f"{counts[k]} {k}" for k in ("different", "missing", "failed", "skipped")
                 if counts[k]]  # fmt: skip
        print(f"{summary}: {', '.join(parts)}")
    return not bad


def _compare_case(base: dict, work: dict, name: str):
    """`(status, [summary, details...])` of one case."""
    errors = [f"{side}: {str(arrays[f'__error__/{name}'])}" for side, arrays in
              (("base", base), ("work", work)) if f"__error__/{name}" in arrays]  # fmt: skip
    if errors:
        return "ERROR", ["fails", *errors]
    skipped = [f"__skipped__/{name}" in arrays for arrays in (base, work)]
    if all(skipped):
        return "SKIPPED", [str(work[f"__skipped__/{name}"])]
    ran = [name in set(arrays["__meta__/cases"]) and not s for arrays, s in
           zip((base, work), skipped, strict=True)]  # fmt: skip
    if not all(ran):
        side = "base" if not ran[0] else "working tree"
        return "MISSING", [f"not run with the {side}"]
    a, b = _case_keys(base, name), _case_keys(work, name)
    lines, elements, gap = [], 0, 0.0
    for key in [*b, *(k for k in a if k not in b)]:  # the dump's order: outputs, gradients
        if key not in a or key not in b:
            lines.append(f"{key}: only in the {'working tree' if key in b else 'base'}")
            continue
        result = _compare_array(a[key], b[key])
        if result is not None:
            n, g, what = result
            elements += n
            gap = g if np.isnan(g) or np.isnan(gap) else max(gap, g)
            lines.append(f"{key}: {what}, max |diff| {g:.3g}")
    if not lines:
        return "OK", []
    return "DIFFERENT", [f"{len(lines)} arrays differ, {elements} elements, max |diff| {gap:.3g}",
                         *lines]  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", nargs="?", help="the base commit (any git revision)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only the cases whose names contain this (repeatable)",
    )
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="keep compiled programs in DIR (JAX's persistent compilation cache) and run the "
        "base first: a program of the working tree whose XLA computation is the base's is "
        "then loaded instead of compiled, in this run and later ones",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--dump", metavar="OUT.npz", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="dump", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:
        for name, (doc, _) in CASES.items():
            print(f"{name:<24} {doc}")
        return 0
    if args.dump:
        dump(args.dump, args.tag, args.only)
        return 0
    if not args.base:
        parser.error("give a base commit, e.g. HEAD")
    if args.only and not any(o in n for o in args.only for n in CASES):
        parser.error(f"no case matches {args.only}; see --list")
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        root = _git(here, "rev-parse", "--show-toplevel")
        commit = _git(root, "rev-parse", "--verify", f"{args.base}^{{commit}}")
    except subprocess.CalledProcessError as e:
        print(f"identity: git failed: {e.stderr.strip()}", file=sys.stderr)
        return 2
    dirty = " (with uncommitted changes)" if _git(root, "status", "--porcelain") else ""
    print(f"identity: base {args.base} = {commit[:12]}, working tree {root}{dirty}", flush=True)
    with tempfile.TemporaryDirectory(prefix="softjax-identity-") as tmp:
        base_tree = os.path.join(tmp, "base")
        os.mkdir(base_tree)
        try:
            _export(root, commit, base_tree)
            t0 = time.perf_counter()
            sides = {"base": base_tree, "work": root}
            paths = _children(sides, tmp, args.only, args.cache)
        except RuntimeError as e:
            print(f"identity: {e}", file=sys.stderr)
            return 2
        dumps = {tag: _load(path) for tag, path in paths.items()}
    for tag, tree in sides.items():
        source = pathlib.Path(str(dumps[tag]["__meta__/softjax_file"])).resolve()
        if not source.is_relative_to(pathlib.Path(tree).resolve()):
            print(f"identity: the {tag} child imported softjax from {source}, not from {tree}",
                  file=sys.stderr)  # fmt: skip
            return 2
        took = float(dumps[tag]["__time__/total"])
        print(f"identity: {tag}: softjax from {source}, cases in {took:.0f} s")
    print(f"identity: both dumps in {time.perf_counter() - t0:.0f} s")
    return 0 if compare(dumps["base"], dumps["work"]) else 1


if __name__ == "__main__":
    sys.exit(main())
