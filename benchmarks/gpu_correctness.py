"""Tiled path == dense reference on the default device (a GPU where there is one), and the
device's results == the CPU's. Prints a table; exits non-zero on a mismatch.

    PYTHONPATH=. python benchmarks/gpu_correctness.py
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

import softjax as sj

# Tiled against dense on one device: the tolerances of tests/test_tiled.py. Device against CPU:
# the two backends' float32 exp/log differ in the last bits, and at sigma = 1e-4 a logit
# d^2 / sigma turns that into image differences of ~1.5e-5 at edge pixels (measured on an
# H100 once the geometry ran in full precision); gradients stay within GRAD_TOL.
IMAGE_TOL, DEVICE_IMAGE_TOL, GRAD_TOL = 1e-5, 5e-5, 1e-4


def _scenes():
    rng = np.random.default_rng(0)
    sphere = sj.ico_sphere(3)
    verts = np.asarray(sphere.verts) * (1 + 0.2 * rng.standard_normal((sphere.num_verts, 1)))
    yield "bumpy sphere 64x64", verts, np.asarray(sphere.faces), (64, 64), (0.4, 0.3, 2.6)
    # Many overlapping layers: 40 random triangles crossing the image centre.
    tri = rng.uniform(-1, 1, (40, 3, 3)) * [1.0, 1.0, 0.4]
    yield (
        "40 layers 48x80",
        tri.reshape(-1, 3),
        np.arange(120).reshape(40, 3),
        (48, 80),
        (0.0, 0.0, 3.0),
    )


def _grads(verts, faces, colours, eye, size, method, device):
    cfg = sj.RasterConfig(image_size=size, sigma=1e-4, gamma=1e-4, method=method)
    target = jnp.linspace(0.0, 1.0, size[0] * size[1] * 4).reshape(*size, 4)

    def loss(v, c, e):
        rgba = sj.render(
            sj.Mesh(v, faces, c),
            sj.look_at(e),
            cfg,
            lights=sj.Lights(0.5, [sj.DirectionalLight((0.0, -1.0, -1.0), intensity=0.5)]),
        )
        return jnp.mean((rgba - target) ** 2), rgba

    args = [jax.device_put(jnp.asarray(x, jnp.float32), device) for x in (verts, colours, eye)]
    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
    (_, rgba), grads = fn(*args)
    return np.asarray(rgba), [np.asarray(g) for g in grads]


def _report(name, compared, run_a, run_b, image_tol, note="") -> int:
    """Prints one table row comparing two `(image, grads)` runs; returns 1 on a mismatch."""
    (img_a, g_a), (img_b, g_b) = run_a, run_b
    img = float(np.abs(img_a - img_b).max())
    rel = [float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-12))
           for x, y in zip(g_a, g_b, strict=True)]  # fmt: skip
    ok = img <= image_tol and max(rel) <= GRAD_TOL
    rels = ", ".join(f"{r:.1e}" for r in rel)
    print(f"| {name} | {compared} | {img:.1e} | {rels}{note} |{'' if ok else ' FAIL'}")
    return 0 if ok else 1


def _parallel_views(device) -> int:
    """16 views under `vmap` as the device renders them by default (in parallel on an
    accelerator) against one view at a time (`parallel_views=1`), on the device."""
    sphere = sj.ico_sphere(3)
    colours = (sphere.verts + 1.0) / 2.0
    angles = jnp.linspace(0.0, 2 * jnp.pi, 16, endpoint=False)
    eyes = jnp.stack([2.7 * jnp.sin(angles), 0.3 * jnp.cos(angles), 2.7 * jnp.cos(angles)], 1)
    out = []
    for parallel in (None, 1):
        cfg = sj.RasterConfig(image_size=(64, 64), sigma=1e-4, gamma=1e-4,
                              parallel_views=parallel)  # fmt: skip

        def loss(v, c, cfg=cfg):
            mesh = sj.Mesh(v, sphere.faces, c)
            rgba = jax.vmap(lambda e: sj.render(mesh, sj.look_at(e), cfg))(eyes)
            return jnp.mean((rgba - 0.5) ** 2), rgba

        args = [jax.device_put(x, device) for x in (sphere.verts, colours)]
        (_, rgba), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(*args)
        out.append((np.asarray(rgba), [np.asarray(g) for g in grads]))
    return _report(
        "16 views 64x64", "vmap default vs one view at a time", *out, IMAGE_TOL, " (verts, colours)"
    )


def main() -> int:
    device, cpu = jax.devices()[0], jax.devices("cpu")[0]
    print(f"device: {device.platform} {device.device_kind}")
    failures = 0
    print("| scene | compared | image max abs diff | grad max rel diff (verts, colours, eye) |")
    print("|---|---|---|---|")
    for name, verts, faces, size, eye in _scenes():
        colours = np.random.default_rng(1).uniform(0, 1, verts.shape)
        runs = {
            "tiled": _grads(verts, faces, colours, eye, size, "tiled", device),
            "dense": _grads(verts, faces, colours, eye, size, "dense", device),
            "tiled cpu": _grads(verts, faces, colours, eye, size, "tiled", cpu),
        }
        for a, b in (("tiled", "dense"), ("tiled", "tiled cpu")):
            tol = IMAGE_TOL if b == "dense" else DEVICE_IMAGE_TOL
            failures += _report(name, f"{a} vs {b}", runs[a], runs[b], tol)
    failures += _parallel_views(device)
    print("correctness: " + ("ok" if not failures else f"{failures} FAILED"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
