"""Float64 finite-difference checks of jax.grad through the whole renderer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import check_grad

import softjax as sj

H, W = 12, 16
CFG = sj.RasterConfig(image_size=(H, W), sigma=1e-3, gamma=1e-2)
EYE = (0.7, 0.5, 2.6)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _scene():
    rng = np.random.default_rng(0)
    base = sj.ico_sphere(1)
    verts = np.asarray(base.verts, np.float64) * (1.0 + 0.15 * rng.standard_normal((42, 1)))
    colours = rng.uniform(0.1, 0.9, (42, 3))
    return verts, np.asarray(base.faces), colours, rng


def _loss_fn(verts, faces, colours, rng):
    """A scalar with random weights on every output channel, so no pixel is left out."""
    w = jnp.asarray(rng.standard_normal((H, W, 4)))

    def loss(verts=verts, colours=colours, eye=EYE, direction=(0.3, -1.0, -0.8)):
        mesh = sj.Mesh(verts, faces, colours)
        cam = sj.look_at(jnp.asarray(eye), (0.0, 0.1, 0.0), fov=55.0)
        lights = sj.Lights(0.4, [sj.DirectionalLight(jnp.asarray(direction), intensity=0.6)])
        rgba = sj.render(mesh, cam, CFG, lights=lights)
        return jnp.sum(w * rgba) + jnp.sum(w[..., 0] * sj.render_silhouette(mesh, cam, CFG))

    return loss


def test_grad_verts():
    verts, faces, colours, rng = _scene()
    loss = _loss_fn(verts, faces, colours, rng)
    check_grad(lambda v: loss(verts=v), verts, rng, 12)


def test_grad_colours():
    verts, faces, colours, rng = _scene()
    loss = _loss_fn(verts, faces, colours, rng)
    check_grad(lambda c: loss(colours=c), colours, rng, 8)


def test_grad_camera_eye():
    verts, faces, colours, rng = _scene()
    loss = _loss_fn(verts, faces, colours, rng)
    check_grad(lambda e: loss(eye=e), np.array(EYE), rng, 3)


def test_grad_light_direction():
    verts, faces, colours, rng = _scene()
    loss = _loss_fn(verts, faces, colours, rng)
    check_grad(lambda d: loss(direction=d), np.array([0.3, -1.0, -0.8]), rng, 3)


def test_outputs_follow_float64_verts():
    verts, faces, colours, _ = _scene()
    mesh = sj.Mesh(verts, faces, colours)
    cam = sj.look_at(EYE)
    assert sj.render(mesh, cam, CFG).dtype == jnp.float64
    assert sj.render_silhouette(mesh, cam, CFG).dtype == jnp.float64
