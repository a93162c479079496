"""What the entry points do to their inputs first: type and shape checks, the dtype policy, and
the blur overrides."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from softjax._src.camera import Camera
from softjax._src.checks import as_finite_real, host_values
from softjax._src.config import RasterConfig
from softjax._src.mesh import Mesh
from softjax._src.shading.lights import Lights, Material
from softjax._src.shading.pbr import PBRMaterial
from softjax._src.soft.tconorms import T_CONORM_P, check_t_conorm_p
from softjax._src.topology import EdgeTopology


def check_args(mesh, camera, cfg, lights=None, material=None) -> None:
    for value, cls, name in ((mesh, Mesh, "mesh"), (camera, Camera, "camera"),
                             (cfg, RasterConfig, "cfg")):  # fmt: skip
        if not isinstance(value, cls):
            got = type(value).__name__
            raise TypeError(f"`{name}` must be a softjax {cls.__name__}, got {got}")
    if lights is not None and not isinstance(lights, Lights):
        raise TypeError(f"`lights` must be a softjax Lights or None, got {type(lights).__name__}")
    if material is not None:
        kind = PBRMaterial if cfg.shading == "pbr" else Material
        if not isinstance(material, kind):
            raise TypeError(
                f'`material` must be a softjax {kind.__name__} under shading="{cfg.shading}", '
                f"got {type(material).__name__}"
            )
        if lights is None:
            raise ValueError("`material` needs `lights`: without lights colours are unlit")
    if mesh.verts.ndim != 2:
        raise ValueError(
            f"`mesh.verts` must have shape (V, 3), got {tuple(mesh.verts.shape)}; to render "
            "a batch of meshes use jax.vmap"
        )
    if camera.eye.ndim != 1:
        raise ValueError(
            f"`camera` holds a batch of cameras (eye shape {tuple(camera.eye.shape)}); "
            "render a batch with jax.vmap(sj.render, in_axes=(None, 0, None))"
        )


def topology_of(topology, mesh: Mesh):
    """`topology.across` for the hard path, checked against `mesh`; None stays None."""
    if topology is None:
        return None
    if not isinstance(topology, EdgeTopology):
        raise TypeError(f"`topology` must be sj.edge_topology(mesh), got {type(topology).__name__}")
    shape = tuple(topology.across.shape)
    if shape != (mesh.num_faces, 3):
        raise ValueError(
            f"`topology` was built for {shape[0]} faces, the mesh has {mesh.num_faces}: "
            "build it with sj.edge_topology(mesh) for this mesh"
        )
    return topology.across


def compute_dtype(dtype):
    """The precision geometry, shading and reductions run in: at least float32.

    Half-precision coordinates cannot resolve pixels (float16 has 11 bits), and sums over
    many faces lose what little they have, so float16 and bfloat16 inputs are rendered in
    float32 and the images are returned in the input's dtype; float64 stays float64.
    """
    return jnp.promote_types(dtype, jnp.float32)


def in_dtype(tree, dtype):
    """`tree` with its floating leaves cast to `dtype` (integer leaves kept)."""

    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def blur_values(cfg: RasterConfig, sigma, gamma, t_conorm_p):
    """`(sigma, gamma, t_conorm_p)`: the overrides where given (checked where their values
    can be read), else `cfg`'s (1 for a T-conorm without a parameter, which ignores it)."""
    if t_conorm_p is not None and cfg.alpha not in T_CONORM_P:
        raise ValueError(f'alpha="{cfg.alpha}" takes no `t_conorm_p`')
    p = 1.0 if cfg.p is None else cfg.p
    out = []
    for name, value, default in (("sigma", sigma, cfg.sigma), ("gamma", gamma, cfg.gamma),
                                 ("t_conorm_p", t_conorm_p, p)):  # fmt: skip
        if value is None:
            out.append(default)
            continue
        if isinstance(value, (bool, str)) or not (
            isinstance(value, (int, float)) or jnp.issubdtype(jnp.result_type(value), jnp.number)
        ):
            raise TypeError(f"`{name}` must be a real scalar, got {type(value).__name__}")
        if jnp.ndim(value) != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {jnp.shape(value)}")
        v = host_values(value)
        if v is not None and name == "t_conorm_p":
            check_t_conorm_p(cfg.alpha, as_finite_real(v, name))
        elif v is not None:
            as_finite_real(v, name, positive=True)
        out.append(value)
    return tuple(out)
