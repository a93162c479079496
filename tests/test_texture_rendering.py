"""The renderer's texture filters (`RasterConfig(texture_filter=...)`): a grazing checkerboard
against a supersampled ray cast, the soft path's per-pair UV derivatives against neighbouring
pixels, material maps through their pyramids, and gradients (tiled against dense, and central
differences)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from gradcheck import check_grad
from test_texture_filtering import CAMERAS

import softjax as sj
from softjax._src.geometry.clip import clip_attributes, project
from softjax._src.geometry.pairs import pair_derivatives, pair_geometry
from softjax._src.geometry.triangles import geometry_rows, setup
from softjax._src.pixels import pixel_centers

FLOOR = np.array([[-4.0, -4.0, 0.0], [4.0, -4.0, 0.0], [4.0, 4.0, 0.0], [-4.0, 4.0, 0.0]])
QUAD = np.array([[0, 1, 2], [0, 2, 3]])
EYE, AT, UP, FOV = (0.0, -3.9, 0.35), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0), 40.0


def _checks(n, checks):
    """`(n, n, 3)`: `checks` x `checks` squares of 0.9 and 0.1."""
    idx = np.arange(n) * checks // n
    return np.where((idx[:, None] + idx[None, :]) % 2 == 0, 0.9, 0.1)[..., None].repeat(3, -1)


def _floor_mesh(texture, repeat, **kw):
    uvs = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]) * repeat
    return sj.Mesh(FLOOR, QUAD, uvs=uvs, face_uvs=QUAD, texture=texture, texture_wrap="wrap",
                   **kw)  # fmt: skip


def test_mipmapped_filters_approach_a_supersampled_ray_cast():
    """A checkerboard floor seen at a grazing angle, 64 x 64: against the mean of 16 x 16
    ray-cast samples per pixel (each textured bilinearly), trilinear filtering is at least 2x
    and anisotropic filtering at least 4x closer than bilinear sampling (mean absolute error
    over the pixels the floor covers entirely), on the hard path and on the soft path.

    Away from the floor's diagonal edge, each filter shows the same on both paths (the soft
    path at a tiny blur takes each pair's UV derivatives from its own face, the hard path
    each pixel's), and the hard path (with nearest texels too) equals the building blocks
    `rasterize`, `interpolate(..., camera)` and `texture`."""
    size, sub, repeat = (64, 64), 16, 8
    tex = _checks(64, 8)
    hits = ref.raycast(FLOOR, QUAD, np.zeros_like(FLOOR), EYE, AT, UP, FOV, 0.1,
                       (size[0] * sub, size[1] * sub))  # fmt: skip
    uvs = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]) * repeat
    uv = np.sum(hits.bary[..., None] * uvs[QUAD[np.maximum(hits.face_id, 0)]], axis=2)
    colour = ref.sample_texture(tex, uv, "wrap")
    expected = colour.reshape(size[0], sub, size[1], sub, 3).mean(axis=(1, 3))
    covered = hits.mask.reshape(size[0], sub, size[1], sub).all(axis=(1, 3))
    assert 0.4 < covered.mean() < 0.7  # the floor up to the horizon
    with jax.enable_x64(True):  # float32 UVs of up to 512 texels round by 1e-3 of a check
        _filter_images(tex, repeat, size, expected, covered)


def _filter_images(tex, repeat, size, expected, covered):
    mesh, cam = _floor_mesh(tex, repeat), sj.look_at(EYE, AT, UP, fov=FOV)
    frags = sj.rasterize(mesh, cam, sj.RasterConfig(size, visibility="hard"))
    face = np.asarray(frags.face_id)
    pad = np.pad(face, 1, constant_values=-1)
    interior = np.all([pad[1 + i : 1 + i + size[0], 1 + j : 1 + j + size[1]] == face
                       for i in (-1, 0, 1) for j in (-1, 0, 1)], axis=0) & (face >= 0)  # fmt: skip
    assert interior.sum() > 1500
    uv, duv = sj.interpolate(mesh.uvs[mesh.face_uvs], frags, mesh, cam)

    errors = {}
    for filt in ("nearest", "linear", "trilinear", "anisotropic"):
        rgb = {}
        for visibility in ("hard", "soft") if filt != "nearest" else ("hard",):
            cfg = sj.RasterConfig(size, sigma=1e-7, gamma=1e-5, visibility=visibility,
                                  texture_filter=filt)  # fmt: skip
            rgb[visibility] = np.asarray(sj.render(mesh, cam, cfg))[..., :3]
            errors[visibility, filt] = np.abs(rgb[visibility] - expected)[covered].mean()
        blocks = np.asarray(sj.texture(tex, uv, duv, filter=filt, wrap="wrap"))
        np.testing.assert_allclose(rgb["hard"][interior], blocks[interior], atol=1e-9, rtol=0,
                                   err_msg=filt)  # fmt: skip
        if "soft" in rgb:
            np.testing.assert_allclose(rgb["soft"][interior], rgb["hard"][interior], atol=1e-9,
                                       rtol=0, err_msg=filt)  # fmt: skip
    for visibility in ("hard", "soft"):
        linear = errors[visibility, "linear"]
        assert linear > 0.1, errors  # bilinear sampling aliases
        assert errors[visibility, "trilinear"] * 2 <= linear, errors
        assert errors[visibility, "anisotropic"] * 4 <= linear, errors


@pytest.mark.parametrize("camera", list(CAMERAS))
def test_pair_derivatives_match_neighbouring_pixels(camera):
    """The soft path's per-pair UV derivatives (each pair's own face, also where another face
    is nearer) against the interpolated attributes of the same face at the neighbouring
    pixels: central differences and Simpson's rule, as for `sj.interpolate`."""
    with jax.enable_x64(True):
        base = sj.ico_sphere(1)
        verts = np.asarray(base.verts, np.float64) * np.array([1.0, 0.8, 0.9])
        faces = np.asarray(base.faces)
        values = np.stack([np.sin(2 * verts[:, 0]) + verts[:, 1], verts[:, 2] * verts[:, 0]], -1)
        cam, size = CAMERAS[camera](), (48, 64)
        tris = project(jnp.asarray(verts), faces, cam, False, None)
        corner = clip_attributes(tris, jnp.asarray(values[faces]))  # (F', 3, 2)
        pix = pixel_centers(size, jnp.float64)
        t = setup(geometry_rows(tris.xy, tris.z))
        frag = pair_geometry(pix[:, :1], pix[:, 1:], t, not cam.orthographic)
        cv = jnp.transpose(corner, (1, 2, 0))[:, :, None]  # (3, 2, 1, F')
        a = np.asarray(frag.bary[0] * cv[0] + frag.bary[1] * cv[1] + frag.bary[2] * cv[2])
        d = np.asarray(pair_derivatives(frag.bary, frag.z, t, cv, not cam.orthographic,
                                        size[0]))  # fmt: skip
    inside = np.asarray(frag.inside & tris.valid[None, :]).reshape(*size, -1)
    a = a.reshape(2, *size, -1)
    d = d.reshape(2, 2, *size, -1)
    scale = np.abs(d[:, :, inside]).max()
    assert np.all(np.isfinite(d)) and scale > 0
    for axis in (0, 1):  # columns, then rows
        f, v, g = np.moveaxis(inside, 1 - axis, 0), a, d[:, axis]
        v, g = (np.moveaxis(x, 2 - axis, 1) for x in (v, g))
        same = f[1:-1] & f[:-2] & f[2:]
        assert same.sum() > 600  # pixel-face pairs, the hidden faces' included
        central = np.abs((v[:, 2:] - v[:, :-2]) / 2 - g[:, 1:-1])[:, same]
        simpson = np.abs(v[:, 2:] - v[:, :-2] - (g[:, :-2] + 4 * g[:, 1:-1] + g[:, 2:]) / 3)
        assert central.max() <= 1e-3 * scale, (axis, central.max(), scale)
        assert simpson[:, same].max() <= 1e-5 * scale, (axis, simpson[:, same].max(), scale)


def test_material_maps_are_filtered_too():
    """Under `shading="pbr"` the roughness and metallic maps take the texture's filter: where
    the floor is so far that the trilinear level is the last (a 1 x 1 mean), the image is that
    of the maps' means, where bilinear lookups would show their checks."""
    size, repeat = (48, 48), 24
    rough, metal = _checks(8, 2)[..., 0], 1.0 - _checks(8, 4)[..., 0]
    mesh = _floor_mesh(np.full((8, 8, 3), 0.6, np.float32), repeat)
    cam = sj.look_at(EYE, AT, UP, fov=FOV)
    lights = sj.Lights(0.2, [sj.DirectionalLight((0.2, 1.0, -0.4), intensity=2.0)])
    mean = sj.PBRMaterial(np.float32(rough.mean()), np.float32(metal.mean()))
    mapped = sj.PBRMaterial(np.float32(rough), np.float32(metal))

    def image(material, filt):
        cfg = sj.RasterConfig(size, shading="pbr", visibility="hard", texture_filter=filt)
        return np.asarray(sj.render(mesh, cam, cfg, lights, material))[..., :3]

    # The footprint of each pixel, in texels of the 8 x 8 maps: far rows see more than 8.
    frags = sj.rasterize(mesh, cam, sj.RasterConfig(size, visibility="hard"))
    _, duv = sj.interpolate(mesh.uvs[mesh.face_uvs], frags, mesh, cam)
    lam = np.asarray(sj._src.shading.texture.level_of_detail(jnp.moveaxis(duv, (-2, -1), (0, 1)),
                                                             8, 8))  # fmt: skip
    far = (np.asarray(frags.face_id) >= 0) & (lam >= 3.0)
    assert far.sum() > 50
    flat = image(mean, "linear")
    np.testing.assert_allclose(image(mapped, "trilinear")[far], flat[far], atol=1e-5, rtol=0)
    # There a bilinear lookup would show the checks.
    uv = np.asarray(sj.interpolate(mesh.uvs[mesh.face_uvs], frags, mesh))[far]
    assert np.ptp(np.asarray(sj.texture(rough[..., None], uv, wrap="wrap"))) > 0.5


def test_gradients_through_the_filters():
    """float64: gradients of a textured render with respect to the vertices and the texture
    are the same tiled as dense with the trilinear and anisotropic filters (the tiled
    backward pass carries the UV derivatives' own derivative to the faces), and the dense
    ones match central differences (trilinear; the anisotropic tap count is a step)."""
    with jax.enable_x64(True):
        tex = np.random.default_rng(4).uniform(0, 1, (16, 16, 3))
        # A bent quad (its corners at different heights), seen obliquely.
        lift = np.array([[0, 0, 0], [0, 0, 0.1], [0, 0, 0.3], [0, 0, 0.05]])
        verts = FLOOR * np.array([0.3, 0.3, 1.0]) + lift
        cam = sj.look_at((0.2, -2.2, 1.0), fov=45.0)
        weights = np.random.default_rng(5).standard_normal((12, 14, 4))
        uvs = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 3.0], [0.0, 3.0]])

        def loss(v, t, filt, method):
            m = sj.Mesh(v, QUAD, uvs=uvs, face_uvs=QUAD, texture=t, texture_wrap="wrap")
            cfg = sj.RasterConfig((12, 14), sigma=1e-3, gamma=1e-2, method=method,
                                  texture_filter=filt, texture_max_aniso=4)  # fmt: skip
            return jnp.sum(sj.render(m, cam, cfg) * weights)

        grads = jax.jit(lambda v, t: {
            (f, m): jax.grad(loss, argnums=(0, 1))(v, t, f, m)
            for f in ("trilinear", "anisotropic") for m in ("tiled", "dense")})  # fmt: skip
        g = grads(verts, tex)
        for f in ("trilinear", "anisotropic"):
            for gt, gd in zip(g[f, "tiled"], g[f, "dense"], strict=True):
                assert np.abs(np.asarray(gt) - np.asarray(gd)).max() <= 1e-9 * np.abs(gd).max()
        fun = jax.jit(lambda v, t: loss(v, t, "trilinear", "dense"))
        rng = np.random.default_rng(6)
        g_v, g_t = g["trilinear", "dense"]
        check_grad(lambda v: fun(v, tex), verts, rng, 6, grad=g_v)
        check_grad(lambda t: fun(verts, t), tex, rng, 6, grad=g_t)


def test_texture_filter_is_checked_and_keys_only_shading():
    with pytest.raises(ValueError, match="texture_filter"):
        sj.RasterConfig(texture_filter="cubic")
    with pytest.raises(ValueError, match="texture_max_aniso"):
        sj.RasterConfig(texture_max_aniso=0)
    cfg = sj.RasterConfig(texture_filter="trilinear", texture_max_aniso=4)
    for stage in ("soft", "silhouette", "hard"):
        assert cfg.for_stage(stage) == sj.RasterConfig().for_stage(stage)


def test_texel_coverage_is_the_sum_of_the_filter_weights():
    """Seen from straight above (no edge in the image), `sj.texel_coverage` with bilinear
    sampling is the sum over pixels of the four bilinear weights at each pixel's ray-cast UV
    (accumulated in NumPy); with every filter the weights of a pixel sum to 1, and the
    mipmapped filters reach more texels."""
    size, n = (20, 24), 128  # about 4 texels a pixel: minified
    tex = np.float32(_checks(n, 4))
    mesh, eye = _floor_mesh(tex, 1.0), (0.3, -0.2, 2.0)
    cams = jax.vmap(lambda e: sj.look_at(e, (0.3, -0.2, 0.0), (0.0, 1.0, 0.0), fov=60.0))(
        np.float32([eye, (0.3, -0.2, 3.0)])
    )  # fmt: skip
    expected = np.zeros((n, n))
    for e in (eye, (0.3, -0.2, 3.0)):
        hits = ref.raycast(FLOOR, QUAD, np.zeros_like(FLOOR), e, (0.3, -0.2, 0.0), (0, 1, 0),
                           60.0, 0.1, size)  # fmt: skip
        assert hits.mask.all()
        uvs = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        uv = np.sum(hits.bary[..., None] * uvs[QUAD[hits.face_id]], axis=2).reshape(-1, 2)
        x, y = uv[:, 0] * n - 0.5, (1 - uv[:, 1]) * n - 0.5
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = x - x0, y - y0
        for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                            (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):  # fmt: skip
            np.add.at(expected, (np.clip(y0 + dy, 0, n - 1), np.clip(x0 + dx, 0, n - 1)), wgt)
    reached = {}
    for filt in ("linear", "trilinear", "anisotropic"):
        cfg = sj.RasterConfig(size, visibility="hard", texture_filter=filt)
        got = np.asarray(sj.texel_coverage(mesh, cams, cfg))
        assert got.shape == (n, n) and got.min() >= 0
        np.testing.assert_allclose(got.sum(), 2 * size[0] * size[1], rtol=1e-5)
        if filt == "linear":
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        reached[filt] = np.sum(got > 0)
    assert reached["trilinear"] > reached["linear"] and reached["anisotropic"] > reached["linear"]
    with pytest.raises(ValueError, match="UV texture"):
        sj.texel_coverage(sj.ico_sphere(0), cams, cfg)
