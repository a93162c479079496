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
from softjax._src.hard.splat import splat_planes

SIZE = (14, 16)
EYE = (0.6, 0.5, 2.4)
BACKGROUND = (0.1, 0.2, 0.3)


def _mesh(dtype):
    sphere = sj.ico_sphere(1)
    verts = np.asarray(sphere.verts, np.float64) * np.array([1.0, 0.8, 0.9])
    colours = np.random.default_rng(0).uniform(0.2, 0.9, verts.shape)
    return sj.Mesh(verts.astype(dtype), sphere.faces, colours.astype(dtype))


def _reference(verts, faces, colours, cam, frags, background, held=None):
    """The rules written out from the paper's description, per pixel and tap, in float64:
    colours interpolated from the fragments, each splat at its surface point's screen
    position (rebuilt from `verts` with the barycentrics of `held`, default `frags`), taps
    routed by depth, buffers normalised by 1 / max(w, 1), composited over the background."""
    verts, faces = np.asarray(verts, np.float64), np.asarray(faces)
    colours = np.asarray(colours, np.float64)
    face = np.asarray(frags.face_id).reshape(*SIZE, -1)
    bary = np.asarray(frags.bary, np.float64).reshape(*SIZE, face.shape[-1], 3)
    held = bary if held is None else np.asarray(held.bary, np.float64).reshape(bary.shape)
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
        point = (held[i, j, layer] @ verts[faces[f]] - eye) @ rot.T  # camera space
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
            # The shared surface: this pixel's layer k against the target's nearest (k), or
            # the target's layer k against this pixel's nearest (-k: this one lies behind).
            mine = np.abs(depth[i, j] - depth[qi, qj, 0])
            theirs = np.abs(depth[qi, qj] - depth[i, j, 0])
            surface = -np.argmin(theirs) if theirs.min() < mine.min() else np.argmin(mine)
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
        ref = _reference(mesh.verts, mesh.faces, mesh.colors, cam, frags, BACKGROUND)
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
    central differences, from the NumPy transcription with the positions' barycentrics held
    and the colours' taken from the moved vertices, agree with `jax.grad` and `jax.jvp` of
    `render`, with steps small enough that no pixel changes its face (checked)."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        mesh = _mesh(np.float64)
        cam = sj.look_at(np.asarray(EYE), up=UP, fov=45.0)
        cfg = sj.RasterConfig(SIZE, visibility="splat", splat_layers=layers, background=BACKGROUND)
        weights = rng.standard_normal((*SIZE, 4))
        verts, colours = np.asarray(mesh.verts), np.asarray(mesh.colors)
        frags0 = sj.rasterize(mesh, cam, cfg, layers=layers)
        fragments = jax.jit(lambda v: sj.rasterize(sj.Mesh(v, mesh.faces), cam, cfg, layers))

        def loss(v, c):
            return jnp.sum(weights * sj.render(sj.Mesh(v, mesh.faces, c), cam, cfg))

        def held(v, c):
            frags = fragments(v)
            image = _reference(v, mesh.faces, c, cam, frags, BACKGROUND, held=frags0)
            return np.sum(weights * image), frags.face_id

        g_v, g_c = jax.jit(jax.grad(loss, argnums=(0, 1)))(verts, colours)
        assert np.all(np.isfinite(g_v)) and np.abs(g_v).max() > 1e-2
        forward = jax.jit(lambda dv, dc: jax.jvp(loss, (verts, colours), (dv, dc))[1])
        step = 1e-6
        for _ in range(2):
            dv, dc = rng.standard_normal(verts.shape), rng.standard_normal(colours.shape)
            up, faces_up = held(verts + step * dv, colours + step * dc)
            down, faces_down = held(verts - step * dv, colours - step * dc)
            assert np.array_equal(faces_up, faces_down)
            assert np.array_equal(faces_up, frags0.face_id)
            fd = (up - down) / (2 * step)
            ad = np.sum(g_v * dv) + np.sum(g_c * dc)
            assert abs(ad - fd) <= 1e-6 * max(abs(fd), np.abs(g_v).max()), (ad, fd)
            fwd = float(forward(dv, dc))  # forward mode, the same derivative
            assert abs(fwd - fd) <= 1e-6 * max(abs(fd), np.abs(g_v).max()), (fwd, fd)


def test_two_pixels_by_hand():
    """An object (depth 1, colour 1) in front of a wall (depth 5, colour 0.5) at pixel 0,
    the wall alone at pixel 1, two layers, splats on their centres: the object's splat at
    pixel 1 is foreground over the wall there, and the wall's splat from pixel 1 is behind
    the object at pixel 0 (worked out by hand from the rules)."""
    from softjax._src.hard.splat import COEF

    far = 100.0
    face = jnp.array([[[0, 1]], [[1, -1]]], jnp.int32)  # (K, H, W)
    depth = jnp.array([[[1.0, 5.0]], [[5.0, far]]])
    colour = jnp.array([[[1.0, 0.5]], [[0.5, 0.0]]])
    zero = jnp.zeros(face.shape)
    (out,), alpha = splat_planes([colour], face, depth, (zero, zero))
    near = COEF * math.exp(-1 / (2 * 0.25))  # a tap one pixel away
    # Pixel 0: surface = its own object (COEF, colour 1); background = its own second layer
    # and pixel 1's wall (COEF + near, colour 0.5).
    a_s, a_b = COEF, COEF + near
    want0 = (COEF * 1.0 + (1 - a_s) * 0.5 * a_b, a_s + (1 - a_s) * a_b)
    # Pixel 1: foreground = pixel 0's object (near, colour 1); surface = its own wall and
    # pixel 0's second layer (COEF + near, colour 0.5).
    a_f, a_s = near, COEF + near
    want1 = (near * 1.0 + (1 - a_f) * 0.5 * a_s, a_f + (1 - a_f) * a_s)
    np.testing.assert_allclose(out[0], [want0[0], want1[0]], rtol=1e-6)
    np.testing.assert_allclose(alpha[0], [want0[1], want1[1]], rtol=1e-6)


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
