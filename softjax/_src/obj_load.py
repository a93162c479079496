"""Reading Wavefront OBJ files (with their MTL material and texture image) into a `Mesh`.

Parsing is done by trimesh, with Pillow for the texture images; both are an optional extra:
`pip install "softjax-renderer[io]"`."""

from __future__ import annotations

import errno
import io
import itertools
import os
import pathlib
import warnings

import jax.numpy as jnp
import numpy as np

from softjax._src.mesh import Mesh

_INSTALL_HINT = 'pip install "softjax-renderer[io]"'


def import_io_packages():
    """(trimesh, PIL.Image), imported on first use so that softjax itself does not need them."""
    try:
        import PIL.Image
        import trimesh
        import trimesh.exchange.obj
    except ImportError as e:
        if e.name not in ("PIL", "trimesh"):
            raise  # they are installed, but one of their own imports failed: that error says which
        raise ImportError(
            f"sj.load_obj and sj.save_obj need the optional packages trimesh and Pillow: "
            f"{_INSTALL_HINT}"
        ) from e
    return trimesh, PIL.Image


def obj_path(path) -> pathlib.Path:
    path = pathlib.Path(os.fspath(path))
    if path.suffix.lower() != ".obj":
        raise ValueError(f"expected a Wavefront .obj file name, got {str(path)!r}")
    return path


def load_obj(path, dtype=jnp.float32, texture_wrap: str = "clamp") -> Mesh:
    """Loads a Wavefront OBJ file, its MTL material and diffuse texture as a `Mesh`.

    What is read:
      - `v` positions and `f` faces, keeping the file's vertex order and indexing (vertices
        after the last one a face refers to may be dropped). Quads and larger polygons are
        split into triangles (as fans). Negative face indices count back from the last vertex
        before the face (-1 is that vertex). Normals (`vn`) are ignored: softjax computes its own.
      - Text in UTF-8 or, failing that, Latin-1 (comments and names may hold any 8-bit
        characters; OBJ keywords and numbers are ASCII).
      - Per-vertex colours written as `v x y z r g b` (stored by trimesh as 8-bit values).
      - When the faces have texture coordinates (`f v/vt`) and the material has a diffuse
        texture (`map_Kd`): `uvs` and `face_uvs` indexed separately from the positions, so a
        vertex on a UV seam stays one vertex, and the image as an `(Ht, Wt, 3)` texture in
        [0, 1] (row 0 is the image's top row; an alpha channel is dropped, grey images are
        repeated to RGB, 16-bit grey is scaled by 1/65535). The OBJ convention for `vt`
        (v = 0 at the image's bottom) is softjax's, so coordinates are used as written. The
        material's colours (`Kd`, `Ks`, ...) are not read; without a texture image the mesh is
        white (or has its vertex colours).
      - A file with several materials (`usemtl`) is read as one mesh when none of them has a
        texture image; several materials with textures raise `ValueError`.

    Args:
      path: the `.obj` file. The MTL file and texture images it names are looked up in its
        folder (trimesh 5 refuses names that lead outside it, such as `../textures/a.png`).
      dtype: floating dtype of the positions, colours, UVs and texture.
      texture_wrap: the returned mesh's `texture_wrap`, "clamp" or "wrap". OBJ files do not
        record it reliably (MTL's default is to repeat); pass "wrap" for tiled textures.

    Raises:
      ImportError: trimesh or Pillow is not installed (or a package trimesh needs is not).
      FileNotFoundError: `path` does not exist.
      ValueError: `path` is not a `.obj` name, a face has an index that is 0, not an integer
        or past the vertices (`v`, `vt`, `vn`) of the file, the file has no faces (e.g. only
        points or lines), the MTL file or a texture image it names cannot be read, or several
        textured materials.
    """
    trimesh, image_module = import_io_packages()
    path = obj_path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "No such OBJ file", str(path))
    text = _absolute_face_indices(_decode(path.read_bytes()), path)

    # maintain_order=True keeps the file's vertex indexing, but then trimesh stores one UV per
    # vertex and picks one of them at UV seams; the texture coordinates are taken from a
    # second load with maintain_order=False, which duplicates vertices at seams instead.
    scene = _load_scene(trimesh, image_module, path, text, maintain_order=True)
    meshes = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not meshes:
        raise ValueError(
            f"{path} has no triangle faces to render (found {_describe_scene(trimesh, scene)})"
        )
    images = [_texture_image(g) for g in meshes]
    if len(meshes) > 1 and any(im is not None for im in images):
        raise ValueError(
            f"{path} has {len(meshes)} parts with different materials, some with a texture "
            "image; load_obj reads one texture per mesh (bake them into one texture atlas)"
        )
    verts, faces, colors = _join_parts(meshes)

    uvs = face_uvs = texture = None
    if images[0] is not None:
        split = _load_scene(trimesh, image_module, path, text, maintain_order=False)
        (split,) = split.geometry.values()
        uv = getattr(split.visual, "uv", None)
        if uv is None:
            warnings.warn(
                f"{path} names a texture image but its faces have no texture coordinates "
                "(`f v/vt`); the texture is not loaded",
                stacklevel=2,
            )
        else:
            texture = _texture_array(images[0], path)
            uvs, face_uvs = np.asarray(uv, np.float64), np.asarray(split.faces)
            # Both loads list the same faces in the same order; should a trimesh version
            # differ, keep the second load's vertices (duplicated at seams) instead.
            if not np.array_equal(verts[faces], np.asarray(split.vertices)[face_uvs]):
                verts, faces, colors = _join_parts([split])

    return Mesh(
        jnp.asarray(verts, dtype=dtype),
        faces,
        colors=None if colors is None else jnp.asarray(colors, dtype=dtype),
        uvs=None if uvs is None else jnp.asarray(uvs, dtype=dtype),
        face_uvs=face_uvs,
        texture=None if texture is None else jnp.asarray(texture, dtype=dtype),
        texture_wrap=texture_wrap,
    )


def _decode(data: bytes) -> str:
    """The text of an OBJ or MTL file, in any ASCII-compatible encoding."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Keywords and numbers are ASCII, only comments and names can hold other bytes, and
        # every byte is a Latin-1 character: names in other 8-bit encodings come out as other
        # characters, but the geometry is read right. (trimesh would guess the encoding with
        # charset_normalizer, which it does not require.)
        return data.decode("latin-1")


_INDEXED = ("v", "vt", "vn")  # the lines that the indices of an `f` corner `v/vt/vn` count


def _absolute_face_indices(text: str, path) -> str:
    """`text` with every `f` index checked and negative (relative) ones made absolute.

    trimesh subtracts 1 from positive indices only, so index 0 would silently become vertex 1,
    and it counts negative indices back from the file's last vertex, not from the last one
    defined before the face. Lines that trimesh would not recognise as they are (indented, say)
    are rewritten, so that it counts exactly the `v`, `vt`, `vn` and `f` lines counted here.
    """
    lines = text.replace("\r\n", "\n").replace("\\\n", "").split("\n")
    defined = [0, 0, 0]  # `v`, `vt` and `vn` lines so far
    # Positive indices may refer to lines further down, so they are checked at the end.
    largest, largest_line = [0, 0, 0], [0, 0, 0]
    for number, line in enumerate(lines, 1):
        words = (line.split("#", 1)[0] if "#" in line else line).split()
        if not words or (words[0] != "f" and words[0] not in _INDEXED):
            continue
        rewrite = "#" in line or not line.startswith(words[0] + " ")
        if words[0] in _INDEXED:
            defined[_INDEXED.index(words[0])] += 1
        else:
            corners = [corner.split("/") for corner in words[1:]]
            # Column j holds the corners' indices of kind _INDEXED[j]; "" where there is none.
            for j, column in enumerate(itertools.zip_longest(*corners, fillvalue="")):
                try:
                    indices = [int(ref) for ref in column if ref]
                except ValueError:
                    indices = None
                if indices is None or j > 2 or (j == 0 and len(indices) < len(column)):
                    raise ValueError(
                        f"{path}, line {number}: expected `f` corners of integer indices "
                        f"`v`, `v/vt`, `v//vn` or `v/vt/vn`, got {' '.join(words[1:])!r}"
                    )
                if min(indices, default=1) > 0:  # the usual case: nothing to rewrite
                    if max(indices, default=0) > largest[j]:
                        largest[j], largest_line[j] = max(indices), number
                    continue
                for corner in corners:
                    if len(corner) <= j or not corner[j]:
                        continue
                    index = int(corner[j])
                    if index == 0 or -index > defined[j]:
                        kind = _INDEXED[j]
                        raise ValueError(
                            f"{path}, line {number}: `{kind}` index {index} is invalid: OBJ "
                            f"indices start at 1, and -1 is the last `{kind}` line before the "
                            f"face (there are {defined[j]} `{kind}` lines before it)"
                        )
                    if index < 0:
                        corner[j] = str(defined[j] + 1 + index)
                    elif index > largest[j]:
                        largest[j], largest_line[j] = index, number
                words[1:] = ["/".join(corner) for corner in corners]
                rewrite = True
        if rewrite:
            lines[number - 1] = " ".join(words)
    for kind, index, number, count in zip(_INDEXED, largest, largest_line, defined, strict=True):
        if index > count:
            raise ValueError(
                f"{path}, line {number}: `{kind}` index {index} is past the end: the file has "
                f"{count} `{kind}` lines"
            )
    return "\n".join(lines)


def _load_scene(trimesh, image_module, path: pathlib.Path, text: str, maintain_order: bool):
    resolver = _recording_resolver(trimesh, image_module, path)
    try:
        with warnings.catch_warnings():
            # trimesh's maintain_order path takes a nan-median over unused vertices.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"trimesh\.")
            scene = trimesh.load(
                io.StringIO(text),
                file_type="obj",
                resolver=resolver,
                force="scene",
                process=False,
                maintain_order=maintain_order,
            )
    except ImportError:
        raise  # a package trimesh needs for this file is missing: not a fault of the file
    except Exception as e:
        raise ValueError(f"could not read {path} as an OBJ file: {e}") from e
    if resolver.failed:
        name, error = next(iter(resolver.failed.items()))
        raise ValueError(
            f"{path} refers to {name!r}, which could not be read "
            f"({type(error).__name__}: {error}); MTL files and textures are looked up in "
            "the OBJ file's folder and the folders below it"
        )
    return scene


def _recording_resolver(trimesh, image_module, path: pathlib.Path):
    """trimesh's file resolver, remembering the MTL files and images it failed to read
    (trimesh itself skips them silently)."""

    class RecordingResolver(trimesh.resolvers.FilePathResolver):
        def __init__(self, source):
            super().__init__(source)
            self.failed = {}

        def get(self, name):
            try:
                data = super().get(name)
            except Exception as e:
                self.failed[name] = e
                raise
            if name.strip().lower().endswith(".mtl"):
                # trimesh reads the texture file names from this text and silently drops the
                # materials of MTL data it cannot decode.
                return _decode(data)
            try:  # a texture image (map_Kd)
                image_module.open(io.BytesIO(data))
            except Exception as e:
                self.failed[name] = e
            return data

    return RecordingResolver(str(path))


def _describe_scene(trimesh, scene) -> str:
    parts = []
    for g in scene.geometry.values():
        if isinstance(g, trimesh.PointCloud):
            parts.append(f"{len(g.vertices)} points and no `f` lines")
        elif isinstance(g, trimesh.Trimesh):
            parts.append(f"{len(g.vertices)} vertices and no faces")
        else:
            parts.append(type(g).__name__)
    return ", ".join(parts) or "no vertices or faces"


def _texture_image(mesh):
    material = getattr(mesh.visual, "material", None)
    image = getattr(material, "image", None)
    if image is None:
        image = getattr(material, "baseColorTexture", None)
    return image


def _texture_array(image, path) -> np.ndarray:
    """`(H, W, 3)` float64 in [0, 1], row 0 the image's top row."""
    try:
        if image.mode.startswith("I"):  # 16- or 32-bit grey
            grey = np.asarray(image, dtype=np.float64) / 65535.0
            rgb = np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=-1)
        else:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    except Exception as e:
        raise ValueError(f"could not read the texture image of {path}: {e}") from e
    if rgb.ndim != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"the texture image of {path} is empty ({image.size})")
    return rgb


def _vertex_colors(mesh):
    if getattr(mesh.visual, "kind", None) != "vertex":
        return None
    return np.asarray(mesh.visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0


def _join_parts(meshes):
    """(verts, faces, colors or None) of the parts of one OBJ file as one mesh."""
    verts = [np.asarray(m.vertices, dtype=np.float64) for m in meshes]
    faces = [np.asarray(m.faces, dtype=np.int64) for m in meshes]
    colors = [_vertex_colors(m) for m in meshes]
    longest = int(np.argmax([len(v) for v in verts]))
    if all(np.array_equal(v, verts[longest][: len(v)]) for v in verts):
        # With maintain_order, every part holds a prefix of the file's vertex list, so faces
        # index the longest one directly and shared vertices stay shared.
        return verts[longest], np.concatenate(faces), colors[longest]
    offsets = np.cumsum([0] + [len(v) for v in verts[:-1]])
    joined_colors = None
    if any(c is not None for c in colors):
        joined_colors = np.concatenate(
            [np.ones_like(v) if c is None else c for v, c in zip(verts, colors, strict=True)]
        )
    faces = np.concatenate([f + o for f, o in zip(faces, offsets, strict=True)])
    return np.concatenate(verts), faces, joined_colors
