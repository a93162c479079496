"""render under jit, vmap and grad: same numbers as eager and as a Python loop."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scenes import cast

import softjax as sj

CFG = sj.RasterConfig(image_size=(16, 20), sigma=1e-4, gamma=1e-4)


def _mesh():
    base = sj.ico_sphere(2)
    colours = (base.verts + 1.0) / 2.0
    return sj.Mesh(base.verts * jnp.array([1.0, 0.7, 0.9]), base.faces, colours)


def _eyes(n=6):
    angles = jnp.linspace(0.0, 2 * jnp.pi, n, endpoint=False)
    return jnp.stack([2.8 * jnp.sin(angles), 0.3 * jnp.cos(3 * angles), 2.8 * jnp.cos(angles)], 1)


class JitMatchesEager(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_render_with_every_option(self):
        """`jax.jit(sj.render)` takes every option without `static_argnames` (the non-array
        ones live in the config) and gives what the eager dense reference gives."""
        mesh, cam = _mesh(), sj.look_at((0.5, 0.8, 2.5))
        lights = sj.Lights(0.3, [sj.DirectionalLight((0.0, -1.0, -1.0), intensity=0.5)],
                           point=[sj.PointLight((1.0, 2.0, 2.0), intensity=0.4)])  # fmt: skip
        material = sj.Material(specular=0.4, shininess=16.0)
        cfg = dataclasses.replace(CFG, shading="phong", aovs=("depth", "normals", "face_id"))
        rgba, out = self.variant(sj.render)(mesh, cam, cfg, lights, material, sigma=3e-4,
                                            gamma=2e-3)  # fmt: skip
        dense = dataclasses.replace(cfg, method="dense", sigma=3e-4, gamma=2e-3)
        rgba_d, out_d = sj.render(mesh, cam, dense, lights, material)
        np.testing.assert_allclose(rgba, rgba_d, atol=1e-5)
        # Depth, a softmax over the faces' depths at gamma = 2e-3, against the float64 render:
        # in float32 the dense reference errs by up to 1.3e-5 relative here (the tiled path by
        # 7e-6), so the two float32 paths are not held to 1e-5 of each other.
        with jax.enable_x64(True):
            mesh64 = cast(mesh, jnp.float64)
            depth64 = np.asarray(sj.render(mesh64, cam, dense, lights, material)[1]["depth"])
        np.testing.assert_allclose(out["depth"], depth64, rtol=1e-5)
        np.testing.assert_allclose(out_d["depth"], depth64, rtol=2e-5)
        np.testing.assert_allclose(out["normals"], out_d["normals"], atol=1e-5)
        np.testing.assert_array_equal(out["face_id"], out_d["face_id"])
        # The options change the picture (the comparison is not between two plain renders).
        plain = sj.render(mesh, cam, CFG)
        assert float(jnp.abs(rgba - plain).max()) > 0.1

    @chex.variants(with_jit=True, without_jit=True)
    def test_silhouette_equals_alpha(self):
        mesh, cam = _mesh(), sj.look_at((0.5, 0.8, 2.5))
        alpha = self.variant(sj.render_silhouette)(mesh, cam, CFG)
        rgba = self.variant(sj.render)(mesh, cam, CFG)
        chex.assert_shape(alpha, CFG.image_size)
        chex.assert_shape(rgba, (*CFG.image_size, 4))
        np.testing.assert_allclose(rgba[..., 3], alpha, atol=1e-6)


def test_jit_needs_no_static_argnames_and_caches_per_config():
    traces = []

    def f(mesh, cam, cfg):
        traces.append(cfg)
        return sj.render_silhouette(mesh, cam, cfg)

    jf = jax.jit(f)
    mesh = _mesh()
    for eye in [(0.0, 0.0, 3.0), (0.0, 1.0, 3.0)]:
        jf(mesh, sj.look_at(eye), CFG)
    assert len(traces) == 1
    jf(mesh, sj.look_at((0.0, 0.0, 3.0)), sj.RasterConfig(image_size=(8, 8)))
    assert len(traces) == 2
    assert hash(CFG) == hash(sj.RasterConfig(image_size=(16, 20), sigma=1e-4, gamma=1e-4))


def test_vmap_over_cameras_equals_loop():
    mesh, lights = _mesh(), sj.Lights(0.5, [sj.DirectionalLight((0.0, -1.0, -1.0), intensity=0.5)])
    cams = jax.vmap(sj.look_at)(_eyes())
    batch_sil = jax.vmap(sj.render_silhouette, in_axes=(None, 0, None))(mesh, cams, CFG)
    batch_rgba = jax.vmap(sj.render, in_axes=(None, 0, None, None))(mesh, cams, CFG, lights)
    chex.assert_shape(batch_sil, (6, *CFG.image_size))
    for i, eye in enumerate(_eyes()):
        cam = sj.look_at(eye)
        np.testing.assert_allclose(batch_sil[i], sj.render_silhouette(mesh, cam, CFG), atol=1e-5)
        np.testing.assert_allclose(batch_rgba[i], sj.render(mesh, cam, CFG, lights), atol=1e-5)
    # Different views give different pictures (the batch is not one view repeated).
    assert float(jnp.abs(batch_sil[0] - batch_sil[1]).max()) > 0.5


@pytest.mark.parametrize("x64", [False, True])
def test_grad_under_vmap_over_views_equals_loop(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        mesh = jax.tree.map(lambda x: x.astype(dtype) if x.dtype.kind == "f" else x, _mesh())
        eyes = _eyes().astype(dtype)

        def loss(verts, eye):
            img = sj.render(sj.Mesh(verts, mesh.faces, mesh.colors), sj.look_at(eye), CFG)
            return jnp.sum(img[..., 3] ** 2) + jnp.sum(img[..., :3] ** 2)

        grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(mesh.verts, eyes)
        assert grads.dtype == dtype and np.all(np.isfinite(grads))
        for i, eye in enumerate(eyes):
            expected = np.asarray(jax.grad(loss)(mesh.verts, eye))
            # sigma = 1e-4 scales distances by 1e4, so float32 summation order shows at ~1e-4
            # of the gradient's size; in float64 the two agree to rounding.
            atol = (1e-3 if not x64 else 1e-10) * np.abs(expected).max()
            np.testing.assert_allclose(grads[i], expected, atol=atol, rtol=0)


def test_vmap_over_vertex_sets():
    mesh = _mesh()
    scales = jnp.array([0.6, 1.0, 1.3])
    cam = sj.look_at((0.0, 0.0, 3.0))
    render_scaled = jax.vmap(
        lambda s: sj.render_silhouette(sj.Mesh(mesh.verts * s, mesh.faces), cam, CFG)
    )
    sils = render_scaled(scales)
    areas = sils.sum(axis=(1, 2))
    assert areas[0] < areas[1] < areas[2]
