"""UV conventions: `sj.texture(..., convention=)` against transcriptions of PyTorch3D's and
nvdiffrast's documented sampling rules, and a cube whose six UV charts meet at its edges,
rendered without a seam in each convention."""

import jax
import numpy as np
import pytest
import reference as ref

import softjax as sj


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _bilinear_at(img, x, y, wrap):
    """Bilinear lookup of `img (H, W, C)` at continuous texel coordinates `x` (column) and
    `y` (row), texel centres at integers; indices clamped or wrapped."""
    h, w = img.shape[:2]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]

    def at(r, c):
        if wrap:
            return img[r % h, c % w]
        return img[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]

    return ((at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx) * (1 - fy)
            + (at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx) * fy)  # fmt: skip


def np_pytorch3d(tex, uv):
    """PyTorch3D's `TexturesUV.sample_textures` with its defaults, from its documentation and
    `torch.nn.functional.grid_sample`'s: the map's rows are flipped, the grid is `2 uv - 1`,
    `align_corners=True` unnormalises `x = (g + 1) / 2 (W - 1)` (-1 and 1 are the centres
    of the corner texels), `padding_mode="border"` clamps the coordinates to the image,
    `mode="bilinear"`."""
    img = tex[::-1]
    h, w = img.shape[:2]
    gx, gy = uv[..., 0] * 2 - 1, uv[..., 1] * 2 - 1
    x = np.clip((gx + 1) / 2 * (w - 1), 0, w - 1)
    y = np.clip((gy + 1) / 2 * (h - 1), 0, h - 1)
    return _bilinear_at(img, x, y, wrap=False)


def np_nvdiffrast(tex, uv, wrap, nearest=False):
    """nvdiffrast's `texture` (2D, no mipmaps), from its documented rule: with "wrap" the UVs
    are first reduced to [0, 1); texel space is `u W - 0.5`, `v H - 0.5` on the array as
    given (row 0 at v = 0); "clamp" clamps to the centres of the edge texels; "nearest"
    reads texel `floor(u W)`, `floor(v H)`, clamped."""
    h, w = tex.shape[:2]
    u, v = uv[..., 0], uv[..., 1]
    if wrap:
        u, v = u - np.floor(u), v - np.floor(v)
    if nearest:
        col = np.clip(np.floor(u * w).astype(int), 0, w - 1)
        row = np.clip(np.floor(v * h).astype(int), 0, h - 1)
        return tex[row, col]
    x, y = u * w - 0.5, v * h - 0.5
    if not wrap:
        x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    return _bilinear_at(tex, x, y, wrap)


def test_conventions_match_their_projects_rules():
    rng = np.random.default_rng(0)
    tex = rng.uniform(0, 1, (7, 10, 3))
    uv = rng.uniform(-0.3, 1.3, (500, 2))
    uv[:8] = [[0, 0], [1, 1], [0, 1], [1, 0], [0.5, 0.5], [0.05, 0.95], [1e-9, 1 - 1e-9], [1, 0.5]]
    got = sj.texture(tex, uv, convention="pytorch3d")
    np.testing.assert_allclose(got, np_pytorch3d(tex, uv), atol=1e-12, rtol=0)
    for wrap in ("clamp", "wrap"):
        got = sj.texture(tex, uv, convention="nvdiffrast", wrap=wrap)
        np.testing.assert_allclose(got, np_nvdiffrast(tex, uv, wrap == "wrap"), atol=1e-12,
                                   rtol=0, err_msg=wrap)  # fmt: skip
        got = sj.texture(tex, uv, convention="nvdiffrast", wrap=wrap, filter="nearest")
        np.testing.assert_array_equal(got, np_nvdiffrast(tex, uv, wrap == "wrap", True))
    # The corners: PyTorch3D's uv (0, 0) is the centre of the bottom-left texel, (1, 1) of
    # the top-right; nvdiffrast's texel (0, 0) holds v = 0.
    np.testing.assert_allclose(sj.texture(tex, [[0.0, 0.0], [1.0, 1.0]], convention="pytorch3d"),
                               [tex[-1, 0], tex[0, -1]], atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(sj.texture(tex, [[0.05, 0.07]], convention="nvdiffrast"),
                               [tex[0, 0]], atol=1e-12)  # fmt: skip
    # The mipmapped filters read the same point; the Jacobian is mapped along.
    jac = rng.normal(0, 0.05, (500, 2, 2))
    for conv, flip in (("nvdiffrast", True), ("opengl", False)):
        mapped = uv * [1, -1] + [0, 1] if flip else uv
        got = sj.texture(tex, uv, jac, filter="trilinear", convention=conv)
        want = sj.texture(tex, mapped, jac * np.array([1, -1 if flip else 1])[:, None],
                          filter="trilinear")  # fmt: skip
        np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="convention"):
        sj.texture(tex, uv, convention="directx")
    with pytest.raises(ValueError, match="wrap"):
        sj.texture(tex, uv, convention="pytorch3d", wrap="wrap")


# Texel-space position of the sample point, column x and row y of the stored array, per
# convention (texel centres at integers), and its inverse.
_TEXEL = {
    "opengl": (lambda u, w: u * w - 0.5, lambda v, h: (1 - v) * h - 0.5),
    "pytorch3d": (lambda u, w: u * (w - 1), lambda v, h: (1 - v) * (h - 1)),
    "nvdiffrast": (lambda u, w: u * w - 0.5, lambda v, h: v * h - 0.5),
}
_UV = {
    "opengl": (lambda x, w: (x + 0.5) / w, lambda y, h: 1 - (y + 0.5) / h),
    "pytorch3d": (lambda x, w: x / (w - 1), lambda y, h: 1 - y / (h - 1)),
    "nvdiffrast": (lambda x, w: (x + 0.5) / w, lambda y, h: (y + 0.5) / h),
}
CHART, GUTTER = 12, 1  # texels per side of a chart, and of the ring around it


def _colour(p):
    """A smooth colour field over space."""
    return 0.5 + 0.4 * np.sin(p @ np.array([[1.1, -0.7, 0.4], [0.5, 1.3, -0.9],
                                             [-0.8, 0.6, 1.2]]) + [0.3, 1.1, 2.0])  # fmt: skip


def _seamed_cube(convention):
    """A cube of half-size 1 whose six sides have separate charts in a 3 x 2 grid of one
    texture (each chart surrounded by a ring of texels that extends its side's colour), the
    texture written for `convention`: every texel holds the colour field at the point of its
    side that the convention's rule places at its centre."""
    cell = CHART + 2 * GUTTER
    h, w = 2 * cell, 3 * cell
    tex = np.zeros((h, w, 3))
    verts, faces, uvs = [], [], []
    (ux, uy), (xu, _) = _UV[convention], _TEXEL[convention]
    for side in range(6):
        axis, sign = side // 2, 1 - 2 * (side % 2)
        n = np.eye(3)[axis] * sign
        t1, t2 = np.eye(3)[(axis + 1) % 3], np.eye(3)[(axis + 2) % 3] * sign
        c0, r0 = (side % 3) * cell + GUTTER, (side // 3) * cell + GUTTER
        # Side coordinates (a, b) in [0, 1]^2 <-> texel-space x = c0 - 0.5 + CHART a, and
        # y = r0 - 0.5 + CHART b (the chart's texels, centres inside, edges on its border).
        rows, cols = np.mgrid[r0 - GUTTER : r0 + CHART + GUTTER, c0 - GUTTER : c0 + CHART + GUTTER]
        a, b = (cols - c0 + 0.5) / CHART, (rows - r0 + 0.5) / CHART
        point = n + (2 * a[..., None] - 1) * t1 + (2 * b[..., None] - 1) * t2
        tex[rows, cols] = _colour(point)
        base = len(verts)
        for a, b in ((0, 0), (1, 0), (1, 1), (0, 1)):
            verts.append(n + (2 * a - 1) * t1 + (2 * b - 1) * t2)
            uvs.append([ux(c0 - 0.5 + CHART * a, w), uy(r0 - 0.5 + CHART * b, h)])
        faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    # The texel-space rules and their inverses agree.
    uvs = np.array(uvs)
    x = xu(uvs[:, 0], w)
    assert np.all((x >= GUTTER - 0.5) & (x <= w - GUTTER - 0.5))
    # One closed surface: the sides share their corners (8 vertices), their UVs do not.
    corners, index = np.unique(np.round(np.array(verts), 6), axis=0, return_inverse=True)
    faces = np.array(faces)
    return corners, index.reshape(-1)[faces], uvs, faces, tex


def test_a_seamed_cube_renders_without_seams_in_each_convention():
    """Rendered (hard visibility, 48 x 48) with its own convention, each cube shows the colour
    field at the ray-cast surface point everywhere, the edges where two charts meet included
    (bilinear error only, below 0.01); read with another convention (a half-texel shift or a
    flip) it does not."""
    size, eye = (48, 48), (2.6, 1.9, 3.1)
    cam = sj.look_at(eye, fov=45.0)
    errors = {}
    for made in _TEXEL:
        verts, faces, uvs, face_uvs, tex = _seamed_cube(made)
        hits = ref.raycast(verts, faces, np.zeros_like(verts), eye, (0, 0, 0), (0, 1, 0), 45.0,
                           0.1, size)  # fmt: skip
        inner = hits.mask & ~ref.boundary_mask(hits.mask)
        expected = _colour(hits.position[inner])
        for read in _TEXEL:
            mesh = sj.Mesh(verts, faces, uvs=uvs, face_uvs=face_uvs, texture=tex,
                           uv_convention=read)  # fmt: skip
            cfg = sj.RasterConfig(size, visibility="hard")
            rgb = np.asarray(sj.render(mesh, cam, cfg))[..., :3]
            errors[made, read] = np.abs(rgb[inner] - expected).max()
    for made in _TEXEL:
        assert errors[made, made] < 0.01, errors
        for read in _TEXEL:
            if read != made:
                assert errors[made, read] > 4 * errors[made, made], (made, read, errors)


def test_uv_convention_is_checked_and_kept():
    verts, faces, uvs, face_uvs, tex = _seamed_cube("pytorch3d")
    with pytest.raises(ValueError, match="uv_convention"):
        sj.Mesh(verts, faces, uvs=uvs, face_uvs=face_uvs, texture=tex, uv_convention="gl")
    with pytest.raises(ValueError, match="wrap"):
        sj.Mesh(verts, faces, uvs=uvs, face_uvs=face_uvs, texture=tex, uv_convention="pytorch3d",
                texture_wrap="wrap")  # fmt: skip
    mesh = sj.Mesh(verts, faces, uvs=uvs, face_uvs=face_uvs, texture=tex, uv_convention="pytorch3d")
    assert mesh.replace(verts=verts * 2).uv_convention == "pytorch3d"
    assert jax.tree.map(lambda x: x, mesh).uv_convention == "pytorch3d"
    assert sj.stack_meshes([mesh, mesh]).uv_convention == "pytorch3d"
    assert sj.join_meshes([mesh, mesh]).uv_convention == "pytorch3d"
    other = mesh.replace(uv_convention="opengl")
    for combine in (sj.stack_meshes, sj.join_meshes):
        with pytest.raises(ValueError, match="uv_convention"):
            combine([mesh, other])


def test_save_obj_writes_opengl_uvs(tmp_path):
    """An OBJ file holds OpenGL UVs: a mesh in another convention is written so that, read
    back, its UVs address the same points of the texture."""
    pytest.importorskip("trimesh")
    verts, faces, uvs, face_uvs, tex = _seamed_cube("nvdiffrast")
    for convention in ("nvdiffrast", "pytorch3d"):
        mesh = sj.Mesh(np.float32(verts), faces, uvs=np.float32(uvs), face_uvs=face_uvs,
                       texture=np.float32(tex), uv_convention=convention)  # fmt: skip
        sj.save_obj(tmp_path / f"{convention}.obj", mesh)
        back = sj.load_obj(tmp_path / f"{convention}.obj")
        assert back.uv_convention == "opengl"
        # Each corner's point of the (8-bit) texture, by the two meshes' own rules.
        ours = sj.texture(back.texture, np.asarray(mesh.uvs)[face_uvs], convention=convention)
        theirs = sj.texture(back.texture, np.asarray(back.uvs)[np.asarray(back.face_uvs)])
        np.testing.assert_allclose(theirs, ours, atol=1e-5, err_msg=convention)
