"""Recover a low-resolution environment map, roughness and metallic of a glossy object.

    python examples/env_and_material.py           # defaults: about a minute on a 2-core CPU
    python examples/env_and_material.py --steps 5 --image-size 16 --views 2   # smoke test

nvdiffrec's task at a small scale: the geometry and base colour are known, the lighting (an
HDR latitude-longitude map of 8 x 16 texels) and the material (GGX roughness and metallic,
`shading="pbr"`) are not. The "photographs" are softjax renders of a bumpy ico-sphere under
a sky-like map (a bright warm sun patch, a blue upper sky, a dark ground) from eight views.
Starting from a uniform grey environment, roughness 0.8 and metallic 0.1, Adam fits the map
(in log space: radiance stays positive), the roughness and the metallic (through sigmoids)
to all training views at once with a plain RGB loss; four held-out views judge the result.

Rendered with hard visibility (z-buffer, antialiased edges: the geometry is known, as in
nvdiffrec). Printed at the end: the PSNR of the held-out views on the object's pixels
(relative to the brightest target value, at least 1: the images are HDR), the fitted
roughness and metallic beside the true ones, and the relative error of the fitted map's
low frequencies (bands 0 and 1 of its SH projection). Pictures go to `--out`:
`env_and_material.png` (held-out targets and renders, the true and the fitted map, the loss
curve). At the defaults: 52 dB, roughness 0.32 for 0.35, metallic 0.595 for 0.6.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import softjax as sj

ENV = (8, 16)
TRUE_ROUGHNESS, TRUE_METALLIC = 0.35, 0.6


def true_environment():
    """A sky: blue above, a dark warm ground below, a bright sun patch up and to the side."""
    h, w = ENV
    theta = np.pi * (np.arange(h) + 0.5) / h
    up = np.cos(theta)[:, None, None]
    sky = np.where(
        up > 0, 0.4 + 0.8 * up * np.array([0.6, 0.8, 1.2]), 0.15 * np.array([1.0, 0.8, 0.6])
    )
    env = np.broadcast_to(sky, (h, w, 3)).copy()
    env[1:3, 3:5] = np.array([6.0, 5.2, 4.0])  # the sun, 2 x 2 texels
    return np.float32(env)


def bumpy_sphere(level: int):
    sphere = sj.ico_sphere(level)
    d = np.asarray(sphere.verts, np.float64)
    radius = 1.0 + 0.06 * np.sin(5 * d[:, 0] + 1) * np.cos(4 * d[:, 1])
    base = 0.5 + 0.3 * np.stack(
        [np.sin(3 * d[:, 0]), np.cos(2 * d[:, 1]), np.sin(2 * d[:, 2] + 1)], -1
    )
    return np.float32(d * radius[:, None]), np.asarray(sphere.faces), np.float32(base)


def cameras(n: int, offset: float, dist: float = 3.0):
    az = np.linspace(0.0, 2 * np.pi, n, endpoint=False) + offset
    el = np.where(np.arange(n) % 2 == 0, 0.45, -0.3)
    eyes = dist * np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], -1)
    return jax.jit(jax.vmap(lambda e: sj.look_at(e, fov=45.0)))(jnp.asarray(eyes, jnp.float32))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="Adam steps (default 300)")
    p.add_argument("--views", type=int, default=8, help="training views (default 8)")
    p.add_argument("--image-size", type=int, default=48, help="side of the images (default 48)")
    p.add_argument("--level", type=int, default=3, help="ico-sphere level (default 3)")
    p.add_argument("--out", default="env_and_material_out", help="folder for the picture")
    args = p.parse_args(argv)
    for name in ("steps", "views", "image_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from tqdm.auto import tqdm
    except ImportError as err:
        raise SystemExit(f"this example needs tqdm and matplotlib ({err}): "
                         'pip install "softjax-renderer[examples]"') from err  # fmt: skip

    verts, faces, base = bumpy_sphere(args.level)
    mesh = sj.Mesh(verts, faces, base)
    train, held_out = cameras(args.views, 0.3), cameras(4, 0.3 + np.pi / args.views)
    size = (args.image_size, args.image_size)
    # The geometry is known: hard visibility (z-buffer, antialiased edges), as nvdiffrec.
    cfg = sj.RasterConfig(size, shading="pbr", visibility="hard")
    cfg = sj.fit_pair_capacity(
        mesh, jax.tree.map(lambda a, b: jnp.concatenate([a, b]), train, held_out), cfg
    )

    def render(cams, env, roughness, metallic):
        lights = sj.Lights(0.0, environment=sj.EnvironmentLight(env))
        material = sj.PBRMaterial(roughness, metallic)
        return jax.vmap(lambda cam: sj.render(mesh, cam, cfg, lights, material))(cams)

    render_fn = jax.jit(render)
    truth = (jnp.asarray(true_environment()), TRUE_ROUGHNESS, TRUE_METALLIC)
    targets, held_targets = render_fn(train, *truth), render_fn(held_out, *truth)

    def unpack(params):
        return (jnp.exp(params["log_env"]), jax.nn.sigmoid(params["roughness"]),
                jax.nn.sigmoid(params["metallic"]))  # fmt: skip

    def loss_fn(params):
        images = render(train, *unpack(params))
        return jnp.mean((images[..., :3] - targets[..., :3]) ** 2)

    def logit(p):
        return jnp.asarray(np.log(p / (1 - p)), jnp.float32)

    start_params = {"log_env": jnp.full((*ENV, 3), np.log(0.5), jnp.float32),
                    "roughness": logit(0.8), "metallic": logit(0.1)}  # fmt: skip
    params = start_params
    schedule = optax.cosine_decay_schedule(0.05, args.steps, alpha=0.05)
    opt = optax.adam(schedule)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    start = time.perf_counter()
    history = []
    bar = tqdm(range(args.steps), desc="fit environment + material")
    for _ in bar:
        params, state, loss = step(params, state)
        history.append(float(loss))
        bar.set_postfix(loss=f"{history[-1]:.2e}")
    seconds = time.perf_counter() - start

    env, roughness, metallic = (np.asarray(x) for x in unpack(params))
    start_images = np.asarray(render_fn(held_out, *unpack(start_params)))
    fitted = np.asarray(render_fn(held_out, *unpack(params)))
    held_targets = np.asarray(held_targets)
    on_object = held_targets[..., 3] > 0.5

    def psnr_of(images):
        mse = np.mean((images[..., :3] - held_targets[..., :3])[on_object] ** 2)
        return float(10 * np.log10(max(held_targets[..., :3].max(), 1.0) ** 2 / max(mse, 1e-12)))

    psnr, start_psnr = psnr_of(fitted), psnr_of(start_images)
    # The maps' low frequencies (bands 0 and 1 of their SH projections: what the diffuse
    # term mostly sees).
    true_sh, fit_sh = (sj.SHLight.from_environment(e).coeffs for e in (true_environment(), env))
    sh_error = float(np.linalg.norm(fit_sh[:4] - true_sh[:4]) / np.linalg.norm(true_sh[:4]))

    os.makedirs(args.out, exist_ok=True)
    fig, ax = plt.subplots(3, 5, figsize=(12, 7.2), squeeze=False)
    peak = max(held_targets[..., :3].max(), 1.0)
    for v in range(4):
        ax[0, v].imshow(np.clip(held_targets[v, ..., :3] / peak, 0, 1), interpolation="nearest")
        ax[0, v].set_title(f"held-out target {v}")
        ax[1, v].imshow(np.clip(fitted[v, ..., :3] / peak, 0, 1), interpolation="nearest")
        ax[1, v].set_title(f"fit {v}")
        err = np.abs(fitted[v, ..., :3] - held_targets[v, ..., :3]).mean(-1)
        ax[2, v].imshow(np.clip(10 * err / peak, 0, 1), cmap="magma")
        ax[2, v].set_title("10 x abs error")
    top = true_environment().max()
    ax[0, 4].imshow(np.clip(true_environment() / top, 0, 1))
    ax[0, 4].set_title("true map")
    ax[1, 4].imshow(np.clip(env / top, 0, 1))
    ax[1, 4].set_title("fitted map")
    ax[2, 4].semilogy(history)
    ax[2, 4].set(xlabel="step", title="RGB loss (MSE)")
    for a in ax[:, :4].ravel():
        a.axis("off")
    fig.tight_layout()
    picture = os.path.join(args.out, "env_and_material.png")
    fig.savefig(picture, dpi=80)
    plt.close(fig)

    print(f"{args.steps} steps in {seconds:.1f} s; held-out PSNR {psnr:.2f} dB (start "
          f"{start_psnr:.2f}); roughness {float(roughness):.3f} (true {TRUE_ROUGHNESS}), "
          f"metallic {float(metallic):.3f} (true {TRUE_METALLIC}); map's SH bands 0-1 "
          f"relative error {100 * sh_error:.1f}%; picture: {picture}")  # fmt: skip
    return {"psnr": psnr, "initial_psnr": start_psnr, "roughness": float(roughness),
            "metallic": float(metallic), "sh_error": sh_error, "initial_loss": history[0],
            "final_loss": history[-1], "seconds": seconds, "picture": picture}  # fmt: skip


if __name__ == "__main__":
    main()
