"""Degenerate geometry never gives NaN; bad input raises a ValueError that names it."""

import dataclasses
import functools

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
    f = jnp.asarray(faces, jnp.int32)
    v, e = jnp.asarray(verts, jnp.float32), jnp.asarray(eye, jnp.float32)
    (_, rgba), grads = _value_and_grads(v, f, colours, e, cfg)
    return rgba, grads


@functools.partial(jax.jit, static_argnames="cfg")
def _value_and_grads(verts, faces, colours, eye, cfg):
    """Jitted, so that calls with the same shapes share one compilation."""

    def loss(v, c, e):
        mesh = sj.Mesh(v, faces, c)
        cam = sj.look_at(e, (0.0, 0.0, 0.0))
        rgba = sj.render(
            mesh,
            cam,
            cfg,
            lights=sj.Lights(0.5, [sj.DirectionalLight((0.0, -1.0, -1.0), intensity=0.5)]),
        )
        return jnp.sum(rgba**2) + jnp.sum(sj.render_silhouette(mesh, cam, cfg)), rgba

    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(verts, colours, eye)


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
    # Faces crossing the near plane are clipped, not culled: they add to the image and
    # receive gradients. The face wholly closer than `near` is not drawn: the image is that
    # of the other three, and its corners get exactly zero gradient.
    # (Same shapes, one compilation: faces moved wholly behind the eye stand for no faces.)
    gone = verts.copy()
    gone[9:] += (0.0, 0.0, 10.0)
    first_three, _ = _render_and_grads(gone, faces)
    np.testing.assert_allclose(rgba, first_three, atol=1e-6)
    gone[3:9] += (0.0, 0.0, 10.0)
    only_first, _ = _render_and_grads(gone, faces)
    assert float(np.abs(np.asarray(rgba) - np.asarray(only_first)).max()) > 0.5
    np.testing.assert_array_equal(grads[0][9:], 0.0)
    assert float(np.abs(grads[0][3:9]).max()) > 0


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
        (lambda: sj.DirectionalLight(direction=(0.0, 0.0, 0.0)), "direction"),
        (lambda: sj.DirectionalLight(direction=(0.0, 1.0)), "direction"),
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


# Each entry: a call with a bad argument, the exception and what its message must name.
BAD_KINDS = [
    (lambda: sj.Mesh("abc", GOOD_F), TypeError, "verts"),
    (lambda: sj.Mesh(None, GOOD_F), TypeError, "verts"),
    (lambda: sj.Mesh(GOOD_V, "abc"), TypeError, "faces"),
    (lambda: sj.Mesh(GOOD_V, None), TypeError, "faces"),
    (lambda: sj.Mesh([[0, 0, 1j], [1, 0, 0], [0, 1, 0]], GOOD_F), ValueError, "verts.*real"),
    (lambda: sj.Mesh([[0, 0], [1, 0, 0]], GOOD_F), ValueError, "verts.*rectangular"),
    (lambda: sj.look_at("abc"), TypeError, "eye"),
    (lambda: sj.look_at(None), TypeError, "eye"),
    (lambda: sj.look_at((0.0, 0.0, 3.0), projection="fisheye"), ValueError, "projection"),
    (lambda: sj.PointLight(position="abc"), TypeError, "position"),
    (lambda: sj.PointLight(position=None), TypeError, "position"),
    (lambda: sj.Lights(ambient=None), TypeError, "ambient"),
    (lambda: sj.Lights(ambient="bright"), TypeError, "ambient"),
    (lambda: sj.RasterConfig(aovs=None), TypeError, "aovs"),
    (lambda: sj.RasterConfig(cull_backfaces="False"), TypeError, "cull_backfaces"),
    (lambda: sj.RasterConfig(tile_size=8.0), TypeError, "tile_size"),
    (lambda: sj.RasterConfig(sigma="1e-4"), TypeError, "sigma"),
    (lambda: sj.RasterConfig(image_size=np.array([8.5, 8.0])), ValueError, "image_size"),
    (lambda: sj.Camera.from_opencv(np.eye(3), np.eye(3), np.ones(3), (8.5, 8)), ValueError,
     "image_size"),
    (lambda: sj.Camera.from_opencv(np.eye(3), np.eye(3), np.ones(3), "big"), ValueError,
     "image_size"),
    (lambda: sj.Camera(np.zeros(3), 2 * np.eye(3), np.ones(2)), ValueError, "rotation"),
    (lambda: sj.Camera(np.zeros(3), np.diag([1.0, 1.0, -1.0]), np.ones(2)), ValueError,
     "rotation"),
    (lambda: sj.Camera(np.zeros(3), np.eye(3), np.ones(2), orthographic="yes"), TypeError,
     "orthographic"),
    (lambda: sj.render(sj.ico_sphere(0), sj.look_at((0.0, 0.0, 3.0)), CFG, sigma="big"),
     TypeError, "sigma"),
    (lambda: sj.ico_sphere(2.0), ValueError, "level"),
]  # fmt: skip


@pytest.mark.parametrize("make, error, match", BAD_KINDS)
def test_bad_kinds_of_input_name_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_integer_like_sizes_and_concrete_array_settings_are_accepted():
    K = np.array([[50.0, 0.0, 31.5], [0.0, 50.0, 31.5], [0.0, 0.0, 1.0]])
    a = sj.Camera.from_opencv(K, np.eye(3), np.array([0.0, 0.0, 3.0]), image_size=np.int64(64))
    b = sj.Camera.from_opencv(K, np.eye(3), np.array([0.0, 0.0, 3.0]), image_size=(64, 64))
    np.testing.assert_array_equal(a.focal, b.focal)
    np.testing.assert_array_equal(a.center, b.center)
    cfg = sj.RasterConfig(np.int64(16), sigma=jnp.array(1e-4), gamma=np.float32(1e-3))
    assert cfg.image_size == (16, 16) and cfg.sigma == pytest.approx(1e-4)
    assert isinstance(cfg.sigma, float) and hash(cfg) == hash(dataclasses.replace(cfg))

    @jax.jit
    def traced(s):
        return sj.RasterConfig(sigma=s)

    with pytest.raises(TypeError, match="sigma=, gamma="):
        traced(1e-4)


def test_no_hidden_defaults():
    # A mesh without colours stores none, so a new vertex count is fine.
    mesh = sj.ico_sphere(1)
    assert mesh.colors is None
    bigger = mesh.replace(verts=sj.ico_sphere(2).verts, faces=sj.ico_sphere(2).faces)
    assert bigger.num_verts == 162 and bigger.colors is None
    # Lights hold what is given: ambient light alone leaves the colours as they are.
    lights = sj.Lights(ambient=1.0)
    assert lights.directional.direction.shape == (0, 3) and lights.point.position.shape == (0, 3)
    cam, cfg = sj.look_at((0.0, 0.0, 3.0)), sj.RasterConfig((12, 12))
    coloured = sj.Mesh(mesh.verts, mesh.faces, (mesh.verts + 1) / 2)
    np.testing.assert_allclose(sj.render(coloured, cam, cfg, lights), sj.render(coloured, cam, cfg),
                               atol=1e-6)  # fmt: skip
    # Shading that needs lights says so instead of rendering unlit.
    with pytest.raises(ValueError, match="lights"):
        sj.render(coloured, cam, dataclasses.replace(cfg, shading="phong"))


def test_softras_lights_give_softras_images():
    """SoftRas's `directions` points towards the light and is used unnormalised: the same
    numbers light the same side with the same strength."""
    mesh, cam = sj.ico_sphere(2), sj.look_at((0.0, 0.0, 3.0))
    cfg = sj.RasterConfig((24, 24), sigma=1e-6, gamma=1e-5)
    lights = sj.Lights.softras(intensity_ambient=0.2, intensity_directionals=0.5,
                               directions=(0.0, 2.0, 0.0))  # fmt: skip
    rgba = np.asarray(sj.render(mesh, cam, cfg, lights))
    # The top of the sphere faces (0, 1, 0): 0.2 + 0.5 * 2 * n.y; its bottom gets ambient only.
    assert rgba[6, 12, 0] > 0.75 and abs(rgba[18, 12, 0] - 0.2) < 0.02
    same = sj.Lights(0.2, [sj.DirectionalLight((0.0, -1.0, 0.0), intensity=1.0)])
    np.testing.assert_allclose(rgba, sj.render(mesh, cam, cfg, same), atol=1e-6)
    with pytest.raises(ValueError, match="directions"):
        sj.Lights.softras(directions=(0.0, 0.0, 0.0))


@pytest.mark.parametrize("method", ["tiled", "dense"])
@pytest.mark.parametrize("num_verts", [0, 3])
def test_empty_meshes_render_the_background_with_zero_gradients(method, num_verts):
    verts = np.zeros((num_verts, 3), np.float32)
    cfg = sj.RasterConfig((8, 10), method=method, background=(0.2, 0.3, 0.4),
                          aovs=("depth", "normals", "face_id"))  # fmt: skip
    lights = sj.Lights(0.5, [sj.DirectionalLight()])
    empties = [
        dict(),
        dict(colors=np.zeros((num_verts, 3), np.float32)),
        dict(atlas=np.zeros((0, 2, 2, 3), np.float32)),
        dict(uvs=np.zeros((1, 2), np.float32), face_uvs=np.zeros((0, 3), np.int32),
             texture=np.ones((2, 2, 3), np.float32)),
    ]  # fmt: skip
    for fields in empties:

        def loss(v, eye, fields=fields):
            mesh = sj.Mesh(v, np.zeros((0, 3), np.int32), **fields)
            rgba, out = sj.render(mesh, sj.look_at(eye), cfg, lights)
            sil = sj.render_silhouette(mesh, sj.look_at(eye), cfg)
            return jnp.sum(rgba) + jnp.sum(out["depth"]) + jnp.sum(sil), (rgba, out, sil)

        grads, (rgba, out, sil) = jax.grad(loss, argnums=(0, 1), has_aux=True)(
            verts, jnp.array([0.0, 0.0, 3.0])
        )
        background = np.broadcast_to(np.float32([0.2, 0.3, 0.4]), (8, 10, 3))
        np.testing.assert_array_equal(rgba[..., :3], background)
        np.testing.assert_array_equal(rgba[..., 3], 0.0)
        np.testing.assert_array_equal(sil, 0.0)
        np.testing.assert_array_equal(out["face_id"], -1)
        np.testing.assert_allclose(out["depth"], 100.0)
        np.testing.assert_array_equal(out["normals"], 0.0)
        assert all(np.all(np.asarray(g) == 0) for g in grads)


def test_forward_mode_on_the_tiled_path_says_to_use_dense():
    sphere = sj.ico_sphere(1)
    cam = sj.look_at((0.0, 0.0, 3.0))

    def image(v, method):
        return sj.render_silhouette(
            sj.Mesh(v, sphere.faces), cam, sj.RasterConfig((8, 8), sigma=1e-3, method=method)
        )

    tangent = jnp.ones_like(sphere.verts)
    with pytest.raises(TypeError, match='method="dense"'):
        jax.jvp(lambda v: image(v, "tiled"), (sphere.verts,), (tangent,))
    # Dense forward mode agrees with the tiled path's reverse mode.
    _, forward = jax.jvp(lambda v: image(v, "dense"), (sphere.verts,), (tangent,))
    _, vjp = jax.vjp(lambda v: image(v, "tiled"), sphere.verts)
    probe = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)
    np.testing.assert_allclose(np.sum(probe * forward), np.sum(vjp(probe)[0] * tangent), rtol=1e-3)


def test_eager_construction_reads_no_values_off_an_accelerator(monkeypatch):
    """Arrays on an accelerator are checked for shape and dtype only: reading their values
    would copy them to the host and wait for the device on every construction."""
    from jax._src.array import ArrayImpl

    verts, faces = jnp.asarray(sj.ico_sphere(1).verts), jnp.asarray(sj.ico_sphere(1).faces)
    eye = jnp.array([0.0, 0.0, 3.0])

    class Accelerator:
        platform = "gpu"

    def no_copy(self):
        raise AssertionError("a device-to-host copy")

    monkeypatch.setattr(ArrayImpl, "devices", lambda self: {Accelerator()})
    monkeypatch.setattr(ArrayImpl, "_value", property(no_copy))
    cam = sj.look_at(eye, fov=jnp.asarray(50.0))
    sj.Camera(eye, cam.rotation, cam.focal, cam.center, cam.near, cam.far)
    sj.Mesh(verts, faces, colors=verts, atlas=jnp.ones((80, 2, 2, 3)))
    sj.Lights(jnp.asarray(0.3), [sj.DirectionalLight(-eye)], point=[sj.PointLight(eye)])
    sj.Material(jnp.asarray(1.0), jnp.asarray(0.5), jnp.asarray(0.2), jnp.asarray(10.0))


def test_materialize_is_exactly_the_identity_on_either_branch():
    """`_numerics.materialize` gives its input bit for bit (inf, NaN, -0.0, bools, ints),
    whichever branch of its boundary runs, under jit and vmap."""
    from softjax._src.numerics import materialize

    tree = (jnp.array([1.5, jnp.inf, -0.0, jnp.nan]), jnp.array([True, False]),
            jnp.array([3, -7], jnp.int32))  # fmt: skip
    for first in (0, -1, -5):
        key = jnp.array([first, 2], jnp.int32)
        for out in (jax.jit(materialize)(tree, key),
                    jax.vmap(materialize, in_axes=(None, 0))(tree, key[None])):  # fmt: skip
            out = jax.tree.map(lambda x: x.reshape(-1, *x.shape[-1:])[-1], out)
            for a, b in zip(out, tree, strict=True):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)
            assert np.signbit(np.asarray(out[0])[2])
