"""Lights, materials and the three shading modes: hard-limit renders against the numpy
Phong reference at ray hits, finite-difference gradients, tiled == dense, the API."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from gradcheck import check_grad
from scenes import HARD, UP

import softjax as sj

EYE = (0.6, 0.9, 2.6)


def _lights():
    return sj.Lights(
        ambient=0.2,
        ambient_color=(1.0, 0.9, 0.8),
        directional=[sj.DirectionalLight((0.3, -1.0, -0.4), (0.6, 0.6, 0.7), 0.8)],
        point=[sj.PointLight((1.5, 1.0, 2.0), (1.0, 0.8, 0.6), 0.9),
               sj.PointLight((-2.0, 0.5, 1.0), (0.3, 0.5, 1.0), 0.7)],
    )  # fmt: skip


MATERIAL = dict(ambient=1.0, diffuse=(0.9, 0.8, 1.0), specular=0.6, shininess=12.0)


def _reference_lights():
    return dict(
        ambient=0.2 * np.array([1.0, 0.9, 0.8]),
        directional=[((0.3, -1.0, -0.4), 0.8 * np.array([0.6, 0.6, 0.7]))],
        point=[((1.5, 1.0, 2.0), 0.9 * np.array([1.0, 0.8, 0.6])),
               ((-2.0, 0.5, 1.0), 0.7 * np.array([0.3, 0.5, 1.0]))],
        ka=1.0, kd=np.array([0.9, 0.8, 1.0]), ks=0.6, shininess=12.0,
    )  # fmt: skip


def _sphere():
    m = sj.ico_sphere(3)
    v = np.asarray(m.verts, np.float64)
    return v, np.asarray(m.faces), np.clip(0.6 + 0.3 * v, 0, 1)


def _torus():
    v, f = ref.torus(R=1.0, r=0.4, n_major=32, n_minor=16)
    v = v @ ref.rotation_matrix((1.0, 0.0, 0.3), 0.8).T
    return v, f, np.clip(0.55 + 0.35 * np.sin(2 * v), 0, 1)


def _expected(shading, verts, faces, colours, out):
    """The reference shading of each hit pixel, from the same formulas."""
    fid = np.maximum(out.face_id, 0)
    tri = faces[fid]  # (H, W, 3)
    w = out.bary[..., None]
    albedo = np.sum(w * colours[tri], axis=2)
    kw = _reference_lights()
    if shading == "phong":
        normal = np.sum(w * ref.vertex_normals(verts, faces)[tri], axis=2)
        shaded = ref.phong(albedo, normal, out.position, EYE, **kw)
    elif shading == "gouraud":
        at_verts = ref.phong(colours, ref.vertex_normals(verts, faces), verts, EYE, **kw)
        shaded = np.sum(w * at_verts[tri], axis=2)
    else:  # flat: the face's normal and centroid, the colour per pixel
        centroid = verts[faces].mean(1)[fid]
        shaded = ref.phong(albedo, out.normal, centroid, EYE, **kw)
    return np.where(out.mask[..., None], shaded, 0.0)


@pytest.mark.parametrize("shading", ["phong", "gouraud", "flat"])
@pytest.mark.parametrize("scene", ["sphere", "torus"])
def test_hard_limit_shading_matches_reference(shading, scene):
    verts, faces, colours = {"sphere": _sphere, "torus": _torus}[scene]()
    size = (30, 34)
    out = ref.raycast(verts, faces, colours, EYE, (0, 0, 0), UP, 50.0, 0.1, size)
    mesh = sj.Mesh(np.float32(verts), faces, np.float32(colours))
    cam = sj.look_at(EYE, fov=50.0)
    cfg = sj.RasterConfig(size, shading=shading, **HARD)
    rgba = sj.render(mesh, cam, cfg, _lights(), sj.Material(**MATERIAL))
    expected = _expected(shading, verts, faces, colours, out)
    ref.assert_matches(f"{scene} {shading}", rgba, out, None, expected)
    # The highlights are really there: specular adds visibly to some pixels.
    kw = dict(MATERIAL, specular=0.0)
    plain = sj.render(mesh, cam, cfg, _lights(), sj.Material(**kw))
    assert float(np.max(np.asarray(rgba) - np.asarray(plain))) > 0.1


def test_default_material_is_softras_lambert():
    """`Lights` shorthand + default material + flat shading: albedo * (ambient + directional
    * max(0, n . -d)) per face, as before lights and materials existed."""
    verts, faces, colours = _sphere()
    size = (24, 24)
    out = ref.raycast(verts, faces, colours, EYE, (0, 0, 0), UP, 50.0, 0.1, size)
    lights = sj.Lights(0.3, [sj.DirectionalLight((0.4, -1.0, -0.6), intensity=0.7)])
    rgba = sj.render(sj.Mesh(np.float32(verts), faces, np.float32(colours)),
                     sj.look_at(EYE, fov=50.0), sj.RasterConfig(size, **HARD), lights)  # fmt: skip
    expected = ref.lambert(out.rgb, out.normal, out.mask, 0.3, 0.7, (0.4, -1.0, -0.6))
    ref.assert_matches("lambert", rgba, out, None, expected)


def _fd_scene():
    base = sj.ico_sphere(1)
    rng = np.random.default_rng(5)
    verts = np.asarray(base.verts, np.float64) * (1 + 0.1 * rng.standard_normal((42, 1)))
    return verts, np.asarray(base.faces), rng.uniform(0.2, 0.9, (42, 3)), rng


@pytest.mark.parametrize("method", ["tiled", "dense"])
@pytest.mark.parametrize("shading", ["phong", "gouraud", "flat"])
def test_light_and_material_gradients_match_finite_differences(method, shading):
    verts, faces, colours, rng = _fd_scene()
    size = (12, 15)
    cfg = sj.RasterConfig(size, sigma=1e-3, gamma=1e-2, method=method, shading=shading)
    weights = rng.standard_normal((*size, 4))

    def loss(pos=(1.5, 1.0, 2.0), rgb=(1.0, 0.8, 0.6), ks=0.6, shininess=12.0, verts=verts):
        point = sj.PointLight(jnp.asarray(pos), jnp.asarray(rgb), 0.9)
        lights = sj.Lights(0.2, [sj.DirectionalLight((0.3, -1.0, -0.4))], point=[point])
        material = sj.Material(1.0, 0.9, ks, shininess)
        cam = sj.look_at((0.5, 0.4, 2.6), fov=50.0)
        rgba = sj.render(sj.Mesh(verts, faces, colours), cam, cfg, lights, material)
        return jnp.sum(weights * rgba)

    at = (np.array([1.5, 1.0, 2.0]), np.array([1.0, 0.8, 0.6]), np.float64(0.6),
          np.float64(12.0), verts)  # fmt: skip
    with jax.enable_x64(True):
        # One gradient for every argument (one compilation), each checked on its own.
        argnums = tuple(range(5 if shading == "phong" else 4))
        grads = jax.grad(loss, argnums=argnums)(*(jnp.asarray(x) for x in at))
        check_grad(lambda p: loss(pos=p), at[0], rng, 3, grad=grads[0])
        check_grad(lambda c: loss(rgb=c), at[1], rng, 3, grad=grads[1])
        check_grad(lambda k: loss(ks=k), at[2], rng, 1, grad=grads[2])
        check_grad(lambda s: loss(shininess=s), at[3], rng, 1, grad=grads[3])
        if shading == "phong":
            check_grad(lambda v: loss(verts=v), verts, rng, 6, grad=grads[4])


def test_phong_tiled_matches_dense():
    verts, faces, colours, _ = _fd_scene()
    mesh = sj.Mesh(np.float32(verts), faces, np.float32(colours))
    cam = sj.look_at((0.5, 0.4, 2.6), fov=50.0)
    small = dict(tile_size=4, chunk=8, batch_pairs=512, pair_capacity=50)
    images = [sj.render(mesh, cam, sj.RasterConfig((20, 26), method=m, shading="phong", **kw),
                        _lights(), sj.Material(**MATERIAL))
              for m, kw in (("dense", {}), ("tiled", {}), ("tiled", small))]  # fmt: skip
    for img in images[1:]:
        np.testing.assert_allclose(img, images[0], atol=1e-5)


def test_orthographic_phong_uses_parallel_view_rays():
    """With an orthographic camera V is the same everywhere (towards the camera): a
    highlight of a directional light sits where N is the half-vector, like the reference."""
    verts, faces, colours = _sphere()
    size = (28, 28)
    eye = (0.0, 0.0, 3.0)
    origins, dirs = ref.orthographic_rays(eye, (0, 0, 0), UP, 0.8, size)
    out = ref.raycast_rays(verts, faces, colours, origins, dirs, 0.1)
    lights = sj.Lights(ambient=0.1, directional=[sj.DirectionalLight((-0.5, -0.3, -1.0))])
    material = sj.Material(specular=0.8, shininess=20.0)
    cam = sj.look_at(eye, projection="orthographic", scale=0.8)
    rgba = sj.render(sj.Mesh(np.float32(verts), faces, np.float32(colours)), cam,
                     sj.RasterConfig(size, shading="phong", **HARD), lights, material)  # fmt: skip
    fid = np.maximum(out.face_id, 0)
    w = out.bary[..., None]
    albedo = np.sum(w * colours[faces[fid]], axis=2)
    normal = np.sum(w * ref.vertex_normals(verts, faces)[faces[fid]], axis=2)
    far_eye = out.position + 1e6 * np.array([0.0, 0.0, 1.0])  # parallel rays towards +z
    shaded = np.stack([
        ref.phong(albedo[i, j], normal[i, j], out.position[i, j], far_eye[i, j],
                  ambient=0.1 * np.ones(3), directional=[((-0.5, -0.3, -1.0), np.ones(3))],
                  ks=0.8, shininess=20.0)
        for i in range(size[0]) for j in range(size[1])
    ]).reshape(*size, 3)  # fmt: skip
    ref.assert_matches("ortho phong", rgba, out, None, np.where(out.mask[..., None], shaded, 0))


def test_lights_api():
    empty = sj.Lights(ambient=0.4, directional=[], point=[])
    assert empty.directional.direction.shape == (0, 3) and empty.point.position.shape == (0, 3)
    mesh, cam, cfg = sj.ico_sphere(1), sj.look_at((0.0, 0.0, 3.0)), sj.RasterConfig((10, 10))
    rgba = sj.render(mesh, cam, cfg, empty)
    inside = np.asarray(rgba[..., 3]) > 0.99
    np.testing.assert_allclose(np.asarray(rgba)[inside, :3], 0.4, atol=1e-5)
    two = sj.Lights(
        0.5,
        [sj.DirectionalLight((0.0, -1.0, -1.0), intensity=0.5)],
        point=[sj.PointLight((0, 1, 3)), sj.PointLight((1, 0, 3), intensity=0.5)],
    )
    assert two.point.position.shape == (2, 3) and two.directional.direction.shape == (1, 3)
    # Lights and materials are pytrees: vmap over a batch of point-light positions.
    positions = jnp.array([[0.0, 2.0, 3.0], [2.0, 0.0, 3.0]])

    def one(p):
        lights = sj.Lights(0.5, point=[sj.PointLight(p)])
        return sj.render(mesh, cam, dataclasses.replace(cfg, shading="phong"), lights)

    batch = jax.vmap(one)(positions)
    for i in range(2):
        np.testing.assert_allclose(batch[i], one(positions[i]), atol=1e-5)


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda m, c, g: sj.RasterConfig(shading="smooth"), ValueError, "shading"),
        (lambda m, c, g: sj.render(m, c, sj.RasterConfig(shading="phong")), ValueError,
         "lights"),
        (lambda m, c, g: sj.render(m, c, g, sj.Lights(), shading="phong"), TypeError,
         "RasterConfig"),
        (lambda m, c, g: sj.Lights(directional=0.5), TypeError, "softras"),
        (lambda m, c, g: sj.render(m, c, g, None, sj.Material()), ValueError, "needs `lights`"),
        (lambda m, c, g: sj.render(m, c, g, sj.Lights(), material="shiny"), TypeError,
         "material"),
        (lambda m, c, g: sj.Material(shininess=0.0), ValueError, "shininess"),
        (lambda m, c, g: sj.Material(specular=(1.0, 1.0)), ValueError, "specular"),
        (lambda m, c, g: sj.Lights(point=[(0.0, 1.0, 2.0)]), ValueError, "point"),
        (lambda m, c, g: sj.PointLight((0.0, 1.0)), ValueError, "position"),
        (lambda m, c, g: sj.DirectionalLight((0.0, 0.0, 0.0)), ValueError, "direction"),
        (lambda m, c, g: sj.PointLight(color=(1.0, np.nan, 1.0)), ValueError, "color"),
    ],
)  # fmt: skip
def test_bad_lighting_input_raises(build, error, match):
    with pytest.raises(error, match=match):
        build(sj.ico_sphere(0), sj.look_at((0.0, 0.0, 3.0)), sj.RasterConfig((8, 8)))
