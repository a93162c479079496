"""Tangent-space normal maps: a flat quad with the normal map of a known bump lights like the
bump's own normals, DirectX's green axis, the tangent frames of a curved mesh, gradients
against central differences, and bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from gradcheck import check_grad

import softjax as sj
from softjax._src.shading.lights import vertex_normals
from softjax._src.shading.normal_map import corner_tangents

QUAD = np.array([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
FACES = np.array([[0, 1, 2], [0, 2, 3]])
UVS = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
AMP, WIDTH = 0.2, 0.35  # the bump z = AMP exp(-(x^2 + y^2) / (2 WIDTH^2)) over the quad


def bump_normal(x, y):
    """The unit normal `(..., 3)` of the bump's surface above (x, y)."""
    h = AMP * np.exp(-(x * x + y * y) / (2 * WIDTH**2))
    n = np.stack([x / WIDTH**2 * h, y / WIDTH**2 * h, np.ones_like(h)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def bump_map(n=256, directx=False):
    """`(n, n, 3)`: the bump's normals at the texel centres (u = (j + 0.5) / n, v = 1 - (i +
    0.5) / n, x = 2u - 1, y = 2v - 1), encoded `(m + 1) / 2`. On the quad the tangent frame
    is x, y, z, so the tangent-space normal is the world one."""
    c = (np.arange(n) + 0.5) / n
    x, y = 2 * c[None, :] - 1, 2 * (1 - c[:, None]) - 1
    m = bump_normal(*np.broadcast_arrays(x, y))
    if directx:
        m[..., 1] *= -1
    return (m + 1) / 2


LIGHTS = np.array([[0.35, 0.0, 1.0], [0.0, 0.35, 1.0], [0.0, 0.0, 1.0]])  # towards the lights
LIGHTS /= np.linalg.norm(LIGHTS, axis=1, keepdims=True)


@functools.lru_cache
def _renderer(size, visibility):
    """One jitted `(mesh, camera, direction) -> red channel` per setting, shared by calls."""
    cfg = sj.RasterConfig(size, shading="phong", visibility=visibility, sigma=1e-7,
                          gamma=1e-5)  # fmt: skip

    @jax.jit
    def one(mesh, cam, direction):
        lights = sj.Lights(0.0, [sj.DirectionalLight(-direction, intensity=1.0)])
        material = sj.Material(ambient=0.0, diffuse=1.0)
        return sj.render(mesh, cam, cfg, lights, material)[..., 0]

    return one


def _lit(mesh, cam, size, visibility="hard"):
    """`(3, H, W)`: the red channel under each of three directional lights alone (white
    albedo, no ambient, Phong shading): `max(0, n . l_k)`."""
    one = _renderer(size, visibility)
    return np.stack([np.asarray(one(mesh, cam, jnp.asarray(d, mesh.verts.dtype)))
                     for d in LIGHTS])  # fmt: skip


@pytest.mark.parametrize("visibility", ["hard", "soft"])
def test_a_bump_map_lights_like_the_bump(visibility):
    """The quad with the bump's normal map, lit in turn by three directional lights: the
    shading normal each pixel recovers (solving its three Lambert terms) is the bump's
    normal at the pixel's surface point within 1e-4 (float64; the map's bilinear samples are
    the only approximation), on the hard path and on the soft path."""
    size, eye = (32, 36), (0.1, -0.05, 3.0)
    with jax.enable_x64(True):
        mesh = sj.Mesh(QUAD, FACES, uvs=UVS, face_uvs=FACES, texture=np.ones((4, 4, 3)),
                       normal_map=bump_map())  # fmt: skip
        cam = sj.look_at(eye, fov=30.0)
        shade = _lit(mesh, cam, size, visibility=visibility)
    hits = ref.raycast(QUAD, FACES, np.zeros_like(QUAD), eye, (0, 0, 0), (0, 1, 0), 30.0, 0.1,
                       size)  # fmt: skip
    assert hits.mask.all()  # the quad fills the image: no edges
    normal = np.linalg.solve(LIGHTS, shade.reshape(3, -1)).T.reshape(*size, 3)
    expected = bump_normal(hits.position[..., 0], hits.position[..., 1])
    assert np.abs(expected[..., :2]).max() > 0.25  # a real bump
    np.testing.assert_allclose(normal, expected, atol=1e-4, rtol=0)


def test_directx_normal_maps_flip_green():
    """A DirectX map (green pointing down the image) with `normal_map_convention="directx"`
    renders as the OpenGL map does; read as OpenGL it tilts the other way."""
    size, cam = (16, 16), sj.look_at((0.1, -0.05, 3.0), fov=30.0)
    tex = np.ones((4, 4, 3), np.float32)

    def mesh(nmap, convention):
        return sj.Mesh(np.float32(QUAD), FACES, uvs=np.float32(UVS), face_uvs=FACES,
                       texture=tex, normal_map=np.float32(nmap),
                       normal_map_convention=convention)  # fmt: skip

    gl = _lit(mesh(bump_map(64), "opengl"), cam, size)
    dx = _lit(mesh(bump_map(64, directx=True), "directx"), cam, size)
    np.testing.assert_allclose(dx, gl, atol=1e-6, rtol=0)
    wrong = _lit(mesh(bump_map(64, directx=True), "opengl"), cam, size)
    assert np.abs(wrong - gl).max() > 0.05


def test_tangent_frames_follow_the_uvs():
    """On a UV sphere: each corner's tangent is a unit vector orthogonal to its normal,
    pointing along increasing u (its dot with the surface's du direction is positive), and
    the handedness says the bitangent points along increasing v; a mirrored chart (u running
    the other way) flips the handedness."""
    base = sj.ico_sphere(2)
    verts, faces = np.asarray(base.verts), np.asarray(base.faces)
    # Planar UVs seen from +z: u along x, v along y (the front half has no seam).
    uvs = verts[:, :2] * 0.5 + 0.5
    normals = np.asarray(vertex_normals(jnp.asarray(verts), jnp.asarray(faces)))[faces]
    for mirror in (1.0, -1.0):
        uv = uvs * np.array([mirror, 1.0]) + np.array([0.5 - 0.5 * mirror, 0.0])
        frames = np.asarray(corner_tangents(jnp.asarray(verts), jnp.asarray(faces),
                                            jnp.asarray(uv), jnp.asarray(faces),
                                            jnp.asarray(normals)))  # fmt: skip
        t, w = frames[..., :3], frames[..., 3]
        front = np.all(normals[..., 2] > 0.5, axis=1)  # faces facing +z, away from the rim
        assert front.sum() > 20
        np.testing.assert_allclose(np.linalg.norm(t[front], axis=-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(np.sum(t * normals, -1)[front], 0.0, atol=1e-5)
        assert np.all(t[front][..., 0] * mirror > 0.5)  # u increases along x (or -x)
        assert np.all(w[front] == mirror)


def test_normal_map_gradients_match_central_differences():
    """float64, Phong shading on the hard path and PBR on the soft: gradients of a weighted
    image with respect to the normal map and the vertices match central differences."""
    size, cam = (10, 12), sj.look_at((0.2, -0.1, 2.6), fov=30.0)
    rng = np.random.default_rng(0)
    nmap = np.clip(bump_map(16) + rng.normal(0, 0.05, (16, 16, 3)), 0, 1)
    weights = rng.standard_normal((*size, 4))
    verts = QUAD + np.array([[0, 0, 0.05], [0, 0, -0.05], [0, 0, 0.1], [0, 0, 0.0]])
    lights = sj.Lights(0.2, [sj.DirectionalLight((-0.3, 0.2, -1.0))],
                       point=[sj.PointLight((0.5, 0.5, 1.5), intensity=0.8)])  # fmt: skip
    with jax.enable_x64(True):
        for shading, visibility in (("phong", "hard"), ("pbr", "soft")):
            cfg = sj.RasterConfig(size, shading=shading, visibility=visibility, sigma=1e-3,
                                  gamma=1e-2, method="dense")  # fmt: skip
            material = sj.Material(specular=0.5, shininess=8.0) if shading == "phong" else None

            def loss(v, m, cfg=cfg, material=material):
                mesh = sj.Mesh(v, FACES, uvs=UVS, face_uvs=FACES, texture=np.ones((2, 2, 3)),
                               normal_map=m)  # fmt: skip
                return jnp.sum(sj.render(mesh, cam, cfg, lights, material) * weights)

            fun = jax.jit(loss)
            g_v, g_m = jax.jit(jax.grad(loss, argnums=(0, 1)))(verts, nmap)
            check_grad(lambda v, fun=fun: fun(v, nmap), verts, rng, 6, grad=g_v)
            check_grad(lambda m, fun=fun: fun(verts, m), nmap, rng, 6, grad=g_m)


def test_normal_map_input_is_checked():
    tex = np.ones((4, 4, 3))
    with pytest.raises(ValueError, match="normal_map"):
        sj.Mesh(QUAD, FACES, normal_map=bump_map(8))
    with pytest.raises(ValueError, match="normal_map"):
        sj.Mesh(QUAD, FACES, uvs=UVS, face_uvs=FACES, texture=tex, normal_map=np.ones((4, 4)))
    with pytest.raises(ValueError, match="normal_map_convention"):
        sj.Mesh(QUAD, FACES, uvs=UVS, face_uvs=FACES, texture=tex, normal_map=bump_map(8),
                normal_map_convention="vulkan")  # fmt: skip
    with pytest.raises(ValueError, match="texture's size"):
        sj.Mesh(QUAD, FACES, uvs=UVS, face_uvs=FACES, texture=tex, normal_map=bump_map(8),
                uv_convention="pytorch3d")  # fmt: skip
    mesh = sj.Mesh(QUAD, FACES, uvs=UVS, face_uvs=FACES, texture=tex, normal_map=bump_map(8))
    lights = sj.Lights(0.5, [sj.DirectionalLight((0.0, 0.0, -1.0))])
    with pytest.raises(ValueError, match="phong"):
        sj.render(mesh, sj.look_at((0.0, 0.0, 3.0)), sj.RasterConfig((8, 8)), lights)
    assert mesh.replace(verts=QUAD * 2).normal_map is mesh.normal_map
    assert sj.stack_meshes([mesh, mesh]).normal_map.shape == (2, 8, 8, 3)
    assert sj.join_meshes([mesh, mesh]).normal_map is mesh.normal_map
    with pytest.raises(ValueError, match="normal map"):
        sj.stack_meshes([mesh, mesh.replace(normal_map=None)])


def test_mirrored_halves_sharing_seam_uvs_keep_their_frames():
    """Two halves of a plane mirrored in u that share the UV vertices of their seam (as a
    loaded OBJ has them): each corner keeps its own half's frame, T = +x with w = +1 on the
    right and T = -x with w = -1 on the mirrored left, the seam's corners included (summed
    per UV index alone, the two would cancel there)."""
    verts = np.array([[-1.0, 0, 0], [0, 0, 0], [1, 0, 0], [-1, 1, 0], [0, 1, 0], [1, 1, 0]])
    faces = np.array([[0, 1, 4], [0, 4, 3], [1, 2, 5], [1, 5, 4]])
    # u = |x|: the seam's vertices (x = 0) have one UV each, shared by both halves.
    uvs = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    face_uvs = np.array([[2, 0, 1], [2, 1, 3], [0, 2, 3], [0, 3, 1]])
    normals = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (4, 3, 3))
    frames = np.asarray(corner_tangents(*(jnp.asarray(x) for x in (verts, faces, uvs, face_uvs,
                                                                   normals))))  # fmt: skip
    left = np.array([True, True, False, False])
    np.testing.assert_allclose(frames[left, :, :3], np.broadcast_to([-1.0, 0, 0], (2, 3, 3)),
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(frames[~left, :, :3], np.broadcast_to([1.0, 0, 0], (2, 3, 3)),
                               atol=1e-6)  # fmt: skip
    assert np.all(frames[left, :, 3] == -1.0) and np.all(frames[~left, :, 3] == 1.0)
    # Under jit too (the grouping is a sort of fixed size).
    jitted = jax.jit(corner_tangents)(*(jnp.asarray(x) for x in (verts, faces, uvs, face_uvs,
                                                                normals)))  # fmt: skip
    np.testing.assert_allclose(jitted, frames, atol=1e-6)
