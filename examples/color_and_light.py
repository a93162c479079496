"""Recover per-vertex colours and a directional light from eight views of a bumpy sphere.

    python examples/color_and_light.py             # defaults: about a minute on a 2-core CPU
    python examples/color_and_light.py --steps 5 --image-size 16 --views 2   # smoke test
    python examples/color_and_light.py --steps 400 --image-size 96 --views 12   # 5 minutes

The "photographs" are softjax renders of a bumpy ico-sphere (known geometry) with smoothly
varying vertex colours, lit by an ambient light and one white directional light, with Gouraud
shading and Phong highlights. Starting from grey colours, a light direction 85 degrees off and
half the light's intensity, Adam fits the colours, the light direction and its intensity to all
views at once (one `jax.vmap` over the cameras inside one jitted step) with a plain RGB loss.

What is identifiable: Lambert shading multiplies the colour by the light, so on the lit side a
brighter light and darker colours explain the images equally well, and with one colour per
vertex any light direction could be painted into the colours. Two things pin it down: the
ambient intensity is fixed (known), which sets the colours' scale on the shadowed side, and the
highlights, which are added after the colour and move with the camera, fix the direction and
the intensity of the light. The material (ambient, diffuse, specular, shininess) is known.

Printed at the end: the PSNR of the fitted training views on the object's pixels, the angle
between the fitted and the true light direction, the intensity error, and the mean absolute
colour error on the vertices that some view sees. Pictures go to `--out`:
`color_and_light.png` (start, target, fit and error for four of the views; loss curve). At
the defaults: 46 dB, 0.3 degrees, an intensity of 0.78 for 0.8; the bigger run: 62 dB,
0.05 degrees, 0.797.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import softjax as sj

AMBIENT = 0.3  # fixed and known: it sets the scale of the colours
TRUE_DIRECTION = (-0.5, -0.8, -0.4)  # the way the light travels
TRUE_INTENSITY = 0.8
START_DIRECTION = (0.7, -0.2, -0.7)  # 85 degrees off
START_INTENSITY = 0.4
MATERIAL = dict(ambient=1.0, diffuse=1.0, specular=0.6, shininess=8.0)


def bumpy_sphere(level: int):
    """An ico-sphere with a few smooth bumps, and smooth, non-trivial vertex colours."""
    sphere = sj.ico_sphere(level)
    d = np.asarray(sphere.verts, np.float64)
    radius = (1.0 + 0.08 * np.sin(4 * d[:, 0] + 1) * np.cos(3 * d[:, 1])
              + 0.06 * np.sin(5 * d[:, 2] + 2 * d[:, 0]))  # fmt: skip
    waves = np.array([[1.0, 0.3, -0.6], [-0.4, 1.3, 0.6], [0.7, -0.6, 1.1]])
    colors = 0.5 + 0.38 * np.cos(2 * np.pi * (d @ waves.T + np.array([0.1, 0.5, 0.8])))
    return np.float32(d * radius[:, None]), np.asarray(sphere.faces), np.float32(colors)


def cameras(n: int, dist: float = 3.2):
    """`n` views around the sphere, alternating above and below it."""
    az = np.linspace(0.0, 2 * np.pi, n, endpoint=False) + 0.3
    el = np.where(np.arange(n) % 2 == 0, 0.5, -0.4)
    eyes = dist * np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], -1)
    return jax.jit(jax.vmap(lambda e: sj.look_at(e, fov=45.0)))(jnp.asarray(eyes, jnp.float32))


def angle_degrees(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="Adam steps (default 200)")
    p.add_argument("--views", type=int, default=8, help="training views (default 8)")
    p.add_argument("--image-size", type=int, default=48, help="side of the images (default 48)")
    p.add_argument("--level", type=int, default=3, help="ico-sphere level (default 3)")
    p.add_argument("--out", default="color_and_light_out", help="folder for the picture")
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

    verts, faces, true_colors = bumpy_sphere(args.level)
    cams = cameras(args.views)
    size = (args.image_size, args.image_size)
    # Sharp edges (the geometry is known and exact); one binning round per view.
    cfg = sj.RasterConfig(size, sigma=1e-5, gamma=1e-4, shading="gouraud")
    cfg = sj.fit_pair_capacity(sj.Mesh(verts, faces), cams, cfg)
    material = sj.Material(**MATERIAL)

    def render_all(colors, direction, intensity, cfg=cfg):
        mesh = sj.Mesh(verts, faces, colors=colors)
        light = sj.DirectionalLight(direction, (1.0, 1.0, 1.0), intensity)
        lights = sj.Lights(ambient=AMBIENT, directional=[light])
        return jax.vmap(lambda cam: sj.render(mesh, cam, cfg, lights, material))(cams)

    # One compiled function renders the targets, the start and the fit (with face ids, for
    # the visible vertices).
    with_ids = dataclasses.replace(cfg, aovs=("face_id",))
    render_fn = jax.jit(lambda *scene: render_all(*scene, cfg=with_ids))
    truth = (true_colors, jnp.array(TRUE_DIRECTION, jnp.float32),
             jnp.asarray(TRUE_INTENSITY, jnp.float32))  # fmt: skip
    targets, aux = render_fn(*truth)

    def unpack(params):
        return (jax.nn.sigmoid(params["colors"]), params["direction"],
                jnp.exp(params["log_intensity"]))  # fmt: skip

    def loss_fn(params):
        images = render_all(*unpack(params))
        return jnp.mean((images[..., :3] - targets[..., :3]) ** 2)

    params = {
        "colors": jnp.zeros_like(true_colors),  # grey: sigmoid(0) = 0.5
        "direction": jnp.array(START_DIRECTION, jnp.float32),  # normalised by the renderer
        "log_intensity": jnp.asarray(math.log(START_INTENSITY), jnp.float32),
    }
    start_images = np.asarray(render_fn(*unpack(params))[0])
    # Colours move in logits, the light in world units: each group gets its own step size.
    schedule = lambda lr: optax.cosine_decay_schedule(lr, args.steps, alpha=0.05)  # noqa: E731
    opt = optax.multi_transform(
        {"colors": optax.adam(schedule(0.05)), "light": optax.adam(schedule(0.2))},
        {"colors": "colors", "direction": "light", "log_intensity": "light"},
    )
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    start = time.perf_counter()
    history = []
    bar = tqdm(range(args.steps), desc="fit colours + light")
    for _ in bar:
        params, state, loss = step(params, state)
        history.append(float(loss))
        bar.set_postfix(loss=f"{history[-1]:.2e}")
    seconds = time.perf_counter() - start

    colors, direction, intensity = (np.asarray(x) for x in unpack(params))
    fitted = np.asarray(render_fn(*unpack(params))[0])
    targets = np.asarray(targets)
    # PSNR on the object's pixels (the black background would only inflate it).
    on_object = targets[..., 3] > 0.5
    mse = np.mean((fitted[..., :3] - targets[..., :3])[on_object] ** 2)
    psnr = float(10 * np.log10(1.0 / max(mse, 1e-12)))
    light_error = angle_degrees(direction, TRUE_DIRECTION)
    intensity_error = abs(float(intensity) - TRUE_INTENSITY)
    # Visible vertices: corners of the faces nearest to the camera at some pixel of some view.
    face_ids = np.asarray(aux["face_id"])
    seen = np.unique(np.asarray(faces)[np.unique(face_ids[face_ids >= 0])])
    color_error = float(np.mean(np.abs(colors[seen] - true_colors[seen])))
    start_color_error = float(np.mean(np.abs(0.5 - true_colors[seen])))

    os.makedirs(args.out, exist_ok=True)
    shown = np.unique(np.linspace(0, args.views - 1, min(4, args.views)).astype(int))
    fig, ax = plt.subplots(4, len(shown) + 1, figsize=(2.4 * (len(shown) + 1), 9.6),
                           squeeze=False)  # fmt: skip
    rows = [(start_images, "start"), (targets, "target"), (fitted, "fit")]
    for j, v in enumerate(shown):
        for i, (images, name) in enumerate(rows):
            ax[i, j].imshow(np.clip(images[v, ..., :3], 0, 1), interpolation="nearest")
            ax[i, j].set_title(f"{name}, view {v}")
        err = np.abs(fitted[v, ..., :3] - targets[v, ..., :3]).mean(-1)
        ax[3, j].imshow(np.clip(10 * err, 0, 1), cmap="magma")
        ax[3, j].set_title("10 x abs error")
    for a in ax.ravel():
        a.axis("off")
    curve = ax[0, -1]
    curve.axis("on")
    curve.semilogy(history)
    curve.set(xlabel="step", title="RGB loss (MSE)")
    ax[1, -1].text(0.0, 0.5, f"PSNR {psnr:.1f} dB\nlight direction\nerror {light_error:.2f} deg\n"
                   f"intensity {float(intensity):.3f}\n(true {TRUE_INTENSITY})\n"
                   f"colour error {color_error:.4f}", va="center")  # fmt: skip
    fig.tight_layout()
    picture = os.path.join(args.out, "color_and_light.png")
    fig.savefig(picture, dpi=80)
    plt.close(fig)

    print(f"training views: PSNR {psnr:.2f} dB on the object's pixels; light direction error "
          f"{light_error:.2f} deg (start {angle_degrees(START_DIRECTION, TRUE_DIRECTION):.0f}); "
          f"intensity {float(intensity):.3f} (true {TRUE_INTENSITY}, start {START_INTENSITY}); "
          f"mean abs colour error on {len(seen)} visible vertices {color_error:.4f} "
          f"(grey start {start_color_error:.4f}); {args.steps} steps in {seconds:.1f} s; "
          f"picture: {picture}")  # fmt: skip
    start_mse = np.mean((start_images[..., :3] - targets[..., :3])[on_object] ** 2)
    return {"psnr": psnr, "light_error_degrees": light_error, "intensity_error": intensity_error,
            "color_error": color_error, "seconds": seconds,
            "initial_psnr": float(10 * np.log10(1.0 / max(start_mse, 1e-12))),
            "initial_light_error_degrees": angle_degrees(START_DIRECTION, TRUE_DIRECTION),
            "initial_color_error": start_color_error}  # fmt: skip


if __name__ == "__main__":
    main()
