"""Renders views and meshes sharded over several CPU devices and prints what
tests/test_sharding.py checks, as JSON. Run in a fresh process (the device count is fixed
when JAX starts): `python tests/sharded_check.py 8`."""

import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", int(sys.argv[1]))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import softjax as sj  # noqa: E402

N = 16
CFG = sj.RasterConfig(image_size=(16, 16), sigma=1e-3, gamma=1e-3)


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def main():
    out = {"devices": jax.device_count()}
    mesh = jax.make_mesh((jax.device_count(),), ("views",), axis_types=(AxisType.Auto,))
    by_view, replicated = NamedSharding(mesh, P("views")), NamedSharding(mesh, P())

    sphere = sj.ico_sphere(1)
    colours = (sphere.verts + 1.0) / 2.0
    angles = jnp.linspace(0.0, 2 * jnp.pi, N, endpoint=False)
    eyes = jnp.stack([3 * jnp.sin(angles), 0.5 * jnp.cos(3 * angles), 3 * jnp.cos(angles)], 1)
    cams = jax.vmap(sj.look_at)(eyes)
    target = jax.random.uniform(jax.random.key(0), (N, *CFG.image_size, 4))

    def loss(verts, cams, target):
        images = jax.vmap(sj.render, in_axes=(None, 0, None))(
            sj.Mesh(verts, sphere.faces, colours), cams, CFG
        )
        return jnp.mean((images - target) ** 2), images

    # An optax step: vertex offsets and the optimiser state replicated, views sharded. Its
    # first call's gradient and images are those at the mesh's own vertices.
    opt = optax.adam(1e-2)

    def step(offsets, state, cams, target):
        (value, images), grads = jax.value_and_grad(
            lambda o: loss(sphere.verts + o, cams, target), has_aux=True
        )(offsets)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(offsets, updates), state, value, grads, images

    offsets = jnp.zeros_like(sphere.verts)
    _, _, _, g_ref, images_ref = jax.jit(step)(offsets, opt.init(offsets), cams, target)

    cams_s, target_s = jax.device_put((cams, target), by_view)
    offsets = jax.device_put(offsets, replicated)
    state = opt.init(offsets)
    sharded = jax.jit(step).lower(offsets, state, cams_s, target_s).compile()
    losses = []
    for i in range(3):
        offsets, state, value, grads, images = sharded(offsets, state, cams_s, target_s)
        losses.append(float(value))
        if i == 0:
            g, first_images = grads, images
    out["jit"] = {
        "image_error": float(np.max(np.abs(np.asarray(first_images) - np.asarray(images_ref)))),
        "grad_error": rel(g, g_ref),
        "image_spec": list(first_images.sharding.spec),
        "shard_shapes": sorted({s.data.shape[0] for s in first_images.addressable_shards}),
        "all_gathers": sharded.as_text().count("all-gather"),
        "grad_replicated": g.sharding.is_fully_replicated,
    }
    out["optax"] = {"losses": losses, "offsets_replicated": offsets.sharding.is_fully_replicated}

    # shard_map: each device takes its views. The vertices are the same on every device, so
    # their gradient is the sum of every device's share (JAX sums it): each device's loss is
    # its share of the global mean.
    def local(verts, cams, target):
        def share(v):
            value, images = loss(v, cams, target)
            return value / jax.device_count(), images

        return jax.grad(share, has_aux=True)(verts)

    mapped = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("views"), P("views")),
                                   out_specs=(P(), P("views"))))  # fmt: skip
    g_m, images_m = mapped(jax.device_put(sphere.verts, replicated), cams_s, target_s)
    out["shard_map"] = {
        "image_error": float(np.max(np.abs(np.asarray(images_m) - np.asarray(images_ref)))),
        "grad_error": rel(g_m, g_ref),
    }

    # A mesh with Explicit axes (jax.make_mesh's default): the batched call wrapped in
    # `auto_axes`, as README says; without it, the error says what to do.
    explicit = jax.make_mesh((jax.device_count(),), ("views",))
    cams_e = jax.device_put(cams, NamedSharding(explicit, P("views")))
    views = jax.vmap(sj.render, in_axes=(None, 0, None))
    mesh_c = sj.Mesh(sphere.verts, sphere.faces, colours)
    auto = jax.jit(jax.sharding.auto_axes(lambda c: views(mesh_c, c, CFG), out_sharding=P("views")))
    with jax.set_mesh(explicit):
        images_e = auto(cams_e)
        try:
            jax.jit(lambda c: views(mesh_c, c, CFG)).trace(cams_e)
            hint = False
        except Exception as e:  # JAX's ShardingTypeError
            hint = "auto_axes" in str(e)
    out["explicit"] = {
        "image_error": float(np.max(np.abs(np.asarray(images_e) - np.asarray(images_ref)))),
        "image_spec": list(images_e.sharding.spec)[:1],
        "hint": hint,
    }

    # A batch of meshes of two sizes, sharded over the devices, one camera.
    small, large = sj.ico_sphere(0), sj.ico_sphere(1)
    meshes = [sj.Mesh((small if i % 3 else large).verts * (0.7 + 0.05 * i),
                      (small if i % 3 else large).faces) for i in range(N)]  # fmt: skip
    batch = sj.stack_meshes(meshes)
    cam = sj.look_at((0.5, 0.8, 2.8))
    render = jax.jit(jax.vmap(sj.render_silhouette, in_axes=(0, None, None)), static_argnums=2)
    alone = jax.jit(sj.render_silhouette, static_argnums=2)
    sharded_sils = render(jax.device_put(batch, by_view), cam, CFG)
    sils = np.asarray(sharded_sils)
    out["meshes"] = {
        "image_error": max(float(np.max(np.abs(sils[i] - np.asarray(alone(meshes[i], cam, CFG)))))
                           for i in (0, 1, 2, 15)),
        "image_spec": list(sharded_sils.sharding.spec),
    }  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
