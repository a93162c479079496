"""Learn a 512 x 512 texture from 64 x 64 photographs of a floor: bilinear sampling against
mipmapped (trilinear) and anisotropic filtering.

    python examples/fit_texture_mips.py                 # defaults: about 2 minutes on 2 cores
    python examples/fit_texture_mips.py --steps 5 --texture-size 64 --image-size 16  # smoke

The "photographs" are area-sampled like a camera's pixels: each is the mean of 8 x 8 samples
(a render 8x larger, bilinear, box-filtered down), of a floor seen from 16 cameras at low,
grazing angles, where a pixel covers many texels. From a grey start, Adam fits the texture to
the 64 x 64 views three times, rendering them with `texture_filter="linear"`, "trilinear"
and "anisotropic". With bilinear sampling a pixel reads only the 4 texels around one point,
so most texels under its footprint get no gradient and keep their initial grey, and the
texture learns streaks; the mipmapped filters spread each pixel's gradient over its whole
footprint. Printed: the PSNR of 8 held-out views rendered with each fitted texture (same
filter), and how many texels that some training view sees (`sj.texel_coverage` of the
area-sampled render) were left at their initial value. Pictures go to `--out`:
`fit_texture_mips.png` (the texture and the three fits, each filter's texel coverage, a
held-out view and its three renders).
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

FLOOR = np.float32([[-4.0, -4.0, 0.0], [4.0, -4.0, 0.0], [4.0, 4.0, 0.0], [-4.0, 4.0, 0.0]])
QUAD = np.array([[0, 1, 2], [0, 2, 3]])
UVS = np.float32([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
FILTERS = ("linear", "trilinear", "anisotropic")


def floor_texture(n: int):
    """`(n, n, 3)`: coloured tiles with thin dark grout and a fine diagonal weave, detail at
    every scale down to a few texels."""
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / n
    cell = np.floor(x * 8) + 8 * np.floor(y * 8)
    hue = (cell * 0.37) % 1.0
    rgb = 0.5 + 0.35 * np.cos(2 * np.pi * (hue[..., None] + np.array([0.0, 1 / 3, 2 / 3])))
    grout = (np.minimum(x * 8 % 1, y * 8 % 1) < 0.06)[..., None]
    weave = 0.85 + 0.15 * np.sign(np.sin(2 * np.pi * 48 * (x + y)))[..., None]
    return np.float32(np.where(grout, 0.15, rgb * weave))


def cameras(n: int, seed: int):
    """`n` cameras low over the floor, looking across it from every side."""
    rng = np.random.default_rng(seed)
    az = rng.uniform(0, 2 * np.pi, n)
    dist, height = rng.uniform(2.0, 3.5, n), rng.uniform(0.25, 0.9, n)
    eyes = np.stack([dist * np.sin(az), -dist * np.cos(az), height], -1)
    ats = np.stack([-0.5 * np.sin(az), 0.5 * np.cos(az), np.zeros(n)], -1)
    look = lambda e, a: sj.look_at(e, a, (0.0, 0.0, 1.0), fov=50.0)  # noqa: E731
    return jax.vmap(look)(jnp.float32(eyes), jnp.float32(ats))


def psnr(a, b) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=150, help="Adam steps per fit")
    p.add_argument("--image-size", type=int, default=64, help="side of the views")
    p.add_argument("--texture-size", type=int, default=512, help="texels a side")
    p.add_argument("--views", type=int, default=16, help="training views")
    p.add_argument("--filters", default=",".join(FILTERS), help="comma-separated filters to fit")
    p.add_argument("--out", default="fit_texture_mips_out", help="folder for the pictures")
    return p.parse_args(argv)


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

    truth = floor_texture(args.texture_size)
    train, held_out = cameras(args.views, 0), cameras(8, 1)
    size, sub = (args.image_size, args.image_size), 8

    def mesh_of(texture):
        return sj.Mesh(FLOOR, QUAD, uvs=UVS, face_uvs=QUAD, texture=texture)

    def views(texture, cams, filt, image_size=size):
        cfg = sj.RasterConfig(image_size, visibility="hard", texture_filter=filt)
        return jax.vmap(lambda c: sj.render(mesh_of(texture), c, cfg)[..., :3])(cams)

    @jax.jit
    def photographs(cams):  # the mean of sub x sub bilinear samples per pixel
        big = views(truth, cams, "linear", (size[0] * sub, size[1] * sub))
        return big.reshape(-1, size[0], sub, size[1], sub, 3).mean(axis=(2, 4))

    targets, held_targets = photographs(train), photographs(held_out)
    big_cfg = sj.RasterConfig((size[0] * sub, size[1] * sub), visibility="hard")
    seen = np.asarray(sj.texel_coverage(mesh_of(truth), train, big_cfg)) > 0

    filters = tuple(args.filters.split(","))
    for filt in filters:
        if filt not in FILTERS:
            raise SystemExit(f"unknown filter {filt!r}; choose from {FILTERS}")
    results, fits, coverage = {}, {}, {}
    for filt in filters:
        opt = optax.adam(optax.cosine_decay_schedule(0.2, args.steps, alpha=0.05))

        def loss_fn(logits, filt=filt):
            return jnp.mean((views(jax.nn.sigmoid(logits), train, filt) - targets) ** 2)

        @jax.jit
        def step(logits, state, opt=opt, loss_fn=loss_fn):
            loss, grad = jax.value_and_grad(loss_fn)(logits)
            updates, state = opt.update(grad, state)
            return optax.apply_updates(logits, updates), state, loss

        logits = jnp.zeros_like(truth)
        state = opt.init(logits)
        start = time.perf_counter()
        bar = tqdm(range(args.steps), desc=f"fit ({filt})")
        for _ in bar:
            logits, state, loss = step(logits, state)
            bar.set_postfix(loss=f"{float(loss):.2e}")
        fitted = np.asarray(jax.nn.sigmoid(logits))
        untouched = np.all(np.asarray(logits) == 0.0, axis=-1)  # never moved from grey
        cfg = sj.RasterConfig(size, visibility="hard", texture_filter=filt)
        coverage[filt] = np.asarray(sj.texel_coverage(mesh_of(truth), train, cfg))
        held = np.asarray(views(jnp.asarray(fitted), held_out, filt))
        fits[filt] = (fitted, held)
        results[filt] = {
            "held_out_psnr": psnr(held, np.asarray(held_targets)),
            "seen_texels_left_grey": int(np.sum(untouched & seen)),
            "seen_texels": int(seen.sum()),
            "seconds": time.perf_counter() - start,
        }

    os.makedirs(args.out, exist_ok=True)
    fig, ax = plt.subplots(3, 1 + len(filters), figsize=(3.5 * (1 + len(filters)), 10.5),
                           squeeze=False)  # fmt: skip
    ax[0, 0].imshow(truth)
    ax[0, 0].set_title("texture")
    ax[1, 0].imshow(seen, cmap="gray")
    ax[1, 0].set_title("texels the views see")
    ax[2, 0].imshow(np.clip(np.asarray(held_targets)[0], 0, 1))
    ax[2, 0].set_title("a held-out view")
    for k, filt in enumerate(filters, 1):
        fitted, held = fits[filt]
        r = results[filt]
        ax[0, k].imshow(fitted)
        ax[0, k].set_title(f"fit, {filt} ({r['seen_texels_left_grey']} seen texels left grey)")
        ax[1, k].imshow(np.log10(1e-4 + coverage[filt]), cmap="magma")
        ax[1, k].set_title(f"texel coverage, {filt} (log10)")
        ax[2, k].imshow(np.clip(held[0], 0, 1))
        ax[2, k].set_title(f"{filt}: held-out PSNR {r['held_out_psnr']:.2f} dB")
    for a in ax.ravel():
        a.axis("off")
    fig.tight_layout()
    picture = os.path.join(args.out, "fit_texture_mips.png")
    fig.savefig(picture, dpi=72)
    plt.close(fig)
    for filt in filters:
        r = results[filt]
        print(f"{filt:>11}: held-out PSNR {r['held_out_psnr']:.2f} dB, "
              f"{r['seen_texels_left_grey']} of {r['seen_texels']} seen texels left at their "
              f"initial grey, {r['seconds']:.0f} s")  # fmt: skip
    print(f"picture: {picture}")
    return results


if __name__ == "__main__":
    main()
