"""Which member of the soft-rasterizer family fits best? Two inverse problems, every pairing of
coverage distributions and T-conorms, one table.

    python benchmarks/family_study.py            # about 15 minutes on a 2-core CPU
    python benchmarks/family_study.py --quick    # a smoke run: 2 x 2 choices, few steps

Tasks (each choice runs the same optimisation from the same start; the table lists both):
  deform   the flagship demo's fit (`softjax.demo`) at a smaller scale: an ico-sphere (level
           2) fitted to the silhouettes of the six-lobed jack from 12 views, 4 per step
           (48x48, Adam, soft IoU + Laplacian and flatten terms; the targets are sharp
           silhouettes, sigma 1e-5). Reported: the held-out hard
           IoU (6 other views, 64x64, thresholded at 1/2) after the fit, and the first of the
           snapshots (every 10 steps) whose held-out IoU reached 0.9. Success: IoU >= 0.9.
  pose     `examples/camera_pose.py` at a smaller scale: 20 starts within 60 degrees of the
           true viewing direction of the asymmetric teapot, 40 Adam steps on the soft IoU of
           48x48 silhouettes against a binary mask, one fixed sigma. Reported: the share of
           starts that end within 20 degrees, their median final error and the median step
           at which they first came within 20 degrees.

Scales. Distributions spread differently at the same sigma, so each gets the sigma at which
its coverage falls to 1% at the same outside distance as the logistic's at the task's sigma
(`sigma_d = sigma * q_logistic(0.01) / q_d(0.01)`, `q` = `softjax.coverage.quantile`). All
use squared distances (SoftRas's convention).

Writes the table as markdown to `--out` (default benchmarks/FAMILY.md) with the machine it
ran on, and prints it.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import softjax as sj
from softjax import coverage, demo, losses

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import camera_pose  # noqa: E402  (the teapot and the pose helpers)

DISTRIBUTIONS = ("logistic", "gaussian", "laplace", "cauchy", "uniform", "dibr")
T_CONORMS = ("probabilistic", "einstein", "max")
DEFORM_SIGMA, POSE_SIGMA = 1e-4, 3e-5


def scaled_sigma(distribution: str, sigma: float) -> float:
    """The sigma at which `distribution` falls to 1% where the logistic does at `sigma`."""
    return sigma * coverage.quantile("logistic", 0.01) / coverage.quantile(distribution, 0.01)


_SIZE = (48, 48)
_TARGET = demo.jack_mesh()
_TRAIN_CAMS, _TEST_CAMS = demo.cameras(demo._TRAIN_VIEWS), demo.cameras(demo._TEST_VIEWS)
_EVAL_CFG = sj.RasterConfig((64, 64), sigma=1e-4)
_TEST_TARGETS = demo.silhouettes(_TARGET, _TEST_CAMS, _EVAL_CFG)


@jax.jit
def _heldout(verts, faces):
    pred = demo.silhouettes(sj.Mesh(verts, faces), _TEST_CAMS, _EVAL_CFG)
    return jnp.mean(demo.hard_iou(pred, _TEST_TARGETS))


def deform(cfg: sj.RasterConfig, steps: int):
    """The held-out IoU after `steps`, and the first snapshot step reaching 0.9 (or None)."""
    train_targets = demo.silhouettes(_TARGET, _TRAIN_CAMS, sj.RasterConfig(_SIZE, sigma=1e-5))
    train_cams = _TRAIN_CAMS
    sphere = sj.ico_sphere(2)
    base, faces = sphere.verts, sphere.faces
    lap = losses.uniform_laplacian(np.asarray(faces), sphere.num_verts)
    pairs = losses.face_pairs(np.asarray(faces))
    params = {"disp": jnp.zeros_like(base), "centre": jnp.zeros(3),
              "log_scale": jnp.asarray(math.log(0.7))}  # fmt: skip

    def to_verts(p):
        return p["centre"] + jnp.exp(p["log_scale"]) * (base + p["disp"])

    def loss_fn(p, cams, tgt):
        verts = to_verts(p)
        pred = demo.silhouettes(sj.Mesh(verts, faces), cams, cfg)
        return (losses.silhouette_iou_loss(pred, tgt) + 1.6 * losses.laplacian_loss(verts, lap)
                + 0.0032 * losses.flatten_loss(verts, faces, pairs))  # fmt: skip

    opt = optax.adam(0.01, b1=0.5, b2=0.99)
    state = opt.init(params)

    @jax.jit
    def step(p, state, idx):
        cams = jax.tree.map(lambda x: x[idx], train_cams)
        grads = jax.grad(loss_fn)(p, cams, train_targets[idx])
        updates, state = opt.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    def heldout(p):
        return _heldout(to_verts(p), faces)

    rng = np.random.default_rng(0)
    reached = None
    for i in range(steps):
        params, state = step(params, state, jnp.asarray(rng.choice(12, 4, replace=False)))
        if (i + 1) % 10 == 0 and reached is None and float(heldout(params)) >= 0.9:
            reached = i + 1
    return float(heldout(params)), reached


POSE_STARTS = 20


def pose(cfg: sj.RasterConfig, steps: int, starts: int = POSE_STARTS):
    """Success rate (within 20 degrees), median final error, median first step within 20."""
    mesh = camera_pose.teapot()
    verts = np.asarray(mesh.verts)
    centre = jnp.asarray((verts.max(0) + verts.min(0)) / 2)
    true_dir = camera_pose.direction(camera_pose.TRUE_ELEVATION, camera_pose.TRUE_AZIMUTH)

    def camera(d, log_dist):
        return sj.look_at(centre + jnp.exp(log_dist) * d / jnp.linalg.norm(d), at=centre,
                          fov=camera_pose.FOV)  # fmt: skip

    rng = np.random.default_rng(0)
    dirs = camera_pose.sample_cap(true_dir, 60.0, starts, rng)
    dists = camera_pose.TRUE_DISTANCE * rng.uniform(0.7, 1.3, starts)
    start = {"dir": jnp.asarray(dirs, jnp.float32),
             "log_dist": jnp.asarray(np.log(dists), jnp.float32)}  # fmt: skip
    true_cam = camera(jnp.asarray(true_dir, jnp.float32), jnp.log(camera_pose.TRUE_DISTANCE))
    ref_cfg = sj.RasterConfig(cfg.image_size, sigma=1e-5)
    reference = (sj.render_silhouette(mesh, true_cam, ref_cfg) > 0.5).astype(jnp.float32)
    opt = optax.adam(optax.cosine_decay_schedule(0.05, steps, alpha=0.05))

    def loss(q):
        pred = sj.render_silhouette(mesh, camera(q["dir"], q["log_dist"]), cfg)
        return losses.silhouette_iou_loss(pred, reference)

    def update_one(p, state):
        grads = jax.grad(loss)(p)
        updates, state = opt.update(grads, state)
        p = optax.apply_updates(p, updates)
        return {"dir": p["dir"] / jnp.linalg.norm(p["dir"]), "log_dist": p["log_dist"]}, state

    step = jax.jit(jax.vmap(update_one))
    params, state = start, jax.vmap(opt.init)(start)
    first = np.full(starts, np.inf)
    for i in range(steps):
        params, state = step(params, state)
        err = camera_pose.angle_degrees(params["dir"], true_dir)
        first = np.where((err < 20) & np.isinf(first), i + 1, first)
    ok = err < camera_pose.SUCCESS_DEGREES
    return float(np.mean(ok)), float(np.median(err)), float(np.median(first[ok])) if ok.any() \
        else None  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 distributions x 2 T-conorms, few steps")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "FAMILY.md"))
    args = p.parse_args(argv)
    dists, tcns = (DISTRIBUTIONS[:2], T_CONORMS[:2]) if args.quick else (DISTRIBUTIONS, T_CONORMS)
    deform_steps, pose_steps = (20, 5) if args.quick else (150, 40)
    rows, t0 = [], time.perf_counter()
    for d in dists:
        for a in tcns:
            t = time.perf_counter()
            common = dict(coverage=d, alpha=a)
            iou, reached = deform(sj.RasterConfig(_SIZE, sigma=scaled_sigma(d, DEFORM_SIGMA),
                                                  **common), deform_steps)  # fmt: skip
            rate, median, first = pose(sj.RasterConfig(_SIZE, sigma=scaled_sigma(d, POSE_SIGMA),
                                                       **common), pose_steps)  # fmt: skip
            rows.append((d, a, iou, reached, rate, median, first))
            print(f"{d:>14} {a:>13}: deform IoU {iou:.3f} (0.9 at {reached}), pose "
                  f"{rate:.0%} within 20 deg, median {median:.1f} deg, "
                  f"{time.perf_counter() - t:.0f} s", flush=True)  # fmt: skip
    minutes = (time.perf_counter() - t0) / 60
    cpu = platform.processor() or platform.machine()
    lines = [
        "# The soft-rasterizer family on two inverse problems",
        "",
        f"Made by `python benchmarks/family_study.py{' --quick' if args.quick else ''}` "
        f"({minutes:.0f} minutes on {os.cpu_count()} CPU cores, {cpu}, "
        f"jax {jax.__version__}, {jax.default_backend()}). Tasks and scales: the script's "
        "docstring.",
        "",
        f"| coverage | alpha | deform: held-out IoU | deform: steps to IoU 0.9 | "
        f"pose: starts within 20° (of {POSE_STARTS}) | pose: median error (°) | "
        "pose: median steps to 20° |",
        "|---|---|---|---|---|---|---|",
    ]
    for d, a, iou, reached, rate, median, first in rows:
        lines.append(f"| {d} | {a} | {iou:.3f} | {reached or '-'} | {rate:.0%} | {median:.1f} "
                     f"| {first if first is not None else '-'} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
