"""`visibility="splat"` and `sj.splat` (rasterize-then-splat) against a float64 NumPy
transcription of the splat and composite rules (Cole et al. 2021), and their gradients
against central differences."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scenes import UP

import softjax as sj

SIZE = (14, 16)
EYE = (0.6, 0.5, 2.4)
BACKGROUND = (0.1, 0.2, 0.3)


def _mesh(dtype):
    sphere = sj.ico_sphere(1)
    verts = np.asarray(sphere.verts, np.float64) * np.array([1.0, 0.8, 0.9])
    colours = np.random.default_rng(0).uniform(0.2, 0.9, verts.shape)
    return sj.Mesh(verts.astype(dtype), sphere.faces, colours.astype(dtype))


def _reference(mesh, cam, frags, background):
    """The rules written out from the paper's description, per pixel and tap, in float64:
    colours interpolated from the fragments, each splat at its surface point's screen
    position, taps routed by depth, buffers normalised by 1 / max(w, 1), composited over."""
    verts, faces = np.asarray(mesh.verts, np.float64), np.asarray(mesh.faces)
    colours = np.asarray(mesh.colors, np.float64)
    face = np.asarray(frags.face_id).reshape(*SIZE, -1)
    bary = np.asarray(frags.bary, np.float64).reshape(*SIZE, face.shape[-1], 3)
    depth = np.asarray(frags.depth, np.float64).reshape(face.shape)
    h, w, layers = face.shape
    rot, eye = np.asarray(cam.rotation, np.float64), np.asarray(cam.eye, np.float64)
    focal, centre = np.asarray(cam.focal, np.float64), np.asarray(cam.center, np.float64)
    kernel = [math.exp(-(u * u + v * v) / 0.5) for u, v in itertools.product((-1, 0, 1), repeat=2)]
    coef = 1.05 / sum(kernel)
    acc = np.zeros((h, w, 3, 4))  # buffers fg, surface, bg: r, g, b, weight
    for i, j, layer in itertools.product(range(h), range(w), range(layers)):
        f = face[i, j, layer]
        if f < 0:
            continue
        point = (bary[i, j, layer] @ verts[faces[f]] - eye) @ rot.T  # camera space
        sx = point[0] / point[2] * focal[0] + centre[0]
        sy = -point[1] / point[2] * focal[1] + centre[1]
        col = bary[i, j, layer] @ colours[faces[f]]
        for di, dj in itertools.product((-1, 0, 1), repeat=2):
            qi, qj = i + di, j + dj
            if not (0 <= qi < h and 0 <= qj < w):
                continue
            # Pixel (qi, qj)'s centre in screen units (x scaled by W / H), then in pixels.
            cx = ((2 * qj + 1) / w - 1) * (w / h)
            cy = 1 - (2 * qi + 1) / h
            dist2 = ((cx - sx) * h / 2) ** 2 + ((cy - sy) * h / 2) ** 2
            weight = coef * math.exp(-dist2 / (2 * 0.25))
            at_q = np.abs(depth[qi, qj] - depth[i, j, 0])
            at_p = np.abs(depth[i, j] - depth[qi, qj, 0])
            surface = -np.argmin(at_p) if at_p.min() < at_q.min() else np.argmin(at_q)
            buffer = 0 if surface > layer else 1 if surface == layer else 2
            acc[qi, qj, buffer] += weight * np.append(col, 1.0)
    norm = acc / np.maximum(acc[..., 3:], 1.0)
    out = norm[:, :, 2]
    for b in (1, 0):
        out = norm[:, :, b] + (1 - norm[:, :, b, 3:]) * out
    rgb = out[..., :3] + (1 - out[..., 3:]) * np.asarray(background)
    return np.concatenate([rgb, out[..., 3:]], axis=-1)


@pytest.mark.parametrize("layers", [1, 3])
def test_images_match_a_transcription_of_the_rules(layers):
    with jax.enable_x64(True):
        mesh = _mesh(np.float64)
        cam = sj.look_at(np.asarray(EYE), up=UP, fov=45.0)
        cfg = sj.RasterConfig(SIZE, visibility="splat", splat_layers=layers, background=BACKGROUND)
        image = np.asarray(sj.render(mesh, cam, cfg))
        frags = sj.rasterize(mesh, cam, cfg, layers=layers)
        ref = _reference(mesh, cam, frags, BACKGROUND)
        assert np.ptp(ref[..., 3]) > 0.9 and 0 < np.mean(ref[..., 3]) < 1
        np.testing.assert_allclose(image, ref, rtol=0, atol=1e-6)
        # The building block, from the same fragments and the interpolated colours.
        block = sj.splat(sj.interpolate(mesh.colors, frags, mesh), frags, mesh, cam, BACKGROUND)
        np.testing.assert_allclose(block, ref, rtol=0, atol=1e-6)
        alpha = sj.render_silhouette(mesh, cam, cfg)
        np.testing.assert_allclose(alpha, ref[..., 3], rtol=0, atol=1e-6)


@pytest.mark.parametrize("layers", [1, 3])
def test_gradients_match_central_differences(layers):
    """The splats' positions are rebuilt from the vertices with the barycentrics held at
    their rendered values: that is the function whose derivative the renderer takes. Its
    central differences (built here from the building blocks, fragments fixed for the
    positions) agree with `jax.grad` of `render`, with steps small enough that no pixel
    changes its face (checked)."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        mesh = _mesh(np.float64)
        cam = sj.look_at(np.asarray(EYE), up=UP, fov=45.0)
        cfg = sj.RasterConfig(SIZE, visibility="splat", splat_layers=layers, background=BACKGROUND)
        weights = rng.standard_normal((*SIZE, 4))
        verts, colours = np.asarray(mesh.verts), np.asarray(mesh.colors)
        frags0 = sj.rasterize(mesh, cam, cfg, layers=layers)

        def loss(v, c):
            return jnp.sum(weights * sj.render(sj.Mesh(v, mesh.faces, c), cam, cfg))

        @jax.jit
        def held(v, c):  # positions from the fragments at `verts`, colours shaded at `v`
            moved = sj.Mesh(v, mesh.faces, c)
            frags = sj.rasterize(moved, cam, cfg, layers=layers)
            shaded = sj.interpolate(c, frags, moved)
            image = sj.splat(shaded, frags0, moved, cam, BACKGROUND)
            return jnp.sum(weights * image), frags.face_id

        g_v, g_c = jax.jit(jax.grad(loss, argnums=(0, 1)))(verts, colours)
        assert np.all(np.isfinite(g_v)) and np.abs(g_v).max() > 1e-2
        step = 1e-6
        for _ in range(3):
            dv, dc = rng.standard_normal(verts.shape), rng.standard_normal(colours.shape)
            up, faces_up = held(verts + step * dv, colours + step * dc)
            down, faces_down = held(verts - step * dv, colours - step * dc)
            assert np.array_equal(faces_up, faces_down)
            fd = (up - down) / (2 * step)
            ad = np.sum(g_v * dv) + np.sum(g_c * dc)
            assert abs(ad - fd) <= 1e-6 * max(abs(fd), np.abs(g_v).max()), (ad, fd)


def test_edges_carry_gradient_where_a_hard_image_has_none():
    """Moving the sphere sideways changes the splatted alpha at its silhouette smoothly."""
    mesh = _mesh(np.float32)
    cam = sj.look_at(EYE, up=UP, fov=45.0)
    cfg = sj.RasterConfig(SIZE, visibility="splat")

    def coverage(shift):
        moved = sj.Mesh(mesh.verts + jnp.array([1.0, 0.0, 0.0]) * shift, mesh.faces)
        return jnp.sum(sj.render_silhouette(moved, cam, cfg) * jnp.linspace(0, 1, SIZE[1]))

    g = jax.grad(coverage)(0.0)
    assert np.isfinite(g) and g > 0.1


def test_settings_and_bad_input():
    with pytest.raises(ValueError, match="splat_layers"):
        sj.RasterConfig(visibility="splat", splat_layers=0)
    mesh = _mesh(np.float32)
    cam = sj.look_at(EYE, up=UP)
    frags = sj.rasterize(mesh, cam, sj.RasterConfig(SIZE))
    with pytest.raises(ValueError, match="colors"):
        sj.splat(jnp.zeros((*SIZE, 2, 3)), frags, mesh, cam)
    with pytest.raises(TypeError, match="fragments"):
        sj.splat(jnp.zeros((*SIZE, 3)), None, mesh, cam)
    cfg = sj.RasterConfig(SIZE, visibility="splat")
    with pytest.raises(TypeError, match="reverse-mode"):
        jax.jvp(lambda v: sj.render_silhouette(sj.Mesh(v, mesh.faces), cam, cfg),
                (mesh.verts,), (mesh.verts,))  # fmt: skip
    # A soft-only setting does not change the splat's config key.
    assert cfg.for_stage("splat") == sj.RasterConfig(SIZE, visibility="splat",
                                                     sigma=1e-2).for_stage("splat")  # fmt: skip


def test_views_under_vmap_match_a_loop():
    mesh = _mesh(np.float32)
    eyes = jnp.asarray([EYE, (-0.5, 0.4, 2.5), (0.0, 1.2, 2.2)], jnp.float32)
    cams = jax.vmap(lambda e: sj.look_at(e, up=UP, fov=45.0))(eyes)
    cfg = sj.RasterConfig(SIZE, visibility="splat", splat_layers=2, cull_backfaces=True)
    batched = jax.jit(jax.vmap(lambda c: sj.render(mesh, c, cfg)))(cams)
    for k in range(len(eyes)):
        cam = jax.tree.map(lambda x, k=k: x[k], cams)
        np.testing.assert_allclose(batched[k], sj.render(mesh, cam, cfg), rtol=0, atol=1e-6)
