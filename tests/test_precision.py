"""Precision policy: geometry, shading and reductions run in at least float32; images come
back in the dtype of the vertices. Half-precision inputs give the image of their values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scenes import cast

import softjax as sj

CFG = sj.RasterConfig((24, 28), sigma=1e-4, gamma=1e-4, aovs=("depth", "normals"))
LIGHTS = ((0.3, 0.9), ((0.3, -1.0, -0.5), 0.7))


def _scene(dtype):
    """A bumpy sphere, its colours, a camera and lights, all in `dtype`."""
    base = sj.ico_sphere(3)
    rng = np.random.default_rng(0)
    verts = np.asarray(base.verts) * (1 + 0.1 * rng.standard_normal((base.num_verts, 1)))
    colours = rng.uniform(0.1, 0.9, verts.shape)
    mesh = sj.Mesh(jnp.asarray(verts, dtype), base.faces, jnp.asarray(colours, dtype))
    cam = sj.look_at(jnp.asarray([0.4, 0.5, 2.6], dtype), fov=jnp.asarray(50.0, dtype))
    (ambient, _), (direction, intensity) = LIGHTS
    light = sj.DirectionalLight(
        jnp.asarray(direction, dtype), intensity=jnp.asarray(intensity, dtype)
    )
    lights = sj.Lights(jnp.asarray(ambient, dtype), [light])
    return mesh, cam, lights


@pytest.mark.parametrize("dtype, atol", [(jnp.float16, 2e-3), (jnp.bfloat16, 1.6e-2)])
def test_half_precision_gives_the_float32_image_of_its_values(dtype, atol):
    scene = _scene(dtype)
    rgba, out = sj.render(*scene[:2], CFG, scene[2])
    ref_rgba, ref_out = sj.render(*cast(scene[:2], jnp.float32), CFG, cast(scene[2], jnp.float32))
    assert rgba.dtype == dtype and out["depth"].dtype == dtype and out["normals"].dtype == dtype
    # The only difference is the final rounding to `dtype` (values <= 1; depth up to far).
    np.testing.assert_allclose(np.float32(rgba), ref_rgba, atol=atol, rtol=0)
    np.testing.assert_allclose(np.float32(out["normals"]), ref_out["normals"], atol=atol, rtol=0)
    np.testing.assert_allclose(np.float32(out["depth"]), ref_out["depth"], rtol=atol, atol=0)
    sil = sj.render_silhouette(scene[0], scene[1], CFG)
    assert sil.dtype == dtype
    np.testing.assert_allclose(np.float32(sil), ref_rgba[..., 3], atol=atol, rtol=0)


def test_small_faces_in_float16_still_cover_their_pixels():
    """Degeneracy is judged relative to each face's size: a fine sphere in float16 covers the
    pixels it covers in float32 (an absolute area threshold of 7.8e-3 lost every face)."""
    sphere, cam, cfg = sj.ico_sphere(4), sj.look_at((0.0, 0.0, 3.0)), sj.RasterConfig((64, 64))
    covered = {}
    for dtype in (jnp.float16, jnp.float32):
        mesh = sj.Mesh(sphere.verts.astype(dtype), sphere.faces)
        cam_d = sj.look_at(jnp.asarray([0.0, 0.0, 3.0], dtype))
        covered[dtype] = int(jnp.sum(sj.render_silhouette(mesh, cam_d, cfg) > 0.5))
    assert covered[jnp.float32] > 1000
    assert abs(covered[jnp.float16] - covered[jnp.float32]) <= 8
    assert int(jnp.sum(sj.render_silhouette(sphere, cam, cfg) > 0.5)) == covered[jnp.float32]


def test_float64_agrees_with_float32():
    with jax.enable_x64(True):
        mesh, cam, lights = _scene(jnp.float64)
        rgba, out = sj.render(mesh, cam, CFG, lights)
        assert rgba.dtype == jnp.float64
        rgba32, out32 = sj.render(*cast((mesh, cam), jnp.float32), CFG, cast(lights, jnp.float32))
    # float32's own precision here: softmax weights exp(zn / gamma) with gamma = 1e-4 carry a
    # relative error of about 1e4 * 6e-8.
    np.testing.assert_allclose(rgba, rgba32, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["depth"], out32["depth"], rtol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_gradients_are_finite_and_in_the_input_dtype(dtype):
    mesh, cam, lights = _scene(dtype)
    cfg = sj.RasterConfig((16, 16), sigma=1e-3, gamma=1e-2)

    def loss(verts, colours):
        return jnp.sum(sj.render(sj.Mesh(verts, mesh.faces, colours), cam, cfg, lights))

    gv, gc = jax.grad(loss, argnums=(0, 1))(mesh.verts, mesh.colors)
    assert gv.dtype == dtype and gc.dtype == dtype
    assert np.all(np.isfinite(np.float32(gv))) and np.abs(np.float32(gv)).max() > 0
    gv32 = jax.grad(loss)(mesh.verts.astype(jnp.float32), mesh.colors.astype(jnp.float32))
    # The gradient of the float32 computation, rounded to the input's precision.
    scale = float(np.abs(gv32).max())
    np.testing.assert_allclose(np.float32(gv), np.float32(gv32.astype(dtype)), rtol=0,
                               atol=float(jnp.finfo(dtype).eps) * scale)  # fmt: skip
