"""Radiometric shading (`shading="pbr"`) and spherical-harmonic light, against independent
float64 transcriptions of the formulas (tests/radiometry.py), brute-force integrals and
central differences, through soft (tiled and dense) and hard visibility."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import radiometry as R

import softjax as sj
from softjax._src.shading import environment, pbr, sh
from softjax._src.shading.lights import light_terms

EYE = (0.3, 0.4, 3.0)
LIGHT = (0.4, -1.0, -0.6)
Y0 = 0.5 / np.sqrt(np.pi)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _unit(rng, n):
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _coeffs(rng, mean=1.5):
    """SH radiance with a positive mean and a visible variation."""
    c = 0.25 * rng.standard_normal((9, 3))
    c[0] += mean / Y0
    return c


def _sphere(dtype, level=2):
    s = sj.ico_sphere(level)
    rng = np.random.default_rng(3)
    colours = rng.uniform(0.2, 0.9, (s.num_verts, 3))
    return np.asarray(s.verts, dtype), np.asarray(s.faces), colours.astype(dtype)


def _channel_first(*xs):
    return [jnp.asarray(x.T) for x in xs]


def test_brdf_matches_a_float64_transcription(x64):
    rng = np.random.default_rng(0)
    n, wi, v = _unit(rng, 4000), _unit(rng, 4000), _unit(rng, 4000)
    # Light and viewer in front of the surface, where the formula is the BRDF.
    wi = np.where(np.sum(wi * n, 1, keepdims=True) < 0, -wi, wi)
    v = np.where(np.sum(v * n, 1, keepdims=True) < 0, -v, v)
    rough, metal = rng.uniform(0, 1, 4000), rng.uniform(0, 1, 4000)
    base = rng.uniform(0, 1, (4000, 3))
    want = R.ggx_brdf(n, wi, v, rough, metal, base)
    # float32: the peak of a smooth lobe amplifies the inputs' own rounding (1e-4 at most).
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 3e-4)):
        args = _channel_first(*(x.astype(dtype) for x in (n, wi, v, base)))
        got = pbr.ggx_brdf(*args[:3], args[3], jnp.asarray(rough, dtype),
                           jnp.asarray(metal, dtype)).T  # fmt: skip
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0)


def test_split_sum_table_matches_integration(x64):
    """The table's lookup against brute-force quadrature over the hemisphere (rough lobes,
    grazing views included) and importance-sampled Monte Carlo (smooth lobes)."""
    rng = np.random.default_rng(1)
    points = [*zip(rng.uniform(0.02, 1, 6), rng.uniform(0.3, 1, 6), strict=True),
              (1.0, 1.0), (0.03, 0.4), (0.5, 0.5)]  # fmt: skip
    for nv, r in points:
        a, b = pbr.split_sum(jnp.float64(nv), jnp.float64(r))
        ref = R.dfg_uniform_quadrature(nv, r, n=500)
        np.testing.assert_allclose([a, b], ref, atol=1e-3, rtol=0, err_msg=str((nv, r)))
    for nv, r in ((0.5, 0.1), (0.9, 0.2), (0.3, 0.05)):
        a, b = pbr.split_sum(jnp.float64(nv), jnp.float64(r))
        ref = R.dfg_monte_carlo(nv, r, samples=400_000)
        np.testing.assert_allclose([a, b], ref, atol=1e-3, rtol=0, err_msg=str((nv, r)))


def test_sh_irradiance_matches_brute_force_integration(x64):
    rng = np.random.default_rng(2)
    coeffs, normals = rng.standard_normal((9, 3)), _unit(rng, 12)
    got = sh.sh_irradiance(jnp.asarray(coeffs), jnp.asarray(normals.T)).T
    want = R.sh_irradiance_bruteforce(coeffs, normals, n_theta=400, n_phi=800)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_sh_projection_of_a_map_recovers_its_coefficients(x64):
    rng = np.random.default_rng(4)
    coeffs = rng.standard_normal((9, 3))
    dirs = R.latlong_directions(128, 256)
    latlong = (R.sh_basis(dirs.reshape(-1, 3)) @ coeffs).reshape(128, 256, 3)
    got = sj.SHLight.from_environment(latlong).coeffs
    np.testing.assert_allclose(got, coeffs, atol=2e-3 * np.abs(coeffs).max(), rtol=0)
    # A uniform map of radiance 2: c_0 = 2 / Y_0 exactly (exact texel solid angles), the rest
    # 0 up to the texel-centre quadrature of band 2 (0.02 at 16 x 32 rows, 4e-4 here).
    flat = sj.SHLight.from_environment(np.full((128, 256, 3), 2.0)).coeffs
    np.testing.assert_allclose(flat[0], 2.0 / Y0, rtol=1e-10)
    np.testing.assert_allclose(flat[1:4], 0.0, atol=1e-10)
    np.testing.assert_allclose(flat[4:], 0.0, atol=1e-3)


def _patch_brute_force(latlong, normals, sub=16):
    """`integral L(w) max(n.w, 0) dw` of the piecewise-constant map: each texel's patch
    sampled at sub x sub points with their exact solid angles."""
    h, w, _ = latlong.shape
    dirs = R.latlong_directions(h * sub, w * sub)
    solid = R.latlong_solid_angles(h * sub, w * sub)
    fine = np.repeat(np.repeat(latlong, sub, 0), sub, 1)
    cos = np.maximum(np.einsum("hwc,nc->nhw", dirs, normals), 0.0)
    return np.einsum("nhw,hwc->nc", cos * solid[None], fine)


def test_environment_irradiance_matches_brute_force_integration(x64):
    rng = np.random.default_rng(10)
    latlong, normals = rng.uniform(0, 2, (32, 64, 3)), _unit(rng, 16)
    prepared = environment.prepare(sj.EnvironmentLight(latlong), specular=False)
    got = environment.irradiance(prepared, jnp.asarray(normals.T)).T
    want = _patch_brute_force(latlong, normals)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=0)
    # At and next to the poles (where the azimuth is undefined): finite gradients.
    prepared = environment.prepare(sj.EnvironmentLight(latlong[::4, ::4]), specular=True)
    poles = jnp.asarray([[0.0, 1.0, 0.0], [1e-30, 1.0, 0.0], [0.0, -1.0, 1e-25], [0, 0, 0.0]]).T

    def lit(n):
        return jnp.sum(environment.irradiance(prepared, n)) + jnp.sum(
            environment.prefiltered_radiance(prepared, n, jnp.full(4, 0.3))
        )

    assert np.all(np.isfinite(jax.grad(lit)(poles)))


def test_rough_metal_under_a_map_against_the_full_integral(x64):
    """The split sum with the pre-filtered map against the rendering integral over the
    map's texels (sub-sampled): a smooth map, a rough metal, views from head-on to 75
    degrees, bounds as for SH light (measured: 1.2%, 1.1%, 2.0% and, at 75 degrees, 8.7%,
    where SH light with the same coefficients gives the same value to 0.1%: the split
    sum's error, not the pre-filtered map's)."""
    rng = np.random.default_rng(11)
    h, w = 16, 32
    dirs = R.latlong_directions(h, w).reshape(-1, 3)
    latlong = (R.sh_basis(dirs) @ _coeffs(rng)).reshape(h, w, 3)
    lights = sj.Lights(0.0, environment=sj.EnvironmentLight(latlong))
    prepared = environment.prepare(lights.environment, specular=True)
    fine_dirs = R.latlong_directions(h * 8, w * 8).reshape(-1, 3)
    fine_solid = R.latlong_solid_angles(h * 8, w * 8).reshape(-1)
    fine = np.repeat(np.repeat(latlong, 8, 0), 8, 1).reshape(-1, 3)
    base = np.array([0.9, 0.6, 0.3])
    for angle, bound in ((0.0, 0.04), (0.6, 0.04), (1.0, 0.04), (1.3, 0.1)):
        n = _unit(rng, 1)[0]
        t = np.cross(n, _unit(rng, 1)[0])
        t /= np.linalg.norm(t)
        v = np.cos(angle) * n + np.sin(angle) * t
        got = pbr.pbr_shade(*_channel_first(base[None], n[None], np.zeros((1, 3))),
                            jnp.asarray([0.6]), jnp.asarray([0.8]), jnp.asarray(v), lights,
                            prepared)[:, 0]  # fmt: skip
        m = len(fine_dirs)
        f = R.ggx_brdf(
            np.broadcast_to(n, (m, 3)),
            fine_dirs,
            np.broadcast_to(v, (m, 3)),
            np.full(m, 0.6),
            np.full(m, 0.8),
            np.broadcast_to(base, (m, 3)),
        )
        cos = np.maximum(fine_dirs @ n, 0.0)
        want = np.sum(f * fine * (cos * fine_solid)[:, None], axis=0)
        err = np.abs(np.asarray(got) - want).max() / np.abs(want).max()
        assert err <= bound, (angle, err)


def _inside(alpha):
    """Pixels whose 3x3 neighbourhood is all covered (no antialiasing blend)."""
    a = np.asarray(alpha) == 1.0
    core = a[1:-1, 1:-1]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            core = core & a[1 + dy : a.shape[0] - 1 + dy, 1 + dx : a.shape[1] - 1 + dx]
    out = np.zeros_like(a)
    out[1:-1, 1:-1] = core
    return out


def test_white_surface_under_a_uniform_environment_has_diffuse_one():
    """The Lambertian term of base colour 1 under radiance 1 (a third each from the ambient
    light, SH light and a map) is 1: the difference between a white and a black sphere (the
    specular term does not depend on a dielectric's base colour). Under the Phong model the
    same environments give 1 as well."""
    verts, faces, _ = _sphere(np.float32)
    cam = sj.look_at(EYE)
    third = sj.SHLight(np.array([[1 / (3 * Y0)] * 3] + [[0.0] * 3] * 8))
    env = sj.EnvironmentLight(np.full((6, 12, 3), 1 / 3, np.float32))
    # A third of the radiance from each kind of environment (one program per shading mode).
    lights = sj.Lights(1 / 3, sh=third, environment=env)
    cases = [("pbr", lights, sj.PBRMaterial(0.4, 0.0)), ("phong", lights, None)]
    for shading, lights, material in cases:
        cfg = sj.RasterConfig((16, 16), shading=shading, visibility="hard")
        white, black = (sj.render(sj.Mesh(verts, faces, np.full(verts.shape, c, np.float32)),
                                  cam, cfg, lights, material) for c in (1.0, 0.0))  # fmt: skip
        inside = _inside(white[..., 3])
        assert inside.sum() > 30
        diffuse = np.asarray(white[..., :3] - black[..., :3])[inside]
        np.testing.assert_allclose(diffuse, 1.0, atol=1e-4, err_msg=shading)
        if shading == "pbr":  # plus the specular term F0 A + B, at most a few percent
            spec = np.asarray(black[..., :3])[inside]
            assert 0.0 < spec.min() and spec.max() < 0.1


def test_sphere_under_a_directional_light_matches_the_transcription(x64):
    """Hard visibility at pixel centres: the radiance the transcription gives for the
    interpolated normal, position and colour and the view direction."""
    verts, faces, colours = _sphere(np.float64)
    mesh = sj.Mesh(verts, faces, colours)
    cam = sj.look_at(np.asarray(EYE))
    light = sj.DirectionalLight(LIGHT, color=(1.0, 0.9, 0.8), intensity=2.5)
    material = sj.PBRMaterial(0.45, 0.3)
    cfg = sj.RasterConfig((24, 24), shading="pbr", visibility="hard")
    rgba = np.asarray(sj.render(mesh, cam, cfg, sj.Lights(0.0, [light]), material))
    frag = sj.rasterize(mesh, cam, cfg)
    inside = _inside(rgba[..., 3])
    face, bary = np.asarray(frag.face_id)[inside], np.asarray(frag.bary)[inside]
    # Smooth normals: area-weighted face normals summed at the vertices (numpy).
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(verts)
    np.add.at(vn, faces.reshape(-1), np.repeat(fn, 3, 0))
    vn /= np.linalg.norm(vn, axis=1, keepdims=True)

    def interp(x):
        return np.einsum("pk,pkc->pc", bary, x[faces[face]])

    normal, pos, base = interp(vn), interp(verts), interp(colours)
    view = np.asarray(EYE) - pos
    to_light = -np.asarray(LIGHT) / np.linalg.norm(LIGHT)
    to_light = np.broadcast_to(to_light, pos.shape)
    n = normal / np.linalg.norm(normal, axis=1, keepdims=True)
    v = view / np.linalg.norm(view, axis=1, keepdims=True)
    f = R.ggx_brdf(n, to_light, v, np.full(len(n), 0.45), np.full(len(n), 0.3), base)
    n_dot_l = np.maximum(np.sum(n * to_light, 1), 0.0)[:, None]
    want = f * n_dot_l * 2.5 * np.array([1.0, 0.9, 0.8])
    assert np.sum(n_dot_l > 0) > 30
    np.testing.assert_allclose(rgba[..., :3][inside], want, atol=1e-5, rtol=0)


def test_rough_metal_under_sh_light_against_the_full_integral(x64):
    """The split sum against the rendering integral itself (diffuse and specular by
    quadrature): a rough metal under smooth SH light, at views from head-on to 75 degrees.
    The split sum's own approximation error (n = v = r for the pre-filter: at grazing views
    the real lobe stretches away from the mirror direction) is a few percent for such a lobe
    and grows towards grazing views: errors are taken relative to the brightest channel,
    bounded by 4% up to 57 degrees and 10% at 75 degrees."""
    rng = np.random.default_rng(5)
    coeffs = _coeffs(rng)
    lights = sj.Lights(0.0, sh=sj.SHLight(coeffs))
    base = np.array([0.9, 0.6, 0.3])
    for angle, bound in ((0.0, 0.04), (0.6, 0.04), (1.0, 0.04), (1.3, 0.1)):
        n = _unit(rng, 1)[0]
        t = np.cross(n, _unit(rng, 1)[0])
        t /= np.linalg.norm(t)
        v = np.cos(angle) * n + np.sin(angle) * t
        pos = np.zeros(3)
        got = pbr.pbr_shade(*_channel_first(base[None], n[None], pos[None]),
                            jnp.asarray([0.6]), jnp.asarray([0.8]), jnp.asarray(v),
                            lights)[:, 0]  # fmt: skip
        spec = R.split_sum_free_specular_sh(coeffs, n, v, 0.6, 0.8, base, 400, 800)
        want = spec + R.diffuse_sh(coeffs, n, 0.8, base, 200, 400)
        err = np.abs(np.asarray(got) - want).max() / np.abs(want).max()
        assert err <= bound, (angle, err)


def _fit_scene(dtype, per_vertex):
    verts, faces, colours = _sphere(dtype, level=1)
    rng = np.random.default_rng(6)
    rough = rng.uniform(0.2, 0.9, len(verts)) if per_vertex else 0.5
    return verts, faces, colours, np.asarray(rough, dtype), np.asarray(0.4, dtype)


def _loss_fn(cfg, faces, weights):
    cam = sj.look_at(np.asarray(EYE, weights.dtype))

    def loss(verts, coeffs, rough, metal, direction, colour, latlong):
        lights = sj.Lights(
            0.2,
            [sj.DirectionalLight(direction, colour, 1.5)],
            sh=sj.SHLight(coeffs),
            environment=sj.EnvironmentLight(latlong),
        )
        image = sj.render(sj.Mesh(verts, faces), cam, cfg, lights, sj.PBRMaterial(rough, metal))
        return jnp.sum(image * weights), image

    return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(7)), has_aux=True))


@pytest.mark.parametrize("visibility", ["soft", "hard"])
def test_gradients_match_central_differences(x64, visibility):
    verts, faces, _, rough, metal = _fit_scene(np.float64, per_vertex=True)
    args = [
        verts,
        _coeffs(np.random.default_rng(7)),
        rough,
        metal,
        np.asarray(LIGHT),
        np.asarray([1.0, 0.9, 0.8]),
        np.random.default_rng(12).uniform(0, 1, (4, 8, 3)),
    ]
    size = (12, 12)
    weights = jnp.asarray(np.random.default_rng(8).standard_normal((*size, 4)))
    cfg = sj.RasterConfig(size, shading="pbr", visibility=visibility, method="dense",
                          sigma=3e-3, gamma=1e-2)  # fmt: skip
    value_and_grad = _loss_fn(cfg, faces, weights)
    _, grads = value_and_grad(*args)
    rng, step = np.random.default_rng(9), 1e-6
    for k, g in enumerate(grads):
        g = np.asarray(g)
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, k
        d = rng.standard_normal(g.shape)
        if k == 0 and visibility == "hard":
            d = d * 1e-2  # vertex moves small enough not to cross pixel centres
        up = [a + step * d if i == k else a for i, a in enumerate(args)]
        down = [a - step * d if i == k else a for i, a in enumerate(args)]
        fd = (float(value_and_grad(*up)[0][0]) - float(value_and_grad(*down)[0][0])) / (2 * step)
        ad = float(np.sum(g * d))
        assert abs(ad - fd) <= 1e-4 * max(abs(fd), 1e-3), (k, ad, fd)


def test_tiled_equals_dense():
    verts, faces, _, rough, metal = _fit_scene(np.float32, per_vertex=True)
    args = [
        verts,
        _coeffs(np.random.default_rng(7)).astype(np.float32),
        rough,
        metal,
        np.asarray(LIGHT, np.float32),
        np.asarray([1.0, 0.9, 0.8], np.float32),
        np.random.default_rng(12).uniform(0, 1, (4, 8, 3)).astype(np.float32),
    ]
    weights = jnp.asarray(np.random.default_rng(8).standard_normal((12, 12, 4)), jnp.float32)
    out = {}
    for method in ("tiled", "dense"):
        cfg = sj.RasterConfig((12, 12), shading="pbr", method=method, sigma=3e-3, gamma=1e-2,
                              tile_size=4, chunk=8)  # fmt: skip
        out[method] = _loss_fn(cfg, faces, weights)(*args)
    ((lt, it), gt), ((ld, id_), gd) = out["tiled"], out["dense"]
    assert np.ptp(np.asarray(id_[..., 0])) > 0.1
    np.testing.assert_allclose(it, id_, atol=1e-5, rtol=0)
    np.testing.assert_allclose(lt, ld, rtol=1e-5)
    for a, b in zip(gt, gd, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="roughness"):
        sj.PBRMaterial(roughness=1.5)
    with pytest.raises(ValueError, match="metallic"):
        sj.PBRMaterial(metallic=-0.1)
    with pytest.raises(ValueError, match="texture map"):
        sj.PBRMaterial(roughness=np.full((4, 4, 1), 0.5))
    with pytest.raises(ValueError, match="coeffs"):
        sj.SHLight(np.zeros((4, 3)))
    with pytest.raises(TypeError, match="SHLight"):
        sj.Lights(sh=np.zeros((9, 3)))
    with pytest.raises(ValueError, match="latlong"):
        sj.SHLight.from_environment(np.zeros((8, 16)))
    with pytest.raises(ValueError, match="latlong"):
        sj.EnvironmentLight(np.zeros((8, 16, 4)))
    with pytest.raises(ValueError, match="texels"):
        sj.EnvironmentLight(np.zeros((65, 65, 3)))
    with pytest.raises(TypeError, match="EnvironmentLight"):
        sj.Lights(environment=np.zeros((8, 16, 3)))
    mesh, cam = sj.ico_sphere(1), sj.look_at(EYE)
    pbr_cfg, phong_cfg = (sj.RasterConfig((8, 8), shading=s) for s in ("pbr", "phong"))
    with pytest.raises(TypeError, match="PBRMaterial"):
        sj.render(mesh, cam, pbr_cfg, sj.Lights(), sj.Material())
    with pytest.raises(TypeError, match="Material"):
        sj.render(mesh, cam, phong_cfg, sj.Lights(), sj.PBRMaterial())
    with pytest.raises(ValueError, match="vertices"):
        sj.render(mesh, cam, pbr_cfg, sj.Lights(), sj.PBRMaterial(np.full(5, 0.5)))
    with pytest.raises(ValueError, match="lights"):
        sj.render(mesh, cam, pbr_cfg)
    with pytest.raises(ValueError, match="UVs"):
        sj.render(mesh, cam, pbr_cfg, sj.Lights(), sj.PBRMaterial(np.full((4, 4), 0.5)))


def _deca_shading(light, normals, albedo):
    """DECA's `add_SHlight` (decalib/utils/renderer.py), transcribed: `albedo * shading`."""
    pi = np.pi
    factor = np.array([1 / np.sqrt(4 * pi), ((2 * pi) / 3) * np.sqrt(3 / (4 * pi)),
                       ((2 * pi) / 3) * np.sqrt(3 / (4 * pi)),
                       ((2 * pi) / 3) * np.sqrt(3 / (4 * pi)),
                       (pi / 4) * 3 * np.sqrt(5 / (12 * pi)), (pi / 4) * 3 * np.sqrt(5 / (12 * pi)),
                       (pi / 4) * 3 * np.sqrt(5 / (12 * pi)),
                       (pi / 4) * (3 / 2) * np.sqrt(5 / (12 * pi)),
                       (pi / 4) * (1 / 2) * np.sqrt(5 / (4 * pi))])  # fmt: skip
    x, y, z = normals.T
    basis = np.stack([x * 0 + 1, x, y, z, x * y, x * z, y * z, x**2 - y**2, 3 * z**2 - 1])
    shading = np.einsum("kc,kn->nc", light, basis * factor[:, None])
    return albedo * shading


def _kaolin_diffuse(lights, normals, albedo):
    """Kaolin's `sh9_irradiance` (kaolin/render/lighting/sh.py), transcribed, times the
    albedo (as its `sh9_diffuse` does): one channel of coefficients."""
    x, y, z = normals.T
    bands = np.stack([0.28209479177 + 0 * x, -0.4886025119 * y, 0.4886025119 * z,
                      -0.4886025119 * x, 1.0925484305920792 * (x * y),
                      -1.0925484305920792 * (y * z), 0.94617469575 * (z * z) - 0.31539156525,
                      -1.0925484305920792 * x * z,
                      0.5462742152960396 * (x * x - y * y)])  # fmt: skip
    bands[0] *= np.pi
    bands[1:4] *= 2 * np.pi / 3
    bands[4:] *= np.pi / 4
    return albedo * (lights @ bands)[:, None]


def test_deca_and_kaolin_coefficients_shade_as_those_projects_do(x64):
    """A user porting coefficients gets the shading of those projects' own formulas (Phong
    model, ambient 0: `albedo * E(n) / pi`)."""
    rng = np.random.default_rng(13)
    normals, albedo = _unit(rng, 50), rng.uniform(0, 1, (50, 3))
    eye = jnp.asarray([0.0, 0.0, 5.0])

    def ours(light):
        gain, offset = light_terms(jnp.asarray(normals.T), jnp.zeros((3, 50)), eye,
                                   sj.Lights(0.0, sh=light), sj.Material())  # fmt: skip
        return np.asarray(albedo.T * gain + offset).T

    deca = rng.standard_normal((9, 3))
    np.testing.assert_allclose(ours(sj.SHLight.from_deca(deca.reshape(-1))),
                               _deca_shading(deca, normals, albedo), atol=1e-12)  # fmt: skip
    kaolin = rng.standard_normal(9)
    np.testing.assert_allclose(ours(sj.SHLight.from_kaolin(kaolin)),
                               _kaolin_diffuse(kaolin, normals, albedo), atol=1e-9)  # fmt: skip


def _uv_sphere(dtype):
    """A UV-textured sphere (UVs from the spherical angles; the seam does not matter here)."""
    verts, faces, _ = _sphere(dtype, level=1)
    uvs = np.stack([np.arctan2(verts[:, 0], verts[:, 2]) / (2 * np.pi) + 0.5,
                    np.arccos(np.clip(verts[:, 1], -1, 1)) / np.pi], -1)  # fmt: skip
    texture = np.random.default_rng(14).uniform(0.2, 0.9, (4, 4, 3))
    return sj.Mesh(verts, faces, uvs=uvs.astype(dtype), face_uvs=faces,
                   texture=texture.astype(dtype))  # fmt: skip


def test_material_maps_are_sampled_with_the_uvs_and_differentiable(x64):
    """Constant maps render as the scalars; the gradients of random roughness and metallic
    maps' texels agree with central differences (hard visibility)."""
    mesh = _uv_sphere(np.float64)
    cam = sj.look_at(np.asarray(EYE))
    cfg = sj.RasterConfig((12, 12), shading="pbr", visibility="hard")
    lights = sj.Lights(0.3, [sj.DirectionalLight(LIGHT, intensity=2.0)])
    weights = jnp.asarray(np.random.default_rng(15).standard_normal((12, 12, 4)))

    def loss(rough_map, metal_map):
        image = sj.render(mesh, cam, cfg, lights, sj.PBRMaterial(rough_map, metal_map))
        return jnp.sum(image * weights), image

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, constant), _ = value_and_grad(np.full((4, 4), 0.45), np.full((2, 3), 0.3))
    scalar = sj.render(mesh, cam, cfg, lights, sj.PBRMaterial(0.45, 0.3))
    np.testing.assert_allclose(constant, scalar, atol=1e-12)
    rng = np.random.default_rng(16)
    maps = rng.uniform(0.2, 0.9, (4, 4)), rng.uniform(0.0, 1.0, (2, 3))
    _, grads = value_and_grad(*maps)
    assert all(np.abs(np.asarray(g)).max() > 0 for g in grads)
    dirs, step = [rng.standard_normal(m.shape) for m in maps], 1e-6
    up, down = (
        float(value_and_grad(*(m + sign * step * d for m, d in zip(maps, dirs, strict=True)))[0][0])
        for sign in (1, -1)
    )
    fd = (up - down) / (2 * step)
    ad = float(sum(np.sum(np.asarray(g) * d) for g, d in zip(grads, dirs, strict=True)))
    assert abs(ad - fd) <= 1e-4 * abs(fd), (ad, fd)


def test_views_under_vmap_match_a_loop():
    mesh = sj.Mesh(*_sphere(np.float32)[:2])
    lights = sj.Lights(
        0.1,
        [sj.DirectionalLight(LIGHT)],
        sh=sj.SHLight(_coeffs(np.random.default_rng(17))),
        environment=sj.EnvironmentLight(np.random.default_rng(18).uniform(0, 1, (4, 8, 3))),
    )
    cfg = sj.RasterConfig((12, 12), shading="pbr", visibility="hard")
    eyes = jnp.asarray([EYE, (-2.0, 1.0, 2.0)])

    def one(eye):
        return sj.render(mesh, sj.look_at(eye), cfg, lights, sj.PBRMaterial(0.4, 0.5))

    batched = jax.vmap(one)(eyes)
    for i in range(2):
        np.testing.assert_allclose(batched[i], one(eyes[i]), atol=1e-6)


def test_each_uniform_environment_alone_gives_a_lambertian_term_of_one():
    """The diffuse term of base colour 1 under radiance 1 from each environment alone:
    ambient light, SH light and a map, through `pbr_shade` (white minus black base)."""
    rng = np.random.default_rng(19)
    n = jnp.asarray(_unit(rng, 64).T, jnp.float32)
    pos = jnp.zeros((3, 64))
    eye = jnp.asarray([0.0, 0.0, 5.0])
    sh_light = sj.SHLight(np.array([[1 / Y0] * 3] + [[0.0] * 3] * 8))
    env = sj.EnvironmentLight(np.ones((6, 12, 3), np.float32))
    for lights in (sj.Lights(1.0), sj.Lights(0.0, sh=sh_light), sj.Lights(0.0, environment=env)):
        prepared = None
        if lights.environment is not None:
            prepared = environment.prepare(lights.environment, specular=True)

        def shade(base, lights=lights, prepared=prepared):
            rough, metal = jnp.full(64, 0.5), jnp.zeros(64)
            return pbr.pbr_shade(base, n, pos, rough, metal, eye, lights, prepared)

        diffuse = shade(jnp.ones((3, 64))) - shade(jnp.zeros((3, 64)))
        np.testing.assert_allclose(diffuse, 1.0, atol=1e-4)
