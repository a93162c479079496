"""Compilations: blur schedules (sigma and gamma given as traced values replace the config's
without a new compilation, and give what a config with those values gives), and each stage's
program keyed only on the settings it reads."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scenes import SMALL

import softjax as sj
from softjax._src.pipeline import hard, soft


def _scene():
    sphere = sj.ico_sphere(1)
    colours = (np.asarray(sphere.verts) + 1.0) / 2.0
    return sphere.verts * jnp.array([1.0, 0.8, 0.9]), sphere.faces, colours


def test_a_100_step_annealed_fit_compiles_once():
    verts, faces, colours = _scene()
    cams = jax.vmap(sj.look_at)(jnp.array([[0.0, 0.3, 2.8], [2.0, 0.5, 2.0]]))
    cfg = sj.RasterConfig((16, 16), sigma=1e-3, gamma=1e-2, **SMALL)
    target = jax.vmap(lambda c: sj.render(sj.Mesh(verts, faces, colours), c, cfg))(cams)
    sigma_at = optax.exponential_decay(3e-3, transition_steps=100, decay_rate=0.01)
    gamma_at = optax.linear_schedule(3e-2, 1e-3, transition_steps=100)
    opt = optax.adam(1e-2)
    traces = []

    @jax.jit
    def step(v, state, i):
        traces.append(1)  # runs once per trace

        def loss(v):
            def view(c):
                return sj.render(sj.Mesh(v, faces, colours), c, cfg, sigma=sigma_at(i),
                                 gamma=gamma_at(i))  # fmt: skip

            return jnp.mean((jax.vmap(view)(cams) - target) ** 2)

        value, grad = jax.value_and_grad(loss)(v)
        updates, state = opt.update(grad, state)
        return optax.apply_updates(v, updates), state, value

    v = verts * 1.1
    state = opt.init(v)
    losses = []
    for i in range(100):
        v, state, value = step(v, state, i)
        losses.append(float(value))
    assert len(traces) == 1 and step._cache_size() == 1
    assert np.all(np.isfinite(losses))

    # The fit made progress, measured at one fixed blur (the schedule's own losses are taken
    # at different blurs and do not compare).
    def fixed_loss(v):
        pred = jax.vmap(lambda c: sj.render(sj.Mesh(v, faces, colours), c, cfg))(cams)
        return float(jnp.mean((pred - target) ** 2))

    assert fixed_loss(v) < 0.5 * fixed_loss(verts * 1.1)


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_overrides_match_a_config_with_those_values(method):
    verts, faces, colours = _scene()
    cam = sj.look_at((0.5, 0.4, 2.6))
    kw = SMALL if method == "tiled" else {}
    base = sj.RasterConfig((14, 18), method=method, **kw)
    sigma, gamma = 3e-4, 2e-3
    cfg = sj.RasterConfig((14, 18), sigma=sigma, gamma=gamma, method=method, **kw)
    np.testing.assert_allclose(
        sj.render(sj.Mesh(verts, faces, colours), cam, base, sigma=sigma, gamma=gamma),
        sj.render(sj.Mesh(verts, faces, colours), cam, cfg), atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(
        sj.render_silhouette(sj.Mesh(verts, faces), cam, base, sigma=sigma),
        sj.render_silhouette(sj.Mesh(verts, faces), cam, cfg), atol=1e-6)  # fmt: skip


def test_gradients_with_respect_to_sigma_and_gamma_agree_between_paths():
    verts, faces, colours = _scene()
    cam = sj.look_at((0.5, 0.4, 2.6))
    w = np.random.default_rng(1).standard_normal((14, 18, 4))

    def loss(blur, method):
        cfg = sj.RasterConfig((14, 18), method=method, **(SMALL if method == "tiled" else {}))
        mesh = sj.Mesh(verts, faces, colours)
        return jnp.sum(w * sj.render(mesh, cam, cfg, sigma=blur[0], gamma=blur[1]))

    blur = jnp.array([5e-4, 1e-2])
    g_tiled, g_dense = (jax.grad(loss)(blur, m) for m in ("tiled", "dense"))
    assert np.all(np.abs(g_dense) > 0)
    np.testing.assert_allclose(g_tiled, g_dense, rtol=1e-4)


def test_eager_calls_with_new_values_reuse_the_compilation():
    verts, faces, colours = _scene()
    mesh, cam = sj.Mesh(verts, faces, colours), sj.look_at((0.5, 0.4, 2.6))
    cfg = sj.RasterConfig((12, 12), **SMALL)
    sj.render(mesh, cam, cfg, sigma=1e-3, gamma=1e-3)
    before = soft.aggregate._cache_size()
    for s in (2e-3, 5e-4, 1e-5):
        sj.render(mesh, cam, cfg, sigma=s, gamma=s)
    assert soft.aggregate._cache_size() == before


@pytest.mark.parametrize("value", [0.0, -1e-3, float("nan"), np.ones(2)])
def test_bad_blur_values_raise(value):
    mesh, cam, cfg = sj.ico_sphere(0), sj.look_at((0, 0, 3)), sj.RasterConfig((8, 8))
    with pytest.raises(ValueError, match="sigma"):
        sj.render(mesh, cam, cfg, sigma=value)
    with pytest.raises(ValueError, match="gamma"):
        sj.render(mesh, cam, cfg, gamma=value)


def test_each_stage_compiles_only_on_the_settings_it_reads():
    """Soft-only settings do not recompile hard visibility; shading, colour and hard-only
    settings do not recompile a soft silhouette; a setting the stage reads does."""
    verts, faces, colours = _scene()
    mesh = sj.Mesh(verts, faces, colours)
    cam = sj.look_at((0.3, 0.5, 2.8))
    soft_only = [dict(sigma=1e-2), dict(gamma=1e-2), dict(eps=1e-2), dict(dist_eps=1e-3),
                 dict(coverage="gaussian"), dict(squared=False), dict(distance="barycentric"),
                 dict(alpha="einstein"), dict(color="hard")]  # fmt: skip
    base = sj.RasterConfig((10, 12), visibility="hard")
    sj.render(mesh, cam, base)
    sj.render_silhouette(mesh, cam, base)
    before = hard.render_hard._cache_size()
    for change in soft_only:
        cfg = dataclasses.replace(base, **change)
        assert cfg.for_stage("hard") == base.for_stage("hard")
        sj.render(mesh, cam, cfg)
        sj.render_silhouette(mesh, cam, cfg)
    assert hard.render_hard._cache_size() == before
    sj.render(mesh, cam, dataclasses.replace(base, antialias_capacity=0))
    assert hard.render_hard._cache_size() == before + 1

    base = sj.RasterConfig((10, 12))
    sj.render_silhouette(mesh, cam, base)
    before = soft.aggregate._cache_size()
    for change in [dict(shading="phong"), dict(aovs=("depth",)), dict(color="hard"),
                   dict(eps=1e-2), dict(strip_pixels=64), dict(antialias_capacity=0)]:  # fmt: skip
        sj.render_silhouette(mesh, cam, dataclasses.replace(base, **change))
    assert soft.aggregate._cache_size() == before
    sj.render_silhouette(mesh, cam, dataclasses.replace(base, coverage="gaussian"))
    assert soft.aggregate._cache_size() == before + 1
