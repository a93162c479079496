"""softjax: a JAX-native, purely functional, SoftRasterizer-style differentiable mesh renderer.

import softjax as sj
mesh = sj.ico_sphere(3)
cam = sj.look_at(eye=(0.0, 0.0, 3.0), at=(0.0, 0.0, 0.0))
cfg = sj.RasterConfig(image_size=(64, 64), sigma=1e-4, gamma=1e-4)
rgba = sj.render(mesh, cam, cfg, lights=sj.Lights())        # (64, 64, 4)
"""

from softjax import coverage, io, losses
from softjax._src.camera import Camera, look_at
from softjax._src.config import RasterConfig
from softjax._src.hard.fragments import Fragments
from softjax._src.mesh import Mesh, ico_sphere
from softjax._src.mesh_batches import join_meshes, stack_meshes
from softjax._src.ops import (
    antialias,
    edge_topology,
    fit_pair_capacity,
    interpolate,
    mipmaps,
    rasterize,
    texture,
)
from softjax._src.render import render, render_silhouette
from softjax._src.shading.environment import EnvironmentLight
from softjax._src.shading.lights import DirectionalLight, Lights, Material, PointLight
from softjax._src.shading.pbr import PBRMaterial
from softjax._src.shading.sh import SHLight
from softjax._src.splatting import splat
from softjax._src.texels import texel_coverage
from softjax._src.topology import EdgeTopology
from softjax.io import load_obj, save_obj

__version__ = "0.1.0"

__all__ = [
    "Camera",
    "DirectionalLight",
    "EdgeTopology",
    "EnvironmentLight",
    "Fragments",
    "Lights",
    "Material",
    "Mesh",
    "PBRMaterial",
    "PointLight",
    "RasterConfig",
    "SHLight",
    "antialias",
    "coverage",
    "edge_topology",
    "fit_pair_capacity",
    "ico_sphere",
    "interpolate",
    "io",
    "join_meshes",
    "load_obj",
    "look_at",
    "losses",
    "mipmaps",
    "rasterize",
    "render",
    "render_silhouette",
    "save_obj",
    "splat",
    "stack_meshes",
    "texel_coverage",
    "texture",
]
