"""Recover a UV texture and a point light's position from eight photographs of a cube.

    python examples/fit_texture.py                 # defaults: about 2 minutes on a 2-core CPU
    python examples/fit_texture.py --steps 20      # smoke test

The "photographs" are softjax renders of a textured cube (a 3 x 2 texture atlas, one cell per
side) lit by an ambient light and a point light with Phong shading and highlights. Starting
from a grey texture and a wrong light position, Adam fits both to the eight views with a plain
RGB loss. Printed at the end: the texture's PSNR on the texels that some view sees, and the
light position error. Pictures go to `--out`: `fit_texture.png` (target, recovered texture,
error; target and fitted view).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import softjax as sj

TRUE_LIGHT = (2.0, 2.5, 1.5)
START_LIGHT = (-1.5, 1.0, 2.5)
MATERIAL = dict(ambient=1.0, diffuse=0.8, specular=0.25, shininess=16.0)


def cube(texture_size: int):
    """A unit cube whose six sides show the cells of a 3 x 2 texture grid; returns the mesh
    pieces and the `(2 * n, 3 * n, 3)` target texture (n = `texture_size` texels a side)."""
    signs = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)]) * 2.0 - 1.0
    verts = 0.75 * signs
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4],
                      [1, 5, 7, 3]])  # fmt: skip
    faces, uvs, face_uvs = [], [], []
    for side, q in enumerate(quads):
        u0, v0 = (side % 3) / 3, (side // 3) / 2
        base = len(uvs)
        uvs += [[u0, v0], [u0 + 1 / 3, v0], [u0 + 1 / 3, v0 + 1 / 2], [u0, v0 + 1 / 2]]
        faces += [q[[0, 1, 2]], q[[0, 2, 3]]]
        face_uvs += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    n = texture_size
    y, x = np.mgrid[0 : 2 * n, 0 : 3 * n] / n  # cell coordinates
    cell = (np.floor(y) * 3 + np.floor(x)).astype(int)
    hue = cell / 6.0
    fx, fy = x % 1 - 0.5, y % 1 - 0.5
    rings = 0.5 + 0.5 * np.cos(2 * np.pi * 2.5 * np.hypot(fx, fy))
    base_rgb = 0.5 + 0.4 * np.cos(2 * np.pi * (hue[..., None] + np.array([0.0, 1 / 3, 2 / 3])))
    texture = np.clip(base_rgb * (0.55 + 0.45 * rings[..., None]), 0.0, 1.0)
    return (np.float32(verts), np.array(faces), np.float32(uvs), np.array(face_uvs),
            np.float32(texture))  # fmt: skip


def cameras(n: int, dist: float = 3.6):
    """`n` views around the cube, alternating above and below it."""
    az = np.linspace(0.0, 2 * np.pi, n, endpoint=False) + 0.3
    el = np.where(np.arange(n) % 2 == 0, 0.6, -0.5)
    eyes = dist * np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], -1)
    return jax.vmap(lambda e: sj.look_at(e, fov=40.0))(jnp.asarray(eyes, jnp.float32))


def psnr(a, b) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="Adam steps")
    p.add_argument("--image-size", type=int, default=96, help="side of the training images")
    p.add_argument("--texture-size", type=int, default=16, help="texels per cube side")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--out", default="fit_texture_out", help="folder for the pictures")
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

    verts, faces, uvs, face_uvs, target_tex = cube(args.texture_size)
    cams = cameras(args.views)
    # A cube has few faces per screen tile: short chunks waste fewer (pixel, face) slots.
    size = (args.image_size, args.image_size)
    cfg = sj.RasterConfig(size, sigma=1e-6, gamma=1e-4, chunk=8, shading="phong")
    material = sj.Material(**MATERIAL)

    def render_all(texture, light_pos):
        mesh = sj.Mesh(verts, faces, uvs=uvs, face_uvs=face_uvs, texture=texture)
        lights = sj.Lights(ambient=0.3, directional=[], point=[sj.PointLight(light_pos)])
        one = lambda cam: sj.render(mesh, cam, cfg, lights, material)  # noqa: E731
        return jax.vmap(one)(cams)

    targets = render_all(target_tex, jnp.array(TRUE_LIGHT))

    def unpack(params):
        return jax.nn.sigmoid(params["texture"]), params["light"]

    def loss_fn(params):
        images = render_all(*unpack(params))
        return jnp.mean((images[..., :3] - targets[..., :3]) ** 2)

    params = {"texture": jnp.zeros_like(target_tex), "light": jnp.array(START_LIGHT)}
    # The light moves in world units, the texture in logits: each gets its own step size.
    opt = optax.multi_transform(
        {"texture": optax.adam(optax.cosine_decay_schedule(0.1, args.steps, alpha=0.1)),
         "light": optax.adam(optax.cosine_decay_schedule(0.3, args.steps, alpha=0.1))},
        {"texture": "texture", "light": "light"},
    )  # fmt: skip
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    start = time.perf_counter()
    history = []
    bar = tqdm(range(args.steps), desc="fit texture + light")
    for _ in bar:
        params, state, loss = step(params, state)
        history.append(float(loss))
        bar.set_postfix(loss=f"{history[-1]:.2e}")
    seconds = time.perf_counter() - start

    texture, light = (np.asarray(x) for x in unpack(params))
    # Covered texels: those that change some pixel of some view.
    seen = jax.grad(lambda t: jnp.sum(render_all(t, jnp.array(TRUE_LIGHT))[..., :3]))(target_tex)
    covered = np.abs(np.asarray(seen)).sum(-1) > 0
    score = psnr(texture[covered], target_tex[covered])
    start_score = psnr(np.full_like(texture, 0.5)[covered], target_tex[covered])  # grey start
    light_err = float(np.linalg.norm(light - np.array(TRUE_LIGHT)))

    os.makedirs(args.out, exist_ok=True)
    fitted = np.asarray(render_all(jnp.asarray(texture), jnp.asarray(light)))
    fig, ax = plt.subplots(1, 5, figsize=(15, 3.2))
    panels = [(target_tex, "target texture"), (texture, f"recovered ({score:.1f} dB)"),
              (np.abs(texture - target_tex).mean(-1) * covered, "abs error (covered)"),
              (np.asarray(targets)[1, ..., :3], "a training view"),
              (fitted[1, ..., :3], "the same view, fitted")]  # fmt: skip
    for a, (img, title) in zip(ax, panels, strict=True):
        a.imshow(np.clip(img, 0, 1), cmap="magma" if img.ndim == 2 else None)
        a.set_title(title)
        a.axis("off")
    fig.tight_layout()
    picture = os.path.join(args.out, "fit_texture.png")
    fig.savefig(picture, dpi=80)
    plt.close(fig)

    print(f"texture PSNR on {int(covered.sum())} covered texels: {score:.2f} dB; "
          f"light position error: {light_err:.3f} (start {math.dist(START_LIGHT, TRUE_LIGHT):.2f})"
          f"; {args.steps} steps in {seconds:.1f} s; picture: {picture}")  # fmt: skip
    return {"psnr": score, "light_error": light_err, "seconds": seconds,
            "initial_psnr": start_score, "initial_light_error": math.dist(START_LIGHT, TRUE_LIGHT),
            "initial_loss": history[0], "final_loss": float(loss_fn(params))}  # fmt: skip


if __name__ == "__main__":
    main()
