"""The soft-rasterizer family through the whole renderer, in float64: every coverage
distribution, T-conorm and colour aggregation renders the same images and gradients tiled as
dense, and its gradients match central differences.

Each group of choices is compiled as one program per method (the configs rendered side by
side, values and gradients together), which costs about half as much as a program each."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scenes import SMALL, layers_scene

import softjax as sj
from softjax._src.pipeline import soft
from softjax._src.soft import coverage, tconorms

SIZE = (20, 28)
EYE = (0.2, 0.1, 3.0)
BASE = dict(sigma=3e-3, gamma=1e-2)
# The many-layer scene binned in rounds of 50 pairs, in small tiles, chunks and batches.
TILED = SMALL

DISTRIBUTIONS = [dict(coverage=d) for d in coverage.DISTRIBUTIONS] + [
    dict(distance="barycentric"), dict(squared=False),
    dict(coverage="uniform", distance="barycentric", squared=False),
]  # fmt: skip
ALPHAS = [dict(alpha=a) for a in tconorms.T_CONORMS] + [
    dict(alpha="frank", t_conorm_p=0.1), dict(alpha="schweizer_sklar", t_conorm_p=-4.0),
]  # fmt: skip
# Each coverage choice with a T-conorm in turn (the second time round in reverse order), so
# that every distribution, distance and T-conorm is rendered (compiling the programs is most of
# this file's time), then the hard colour with the default and with the arg-max alpha. (Yager's
# alpha has a kink where its sum reaches 1, which central differences must not straddle: with
# the DIB-R coverage, one pixel of this scene lies within 1e-6 of it.)
CHOICES = [{**a, **d} for a, d in zip(ALPHAS + ALPHAS[::-1], DISTRIBUTIONS, strict=False)] + [
    dict(color="hard"), dict(color="hard", alpha="max", coverage="cubic_hermite"),
]  # fmt: skip
GROUPS = {"first": CHOICES[: len(CHOICES) // 2], "second": CHOICES[len(CHOICES) // 2 :]}


def _scene(dtype):
    verts, faces, colours = layers_scene()
    return jnp.asarray(verts, dtype), faces, jnp.asarray(colours, dtype)


def _program(choices, method, faces, dtype, settings=()):
    """One jitted `(verts, colours) -> (losses (K,), images (K, H, W, 4), grads)`: a weighted
    sum of each choice's RGBA image, the images, and each loss's gradients with respect to
    the vertices and colours `(K, V, 3)` (each differentiated alone: reverse mode through
    the stacked losses would run every choice's backward pass K times)."""
    weights = jnp.asarray(np.random.default_rng(0).standard_normal((*SIZE, 4)), dtype)
    cam = sj.look_at(np.asarray(EYE, dtype))
    cfgs = [sj.RasterConfig(SIZE, method=method, **BASE, **dict(settings), **c) for c in choices]

    def loss(v, c, cfg):
        image = sj.render(sj.Mesh(v, faces, c), cam, cfg)
        return jnp.sum(image * weights), image

    def run(verts, colours):
        each = [jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(verts, colours, cfg)
                for cfg in cfgs]  # fmt: skip
        values, grads = zip(*each, strict=True)
        losses, images = zip(*values, strict=True)
        return (jnp.stack(losses), jnp.stack(images),
                tuple(jnp.stack(g) for g in zip(*grads, strict=True)))  # fmt: skip

    return jax.jit(run)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("group", list(GROUPS))
def test_tiled_matches_dense_and_finite_differences(group):
    """Every choice renders the same images and gradients tiled (in many rounds of binning)
    as dense, and the gradients match float64 central differences of the losses along
    random directions of the vertices and colours."""
    choices = GROUPS[group]
    verts, faces, colours = _scene(jnp.float64)
    tiled = _program(choices, "tiled", faces, jnp.float64, TILED)
    dense = _program(choices, "dense", faces, jnp.float64)
    _, img_t, g_t = tiled(verts, colours)
    _, img_d, g_d = dense(verts, colours)
    for k, choice in enumerate(choices):
        np.testing.assert_allclose(img_t[k], img_d[k], atol=1e-5, rtol=0, err_msg=str(choice))
        assert np.ptp(np.asarray(img_d[k][..., 3])) > 0.05, choice  # a silhouette with edges
        for gt, gd in zip(g_t, g_d, strict=True):
            gt, gd = np.asarray(gt[k]), np.asarray(gd[k])
            assert np.all(np.isfinite(gt)), choice
            assert np.abs(gt - gd).max() <= 1e-4 * np.abs(gd).max(), choice
    rng, step = np.random.default_rng(1), 1e-6
    for _ in range(3):
        dv, dc = rng.standard_normal(verts.shape), rng.standard_normal(colours.shape)
        up = np.asarray(dense(verts + step * dv, colours + step * dc)[0])
        down = np.asarray(dense(verts - step * dv, colours - step * dc)[0])
        fd = (up - down) / (2 * step)
        ad = np.asarray(jnp.sum(g_d[0] * dv, axis=(1, 2)) + jnp.sum(g_d[1] * dc, axis=(1, 2)))
        for k, choice in enumerate(choices):
            g_max = max(np.abs(np.asarray(g[k])).max() for g in g_d)
            assert g_max > 1e-3, choice
            err = abs(ad[k] - fd[k]) / max(abs(fd[k]), 1e-2 * g_max)
            assert err <= 1e-4, (choice, err, ad[k], fd[k])


def test_hard_alpha_has_no_gradient_and_the_others_do():
    """Every T-conorm but "hard" moves the silhouette's edges (through alpha alone)."""
    verts, faces, _ = _scene(jnp.float64)
    cam = sj.look_at(np.asarray(EYE))
    cfgs = [sj.RasterConfig(SIZE, alpha=a, method="dense", **BASE) for a in tconorms.T_CONORMS]
    grads = jax.jit(lambda v: [jax.grad(lambda v, c=c: jnp.sum(
        sj.render_silhouette(sj.Mesh(v, faces), cam, c)))(v) for c in cfgs])(verts)  # fmt: skip
    for a, g in zip(tconorms.T_CONORMS, grads, strict=True):
        moved = np.abs(np.asarray(g)).max()
        assert (moved == 0) if a == "hard" else (moved > 1e-3), (a, moved)


def test_defaults_are_todays_renderer_and_one_compilation():
    explicit = sj.RasterConfig(SIZE, coverage="logistic", squared=True, alpha="probabilistic",
                               color="softmax", distance="euclidean", t_conorm_p=None)  # fmt: skip
    assert explicit == sj.RasterConfig(SIZE) and hash(explicit) == hash(sj.RasterConfig(SIZE))
    verts, faces, colours = _scene(jnp.float32)
    mesh, cam = sj.Mesh(verts, faces, colours), sj.look_at(np.asarray(EYE, np.float32))
    first = sj.render(mesh, cam, sj.RasterConfig(SIZE))
    before = soft.aggregate._cache_size()
    np.testing.assert_array_equal(sj.render(mesh, cam, explicit), first)
    assert soft.aggregate._cache_size() == before


def test_t_conorm_p_is_traced_and_checked():
    verts, faces, colours = _scene(jnp.float32)
    mesh, cam = sj.Mesh(verts, faces, colours), sj.look_at(np.asarray(EYE, np.float32))
    cfg = sj.RasterConfig(SIZE, alpha="yager", **BASE)
    render = jax.jit(lambda p: sj.render_silhouette(mesh, cam, cfg, t_conorm_p=p))
    a, b = render(0.7), render(3.0)
    assert render._cache_size() == 1 and np.abs(np.asarray(a - b)).max() > 1e-2
    np.testing.assert_allclose(a, sj.render_silhouette(mesh, cam, cfg, t_conorm_p=0.7),
                               atol=1e-6)  # fmt: skip
    fixed = sj.RasterConfig(SIZE, alpha="yager", t_conorm_p=3.0, **BASE)
    np.testing.assert_allclose(b, sj.render_silhouette(mesh, cam, fixed), atol=1e-6)
    with pytest.raises(ValueError, match="t_conorm_p"):
        sj.render_silhouette(mesh, cam, cfg, t_conorm_p=-1.0)
    with pytest.raises(ValueError, match="takes no `t_conorm_p`"):
        sj.render(mesh, cam, sj.RasterConfig(SIZE), t_conorm_p=2.0)
    g = jax.grad(lambda p: jnp.sum(sj.render_silhouette(mesh, cam, cfg, t_conorm_p=p)))(2.0)
    assert np.isfinite(float(g)) and float(g) != 0


def test_hard_colour_is_the_nearest_face():
    """`color="hard"` shows the z-buffer's face at each pixel centre (the background where
    none), interpolated as `sj.rasterize` + `sj.interpolate` do."""
    verts, faces, colours = _scene(jnp.float32)
    mesh, cam = sj.Mesh(verts, faces, colours), sj.look_at(np.asarray(EYE, np.float32))
    cfg = sj.RasterConfig(SIZE, color="hard", background=(0.1, 0.2, 0.3), **BASE)
    rgb = np.asarray(sj.render(mesh, cam, cfg))[..., :3]
    frags = sj.rasterize(mesh, cam, cfg)
    want = np.where(np.asarray(frags.face_id)[..., None] >= 0,
                    np.asarray(sj.interpolate(colours, frags, mesh)), (0.1, 0.2, 0.3))  # fmt: skip
    np.testing.assert_allclose(rgb, want, atol=1e-5)


def test_bad_choices_raise():
    for kw in (dict(coverage="sigmoid"), dict(alpha="or"), dict(color="mean"),
               dict(distance="manhattan"), dict(coverage_shape=0.0), dict(squared=1)):  # fmt: skip
        with pytest.raises((ValueError, TypeError)):
            sj.RasterConfig(**kw)
