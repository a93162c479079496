"""A multi-view silhouette fit with the views sharded over every device, on one host or many.

    python examples/sharded_views.py                     # every local device (GPUs, TPUs, a CPU)
    python examples/sharded_views.py --cpu-devices 8     # 8 simulated CPU devices
    # several hosts (or one process per accelerator): the same command on each, with its id
    python examples/sharded_views.py --coordinator HOST0:1234 --num-processes 2 --process-id 0
    python examples/sharded_views.py --coordinator HOST0:1234 --num-processes 2 --process-id 1
    python examples/sharded_views.py --coordinator auto  # SLURM, Open MPI, Cloud TPU: detected

An ico-sphere is deformed into a squashed, twisted target from `--views` silhouettes. The
views' cameras are one batched `sj.Camera` whose arrays are sharded along the view axis over
a 1-D device mesh (`jax.sharding.NamedSharding`, axis "views"); the vertex offsets and the
Adam state are replicated. The step is plain `jax.jit` of an optax update around
`jax.vmap(sj.render_silhouette)`: XLA partitions the vmapped renderer along the view axis,
so each device renders only its share of the views and the gradient is summed over devices
by the compiled program (an all-reduce), with nothing written for the distribution.

With several processes (`--coordinator`, `jax.distributed.initialize`), the device mesh spans
every process's devices; each process creates only the camera and target shards of its own
devices (`jax.make_array_from_callback`) and runs the same program, and the loss and the
gradient are global: they equal those of one process holding every view. What scales with
the number of hosts is the number of views rendered per step at a fixed time per step (the
per-device share stays the same); the replicated parameters and the all-reduce of their
gradient are per step, not per view. On CPUs the processes talk through gloo.

Printed: the devices and each one's share of the views, the loss before and after, and the
held-out IoU of the fitted shape. `--report FILE` writes the first step's loss and gradient
(process 0), which tests/test_sharding.py compares between one process and two.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--views", type=int, default=16, help="views (a multiple of the devices)")
    p.add_argument("--image-size", type=int, default=48, help="side of the images in pixels")
    p.add_argument("--level", type=int, default=2, help="ico-sphere level (2: 320 faces)")
    p.add_argument("--steps", type=int, default=40, help="Adam steps")
    p.add_argument("--lr", type=float, default=0.01, help="Adam step size")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="simulate this many CPU devices (before JAX starts)")  # fmt: skip
    p.add_argument("--coordinator", default=None,
                   help="HOST:PORT of process 0 for jax.distributed, or 'auto'")  # fmt: skip
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--heldout", type=int, default=4, help="held-out views for the IoU (0: none)")
    p.add_argument("--report", default=None, help="JSON file for the first step's numbers")
    args = p.parse_args(argv)
    for name in ("views", "image_size", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.coordinator not in (None, "auto") and (
        args.num_processes is None or args.process_id is None
    ):
        p.error("--coordinator HOST:PORT needs --num-processes and --process-id")
    return args


def start_jax(args) -> None:
    """Device set-up that must come before JAX's first computation."""
    if args.cpu_devices:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    if args.coordinator is None:
        return
    # CPU processes exchange their collectives over gloo (GPUs and TPUs use their own).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if args.coordinator == "auto":
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def eyes_around(n: int, seed: int = 0) -> np.ndarray:
    """`n` camera positions at distance 3 in random directions (a fixed seed)."""
    d = np.random.default_rng(seed).normal(size=(n, 3))
    d[:, 1] = 0.6 * d[:, 1]
    return np.float32(3.0 * d / np.linalg.norm(d, axis=1, keepdims=True))


def main(argv=None) -> dict:
    args = parse_args(argv)
    start_jax(args)
    import jax.numpy as jnp
    import optax
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import softjax as sj

    devices = jax.devices()  # every process's devices
    if args.views % len(devices):
        raise SystemExit(f"--views {args.views} must be a multiple of the {len(devices)} devices")
    # Auto axes: jit propagates the views' sharding through the renderer.
    mesh = jax.make_mesh((len(devices),), ("views",), axis_types=(AxisType.Auto,))
    by_view, replicated = NamedSharding(mesh, P("views")), NamedSharding(mesh, P())

    def sharded(values, sharding):
        # Each process creates only the shards of its own devices.
        return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])

    eyes_host = eyes_around(args.views)
    eyes = sharded(eyes_host, by_view)
    cams = jax.jit(jax.vmap(sj.look_at))(eyes)  # sharded like `eyes`

    sphere = sj.ico_sphere(args.level)
    v = np.asarray(sphere.verts)
    twist = 0.5 * v[:, 1]
    target_verts = np.float32(np.stack([
        1.2 * (v[:, 0] * np.cos(twist) - v[:, 2] * np.sin(twist)), 0.75 * v[:, 1],
        0.9 * (v[:, 0] * np.sin(twist) + v[:, 2] * np.cos(twist))], 1))  # fmt: skip
    target = sj.Mesh(target_verts, sphere.faces)
    cfg = sj.RasterConfig((args.image_size, args.image_size), sigma=3e-4)
    views = jax.vmap(sj.render_silhouette, in_axes=(None, 0, None))
    targets = jax.jit(lambda c: views(target, c, cfg))(cams)  # sharded like `cams`
    lap = sj.losses.uniform_laplacian(np.asarray(sphere.faces), sphere.num_verts)

    def loss_fn(offsets, cams, targets):
        pred = views(sj.Mesh(sphere.verts + offsets, sphere.faces), cams, cfg)
        fit = sj.losses.silhouette_iou_loss(pred, targets)
        return fit + 0.5 * sj.losses.laplacian_loss(sphere.verts + offsets, lap)

    opt = optax.adam(args.lr)

    @jax.jit
    def step(offsets, state, cams, targets):
        loss, grads = jax.value_and_grad(loss_fn)(offsets, cams, targets)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(offsets, updates), state, loss, grads

    offsets = jax.device_put(jnp.zeros_like(sphere.verts), replicated)
    state = jax.device_put(opt.init(offsets), replicated)

    me = jax.process_index()
    shares = [(str(s.device), range(args.views)[s.index[0]]) for s in targets.addressable_shards]
    if me == 0:
        print(f"{len(devices)} devices in {jax.process_count()} process(es), "
              f"{args.views} views at {args.image_size}x{args.image_size}, "
              f"{sphere.num_faces} faces")  # fmt: skip
    for device, index in shares:
        print(f"  process {me}, {device}: views {index.start}..{index.stop - 1}", flush=True)

    losses = []
    start = time.perf_counter()
    steps = range(args.steps)
    if me == 0:
        try:  # a progress bar where the `examples` extra is installed
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc=f"fit, {args.views} views a step")
        except ImportError:
            pass
    for i in steps:
        offsets, state, loss, grads = step(offsets, state, cams, targets)
        losses.append(float(loss))
        if i == 0:
            first = {"loss": float(loss), "grad": np.asarray(grads).tolist()}
    seconds = time.perf_counter() - start

    iou0 = iou = float("nan")
    if args.heldout:
        heldout = jax.vmap(sj.look_at)(jnp.asarray(eyes_around(args.heldout, seed=1)))
        true = np.asarray(views(target, heldout, cfg)) > 0.5

        def heldout_iou(verts):
            pred = np.asarray(views(sj.Mesh(verts, sphere.faces), heldout, cfg)) > 0.5
            return float((pred & true).sum() / (pred | true).sum())

        iou0, iou = heldout_iou(sphere.verts), heldout_iou(sphere.verts + np.asarray(offsets))
    if me == 0:
        print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} in {args.steps} steps ({seconds:.1f} s); "
              f"held-out IoU {iou0:.3f} -> {iou:.3f}")  # fmt: skip
        if args.report:
            with open(args.report, "w") as f:
                json.dump(first, f)
    result = {"initial_loss": losses[0], "final_loss": losses[-1], "iou": iou,
              "initial_iou": iou0, "devices": len(devices), "shares": shares,
              "image_sharding": targets.sharding.spec}  # fmt: skip
    if args.coordinator is not None:
        jax.distributed.shutdown()
    return result


if __name__ == "__main__":
    main()
