"""Wavefront OBJ files (with their MTL material and texture image) to and from `Mesh`.

Parsing and writing are done by trimesh, with Pillow for the texture images; both are an
optional extra: `pip install "softjax-renderer[io]"`.
"""

from softjax._src.obj_load import load_obj
from softjax._src.obj_save import save_obj

__all__ = ["load_obj", "save_obj"]
