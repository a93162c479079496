"""Float64 finite-difference checks of jax.grad through the whole renderer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import check_grad

import softjax as sj
from softjax._src.geometry import pairs, triangles

H, W = 12, 16
CFG = sj.RasterConfig(image_size=(H, W), sigma=1e-3, gamma=1e-2)
EYE = (0.7, 0.5, 2.6)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _scene():
    rng = np.random.default_rng(0)
    base = sj.ico_sphere(1)
    verts = np.asarray(base.verts, np.float64) * (1.0 + 0.15 * rng.standard_normal((42, 1)))
    colours = rng.uniform(0.1, 0.9, (42, 3))
    return verts, np.asarray(base.faces), colours, rng


def _loss_fn(verts, faces, colours, rng):
    """A scalar with random weights on every output channel, so no pixel is left out."""
    w = jnp.asarray(rng.standard_normal((H, W, 4)))

    def loss(verts=verts, colours=colours, eye=EYE, direction=(0.3, -1.0, -0.8)):
        mesh = sj.Mesh(verts, faces, colours)
        cam = sj.look_at(jnp.asarray(eye), (0.0, 0.1, 0.0), fov=55.0)
        lights = sj.Lights(0.4, [sj.DirectionalLight(jnp.asarray(direction), intensity=0.6)])
        rgba = sj.render(mesh, cam, CFG, lights=lights)
        return jnp.sum(w * rgba) + jnp.sum(w[..., 0] * sj.render_silhouette(mesh, cam, CFG))

    return loss


def test_grad_verts():
    verts, faces, colours, rng = _scene()
    loss = _loss_fn(verts, faces, colours, rng)
    check_grad(lambda v: loss(verts=v), verts, rng, 12)


def test_grad_colours():
    verts, faces, colours, rng = _scene()
    loss = _loss_fn(verts, faces, colours, rng)
    check_grad(lambda c: loss(colours=c), colours, rng, 8)


def test_grad_camera_eye():
    verts, faces, colours, rng = _scene()
    loss = _loss_fn(verts, faces, colours, rng)
    check_grad(lambda e: loss(eye=e), np.array(EYE), rng, 3)


def test_grad_light_direction():
    verts, faces, colours, rng = _scene()
    loss = _loss_fn(verts, faces, colours, rng)
    check_grad(lambda d: loss(direction=d), np.array([0.3, -1.0, -0.8]), rng, 3)


def test_outputs_follow_float64_verts():
    verts, faces, colours, _ = _scene()
    mesh = sj.Mesh(verts, faces, colours)
    cam = sj.look_at(EYE)
    assert sj.render(mesh, cam, CFG).dtype == jnp.float64
    assert sj.render_silhouette(mesh, cam, CFG).dtype == jnp.float64


def _corner_pixels(xy, rng, per_vertex):
    """For each triangle `xy (T, 3, 2)`, `per_vertex` points beyond each vertex (where the
    vertex itself is the triangle's closest point): `(T, 3, per_vertex, 2)`."""
    out = np.zeros((*xy.shape[:2], per_vertex, 2))
    for t, tri in enumerate(xy):
        for v in range(3):
            a, b = tri[(v + 1) % 3] - tri[v], tri[(v + 2) % 3] - tri[v]
            kept = []
            while len(kept) < per_vertex:
                d = rng.standard_normal(2) * rng.uniform(0.01, 0.5)
                if d @ a < -1e-3 and d @ b < -1e-3:  # strictly inside the vertex's region
                    kept.append(tri[v] + d)
            out[t, v] = kept
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distance_beyond_a_vertex_moves_only_that_vertex(dtype):
    """Beyond a vertex the signed squared distance is `-|p - V|^2`, and its gradient moves V
    alone, by `2 (p - V)`. The two edges that meet at V are equally near there (often to the
    last bit); a choice between them repeated per consumer could route the gradient through
    one edge's origin and the other's direction, moving the other vertices."""
    rng = np.random.default_rng(3)
    xy = rng.uniform(-1.0, 1.0, (24, 3, 2))
    pix = _corner_pixels(xy, rng, 8).reshape(len(xy), -1, 2)  # (T, 24, 2)

    def dist2(tri_xy, p):
        z = jnp.full((1, 3), 2.0, tri_xy.dtype)
        tri = triangles.setup(triangles.geometry_rows(tri_xy[None], z))
        return pairs.pair_geometry(p[:, :1], p[:, 1:], tri).dist2[:, 0]

    with jax.enable_x64(dtype == np.float64):
        jac = jax.jit(jax.vmap(jax.jacrev(dist2)))(jnp.asarray(xy, dtype), jnp.asarray(pix, dtype))
    jac = np.asarray(jac, np.float64).reshape(len(xy), 3, -1, 3, 2)  # (T, V, K, corner, xy)
    for v in range(3):
        want = np.zeros_like(jac[:, v])
        want[:, :, v] = 2.0 * (pix.reshape(len(xy), 3, -1, 2)[:, v] - xy[:, None, v])
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(jac[:, v], want, rtol=0, atol=tol)


@pytest.mark.parametrize("perspective", [True, False])
def test_pair_vjp_matches_reverse_mode(perspective):
    """`pairs.pair_vjp`, the written-out derivative of the pair geometry that the soft stream's
    backward pass uses, against reverse-mode autodiff of `pair_geometry` in float64: random
    cotangents of every output (signed distance, barycentric distance, depth, the three
    barycentrics) at pixels inside, outside and beyond the vertices of random triangles, one
    of them degenerate."""
    rng = np.random.default_rng(11)
    xy = rng.uniform(-1.0, 1.0, (12, 3, 2))
    xy[0, 2] = 0.25 * xy[0, 0] + 0.75 * xy[0, 1]  # collinear: a degenerate face
    z = rng.uniform(1.5, 4.0, (12, 3))
    pix = np.concatenate([rng.uniform(-1.3, 1.3, (96, 2)),
                          _corner_pixels(xy[1:4], rng, 4).reshape(-1, 2)])  # fmt: skip
    g = rng.normal(size=(7, len(pix), len(xy)))
    with jax.enable_x64(True):
        tri = triangles.setup(triangles.geometry_rows(jnp.asarray(xy), jnp.asarray(z)))
        px, py = jnp.asarray(pix[:, :1]), jnp.asarray(pix[:, 1:])
        diff = tri._fields[: triangles.DIFF]

        def loss(fields):
            frag = pairs.pair_geometry(px, py, tri._replace(**fields), perspective)
            wmin = jnp.where(jnp.isfinite(frag.wmin), frag.wmin, 0.0)
            outs = (frag.dist2, wmin, frag.z, *frag.bary)
            return sum(jnp.sum(gk * o) for gk, o in zip(g[1:], outs, strict=True))

        want = jax.grad(loss)({k: getattr(tri, k) for k in diff})
        parts = pairs.pair_parts(px, py, tri, perspective)
        got = pairs.pair_vjp(parts, tri, perspective, g_dist2=g[1], g_wmin=g[2], g_z=g[3],
                             g_bary=tuple(g[4:]))  # fmt: skip
        assert all(x is not None for x in got)
        got = np.stack([np.sum(np.asarray(x), axis=0) for x in got]).reshape(len(diff), 3, -1)
    for i, name in enumerate(diff):
        scale = np.max(np.abs(want[name]))
        np.testing.assert_allclose(got[i], want[name], rtol=0, atol=1e-12 * scale, err_msg=name)
