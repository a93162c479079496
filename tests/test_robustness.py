"""Degenerate geometry never gives NaN; bad input raises a ValueError that names it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import softjax as sj

CFG = sj.RasterConfig(image_size=(12, 14), sigma=1e-4, gamma=1e-4)


def _all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def _render_and_grads(verts, faces, eye=(0.0, 0.0, 3.0), cfg=CFG):
    colours = jnp.full((len(verts), 3), 0.5)

    def loss(v, c, e):
        mesh = sj.Mesh(v, faces, c)
        cam = sj.look_at(e, (0.0, 0.0, 0.0))
        rgba = sj.render(mesh, cam, cfg, lights=sj.Lights())
        return jnp.sum(rgba**2) + jnp.sum(sj.render_silhouette(mesh, cam, cfg)), rgba

    (value, rgba), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        jnp.asarray(verts, jnp.float32), colours, jnp.asarray(eye, jnp.float32)
    )
    return rgba, grads


def test_degenerate_triangles_are_finite():
    verts = np.array(
        [[0, 0, 0], [0, 0, 0], [0, 0, 0],  # a point
         [-0.5, 0, 0], [0, 0, 0], [0.5, 0, 0],  # a line (three collinear corners)
         [0.2, 0.2, 0], [0.2, 0.2, 0], [0.6, 0.6, 0],  # two equal corners
         [-0.5, -0.5, 0], [0.5, -0.5, 0], [0, 0.5, 0]],  # and one proper triangle
        np.float32,
    )  # fmt: skip
    faces = np.arange(12).reshape(4, 3)
    rgba, grads = _render_and_grads(verts, faces)
    assert _all_finite((rgba, grads))
    assert float(rgba[..., 3].max()) > 0.9  # the proper triangle still renders


def test_vertex_behind_camera_and_on_eye_is_finite():
    verts = np.array(
        [[-0.5, -0.5, 0], [0.5, -0.5, 0], [0, 0.5, 0],  # in front
         [0, 0, 3.0], [1, 0, 0], [0, 1, 0],  # one corner exactly at the eye
         [-1, 0, 5.0], [1, 0, 0.5], [0, 1, 0.5],  # one corner behind the camera
         [0, 0, 2.95], [0.1, 0, 2.95], [0, 0.1, 2.95]],  # all in front of near = 0.1 (z < 0.1)
        np.float32,
    )  # fmt: skip
    faces = np.arange(12).reshape(4, 3)
    rgba, grads = _render_and_grads(verts, faces)
    assert _all_finite((rgba, grads))
    # Faces crossing the near plane are culled: only the first face covers pixels.
    only_first, _ = _render_and_grads(verts[:3], faces[:1])
    np.testing.assert_allclose(rgba, only_first, atol=1e-6)
    # and the culled faces get exactly zero gradient
    np.testing.assert_array_equal(grads[0][3:], 0.0)


def test_camera_inside_mesh_and_hard_limits_are_finite():
    sphere = sj.ico_sphere(1)
    rgba, grads = _render_and_grads(sphere.verts, sphere.faces, eye=(0.0, 0.0, 0.5))
    assert _all_finite((rgba, grads))
    hard = sj.RasterConfig(image_size=(12, 14), sigma=1e-9, gamma=1e-6)
    rgba, grads = _render_and_grads(sphere.verts, sphere.faces, cfg=hard)
    assert _all_finite((rgba, grads))


def test_look_at_with_up_parallel_to_view_is_finite():
    def f(eye):
        cam = sj.look_at(eye, (0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0))
        return jnp.sum(sj.render_silhouette(sj.ico_sphere(1), cam, CFG)), cam

    for eye in [(0.0, 3.0, 0.0), (0.0, -3.0, 0.0)]:
        (value, cam), grad = jax.value_and_grad(f, has_aux=True)(jnp.array(eye))
        assert _all_finite((value, cam, grad))
        np.testing.assert_allclose(cam.rotation @ cam.rotation.T, np.eye(3), atol=1e-6)
        assert float(value) > 10  # the sphere is in view


GOOD_V = np.zeros((3, 3), np.float32)
GOOD_F = np.array([[0, 1, 2]])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sj.Mesh(GOOD_V, [[0, 1, 3]]), "faces.*indices"),
        (lambda: sj.Mesh(GOOD_V, [[0, 1, -1]]), "faces.*indices"),
        (lambda: sj.Mesh(GOOD_V, np.array([[0.0, 1.0, 2.0]])), "faces.*integer"),
        (lambda: sj.Mesh(GOOD_V, np.array([[0, 1, 2, 0]])), r"faces.*\(N, 3\)"),
        (lambda: sj.Mesh(np.zeros((3, 2), np.float32), GOOD_F), r"verts.*\(N, 3\)"),
        (lambda: sj.Mesh(np.zeros((3, 3), np.int32), GOOD_F), "verts.*floating"),
        (lambda: sj.Mesh(np.full((3, 3), np.nan, np.float32), GOOD_F), "verts.*NaN"),
        (lambda: sj.Mesh(GOOD_V, GOOD_F, colors=np.ones((4, 3))), r"colors.*\(3, 3\)"),
        (lambda: sj.RasterConfig(image_size=(0, 16)), "image_size"),
        (lambda: sj.RasterConfig(image_size=(16, -2)), "image_size"),
        (lambda: sj.RasterConfig(image_size=(16, 16, 3)), "image_size"),
        (lambda: sj.RasterConfig(image_size=(16.5, 16)), "image_size"),
        (lambda: sj.RasterConfig(sigma=0.0), "sigma"),
        (lambda: sj.RasterConfig(sigma=-1e-4), "sigma"),
        (lambda: sj.RasterConfig(gamma=0.0), "gamma"),
        (lambda: sj.RasterConfig(gamma=float("nan")), "gamma"),
        (lambda: sj.RasterConfig(background=(0.0, 0.0)), "background"),
        (lambda: sj.RasterConfig(dist_eps=0.7), "dist_eps"),
        (lambda: sj.look_at((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), "eye.*at"),
        (lambda: sj.look_at((0.0, 0.0, 3.0), up=(0.0, 0.0, 0.0)), "up"),
        (lambda: sj.look_at((0.0, 0.0, 3.0), fov=0.0), "fov"),
        (lambda: sj.look_at((0.0, 0.0, 3.0), fov=180.0), "fov"),
        (lambda: sj.look_at((0.0, 0.0, 3.0), near=0.0), "near"),
        (lambda: sj.look_at((0.0, 0.0, 3.0), near=2.0, far=1.0), "near"),
        (lambda: sj.look_at((0.0, 3.0)), r"eye.*\(3\)"),
        (lambda: sj.Lights(direction=(0.0, 0.0, 0.0)), "direction"),
        (lambda: sj.Lights(direction=(0.0, 1.0)), "direction"),
        (lambda: sj.ico_sphere(-1), "level"),
    ],
)
def test_bad_input_raises_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_render_rejects_wrong_types_and_batched_cameras():
    mesh, cam = sj.ico_sphere(0), sj.look_at((0.0, 0.0, 3.0))
    with pytest.raises(TypeError, match="cfg"):
        sj.render(mesh, cam, {"image_size": (8, 8)})
    with pytest.raises(TypeError, match="mesh"):
        sj.render_silhouette(mesh.verts, cam, CFG)
    cams = jax.vmap(sj.look_at)(jnp.ones((2, 3)) * 3.0)
    with pytest.raises(ValueError, match="vmap"):
        sj.render(mesh, cams, CFG)


def test_checks_do_not_break_jit():
    """Validation runs on concrete values only; inside jit the same code traces cleanly."""
    faces = np.asarray(sj.ico_sphere(1).faces)

    @jax.jit
    def f(verts, eye):
        return sj.render_silhouette(sj.Mesh(verts, faces), sj.look_at(eye), CFG)

    out = f(sj.ico_sphere(1).verts, jnp.array([0.0, 0.0, 3.0]))
    assert out.shape == CFG.image_size
