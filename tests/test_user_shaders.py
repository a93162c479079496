"""User shaders (`render(..., shader=, shader_params=, attributes=)`): a user's Phong equals the
built-in one under every visibility mode, parameter gradients against central differences,
named attributes and face ids, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import check_grad
from scenes import UP

import softjax as sj

SIZE = (16, 18)
EYE = (0.5, 0.7, 2.6)
MODES = {
    "soft-tiled": dict(sigma=1e-3, gamma=1e-2),
    "soft-dense": dict(sigma=1e-3, gamma=1e-2, method="dense"),
    "hard": dict(visibility="hard"),
}


def _mesh(dtype=np.float32):
    sphere = sj.ico_sphere(1)
    verts = np.asarray(sphere.verts, np.float64) * np.array([1.0, 0.8, 0.9])
    colours = np.random.default_rng(0).uniform(0.2, 0.9, verts.shape)
    return sj.Mesh(verts.astype(dtype), sphere.faces, colours.astype(dtype))


def _normalize(v):
    return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True))


def phong(frag, params):
    """The Phong model written out here, channel-last, from the formula in the shading
    docs (ambient + diffuse on the albedo, highlights added), not from softjax's code."""
    n = _normalize(frag["normal"])
    p = frag["position"]
    view = _normalize(params["eye"] - p)
    diffuse, specular = 0.0, 0.0
    to_light = [(-_normalize(params["direction"]), params["radiance"][0]),
                (_normalize(params["point"] - p), params["radiance"][1])]  # fmt: skip
    for l_dir, radiance in to_light:
        n_dot_l = jnp.sum(n * l_dir, axis=-1, keepdims=True)
        diffuse = diffuse + radiance * jnp.maximum(n_dot_l, 0.0)
        r_dot_v = jnp.sum((2 * n_dot_l * n - l_dir) * view, axis=-1, keepdims=True)
        lit = (n_dot_l > 0) & (r_dot_v > 0)
        shine = jnp.where(lit, jnp.where(lit, r_dot_v, 1.0) ** params["shininess"], 0.0)
        specular = specular + radiance * shine
    gain = params["ka"] * params["ambient"] + params["kd"] * diffuse
    return frag["color"] * gain + params["ks"] * specular


def _phong_params(dtype):
    return {
        "eye": np.array(EYE, dtype),
        "direction": np.array([0.3, -1.0, -0.6], dtype),
        "point": np.array([1.5, 1.0, 2.0], dtype),
        "radiance": np.array([[0.7, 0.6, 0.5], [0.5, 0.5, 0.6]], dtype),
        "ambient": np.array([0.25, 0.2, 0.3], dtype),
        "ka": np.array(0.9, dtype),
        "kd": np.array(0.8, dtype),
        "ks": np.array(0.4, dtype),
        "shininess": np.array(12.0, dtype),
    }


def _builtin_lights(params):
    lights = sj.Lights(
        1.0,
        [sj.DirectionalLight(params["direction"], color=params["radiance"][0])],
        [sj.PointLight(params["point"], color=params["radiance"][1])],
        ambient_color=params["ambient"],
    )
    material = sj.Material(ambient=params["ka"], diffuse=params["kd"],
                           specular=params["ks"], shininess=params["shininess"])  # fmt: skip
    return lights, material


@pytest.mark.parametrize("mode", list(MODES))
def test_user_phong_equals_the_builtin_phong(mode):
    mesh = _mesh()
    params = _phong_params(np.float32)
    lights, material = _builtin_lights(params)
    cam = sj.look_at(EYE, up=UP, fov=50.0)
    cfg = sj.RasterConfig(SIZE, shading="phong", **MODES[mode])
    weights = np.random.default_rng(1).standard_normal((*SIZE, 4)).astype(np.float32)

    @jax.jit
    def images_and_grads(verts, colours):
        def losses(v, c):
            m = sj.Mesh(v, mesh.faces, c)
            builtin = sj.render(m, cam, cfg, lights, material)
            user = sj.render(m, cam, cfg, shader=phong, shader_params=params)
            return jnp.stack([jnp.sum(weights * builtin), jnp.sum(weights * user)]), (
                builtin,
                user,
            )

        jac, images = jax.jacrev(losses, argnums=(0, 1), has_aux=True)(verts, colours)
        return images, jac

    (builtin, user), jac = images_and_grads(mesh.verts, mesh.colors)
    assert float(jnp.max(builtin[..., 3])) > 0.9
    np.testing.assert_allclose(user, builtin, rtol=0, atol=1e-6)
    for g in jac:
        scale = float(jnp.abs(g[0]).max())
        assert scale > 0
        np.testing.assert_allclose(g[1], g[0], rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("mode", ["soft-tiled", "hard"])
def test_shader_parameter_gradients_match_finite_differences(mode):
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        mesh = _mesh(np.float64)
        params = _phong_params(np.float64)
        cam = sj.look_at(EYE, up=UP, fov=50.0)
        cfg = sj.RasterConfig(SIZE, **MODES[mode])
        weights = rng.standard_normal((*SIZE, 4))
        names = ("ambient", "direction", "radiance", "kd")

        def loss(x):
            p = dict(params, **dict(zip(names, x, strict=True)))
            return jnp.sum(weights * sj.render(mesh, cam, cfg, shader=phong, shader_params=p))

        x = tuple(jnp.asarray(params[n]) for n in names)
        grads = jax.jit(jax.grad(loss))(x)
        fun = jax.jit(loss)
        for i in range(len(names)):

            def along(v, i=i):
                return fun(tuple(v if j == i else x[j] for j in range(len(names))))

            check_grad(along, x[i], rng, 2, grad=grads[i])


def test_named_attributes_and_face_ids_reach_the_shader():
    """A per-vertex attribute of one's own is interpolated like the colours, and face ids
    index a per-face table: in the hard limit both equal what `rasterize` + `interpolate`
    give at each pixel."""
    mesh = _mesh()
    cam = sj.look_at(EYE, up=UP, fov=50.0)
    cfg = sj.RasterConfig(SIZE, visibility="hard")
    table = np.random.default_rng(3).uniform(0, 1, (mesh.num_faces, 3)).astype(np.float32)
    glow = np.random.default_rng(4).uniform(0, 1, (mesh.verts.shape[0], 2)).astype(np.float32)

    def by_face(frag, params):
        return params[frag["face_id"]] * frag["glow"][..., :1]

    rgba = sj.render(mesh, cam, cfg, shader=by_face, shader_params=table,
                     attributes={"glow": glow})  # fmt: skip
    frags = sj.rasterize(mesh, cam, cfg)
    expected = table[np.maximum(frags.face_id, 0)] * sj.interpolate(glow, frags, mesh)[..., :1]
    some = np.asarray(frags.face_id) >= 0
    inner = some & (np.asarray(rgba[..., 3]) == 1.0)  # not blended by the antialiasing
    assert inner.sum() > 50
    np.testing.assert_allclose(np.asarray(rgba[..., :3])[inner], np.asarray(expected)[inner],
                               atol=1e-6)  # fmt: skip


def test_bad_shader_input_raises():
    mesh = _mesh()
    cam = sj.look_at(EYE, up=UP)
    cfg = sj.RasterConfig((8, 8))

    def flat(frag, params):
        return frag["color"]

    with pytest.raises(ValueError, match="shader_params"):
        sj.render(mesh, cam, cfg, sj.Lights(), shader=flat)
    with pytest.raises(ValueError, match="built in"):
        sj.render(mesh, cam, cfg, shader=flat, attributes={"normal": mesh.verts})
    with pytest.raises(ValueError, match="per-vertex"):
        sj.render(mesh, cam, cfg, shader=flat, attributes={"a": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        sj.render(mesh, cam, cfg, shader=lambda frag, params: frag["position"][..., :2])
    with pytest.raises(ValueError, match="go with a `shader`"):
        sj.render(mesh, cam, cfg, shader_params={"a": 1.0})
    with pytest.raises(TypeError, match="function"):
        sj.render(mesh, cam, cfg, shader="phong")
