"""UV textures: hard-limit renders against ray casting with the same sampling convention,
clamp and wrap, lighting on textures, finite-difference gradients and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from gradcheck import check_grad
from scenes import HARD, UP

import softjax as sj


def _checkerboard(n=16, checks=4, seed=0):
    """`(n, n, 3)` texture: `checks` x `checks` squares of random colours, plus a gradient so
    that bilinear interpolation inside a square is exercised too."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.1, 0.9, (checks, checks, 3))
    idx = np.arange(n) * checks // n
    tex = colours[idx[:, None], idx[None, :]]
    ramp = np.linspace(0.0, 0.1, n)
    return np.clip(tex + ramp[:, None, None] - ramp[None, :, None], 0, 1)


def _quad(uv_scale=1.0):
    """A unit square in the z = 0 plane, two triangles, UVs from (0, 0) to (s, s)."""
    verts = np.array([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uvs = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]) * uv_scale
    return verts, faces, uvs, faces.copy()


def _cube():
    """A rotated box whose six sides each show a different cell of a 3 x 2 grid of the
    texture (so the texture image is shared and each side shows a different part)."""
    verts, faces = ref.box(size=(1.4, 1.4, 1.4), rotation=ref.rotation_matrix((1, 2, 0.5), 0.6))
    uvs, face_uvs = [], []
    for side in range(6):
        u0, v0 = (side % 3) / 3, (side // 3) / 2
        corners = np.array([[u0, v0], [u0 + 1 / 3, v0], [u0 + 1 / 3, v0 + 1 / 2],
                            [u0, v0 + 1 / 2]])  # fmt: skip
        base = len(uvs)
        uvs.extend(corners)
        face_uvs += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    # box() lists each side's two triangles as quads[:, [0, 1, 2]] then quads[:, [0, 2, 3]].
    face_uvs = np.array(face_uvs)
    order = np.concatenate([np.arange(0, 12, 2), np.arange(1, 12, 2)])
    return verts, faces, np.array(uvs), face_uvs[order]


def _reference(verts, faces, uvs, face_uvs, texture, eye, size, wrap="clamp"):
    out = ref.raycast(verts, faces, np.zeros_like(verts), eye, (0, 0, 0), UP, 50.0, 0.1, size)
    fid = np.maximum(out.face_id, 0)
    uv = np.sum(out.bary[..., None] * uvs[face_uvs[fid]], axis=2)
    albedo = ref.sample_texture(texture, uv, wrap)
    return out, uv, np.where(out.mask[..., None], albedo, 0.0)


@pytest.mark.parametrize("method", ["tiled", "dense"])
@pytest.mark.parametrize("scene", ["quad", "cube"])
def test_textured_hard_limit_matches_ray_casting(method, scene):
    verts, faces, uvs, face_uvs = {"quad": _quad, "cube": _cube}[scene]()
    texture = _checkerboard()
    eye, size = (0.9, 0.7, 3.2), (32, 36)
    out, _, expected = _reference(verts, faces, uvs, face_uvs, texture, eye, size)
    mesh = sj.Mesh(np.float32(verts), faces, uvs=np.float32(uvs), face_uvs=face_uvs,
                   texture=np.float32(texture))  # fmt: skip
    cfg = sj.RasterConfig(size, method=method, **HARD)
    rgba = sj.render(mesh, sj.look_at(eye, fov=50.0), cfg)
    ref.assert_matches(f"{scene} textured", rgba, out, None, expected)


@pytest.mark.parametrize("wrap", ["clamp", "wrap"])
def test_uvs_outside_the_unit_square_clamp_or_wrap(wrap):
    verts, faces, uvs, face_uvs = _quad(uv_scale=2.5)
    texture = _checkerboard(seed=1)
    eye, size = (0.3, 0.2, 3.0), (28, 28)
    out, uv, expected = _reference(verts, faces, uvs, face_uvs, texture, eye, size, wrap)
    assert uv.max() > 2.0
    mesh = sj.Mesh(np.float32(verts), faces, uvs=np.float32(uvs), face_uvs=face_uvs,
                   texture=np.float32(texture), texture_wrap=wrap)  # fmt: skip
    rgba = sj.render(mesh, sj.look_at(eye, fov=50.0), sj.RasterConfig(size, **HARD))
    ref.assert_matches(f"quad {wrap}", rgba, out, None, expected)


@pytest.mark.parametrize("shading", ["phong", "gouraud", "flat"])
def test_lit_texture_matches_reference(shading):
    verts, faces, uvs, face_uvs = _cube()
    texture = _checkerboard(seed=2)
    eye, size = (0.9, 0.7, 3.2), (30, 30)
    out, _, albedo = _reference(verts, faces, uvs, face_uvs, texture, eye, size)
    lights = sj.Lights(ambient=0.25, directional=[],
                       point=[sj.PointLight((2.0, 1.5, 2.5), (1.0, 0.9, 0.8), 0.9)])  # fmt: skip
    material = sj.Material(specular=0.5, shininess=10.0)
    kw = dict(ambient=0.25 * np.ones(3), point=[((2.0, 1.5, 2.5), 0.9 * np.array([1, 0.9, 0.8]))],
              ks=0.5, shininess=10.0)  # fmt: skip
    fid = np.maximum(out.face_id, 0)
    w = out.bary[..., None]
    if shading == "phong":
        normal = np.sum(w * ref.vertex_normals(verts, faces)[faces[fid]], axis=2)
        expected = ref.phong(albedo, normal, out.position, eye, **kw)
    elif shading == "flat":
        expected = ref.phong(albedo, out.normal, verts[faces].mean(1)[fid], eye, **kw)
    else:  # light terms at the vertices, interpolated, applied to the sampled albedo
        vn = ref.vertex_normals(verts, faces)
        gain = ref.phong(np.ones_like(verts), vn, verts, eye, **kw)
        offset = ref.phong(np.zeros_like(verts), vn, verts, eye, **kw)
        gain, offset = gain - offset, offset
        expected = (albedo * np.sum(w * gain[faces[fid]], axis=2)
                    + np.sum(w * offset[faces[fid]], axis=2))  # fmt: skip
    expected = np.where(out.mask[..., None], expected, 0.0)
    mesh = sj.Mesh(np.float32(verts), faces, uvs=np.float32(uvs), face_uvs=face_uvs,
                   texture=np.float32(texture))  # fmt: skip
    rgba = sj.render(
        mesh,
        sj.look_at(eye, fov=50.0),
        sj.RasterConfig(size, shading=shading, **HARD),
        lights,
        material,
    )
    ref.assert_matches(f"cube {shading}", rgba, out, None, expected)


@pytest.mark.parametrize("method", ["tiled", "dense"])
@pytest.mark.parametrize("lit", [False, True])
def test_texture_and_uv_gradients_match_finite_differences(method, lit):
    verts, faces, uvs, face_uvs = _cube()
    texture = _checkerboard(n=6, checks=3, seed=3)
    size = (12, 14)
    cfg = sj.RasterConfig(size, sigma=1e-3, gamma=1e-2, method=method,
                          shading="phong" if lit else "flat")  # fmt: skip
    rng = np.random.default_rng(6)
    weights = rng.standard_normal((*size, 4))
    lights = (
        sj.Lights(
            0.5,
            [sj.DirectionalLight((0.0, -1.0, -1.0), intensity=0.5)],
            point=[sj.PointLight((2.0, 1.5, 2.5))],
        )
        if lit
        else None
    )

    def loss(tex=texture, uv=uvs):
        mesh = sj.Mesh(verts, faces, uvs=uv, face_uvs=face_uvs, texture=tex)
        cam = sj.look_at((0.9, 0.7, 3.2), fov=50.0)
        material = sj.Material(specular=0.3, shininess=8.0) if lit else None
        return jnp.sum(weights * sj.render(mesh, cam, cfg, lights, material))

    # UVs inside the unit square, off texel centres, so bilinear weights move smoothly.
    uv0 = uvs * 0.9 + 0.031
    with jax.enable_x64(True):
        # One gradient for both arguments (one compilation), each checked on its own.
        grads = jax.grad(loss, argnums=(0, 1))(jnp.asarray(texture), jnp.asarray(uv0))
        check_grad(lambda t: loss(tex=t, uv=uv0), texture, rng, 8, grad=grads[0])
        check_grad(lambda u: loss(uv=u), uv0, rng, 8, grad=grads[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(uvs=np.zeros((4, 2))), "together"),
        (dict(uvs=np.zeros((4, 3)), face_uvs=[[0, 1, 2]], texture=np.ones((2, 2, 3))), "uvs"),
        (dict(uvs=np.zeros((4, 2)), face_uvs=[[0, 1, 4]], texture=np.ones((2, 2, 3))),
         "face_uvs.*indices"),
        (dict(uvs=np.zeros((4, 2)), face_uvs=[[0, 1, 2], [0, 1, 2]], texture=np.ones((2, 2, 3))),
         "one row per face"),
        (dict(uvs=np.zeros((4, 2)), face_uvs=[[0, 1, 2]], texture=np.ones((2, 2))), "texture"),
        (dict(uvs=np.zeros((4, 2)), face_uvs=[[0, 1, 2]], texture=np.ones((2, 2, 3)),
              texture_wrap="mirror"), "texture_wrap"),
        (dict(uvs=np.zeros((4, 2)), face_uvs=[[0.0, 1.0, 2.0]], texture=np.ones((2, 2, 3))),
         "integer"),
    ],
)  # fmt: skip
def test_bad_texture_input_raises(kwargs, match):
    verts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=match):
        sj.Mesh(verts, [[0, 1, 2]], **kwargs)


def _atlas(num_faces, r, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 0.95, (num_faces, r, r, 3))


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_atlas_hard_limit_matches_ray_casting(method):
    verts, faces, _, _ = _cube()
    atlas = _atlas(len(faces), 4)
    eye, size = (0.9, 0.7, 3.2), (40, 44)
    out = ref.raycast(verts, faces, np.zeros_like(verts), eye, (0, 0, 0), UP, 50.0, 0.1, size)
    expected = np.where(out.mask[..., None], ref.sample_atlas(atlas, out.bary, out.face_id), 0)
    mesh = sj.Mesh(np.float32(verts), faces, atlas=np.float32(atlas))
    rgba = sj.render(mesh, sj.look_at(eye, fov=50.0), sj.RasterConfig(size, method=method, **HARD))
    ref.assert_matches("cube atlas", rgba, out, None, expected)
    # Most covered pixels read exactly the texel the reference reads (the rest sit on the
    # lines between texels, where float rounding may pick the neighbour).
    exact = np.all(np.abs(np.asarray(rgba[..., :3]) - expected) < 1e-4, axis=-1)
    assert exact[out.mask].mean() > 0.9


def test_lit_atlas_matches_reference():
    verts, faces, _, _ = _cube()
    atlas = _atlas(len(faces), 3, seed=1)
    eye, size = (0.9, 0.7, 3.2), (30, 30)
    out = ref.raycast(verts, faces, np.zeros_like(verts), eye, (0, 0, 0), UP, 50.0, 0.1, size)
    albedo = ref.sample_atlas(atlas, out.bary, out.face_id)
    normal = np.sum(out.bary[..., None] * ref.vertex_normals(verts, faces)[faces[np.maximum(
        out.face_id, 0)]], axis=2)  # fmt: skip
    expected = ref.phong(albedo, normal, out.position, eye, ambient=0.3 * np.ones(3),
                         point=[((2.0, 1.5, 2.5), np.ones(3))], ks=0.4, shininess=12.0)  # fmt: skip
    expected = np.where(out.mask[..., None], expected, 0.0)
    lights = sj.Lights(ambient=0.3, directional=[], point=[sj.PointLight((2.0, 1.5, 2.5))])
    mesh = sj.Mesh(np.float32(verts), faces, atlas=np.float32(atlas))
    cfg = sj.RasterConfig(size, shading="phong", **HARD)
    rgba = sj.render(mesh, sj.look_at(eye, fov=50.0), cfg, lights,
                     sj.Material(specular=0.4, shininess=12.0))  # fmt: skip
    ref.assert_matches("cube atlas phong", rgba, out, None, expected)


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_atlas_gradients_match_finite_differences(method):
    verts, faces, _, _ = _cube()
    atlas = _atlas(len(faces), 2, seed=2)
    size = (12, 14)
    cfg = sj.RasterConfig(size, sigma=1e-3, gamma=1e-2, method=method, shading="gouraud")
    rng = np.random.default_rng(7)
    weights = rng.standard_normal((*size, 4))
    lights = sj.Lights(
        0.5,
        [sj.DirectionalLight((0.0, -1.0, -1.0), intensity=0.5)],
        point=[sj.PointLight((2.0, 1.5, 2.5))],
    )

    def loss(a):
        mesh = sj.Mesh(verts, faces, atlas=a)
        rgba = sj.render(mesh, sj.look_at((0.9, 0.7, 3.2), fov=50.0), cfg, lights)
        return jnp.sum(weights * rgba)

    with jax.enable_x64(True):
        check_grad(loss, atlas, rng, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(atlas=np.ones((2, 2, 2, 3))), "atlas"),  # one face, two rows
        (dict(atlas=np.ones((1, 2, 3, 3))), "R x R"),
        (dict(atlas=np.ones((1, 2, 2, 4))), "atlas"),
        (dict(atlas=np.ones((1, 0, 0, 3))), "R x R"),
        (dict(atlas=np.ones((1, 2, 2, 3)), uvs=np.zeros((3, 2)), face_uvs=[[0, 1, 2]],
              texture=np.ones((2, 2, 3))), "not both"),
    ],
)  # fmt: skip
def test_bad_atlas_raises(kwargs, match):
    verts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=match):
        sj.Mesh(verts, [[0, 1, 2]], **kwargs)


@pytest.mark.parametrize("wrap", ["clamp", "wrap"])
def test_texture_op_is_the_renderers_sampler_and_matches_the_reference(wrap):
    """`sj.texture` (channel-last) is the sampler the textured shading uses, and agrees with
    an independent bilinear lookup, inside and outside [0, 1]."""
    from softjax._src.shading.texture import sample

    tex = np.float32(_checkerboard(8, 2))
    uv = np.random.default_rng(3).uniform(-0.6, 1.6, (5, 7, 2)).astype(np.float32)
    out = sj.texture(tex, uv, wrap=wrap)
    assert out.shape == (5, 7, 3) and out.dtype == jnp.float32
    np.testing.assert_array_equal(
        out, np.moveaxis(sample(tex, np.moveaxis(uv, -1, 0), wrap), 0, -1)
    )
    np.testing.assert_allclose(out, ref.sample_texture(tex, uv, wrap), rtol=0, atol=2e-6)


def test_texture_op_reproduces_the_rendered_texture():
    """rasterize -> interpolate -> texture is the unlit hard render of a textured mesh, pixel
    for pixel where a face is seen."""
    verts, faces, uvs, face_uvs = _cube()
    tex = np.float32(_checkerboard())
    mesh = sj.Mesh(np.float32(verts), faces, uvs=np.float32(uvs), face_uvs=face_uvs, texture=tex)
    cam = sj.look_at((2.0, 1.5, 3.0), up=UP, fov=50.0)
    cfg = sj.RasterConfig((24, 20), visibility="hard")
    frags = sj.rasterize(mesh, cam, cfg)
    uv = sj.interpolate(mesh.uvs[mesh.face_uvs], frags, mesh)
    some = np.asarray(frags.face_id) >= 0
    # Antialiasing changes only pixels next to the silhouette (a convex box occludes nothing
    # of itself); compare the others.
    inner = some & ~ref.label_boundary(some)
    assert inner.sum() > 50
    rendered = np.asarray(sj.render(mesh, cam, cfg))[..., :3]
    np.testing.assert_allclose(np.asarray(sj.texture(tex, uv))[inner], rendered[inner], atol=1e-6)


def test_texture_op_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        tex = _checkerboard(6, 3)
        uv = rng.uniform(-0.3, 1.3, (9, 2))
        weights = rng.standard_normal((9, 3))
        for wrap in ("clamp", "wrap"):

            def loss(t, u, wrap=wrap):
                return jnp.sum(weights * sj.texture(t, u, wrap=wrap))

            grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(tex, uv)
            check_grad(lambda t, wrap=wrap: loss(t, uv, wrap), tex, rng, 6, grad=grads[0])
            check_grad(lambda u, wrap=wrap: loss(tex, u, wrap), uv, rng, 6, grad=grads[1])


@pytest.mark.parametrize(
    "tex, uv, kwargs, match",
    [
        (np.ones((4, 4)), np.zeros((3, 2)), {}, "Ht, Wt, C"),
        (np.ones((4, 4, 3), int), np.zeros((3, 2)), {}, "floating"),
        (np.ones((0, 4, 3)), np.zeros((3, 2)), {}, "empty"),
        (np.ones((4, 4, 3)), np.zeros((3, 3)), {}, r"\(\.\.\., 2\)"),
        (np.ones((4, 4, 3)), np.zeros((3, 2)), {"wrap": "mirror"}, "wrap"),
    ],
)
def test_texture_op_bad_input_raises(tex, uv, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sj.texture(tex, uv, **kwargs)
