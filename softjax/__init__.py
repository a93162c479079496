"""softjax: a JAX-native, purely functional, SoftRasterizer-style differentiable mesh renderer.

import softjax as sj
mesh = sj.ico_sphere(3)
cam = sj.look_at(eye=(0.0, 0.0, 3.0), at=(0.0, 0.0, 0.0))
cfg = sj.RasterConfig(image_size=(64, 64), sigma=1e-4, gamma=1e-4)
rgba = sj.render(mesh, cam, cfg, lights=sj.Lights())        # (64, 64, 4)
"""

from softjax import coverage, losses
from softjax.camera import Camera, look_at
from softjax.config import RasterConfig
from softjax.hard import Fragments
from softjax.io import load_obj, save_obj
from softjax.mesh import Mesh, ico_sphere, join_meshes, stack_meshes
from softjax.render import (
    antialias,
    fit_pair_capacity,
    interpolate,
    rasterize,
    render,
    render_silhouette,
)
from softjax.shading import DirectionalLight, Lights, Material, PointLight

__version__ = "0.1.0"

__all__ = [
    "Camera",
    "DirectionalLight",
    "Fragments",
    "Lights",
    "Material",
    "Mesh",
    "PointLight",
    "RasterConfig",
    "antialias",
    "coverage",
    "fit_pair_capacity",
    "ico_sphere",
    "interpolate",
    "join_meshes",
    "load_obj",
    "look_at",
    "losses",
    "rasterize",
    "render",
    "render_silhouette",
    "save_obj",
    "stack_meshes",
]
