"""OBJ files: round trips through save_obj / load_obj, a hand-written OBJ + MTL + PNG (the UV
and image-row conventions), vertex colours, several materials, and the errors."""

import re
import sys

import jax
import numpy as np
import pytest

import softjax as sj
from softjax._src.shading.texture import sample

pytest.importorskip("trimesh")
Image = pytest.importorskip("PIL.Image")

# "dense" compiles faster than the default tiled method for these tiny scenes.
CFG = sj.RasterConfig(image_size=(24, 24), sigma=1e-6, gamma=1e-4, method="dense")
RED, GREEN, BLUE, YELLOW = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0)


def _cube():
    """A textured cube whose sides show different cells of a 3 x 2 grid of one texture, so
    every corner vertex has a different UV on each of its sides (UV seams everywhere)."""
    corners = np.array([[x, y, z] for x in (-0.7, 0.7) for y in (-0.7, 0.7) for z in (-0.7, 0.7)])
    quads = np.array([[0, 1, 3, 2], [4, 5, 7, 6], [0, 1, 5, 4], [2, 3, 7, 6], [0, 2, 6, 4],
                      [1, 3, 7, 5]])  # fmt: skip
    tri = corners[quads[:, :3]]
    inward = np.sum(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]) * tri[:, 0], 1) < 0
    quads = np.where(inward[:, None], quads[:, ::-1], quads)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    cells = np.array([[(s % 3) / 3, (s // 3) / 2] for s in range(6)])
    uvs = (cells[:, None] + np.array([[0, 0], [1 / 3, 0], [1 / 3, 0.5], [0, 0.5]])).reshape(-1, 2)
    side = np.arange(6)[:, None] * 4
    face_uvs = np.concatenate([side + [0, 1, 2], side + [0, 2, 3]])
    texture = np.random.default_rng(0).integers(0, 256, (6, 9, 3)) / 255.0  # 8-bit exact
    return sj.Mesh(np.float32(corners), faces, uvs=np.float32(uvs), face_uvs=face_uvs,
                   texture=np.float32(texture))  # fmt: skip


def test_ico_sphere_round_trip_is_exact(tmp_path):
    mesh = sj.ico_sphere(1)
    path = sj.save_obj(tmp_path / "sphere.obj", mesh)
    assert path == tmp_path / "sphere.obj"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sphere.obj"]  # no MTL, no image
    v_lines = [line.split() for line in path.read_text().splitlines() if line.startswith("v ")]
    assert len(v_lines) == mesh.num_verts and all(len(v) == 4 for v in v_lines)  # no colours
    loaded = sj.load_obj(path)
    assert loaded.verts.dtype == np.float32
    np.testing.assert_array_equal(loaded.verts, mesh.verts)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    assert loaded.texture is None


def test_textured_round_trip_renders_the_same(tmp_path):
    mesh = _cube()
    path = sj.save_obj(tmp_path / "cube.obj", mesh)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.mtl", "cube.obj", "cube.png"]
    assert "map_Kd cube.png" in (tmp_path / "cube.mtl").read_text()
    loaded = sj.load_obj(path)
    # save_obj writes one UV per vertex: corners are split at the seams, same corner data.
    assert loaded.num_verts == 24 and loaded.num_faces == 12
    np.testing.assert_array_equal(loaded.verts[loaded.faces], mesh.verts[mesh.faces])
    np.testing.assert_array_equal(loaded.uvs[loaded.face_uvs], mesh.uvs[mesh.face_uvs])
    np.testing.assert_array_equal(loaded.texture, mesh.texture)
    cam = sj.look_at((2.0, 1.6, 2.6), fov=50.0)
    expected, got = sj.render(mesh, cam, CFG), sj.render(loaded, cam, CFG)
    assert float(expected[..., 3].mean()) > 0.2
    np.testing.assert_allclose(got, expected, atol=1e-5)


def _write_textured_quad(folder, texture_name="tex.png"):
    """A square in z = 0 with a 2 x 2 texture, written by hand. Vertex 1 (the first corner)
    appears with two texture indices of the same value, as at a UV seam."""
    pixels = np.array([[RED, GREEN], [BLUE, YELLOW]]) * 255  # row 0: the image's top row
    Image.fromarray(pixels.astype(np.uint8)).save(folder / "tex.png")
    (folder / "quad.mtl").write_text(f"newmtl paint\nKd 1 1 1\nmap_Kd {texture_name}\n")
    (folder / "quad.obj").write_text(
        "mtllib quad.mtl\n"
        "v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvt 0 0\n"
        "usemtl paint\nf 1/1 2/2 3/3\nf 1/5 3/3 4/4\n"
    )
    return folder / "quad.obj"


def test_hand_written_obj_follows_the_uv_and_image_conventions(tmp_path):
    mesh = sj.load_obj(_write_textured_quad(tmp_path), texture_wrap="wrap")
    assert mesh.texture_wrap == "wrap"
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])  # one vertex per `v`
    np.testing.assert_array_equal(mesh.verts[:, :2], [[-1, -1], [1, -1], [1, 1], [-1, 1]])
    np.testing.assert_array_equal(
        mesh.uvs[mesh.face_uvs], [[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]]
    )
    np.testing.assert_array_equal(mesh.texture, [[RED, GREEN], [BLUE, YELLOW]])
    # vt (0.25, 0.25) is the bottom-left texel's centre: the PNG's bottom-left pixel.
    np.testing.assert_array_equal(sample(mesh.texture, np.array([0.25, 0.25])), BLUE)
    np.testing.assert_array_equal(sample(mesh.texture, np.array([0.75, 0.75])), GREEN)
    # Seen from +z the square fills an orthographic view; clamped, each corner shows one texel
    # (pixels chosen off the diagonal edge between the two triangles).
    cam = sj.look_at((0.0, 0.0, 3.0), projection="orthographic")
    rgba = sj.render(mesh.replace(texture_wrap="clamp"), cam, CFG)
    for (i, j), colour in {(2, 2): RED, (2, 18): GREEN, (21, 5): BLUE, (21, 21): YELLOW}.items():
        np.testing.assert_allclose(rgba[i, j], [*colour, 1.0], atol=1e-5)


def test_vertex_colours_round_trip(tmp_path):
    verts = np.float32([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colors = np.float32(np.array([[255, 0, 0], [0, 128, 0], [0, 0, 64], [10, 20, 30]]) / 255)
    path = sj.save_obj(tmp_path / "tet.obj", sj.Mesh(verts, faces, colors))
    assert "v 1.0000000000 0.0000000000 0.0000000000 0.0000000000 0.50" in path.read_text()
    loaded = sj.load_obj(path)
    np.testing.assert_array_equal(loaded.verts, verts)
    np.testing.assert_array_equal(loaded.faces, faces)
    np.testing.assert_array_equal(loaded.colors, colors)


def test_untextured_materials_are_read_as_one_mesh(tmp_path):
    (tmp_path / "two.mtl").write_text("newmtl a\nKd 1 0 0\nnewmtl b\nKd 0 1 0\n")
    (tmp_path / "two.obj").write_text(
        "mtllib two.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nusemtl a\nf 1 2 3\nusemtl b\nf 2 4 3\n"
    )
    mesh = sj.load_obj(tmp_path / "two.obj")
    assert mesh.num_verts == 4  # vertices shared by both materials stay shared
    assert sorted(map(tuple, np.asarray(mesh.faces).tolist())) == [(0, 1, 2), (1, 3, 2)]
    assert mesh.colors is None  # the file has no vertex colours: the mesh has none


def test_errors(tmp_path, monkeypatch):
    missing = tmp_path / "nope.obj"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        sj.load_obj(missing)
    (tmp_path / "mesh.ply").write_text("ply\n")
    with pytest.raises(ValueError, match=r"\.obj"):
        sj.load_obj(tmp_path / "mesh.ply")
    with pytest.raises(ValueError, match=r"\.obj"):
        sj.save_obj(tmp_path / "mesh.stl", sj.ico_sphere(0))
    (tmp_path / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(ValueError, match="no triangle faces.*3 points"):
        sj.load_obj(tmp_path / "points.obj")

    with pytest.raises(ValueError, match="missing.png"):
        sj.load_obj(_write_textured_quad(tmp_path, texture_name="missing.png"))
    (tmp_path / "tex.png").write_bytes(b"not a png")
    (tmp_path / "quad.mtl").write_text("newmtl paint\nmap_Kd tex.png\n")
    with pytest.raises(ValueError, match="tex.png"):
        sj.load_obj(tmp_path / "quad.obj")

    sphere = sj.ico_sphere(0)
    with pytest.raises(ValueError, match="atlas"):
        sj.save_obj(tmp_path / "atlas.obj", sphere.replace(atlas=np.ones((20, 2, 2, 3))))

    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda m: sj.save_obj(tmp_path / "traced.obj", m))(sj.ico_sphere(0))

    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ImportError, match=re.escape('pip install "softjax-renderer[io]"')):
        sj.load_obj(tmp_path / "points.obj")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252"])
def test_obj_and_mtl_in_8_bit_encodings(tmp_path, encoding):
    # Non-ASCII bytes in comments, in the MTL, material and texture file names and in the
    # material's name; the image file's name is the same text in the file system's encoding.
    _write_textured_quad(tmp_path)
    (tmp_path / "tex.png").rename(tmp_path / "café.png")
    (tmp_path / "café.mtl").write_bytes(
        "newmtl peinture_é\n# matériaux\nKd 1 1 1\nmap_Kd café.png\n".encode(encoding)
    )
    obj = (tmp_path / "quad.obj").read_text()
    obj = obj.replace("quad.mtl", "café.mtl").replace("usemtl paint", "usemtl peinture_é")
    (tmp_path / "quad.obj").write_bytes(f"{obj}# café\n".encode(encoding))
    mesh = sj.load_obj(tmp_path / "quad.obj")
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    assert mesh.texture is not None, "the MTL file or its texture image was not read"
    np.testing.assert_array_equal(mesh.texture, [[RED, GREEN], [BLUE, YELLOW]])


def test_import_errors_while_loading_are_not_reported_as_bad_files(tmp_path, monkeypatch):
    (tmp_path / "tri.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    import trimesh.exchange.obj

    def fail(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'optional_dep'", name="optional_dep")

    monkeypatch.setattr(trimesh.exchange.obj, "_parse_vertices", fail)
    with pytest.raises(ModuleNotFoundError, match="No module named 'optional_dep'"):
        sj.load_obj(tmp_path / "tri.obj")


def test_broken_trimesh_is_not_reported_as_missing(tmp_path, monkeypatch):
    (tmp_path / "tri.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    # A trimesh whose own imports fail.
    (tmp_path / "broken" / "trimesh").mkdir(parents=True)
    (tmp_path / "broken" / "trimesh" / "__init__.py").write_text("import optional_dep\n")
    monkeypatch.syspath_prepend(tmp_path / "broken")
    for name in [m for m in sys.modules if m == "trimesh" or m.startswith("trimesh.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ModuleNotFoundError, match="No module named 'optional_dep'") as error:
        sj.load_obj(tmp_path / "tri.obj")
    assert "softjax-renderer[io]" not in str(error.value)


def test_relative_face_indices_count_back_from_the_last_vertex_so_far(tmp_path):
    _write_textured_quad(tmp_path)
    (tmp_path / "quad.obj").write_text(
        "mtllib quad.mtl\nusemtl paint\n"
        "v -1 -1 0\nv 1 -1 0\nv 1 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nf -3/-3 -2/-2 -1/-1\n"
        "v -1 1 0\nvt 0 1\nvt 0 0\nf 1/-1 -2/3 -1/-2\n"
    )
    mesh = sj.load_obj(tmp_path / "quad.obj")
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(mesh.verts[:, :2], [[-1, -1], [1, -1], [1, 1], [-1, 1]])
    np.testing.assert_array_equal(
        mesh.uvs[mesh.face_uvs], [[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]]
    )
    # With normals (`v//vn`), which are not read, and indented lines with comments.
    (tmp_path / "tri.obj").write_text(
        "v 0 0 0\n  v 1 0 0 # x\nv\t0 1 0\nvn 0 0 1\nf -3//-1 -2//1 -1//-1  # one face\n"
        "v 0 0 1\nf -4//1 -3//1 -1//1\n"
    )
    mesh = sj.load_obj(tmp_path / "tri.obj")
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 1, 3]])
    np.testing.assert_array_equal(mesh.verts[3], [0, 0, 1])


@pytest.mark.parametrize(
    ("face", "message"),
    [
        ("f 0 1 2", r"line 6: `v` index 0 is invalid: OBJ indices start at 1"),
        ("f 1 2 99", r"line 6: `v` index 99 .* 3 `v` lines"),
        ("f -4 -2 -1", r"line 6: `v` index -4 .* 3 `v` lines before it"),
        ("f 1/0 2/1 3/2", r"line 6: `vt` index 0 is invalid: OBJ indices start at 1"),
        ("f 1/1 2/2 3/9", r"line 6: `vt` index 9 .* 2 `vt` lines"),
        ("f 1/1 2/2 3/-3", r"line 6: `vt` index -3 .* 2 `vt` lines before it"),
        ("f 1 2 x", r"line 6: expected `f` corners of integer indices .*, got '1 2 x'"),
    ],
)
def test_invalid_face_indices(tmp_path, face, message):
    path = tmp_path / "bad.obj"
    path.write_text(f"v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\n{face}\n")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ", " + message):
        sj.load_obj(path)
