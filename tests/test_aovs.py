"""Auxiliary outputs (`render(..., aovs=...)`): depth, normals and face ids against ray
casting in the hard limit, tiled against dense, gradients, vmap and bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from gradcheck import check_grad
from scenes import HARD, SMALL, UP

import softjax as sj

ALL = ("depth", "normals", "face_id")


def _scene():
    """A torus tilted towards the camera (it hides parts of itself) in front of a box."""
    tv, tf = ref.torus(R=0.8, r=0.3, n_major=16, n_minor=8)
    tv = tv @ ref.rotation_matrix((1.0, 0.0, 0.2), 0.9).T
    bv, bf = ref.box(size=(0.8, 0.8, 0.8), center=(0.2, -0.1, -1.2))
    return np.concatenate([tv, bv]), np.concatenate([tf, bf + len(tv)])


def _camera(projection):
    if projection == "orthographic":
        return sj.look_at((0.4, 0.5, 3.0), projection="orthographic", scale=0.7)
    return sj.look_at((0.4, 0.5, 3.0), fov=55.0)


def _reference(verts, faces, projection, size):
    eye = (0.4, 0.5, 3.0)
    if projection == "orthographic":
        origins, dirs = ref.orthographic_rays(eye, (0, 0, 0), UP, 0.7, size)
    else:
        origins, dirs = eye, ref.camera_rays(eye, (0, 0, 0), UP, 55.0, size)
    return ref.raycast_rays(verts, faces, np.zeros_like(verts), origins, dirs, 0.1)


@pytest.mark.parametrize(
    "method, projection, shading",
    [("tiled", "perspective", "flat"), ("dense", "perspective", "phong"),
     ("tiled", "orthographic", "gouraud")],
)  # fmt: skip
def test_aovs_match_ray_casting(method, projection, shading):
    verts, faces = _scene()
    size = (36, 44)
    out = _reference(verts, faces, projection, size)
    cam = _camera(projection)
    cfg = sj.RasterConfig(size, method=method, shading=shading, **HARD)
    rgba, aov = sj.render(sj.Mesh(np.float32(verts), faces), cam,
                          dataclasses.replace(cfg, aovs=ALL))  # fmt: skip
    assert set(aov) == set(ALL)
    depth, normals, face_id = (np.asarray(aov[k]) for k in ALL)
    assert depth.shape == size and normals.shape == (*size, 3) and face_id.shape == size
    assert face_id.dtype == np.int32

    # Away from the hit face's borders (barycentrics above 1%) the nearest face is the one
    # the ray hits.
    interior = out.mask & (out.bary.min(axis=-1) > 0.01)
    assert interior.sum() > 0.6 * out.mask.sum()
    np.testing.assert_array_equal(face_id[interior], out.face_id[interior])
    empty = ~out.mask & ~ref.boundary_mask(out.mask)
    assert np.all(face_id[empty] == -1)
    # Depth along the camera axis (the reference's rays have unit depth per unit length).
    np.testing.assert_allclose(depth[interior], out.depth[interior], rtol=1e-4)
    np.testing.assert_allclose(depth[empty], float(cam.far), rtol=1e-6)
    if shading == "flat":
        expected = out.normal
    else:
        corner = ref.vertex_normals(verts, faces)[faces[np.maximum(out.face_id, 0)]]
        expected = np.sum(out.bary[..., None] * corner, axis=2)
    np.testing.assert_allclose(normals[interior], expected[interior], atol=1e-4)
    assert np.all(np.abs(normals[empty]) < 1e-6)
    # The colour and alpha are those of a render without outputs (unlit: the shading mode
    # only chose the normals).
    plain = dataclasses.replace(cfg, shading="flat")
    np.testing.assert_allclose(rgba, sj.render(sj.Mesh(np.float32(verts), faces), cam, plain),
                               atol=1e-6)  # fmt: skip


def test_tiled_matches_dense_over_many_rounds():
    verts, faces = _scene()
    mesh, cam, size = sj.Mesh(np.float32(verts), faces), _camera("perspective"), (20, 28)
    soft = dict(sigma=1e-4, gamma=1e-3)
    _, dense = sj.render(mesh, cam, sj.RasterConfig(size, method="dense", aovs=ALL, **soft))
    _, tiled = sj.render(mesh, cam, sj.RasterConfig(size, aovs=ALL, **SMALL, **soft))
    np.testing.assert_array_equal(tiled["face_id"], dense["face_id"])
    np.testing.assert_allclose(tiled["depth"], dense["depth"], rtol=1e-5)
    np.testing.assert_allclose(tiled["normals"], dense["normals"], atol=1e-5)


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_depth_and_normal_gradients_match_finite_differences(method):
    verts, faces = ref.box(size=(1.0, 0.8, 0.9), rotation=ref.rotation_matrix((1, 2, 0), 0.5))
    size = (12, 14)
    cfg = sj.RasterConfig(size, sigma=1e-3, gamma=1e-2, method=method, shading="gouraud",
                          aovs=("normals", "depth"))  # fmt: skip
    rng = np.random.default_rng(3)
    w_depth, w_normals = rng.standard_normal(size), rng.standard_normal((*size, 3))

    def loss(v):
        _, aov = sj.render(sj.Mesh(v, faces), sj.look_at((0.6, 0.5, 2.8), fov=50.0), cfg)
        return jnp.sum(w_depth * aov["depth"]) / 50 + jnp.sum(w_normals * aov["normals"])

    with jax.enable_x64(True):
        check_grad(loss, verts, rng, 8)


def test_aovs_under_vmap_match_a_loop():
    verts, faces = _scene()
    mesh = sj.Mesh(np.float32(verts), faces)
    eyes = jnp.array([[0.4, 0.5, 3.0], [-2.0, 1.0, 2.0]])
    cfg = sj.RasterConfig((16, 20), aovs=("face_id", "depth"), **SMALL)

    def one(eye):
        return sj.render(mesh, sj.look_at(eye), cfg)[1]

    batched = jax.vmap(one)(eyes)
    assert set(batched) == {"face_id", "depth"}
    for i in range(2):
        single = one(eyes[i])
        np.testing.assert_array_equal(batched["face_id"][i], single["face_id"])
        np.testing.assert_allclose(batched["depth"][i], single["depth"], rtol=1e-6)


@pytest.mark.parametrize(
    "aovs, error",
    [
        ("depth", TypeError),
        (("depth", "albedo"), ValueError),
        (("depth", "depth"), ValueError),
        (None, TypeError),
    ],
)
def test_bad_aovs_raise(aovs, error):
    with pytest.raises(error, match="aovs"):
        sj.RasterConfig((8, 8), aovs=aovs)
    # A render keyword from before `aovs` moved into the config says where it went.
    with pytest.raises(TypeError, match="RasterConfig"):
        sj.render(sj.ico_sphere(0), sj.look_at((0, 0, 3)), sj.RasterConfig((8, 8)), aovs=aovs)
