"""Speed and memory of softjax's tiled rasterizer beside the dense all-pairs reference.

    python benchmarks/bench.py            # the full table, written to benchmarks/RESULTS.md
    python benchmarks/bench.py --quick    # small sizes, a minute or two; prints only
    python benchmarks/bench.py --gpu      # GPU sizes (1024x1024 / 80k faces, 64 views)
    python benchmarks/bench.py --hard     # hard visibility beside deodr and the soft path
    python benchmarks/bench.py --family   # soft-rasterizer family members on the tiled path
    python benchmarks/bench.py --shading  # Phong vs radiometric (GGX, environment map) shading
    python benchmarks/bench.py --eager    # one small view outside jit (per-call overheads)
    python benchmarks/bench.py --compare BASE_REF [--rows A,B] [--pairs]
                                          # the chosen rows at a base commit and here, alternating

Hard rows ("hard ...") render with `visibility="hard"` (z-buffer, antialiased silhouette
edges), "splat ..." rows with `visibility="splat"` (rasterize-then-splat, one layer);
"rgb" is the gradient of a loss on the RGB channels. When the optional `deodr` package
is importable (`pip install deodr`, a benchmark-only extra), "deodr L4 256" measures its
hard-edge differentiable rasterizer (z-buffer + edge antialiasing, C++) on the same mesh,
colours, camera and image size: `Scene3D.render` and `render_backward` of the same RGB loss.

Scene (PyTorch3D's tutorial setting): `sj.ico_sphere(level)` at the origin with per-vertex
colours, `look_at(eye=(0, 0, 2.7), fov=60)`, sigma = gamma = 1e-4. Batched rows render views
on a ring around the sphere with `jax.vmap`. "fwd" renders RGBA; "fwd+bwd" is the gradient
of a loss on silhouette and RGB with respect to the vertices. Every configuration runs in a
fresh process so that its peak resident memory is its own; times are medians after a
warm-up call (which also compiles). Machines are noisy: compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name: (method, ico-sphere level, image side, views, output): output "rgba" renders colour
# and silhouette (loss on both); "sil" renders the silhouette only (loss on it); "meshes"
# renders `views` meshes of levels 1 to `level` (80 to 20 * 4**level faces, cycling)
# stacked by `sj.stack_meshes` into one padded batch, from one camera, colour + silhouette;
# "rgb" renders RGBA with a loss on RGB. Method "hard" is the tiled path with
# `visibility="hard"`, "splat" with `visibility="splat"`; "deodr" is the deodr package
# (skipped when it is not installed). A
# sixth element, where present, holds `RasterConfig` settings (the family rows).
HARD = {
    "hard L4 256": ("hard", 4, 256, 1, "rgb"),
    "splat L4 256": ("splat", 4, 256, 1, "rgb"),
    "deodr L4 256": ("deodr", 4, 256, 1, "rgb"),
    "tiled L4 256 rgb": ("tiled", 4, 256, 1, "rgb"),
    "hard L5 512": ("hard", 5, 512, 1, "rgb"),
    "hard L6 1024": ("hard", 6, 1024, 1, "rgb"),
}
FULL = {
    "tiled L4 256": ("tiled", 4, 256, 1, "rgba"),
    "tiled L4 256 sil": ("tiled", 4, 256, 1, "sil"),
    "tiled L5 512": ("tiled", 5, 512, 1, "rgba"),
    "tiled L4 256 x8": ("tiled", 4, 256, 8, "rgba"),
    "tiled L4 256 x64": ("tiled", 4, 256, 64, "rgba"),
    "tiled L4 256 8 meshes": ("tiled", 4, 256, 8, "meshes"),
    "dense L3 128": ("dense", 3, 128, 1, "rgba"),
    "dense L3 256 sil": ("dense", 3, 256, 1, "sil"),
    "dense L2 256 sil": ("dense", 2, 256, 1, "sil"),
    "dense L3 256": ("dense", 3, 256, 1, "rgba"),
    "dense L4 256": ("dense", 4, 256, 1, "rgba"),
}
# The same scene with other members of the soft-rasterizer family (RGBA, loss on both): the
# cull reach of each distribution sets how many (tile, face) pairs the tiled path streams.
FAMILY = {
    f"tiled L4 256 {name}": ("tiled", 4, 256, 1, "rgba", settings)
    for name, settings in (
        ("logistic", {}),
        ("gaussian", dict(coverage="gaussian")),
        ("uniform", dict(coverage="uniform")),
        ("dibr", dict(coverage="dibr")),
        ("cauchy", dict(coverage="cauchy")),
        ("barycentric", dict(distance="barycentric")),
        ("max", dict(alpha="max")),
        ("yager", dict(alpha="yager")),
        ("hard colour", dict(color="hard")),
    )
}
# Lit rows (soft RGBA with a loss on both, hard RGB): "phong" is `shading="phong"` with an
# ambient and a directional light and Phong highlights; "pbr env" is `shading="pbr"` with a
# `PBRMaterial`, the same directional light and a 16 x 32 `EnvironmentLight` (diffuse from
# its texels, specular from its pre-filtered levels, computed in the program).
SHADING = {
    f"{method} L4 256 {name}": (
        method,
        4,
        256,
        1,
        "rgb" if method == "hard" else "rgba",
        dict(shading=shading, lighting=name),
    )  # fmt: skip
    for method in ("tiled", "hard")
    for name, shading in (("phong", "phong"), ("pbr env", "pbr"))
}
# Eager rows: one view rendered and differentiated outside `jit`, as in a notebook; a small
# scene, so that the per-call overheads outside the compiled programs show. Their first calls
# (compilation included) are reported beside the table with --compare.
EAGER = {
    f"eager {method} L2 64 {name}": (
        method,
        2,
        64,
        1,
        "rgb" if method == "hard" else "rgba",
        dict(shading=shading, lighting=lighting, eager=True),
    )  # fmt: skip
    for method in ("tiled", "hard")
    for name, shading, lighting in (("unlit", "flat", None), ("phong", "phong", "phong"))
}
QUICK = {
    "tiled L3 128": ("tiled", 3, 128, 1, "rgba"),
    "tiled L3 128 x8": ("tiled", 3, 128, 8, "rgba"),
    "dense L3 128": ("dense", 3, 128, 1, "rgba"),
}
GPU = {
    "hard L4 256": ("hard", 4, 256, 1, "rgb"),
    "hard L6 1024": ("hard", 6, 1024, 1, "rgb"),
    "hard L4 256 x64": ("hard", 4, 256, 64, "rgb"),
    "tiled L4 256": ("tiled", 4, 256, 1, "rgba"),
    "tiled L5 512": ("tiled", 5, 512, 1, "rgba"),
    "tiled L6 1024": ("tiled", 6, 1024, 1, "rgba"),
    "tiled L4 256 x64": ("tiled", 4, 256, 64, "rgba"),
    "tiled L4 256 sil x64": ("tiled", 4, 256, 64, "sil"),
    "tiled L4 256 8 meshes": ("tiled", 4, 256, 8, "meshes"),
    "tiled L4 256 sil": ("tiled", 4, 256, 1, "sil"),
    "dense L3 128": ("dense", 3, 128, 1, "rgba"),
    "dense L3 256 sil": ("dense", 3, 256, 1, "sil"),
}
# (level, image side, views) of the interleaved vmap-vs-one-view measurement.
RATIO, RATIO_QUICK, RATIO_GPU = (4, 256, 8), (3, 128, 8), (4, 256, 64)
# Peak memory of the dense path's fwd+bwd in pixels x faces float32 buffers (measured at
# 128x128 with 1,280 faces; the dense path evaluates two near-plane pieces per face);
# configurations that would need more than DENSE_LIMIT_GB are not run (a process killed for
# memory would only say so).
DENSE_BUFFERS = {"rgba": 120, "sil": 80}
DENSE_LIMIT_GB = 20.0


def _dense_estimate_gb(level: int, side: int, views: int, output: str) -> float:
    return DENSE_BUFFERS[output] * 4 * side * side * 20 * 4**level * views / 1e9


def _build(method: str, level: int, side: int, views: int, output: str, settings=None):
    """Jitted `fwd(verts)` (images) and `fwd_bwd(verts)` (gradient of a loss on them; plain
    functions for the eager rows) of one configuration (`settings`: further `RasterConfig`
    fields), and the vertices to call them with."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import softjax as sj

    sphere = sj.ico_sphere(level)
    faces, colours = sphere.faces, (sphere.verts + 1.0) / 2.0
    settings = dict(settings or {})
    lights, material = _lighting(settings.pop("lighting", None))
    if output == "meshes":
        cfg = sj.RasterConfig(image_size=(side, side), sigma=1e-4, gamma=1e-4, method=method)
        spheres = [sj.ico_sphere(1 + i % level) for i in range(views)]
        batch = sj.stack_meshes([sj.Mesh(m.verts, m.faces, (m.verts + 1.0) / 2.0)
                                 for m in spheres])  # fmt: skip
        cam = sj.look_at(eye=(0.0, 0.0, 2.7), fov=60.0)

        def images(verts):
            one = lambda m, v: sj.render(m.replace(verts=v), cam, cfg)  # noqa: E731
            return jax.vmap(one)(batch, verts)

        def loss(verts):
            return jnp.mean((images(verts) - 0.5) ** 2)

        return jax.jit(images), jax.jit(jax.grad(loss)), batch.verts

    eager = settings.pop("eager", False)
    angles = np.linspace(0.0, 2.0 * np.pi, views, endpoint=False)
    eyes = 2.7 * np.stack([np.sin(angles), np.zeros(views), np.cos(angles)], -1)
    cams = jax.vmap(sj.look_at)(jnp.asarray(eyes, jnp.float32))
    visibility = method if method in ("hard", "splat") else "soft"
    cfg = sj.RasterConfig(image_size=(side, side), sigma=1e-4, gamma=1e-4,
                          method="tiled" if method in ("hard", "splat") else method,
                          visibility=visibility, **(settings or {}))  # fmt: skip
    if eager:  # one view, called as a user calls it outside `jit`
        one = jax.tree.map(lambda x: x[0], cams)

        def images(verts):
            mesh = sj.Mesh(verts, faces, colours)
            if output == "sil":
                return sj.render_silhouette(mesh, one, cfg)
            return sj.render(mesh, one, cfg, lights, material)
    else:
        if output == "sil":
            batched = jax.vmap(sj.render_silhouette, in_axes=(None, 0, None))
        else:
            batched = jax.vmap(lambda m, c, cfg: sj.render(m, c, cfg, lights, material),
                               in_axes=(None, 0, None))  # fmt: skip

        def images(verts):
            return batched(sj.Mesh(verts, faces, colours), cams, cfg)

    def loss(verts):
        out = images(verts)
        return jnp.mean(((out[..., :3] if output == "rgb" else out) - 0.5) ** 2)

    compiled = (lambda f: f) if eager else jax.jit
    return compiled(images), compiled(jax.grad(loss)), sphere.verts


def _lighting(name):
    """`(lights, material)` of the lit rows (None, None for unlit colours)."""
    import numpy as np

    import softjax as sj

    if name is None:
        return None, None
    sun = sj.DirectionalLight((0.3, -1.0, -0.5), intensity=0.7)
    if name == "phong":
        return sj.Lights(0.3, [sun]), sj.Material(specular=0.3, shininess=20.0)
    theta = np.linspace(0.0, np.pi, 16)[:, None, None]
    sky = 0.6 + 0.4 * np.cos(theta) * np.array([0.8, 0.9, 1.0])  # brighter above
    env = sj.EnvironmentLight(np.float32(np.broadcast_to(sky, (16, 32, 3))))
    return sj.Lights(0.0, [sun], environment=env), sj.PBRMaterial(0.5, 0.2)


def pair_stats(level: int, side: int, settings=None) -> dict:
    """How much of the tiled soft path's per-pair work matters, on the benchmark's one-view
    scene: `evaluated` (pixel, face) pairs, as its batches compute them (every work item is a
    tile's pixels against one chunk of candidate faces, sentinel slots included),
    `candidates` (each tile's candidate faces times its pixels) and `useful`, the pairs whose
    coverage passes the cull (`D >= dist_eps`). Useful pairs are counted among the binned
    candidates, which hold every pair that passes (`tests/test_tiled.py` checks it)."""
    import jax
    import jax.numpy as jnp

    import softjax as sj
    from softjax._src.geometry.clip import project
    from softjax._src.geometry.pairs import pair_geometry
    from softjax._src.soft import coverage
    from softjax._src.tiles import bins as tb

    sphere = sj.ico_sphere(level)
    settings = {k: v for k, v in (settings or {}).items() if k != "lighting"}
    cfg = sj.RasterConfig(image_size=(side, side), sigma=1e-4, gamma=1e-4, **settings)
    cam = sj.look_at(eye=(0.0, 0.0, 2.7), fov=60.0)
    tris = project(sphere.verts, sphere.faces, cam, cfg.cull_backfaces, None)
    faces, valid = tb.face_data(tris, jnp.zeros((tris.valid.shape[0], 3, 0)))
    st = tb.static_settings(cfg, tris.valid.shape[0], True, None, sphere.faces.shape[0])
    bins = tb.bin_faces(faces, valid, st, tb.face_reach2(faces, cfg.sigma, st.model))
    px, py = tb.tile_grid(cfg.image_size, cfg.tile_size, faces.rows.dtype)
    h, w = cfg.image_size
    ny, nx = tb.grid_shape(cfg.image_size, cfg.tile_size)
    ty, tx = jnp.divmod(jnp.arange(ny * nx), nx)
    qy, qx = jnp.divmod(jnp.arange(cfg.tile_size**2), cfg.tile_size)
    in_image = ((ty[:, None] * cfg.tile_size + qy[None, :] < h)
                & (tx[:, None] * cfg.tile_size + qx[None, :] < w))  # fmt: skip
    sentinel = faces.rows.shape[0] - 1

    @jax.jit
    def kept(work, b):
        tile, idx = tb.batch_of(work, b, sentinel, st, st.batch)
        tri = tb.face_triangles(faces.rows[idx][:, :, None, :], faces.flags[idx][:, :, None, :])
        frag = pair_geometry(px[tile][:, None, :], py[tile][:, None, :], tri)
        ok, _ = coverage.pair_coverage(frag, cfg.sigma, cfg.model, (idx != sentinel)[..., None])
        return jnp.sum(ok & in_image[tile][:, None, :])

    items = useful = 0
    for k in range(bins.end.shape[0]):
        for r in range(int(tb._num_rounds(bins, k, st))):
            work = tb.schedule(bins, k, r, st)
            n = int(work.num_items)
            items += n
            useful += sum(int(kept(work, b)) for b in range(-(-n // st.batch)))
    q = cfg.tile_size**2
    return {"evaluated": items * st.chunk * q, "candidates": int(jnp.sum(bins.count)) * q,
            "useful": useful, "ratio": items * st.chunk * q / max(useful, 1)}  # fmt: skip


def run_vmap_ratio(level: int, side: int, views: int, reps: int) -> dict:
    """fwd+bwd of `views` views (vmap) against one view, calls interleaved in one process so
    that the machine's drift hits both alike; the ratio is the median of per-pair ratios."""
    import numpy as np

    _, one, verts = _build("tiled", level, side, 1, "rgba")
    _, many, _ = _build("tiled", level, side, views, "rgba")
    one(verts).block_until_ready()
    many(verts).block_until_ready()
    ratios = []
    for _ in range(reps):
        start = time.perf_counter()
        one(verts).block_until_ready()
        t_one = time.perf_counter() - start
        start = time.perf_counter()
        many(verts).block_until_ready()
        ratios.append((time.perf_counter() - start) / t_one)
    return {"ratio": float(np.median(ratios)), "ratios": ratios}


def _build_deodr(level: int, side: int):
    """deodr's `fwd()` (the image) and `fwd_bwd()` (vertex gradient of the RGB loss) of the
    same scene: mesh, vertex colours (unlit), camera (OpenCV form of
    `look_at(eye=(0, 0, 2.7), fov=60)`) and image size."""
    import numpy as np
    from deodr.differentiable_renderer import Camera, Scene3D
    from deodr.triangulated_mesh import ColoredTriMesh

    import softjax as sj

    sphere = sj.ico_sphere(level)
    verts = np.asarray(sphere.verts, np.float64)
    mesh = ColoredTriMesh(np.asarray(sphere.faces).copy(), vertices=verts, nb_colors=3)
    mesh.set_vertices_colors((verts + 1.0) / 2.0)
    scene = Scene3D(sigma=1)  # a one-pixel antialiasing band
    scene.set_mesh(mesh)
    scene.set_background_color(np.zeros(3))
    scene.set_light(light_directional=None, light_ambient=1.0)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # y down, z forward
    eye = np.array([0.0, 0.0, 2.7])
    f = side / 2 / np.tan(np.deg2rad(30.0))
    intrinsic = np.array([[f, 0.0, side / 2], [0.0, f, side / 2], [0.0, 0.0, 1.0]])
    camera = Camera(extrinsic=np.column_stack((rot, -rot @ eye)), intrinsic=intrinsic,
                    width=side, height=side)  # fmt: skip

    def fwd():
        return scene.render(camera)

    def fwd_bwd():
        image = scene.render(camera)
        scene.clear_gradients()
        scene.render_backward(2.0 * (image - 0.5) / image.size)
        return mesh._vertices_b

    return fwd, fwd_bwd


def run_one(method: str, level: int, side: int, views: int, output: str, reps: int,
            settings=None) -> dict:  # fmt: skip
    """Measures one configuration in this process; returns a JSON-able dict."""
    import resource

    import jax
    import jax.numpy as jnp
    import numpy as np

    if method == "deodr":
        fwd, fwd_bwd = _build_deodr(level, side)
        result = {"device": "cpu (deodr)"}
        for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
            start = time.perf_counter()
            fn()
            result[f"{name}_first"] = time.perf_counter() - start
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            result[name], result[f"{name}_all"] = float(np.median(times)), times
        result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        return result
    import softjax

    fwd, fwd_bwd, verts = _build(method, level, side, views, output, settings)
    result = {"softjax": os.path.realpath(os.path.dirname(softjax.__file__))}
    for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
        start = time.perf_counter()
        out = fn(verts).block_until_ready()
        result[f"{name}_first"] = time.perf_counter() - start
        print(f"{name}: first call {result[f'{name}_first']:.1f} s", file=sys.stderr, flush=True)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn(verts).block_until_ready()
            times.append(time.perf_counter() - start)
        result[name] = float(np.median(times))
        result[f"{name}_all"] = times
        if not bool(jnp.all(jnp.isfinite(out))):
            raise RuntimeError(f"non-finite {name} output")
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    device = jax.devices()[0]
    result["device"] = device.device_kind
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        result["device_peak_gb"] = stats["peak_bytes_in_use"] / 1e9
    return result


def _baseline_rss() -> float:
    """Peak RSS of a process that imports jax and softjax and runs one tiny jitted op."""
    code = (
        "import resource, jax, jax.numpy as jnp, softjax;"
        "jax.jit(jnp.sin)(1.0).block_until_ready();"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def _machine() -> dict:
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_gb = int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) / 1e6
    except (OSError, StopIteration):
        mem_gb = float("nan")
    devices = jax.devices()
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "device": f"{devices[0].platform}: {devices[0].device_kind} x{len(devices)}",
        "python": platform.python_version(),
        "jax": jax.__version__,
    }


def _fmt(x, digits=3):
    return "-" if x is None else f"{x:.{digits}f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes; prints, writes nothing")
    p.add_argument("--gpu", action="store_true", help="GPU sizes; appends to RESULTS.md")
    p.add_argument("--hard", action="store_true", help="hard-visibility rows (CPU)")
    p.add_argument("--family", action="store_true", help="soft-rasterizer family rows (CPU)")
    p.add_argument("--shading", action="store_true", help="Phong vs PBR shading rows (CPU)")
    p.add_argument("--eager", action="store_true",
                   help="one view rendered and differentiated outside jit (CPU)")  # fmt: skip
    p.add_argument("--reps", type=int, default=None, help="timed calls per configuration")
    p.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds allowed to each configuration's process")  # fmt: skip
    p.add_argument("--compare", metavar="BASE_REF",
                   help="time the chosen rows with the code at BASE_REF (a git commit) and with "
                        "this tree, in alternating fresh processes; medians and ratios, "
                        "written to RESULTS.md")  # fmt: skip
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating process pairs per row with --compare")  # fmt: skip
    p.add_argument("--rows", help="comma-separated row names of the chosen set (default: all)")
    p.add_argument("--pairs", action="store_true",
                   help="with --compare: count evaluated and useful pixel-face pairs of "
                        "one-view tiled rows")  # fmt: skip
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--ratio", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.one:
        method, level, side, views, output, *settings = json.loads(args.one)
        result = run_one(method, level, side, views, output, args.reps or 5, *settings)
        if args.pairs and method == "tiled" and views == 1 and output != "meshes":
            result["pairs"] = pair_stats(level, side, *settings)
        print(json.dumps(result))
        return
    if args.ratio:
        print(json.dumps(run_vmap_ratio(*json.loads(args.ratio), args.reps or 9)))
        return

    configs = (QUICK if args.quick else GPU if args.gpu else HARD if args.hard
               else FAMILY if args.family else SHADING if args.shading
               else EAGER if args.eager else FULL)  # fmt: skip
    if args.rows:
        wanted = [r.strip() for r in args.rows.split(",")]
        unknown = [r for r in wanted if r not in configs]
        if unknown:
            p.error(f"unknown rows {unknown}; the chosen set has {list(configs)}")
        configs = {r: configs[r] for r in wanted}
    reps = args.reps or (3 if args.quick else 5)
    if args.compare:
        compare(args, configs, reps)
        return
    machine = _machine()
    print(json.dumps(machine))
    rows = {}
    for name, spec in configs.items():
        method, level, side, views, output, *_ = spec
        est = _dense_estimate_gb(level, side, views, output) if method == "dense" else 0.0
        if method == "deodr" and importlib.util.find_spec("deodr") is None:
            rows[name] = {"skipped": "deodr is not installed (pip install deodr)"}
            print(f"{name}: skipped (deodr is not installed)", flush=True)
            continue
        if est > DENSE_LIMIT_GB:
            rows[name] = {"skipped": f"needs about {est:.0f} GB"}
            print(f"{name}: skipped (the dense path needs about {est:.0f} GB)", flush=True)
            continue
        cmd = [sys.executable, __file__, "--one", json.dumps(spec), "--reps", str(reps)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired as e:
            rows[name] = {"skipped": f"took longer than {args.timeout:.0f} s"}
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr or ""
            print(f"{name}: timed out after {args.timeout:.0f} s\n{err[-1000:]}", flush=True)
            continue
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no message"])[-1][:120]
            if proc.returncode < 0:
                why = f"killed by signal {-proc.returncode} (out of memory?)"
            rows[name] = {"skipped": why}
            print(f"{name}: FAILED\n{proc.stderr[-2000:]}", flush=True)
            continue
        rows[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = rows[name]
        device_peak = f", device peak {r['device_peak_gb']:.2f} GB" if "device_peak_gb" in r else ""
        print(f"{name}: fwd {r['fwd']:.4f} s, fwd+bwd {r['fwd_bwd']:.4f} s, "
              f"peak RSS {r['peak_rss_gb']:.2f} GB{device_peak}", flush=True)  # fmt: skip
    if not (args.hard or args.family or args.shading):
        _vmap_ratio(args, reps, rows)
    if not (args.gpu or args.hard or args.family or args.shading):
        check = os.path.join(HERE, "..", "tests", "sharded_check.py")
        proc = subprocess.run([sys.executable, check, "8"], capture_output=True, text=True,
                              timeout=args.timeout)  # fmt: skip
        if proc.returncode == 0:
            rows["sharded"] = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            print(f"sharded check: FAILED\n{proc.stderr[-2000:]}", flush=True)
    baseline = _baseline_rss()
    table = _table(configs, rows, machine, baseline, reps)
    print(table)
    if not args.quick:
        _write(args.out, table, "## GPU" if args.gpu else "## CPU, hard visibility" if args.hard
               else "## CPU, soft-rasterizer family" if args.family
               else "## CPU, shading" if args.shading else "## CPU")  # fmt: skip
        print(f"wrote {args.out}")


def _tree_at(ref: str) -> tuple[str, str]:
    """A temporary directory holding the repository's files at commit `ref`, and the commit's
    short hash."""
    import tempfile

    root = os.path.dirname(HERE)
    sha = subprocess.run(["git", "-C", root, "rev-parse", "--short", ref], check=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    dest = tempfile.mkdtemp(prefix=f"softjax-{sha}-")
    archive = subprocess.run(["git", "-C", root, "archive", "--format=tar", ref], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return dest, sha


def _run_in(tree: str | None, spec, reps: int, timeout, pairs: bool = False) -> dict:
    """`run_one(*spec)` in a fresh process importing softjax from `tree` (None: this tree)."""
    env = dict(os.environ)
    root = tree or os.path.dirname(HERE)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--one", json.dumps(spec), "--reps", str(reps)]
    cmd += ["--pairs"] if pairs else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result.get("softjax", "").startswith(os.path.realpath(root)):
        raise RuntimeError(f"imported softjax from {result.get('softjax')}, not {root}")
    return result


def compare(args, configs, reps: int) -> None:
    """Each row with the code at `args.compare` and with this tree: `args.rounds` pairs of
    fresh processes, alternating which side goes first; per side the median over rounds of
    each process's median. Ratios are base / this tree (above 1: this tree is faster)."""
    import numpy as np

    base, sha = _tree_at(args.compare)
    head = subprocess.run(["git", "-C", os.path.dirname(HERE), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "-C", os.path.dirname(HERE), "status", "--porcelain",
                            "softjax"], capture_output=True, text=True).stdout.strip()  # fmt: skip
    head += " + uncommitted changes" if dirty else ""
    machine = _machine()
    print(json.dumps(machine))
    lines, notes = [], []
    for name, spec in configs.items():
        if spec[0] in ("deodr", "dense"):
            continue
        got = {"base": [], "head": []}
        for r in range(args.rounds):
            for side in ("base", "head") if r % 2 == 0 else ("head", "base"):
                pairs = args.pairs and r == 0  # once per side
                res = _run_in(base if side == "base" else None, spec, reps, args.timeout, pairs)
                got[side].append(res)
        med = {side: {key: float(np.median([x[key] for x in got[side]]))
                      for key in ("fwd", "fwd_bwd")} for side in got}  # fmt: skip
        ratio = {key: med["base"][key] / med["head"][key] for key in ("fwd", "fwd_bwd")}
        line = (f"| {name} | {med['base']['fwd']:.4f} | {med['head']['fwd']:.4f} | "
                f"{ratio['fwd']:.2f}x | {med['base']['fwd_bwd']:.4f} | "
                f"{med['head']['fwd_bwd']:.4f} | {ratio['fwd_bwd']:.2f}x |")  # fmt: skip
        print(line, flush=True)
        lines.append(line)
        if dict(spec[5] if len(spec) > 5 else {}).get("eager"):
            first = {side: {key: float(np.median([x[f"{key}_first"] for x in got[side]]))
                            for key in ("fwd", "fwd_bwd")} for side in got}  # fmt: skip
            notes.append(f"- {name}, first call (compilation included): fwd "
                         f"{first['base']['fwd']:.2f} s ({sha}) and {first['head']['fwd']:.2f} s "
                         f"(this tree), fwd+bwd {first['base']['fwd_bwd']:.2f} s and "
                         f"{first['head']['fwd_bwd']:.2f} s")  # fmt: skip
        for side, label in (("base", sha), ("head", "this tree")):
            stats = next((x["pairs"] for x in got[side] if "pairs" in x), None)
            if stats:
                notes.append(f"- {name}, {label}: {stats['evaluated']:,} pixel-face pairs "
                             f"evaluated, {stats['useful']:,} within the cull: "
                             f"{stats['ratio']:.2f}x")  # fmt: skip
    subprocess.run(["rm", "-rf", base])
    when = datetime.date.today().isoformat()
    table = "\n".join([
        f"Measured {when} on {machine['cpu']} ({machine['cores']} cores); "
        f"Python {machine['python']}, jax {machine['jax']}. This tree ({head}) against {sha}: "
        f"{args.rounds} pairs of fresh processes per row, alternating which goes first; per "
        f"side the median over processes of each one's median of {reps} calls after a "
        "warm-up call. Ratio: base time / this tree's time.",
        "",
        f"| configuration | fwd {sha} (s) | fwd this tree (s) | fwd speed-up | "
        f"fwd+bwd {sha} (s) | fwd+bwd this tree (s) | fwd+bwd speed-up |",
        "|---|---|---|---|---|---|---|",
        *lines,
        *([""] + notes if notes else []),
    ])  # fmt: skip
    print(table)
    if not args.quick:
        _write(args.out, table, f"## CPU, against {sha}")
        print(f"wrote {args.out}")


def _vmap_ratio(args, reps: int, rows: dict) -> None:
    """The interleaved vmap-vs-one-view measurement, in a fresh process, into `rows`."""
    level, side, views = RATIO_QUICK if args.quick else RATIO_GPU if args.gpu else RATIO
    cmd = [sys.executable, __file__, "--ratio", json.dumps([level, side, views]),
           "--reps", str(2 * reps + 1)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess(cmd, 1, "", f"timed out after {args.timeout} s")
    if proc.returncode == 0:
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows["vmap ratio"] = {"level": level, "side": side, "views": views, **r}
        print(f"vmap ratio ({views} views): {r['ratio']:.2f}", flush=True)
    else:
        print(f"vmap ratio: FAILED\n{proc.stderr[-2000:]}", flush=True)


def _table(configs, rows, machine, baseline, reps) -> str:
    on_device = any("device_peak_gb" in r for r in rows.values())
    device_col = " device peak (GB) |" if on_device else ""
    lines = [
        f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gb']} GB), {machine['device']}; Python {machine['python']}, "
        f"jax {machine['jax']}. Median of {reps} calls after a warm-up call; peak RSS of a "
        f"fresh process per row (a process that only imports jax and softjax peaks at "
        f"{baseline:.2f} GB)"
        + ("; device peak: the accelerator allocator's peak bytes in use." if on_device else "."),
        "",
        "| configuration | output | faces | image | views | fwd (s) | fwd+bwd (s) "
        "| peak RSS (GB) |" + device_col + " first fwd+bwd call, incl. compile (s) |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if on_device else ""),
    ]
    for name, (_, level, side, views, output, *_) in configs.items():
        r = rows.get(name, {})
        faces = f"80-{20 * 4**level:,}" if output == "meshes" else f"{20 * 4**level:,}"
        head = f"| {name} | {output} | {faces} | {side}x{side} | {views} |"
        if "skipped" in r:
            lines.append(
                f"{head} not run: {r['skipped']} | | |" + (" |" if on_device else "") + " |"
            )
            continue
        device = f" {_fmt(r.get('device_peak_gb'), 2)} |" if on_device else ""
        lines.append(
            f"{head} {_fmt(r['fwd'], 4)} | {_fmt(r['fwd_bwd'], 4)} | "
            f"{_fmt(r['peak_rss_gb'], 2)} |{device} {_fmt(r['fwd_bwd_first'], 1)} |"
        )
    lines += ["", *_ratios(rows)]
    return "\n".join(lines)


def _ratios(rows) -> list[str]:
    out = []

    def get(name, key="fwd_bwd"):
        r = rows.get(name, {})
        return r.get(key)

    hard, peer, soft = get("hard L4 256"), get("deodr L4 256"), get("tiled L4 256 rgb")
    if hard and peer:
        out.append(f"- hard visibility vs deodr (hard edges, edge antialiasing; C++), fwd+bwd "
                   f"of an RGB loss at 256x256 with 5,120 faces, same run: {hard * 1e3:.1f} ms "
                   f"vs {peer * 1e3:.1f} ms ({hard / peer:.1f}x deodr's time; fwd "
                   f"{get('hard L4 256', 'fwd') * 1e3:.1f} vs "
                   f"{get('deodr L4 256', 'fwd') * 1e3:.1f} ms).")  # fmt: skip
    if hard and soft:
        out.append(f"- hard vs soft visibility (tiled), fwd+bwd of the RGB loss at 256x256 with "
                   f"5,120 faces: {soft / hard:.1f}x faster.")  # fmt: skip
    for name, what in (("hard L5 512", "512x512 with 20,480"),
                       ("hard L6 1024", "1024x1024 with 81,920")):  # fmt: skip
        r = rows.get(name, {})
        if "peak_rss_gb" in r:
            out.append(f"- hard, {what} faces, fwd+bwd: {r['fwd_bwd']:.3f} s, peak RSS "
                       f"{r['peak_rss_gb']:.2f} GB.")  # fmt: skip
    base = get("tiled L4 256 logistic")
    others = [n for n in FAMILY if n != "tiled L4 256 logistic" and get(n)]
    if base and others:
        each = ", ".join(f"{n.removeprefix('tiled L4 256 ')} {get(n) / base:.2f}x" for n in others)
        out.append(f"- fwd+bwd of each family member against the default (logistic, "
                   f"probabilistic, softmax), same run: {each}.")  # fmt: skip
    fast = get("tiled L4 256")
    for dense_name, what in (("dense L3 256", "silhouette + RGB"),
                             ("dense L3 256 sil", "silhouette only")):  # fmt: skip
        dense = get(dense_name)
        if fast and dense:
            out.append(f"- fwd+bwd, tiled (silhouette + RGB) at 256x256 with 5,120 faces vs "
                       f"dense ({what}) at 256x256 with 1,280 faces: {dense / fast:.0f}x "
                       f"faster with 4x the faces.")  # fmt: skip
    for dense_name, faces in (("dense L3 256 sil", "1,280"), ("dense L2 256 sil", "320")):
        fast_s, dense_s = get("tiled L4 256 sil"), get(dense_name)
        if fast_s and dense_s:
            out.append(
                f"- fwd+bwd of silhouettes alone: tiled at 5,120 faces vs dense "
                f"at {faces} faces (both 256x256): {dense_s / fast_s:.0f}x faster."
            )
    fast, dense = get("tiled L4 256"), get("dense L3 128")
    if fast and dense:
        out.append(f"- fwd+bwd of silhouette + RGB: tiled at 256x256 with 5,120 faces vs dense "
                   f"at 128x128 with 1,280 faces: {dense / fast:.0f}x faster with 4x the "
                   f"pixels and 4x the faces.")  # fmt: skip
    r = rows.get("vmap ratio")
    for single, batch, n in (("tiled L4 256", "tiled L4 256 x8", 8),
                             ("tiled L4 256", "tiled L4 256 x64", 64),
                             ("tiled L3 128", "tiled L3 128 x8", 8)):  # fmt: skip
        one, many = get(single), get(batch)
        # The interleaved measurement below is the one to quote: rows from separate
        # processes minutes apart give a second, noisier figure for the same ratio.
        if one and many and not (r and r["views"] == n):
            out.append(f"- vmap over {n} views: fwd+bwd costs {many / one:.2f}x one view "
                       f"({many / one / n:.2f}x per view).")  # fmt: skip
    for batch in ("tiled L4 256 x8", "tiled L4 256 x64", "tiled L4 256 sil x64"):
        many = get(batch)
        if many:
            views = int(batch.split(" x")[1])
            out.append(f"- {batch}: {views / many:.1f} views/s fwd+bwd "
                       f"({views / get(batch, 'fwd'):.1f} views/s fwd).")  # fmt: skip
    padded = get("tiled L4 256 8 meshes")
    if padded:
        out.append(f"- a padded batch of 8 meshes (80 to 5,120 faces, `sj.stack_meshes`) at "
                   f"256x256: {8 / padded:.1f} meshes/s fwd+bwd.")  # fmt: skip
    sharded = rows.get("sharded")
    if sharded:
        jit = sharded["jit"]
        out.append(
            f"- 16 views sharded over 8 simulated CPU devices (correctness only: simulated "
            f"devices share the same cores): images within {jit['image_error']:.1e} of the "
            f"unsharded ones, gradients within {jit['grad_error']:.1e} relative, output "
            f"sharded along the views ({jit['shard_shapes'][0]} per device, "
            f"{jit['all_gathers']} all-gathers); shard_map: gradients within "
            f"{sharded['shard_map']['grad_error']:.1e}."
        )
    if r:
        out.append(f"- vmap over {r['views']} views against one view, fwd+bwd at {r['side']}x"
                   f"{r['side']} with {20 * 4 ** r['level']:,} faces, calls interleaved in one "
                   f"process (median of {len(r['ratios'])} pairs): {r['ratio']:.2f}x "
                   f"({r['ratio'] / r['views']:.2f}x per view).")  # fmt: skip
    huge = rows.get("tiled L6 1024", {})
    if "device_peak_gb" in huge:
        out.append(f"- 1024x1024 with 81,920 faces, fwd+bwd: {huge['fwd_bwd']:.3f} s, device "
                   f"peak {huge['device_peak_gb']:.2f} GB.")  # fmt: skip
    big = rows.get("tiled L5 512", {})
    if "peak_rss_gb" in big:
        out.append(f"- 512x512 with 20,480 faces, fwd+bwd: peak RSS {big['peak_rss_gb']:.2f} GB.")
    return out


def _write(path, table, title: str) -> None:
    header = "# softjax benchmark results\n\nWritten by `python benchmarks/bench.py`.\n"
    sections = {}
    if os.path.exists(path):
        text = open(path).read()
        for part in text.split("\n## ")[1:]:
            key, _, body = part.partition("\n")
            sections["## " + key.strip()] = body.strip()
    sections[title] = table
    with open(path, "w") as f:
        f.write(header)
        order = ["## CPU", "## CPU, hard visibility", "## CPU, soft-rasterizer family",
                 "## CPU, shading", "## GPU"]  # fmt: skip
        for key in order + sorted(k for k in sections if k not in order):
            if key in sections:
                f.write(f"\n{key}\n\n{sections[key]}\n")


if __name__ == "__main__":
    main()
