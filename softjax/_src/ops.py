"""The building blocks for shading of one's own (nvdiffrast's four ops): `rasterize`,
`interpolate`, `texture`, `antialias`; and `fit_pair_capacity` to size the tiled path's
binning."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from softjax._src.camera import Camera, to_camera
from softjax._src.checks import as_choice, as_int, is_concrete
from softjax._src.config import RasterConfig
from softjax._src.errors import explain_sharding_errors, reverse_only
from softjax._src.geometry.clip import PIECES, project
from softjax._src.hard.fragments import (
    Fragments,
    Planes,
    face_rows,
    first_layer,
    interpolate_fragments,
    screen_derivatives,
)
from softjax._src.inputs import check_args, compute_dtype, in_dtype, topology_of
from softjax._src.mesh import Mesh
from softjax._src.pipeline.hard import antialias_image, rasterize_planes
from softjax._src.shading.texture import (
    FILTERS,
    MIPMAPPED,
    UV_CONVENTIONS,
    opengl_uv,
    opengl_uv_scale,
    sample_filtered,
)
from softjax._src.shading.texture import mipmaps as build_mipmaps
from softjax._src.tiles.bins import bin_faces, face_data, face_reach2, num_pairs, static_settings
from softjax._src.topology import EdgeTopology, neighbours


@explain_sharding_errors
def rasterize(mesh: Mesh, camera: Camera, cfg: RasterConfig, layers: int = 1) -> Fragments:
    """Hard rasterization: the faces seen at each pixel centre, nearest first.

    A z-buffer over the near-plane-clipped faces (as in `render`): the nearest face whose
    interior holds each pixel centre. A centre on an edge shared by two faces belongs to
    exactly one of them (a top-left rule) and equal depths go to the lower face index, whatever
    the method, tiles, chunks or batch. With `layers=K`, layer k + 1 is the nearest face after
    layer k in (depth, index) order (depth peeling), PyTorch3D's `faces_per_pixel` layout.
    `cfg.visibility`, `sigma` and `gamma` play no part; `cfg.cull_backfaces` drops faces that
    appear clockwise, and `method="tiled"` bins faces to the tiles under their screen boxes.

    Args:
      mesh: the mesh.
      camera: a single camera (use `jax.vmap` for a batch).
      cfg: static settings (image size, method, tiles).
      layers: how many surfaces to find per pixel (static), at least 1.

    Returns:
      `sj.Fragments`: `face_id` `(H, W)` int32 (-1 where none), `bary` `(H, W, 3)`
      perspective-correct barycentrics of the face's corners, `depth` `(H, W)` view depth
      (`camera.far` where none) and `triangle` (the clipped triangle, for `sj.antialias`);
      with `layers > 1`, `(H, W, K)`, `(H, W, K, 3)`, `(H, W, K)` and `(H, W, K)`. `bary`
      and `depth` are in the dtype of `mesh.verts` (computed in at least float32) and
      differentiable with respect to the vertices and the camera.
    """
    check_args(mesh, camera, cfg)
    layers = as_int(layers, "layers", minimum=1)
    out_dtype = mesh.verts.dtype
    dtype = compute_dtype(out_dtype)
    mesh, camera = in_dtype((mesh, camera), dtype)
    if mesh.num_faces == 0:
        none = jnp.full((*cfg.image_size, layers), -1, jnp.int32)
        frags = Fragments(none, jnp.zeros((*none.shape, 3), dtype),
                          jnp.full(none.shape, camera.far, dtype), none)  # fmt: skip
    else:
        frags = reverse_only(rasterize_planes, mesh, camera, cfg, layers)
    if layers == 1:
        frags = first_layer(frags)
    return frags._replace(bary=frags.bary.astype(out_dtype), depth=frags.depth.astype(out_dtype))


def check_fragments(fragments, mesh: Mesh) -> None:
    """Raises TypeError unless `fragments` are `sj.Fragments` and `mesh` a softjax Mesh."""
    if not isinstance(fragments, Fragments):
        raise TypeError(
            f"`fragments` must be the sj.Fragments of sj.rasterize, got {type(fragments).__name__}"
        )
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a softjax Mesh, got {type(mesh).__name__}")


def interpolate(values, fragments: Fragments, mesh: Mesh, camera: Camera | None = None):
    """Attributes at each fragment, interpolated with its barycentrics, and optionally their
    screen-space derivatives.

    Args:
      values: per-vertex `(V, C)` attributes (colours, UVs, normals, positions, features) or
        per-corner `(F, 3, C)` ones (e.g. `mesh.uvs[mesh.face_uvs]`).
      fragments: `sj.rasterize(mesh, ...)`'s result, with or without layers.
      mesh: the mesh that was rasterized.
      camera: the camera it was rasterized with, to also return the derivatives.

    Returns:
      `(H, W, C)` (with layers `(H, W, K, C)`), zero where there is no face; differentiable
      in `values` and, through the barycentrics, in the vertices and camera. With `camera`,
      the pair `(values, derivatives)`, `derivatives (H, W, C, 2)` (`(H, W, K, C, 2)`): the
      exact derivative of each pixel's face's perspective-correct interpolation per pixel
      step, `[..., 0]` one column to the right and `[..., 1]` one row down (zero where there
      is no face). For UVs this is the `uv_jacobian` of `sj.texture`:

        uv, duv = sj.interpolate(mesh.uvs[mesh.face_uvs], frags, mesh, cam)
        rgb = sj.texture(mesh.texture, uv, duv, filter="trilinear")
    """
    check_fragments(fragments, mesh)
    values = jnp.asarray(values)
    v, f = mesh.verts.shape[0], mesh.num_faces
    if not (values.ndim == 2 and values.shape[0] == v) and not (
        values.ndim == 3 and values.shape[:2] == (f, 3)
    ):
        raise ValueError(
            f"`values` must be per-vertex ({v}, C) or per-corner ({f}, 3, C) attributes of the "
            f"mesh, got shape {tuple(values.shape)}"
        )
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(fragments.bary.dtype)
    out = reverse_only(interpolate_fragments, values, fragments, mesh.faces)
    if camera is None:
        return out
    if not isinstance(camera, Camera):
        raise TypeError(f"`camera` must be a softjax Camera, got {type(camera).__name__}")
    dtype = compute_dtype(fragments.bary.dtype)
    mesh, camera, values = in_dtype((mesh, camera, values), dtype)
    rows = face_rows(to_camera(camera, mesh.verts), mesh.faces, camera.orthographic)
    corner = values[mesh.faces] if values.ndim == 2 else values
    image_size = fragments.face_id.shape[:2]
    derivs = screen_derivatives(corner, fragments.face_id, rows, camera, image_size)
    return out, derivs.astype(out.dtype)


def _texture_image(tex, name: str):
    tex = jnp.asarray(tex)
    if tex.ndim != 3 or not jnp.issubdtype(tex.dtype, jnp.floating):
        raise ValueError(
            f"`{name}` must be a floating (Ht, Wt, C) image, got {tex.dtype}{list(tex.shape)}"
        )
    if 0 in tex.shape:
        raise ValueError(f"`{name}` must not be empty, got shape {tuple(tex.shape)}")
    return tex


def texture(tex, uv, uv_jacobian=None, *, filter: str = "linear", wrap: str = "clamp",
            mips=None, max_aniso: int = 8, convention: str = "opengl") -> jax.Array:  # fmt: skip
    """Samples of a texture image at UV coordinates, channel-last: nearest, bilinear,
    trilinear or anisotropic (both mipmapped).

    The convention of OBJ files and OpenGL, the one `Mesh(uvs=..., texture=...)` renders with:
    u = 0 is the image's left edge, v = 0 its bottom edge, and texel (i, j) (row 0 at the top)
    is centred at `u = (j + 0.5) / Wt`, `v = 1 - (i + 0.5) / Ht`. The textured shading of
    `render` samples with this same function's bilinear filter.

    Filters:
      "nearest": the texel holding the point, column `floor(u Wt)`, row `floor((1 - v) Ht)`.
      "linear": bilinear between the four texel centres around the point.
      "trilinear": bilinear in the two mip levels (`mipmaps`) nearest the level of detail
        `lambda`, blended linearly. `lambda = log2` of the major axis, in texels, of the
        pixel's footprint, the ellipse that `uv_jacobian` maps the unit pixel to (as
        nvdiffrast computes it): with `dX = (du/dx Wt, dv/dx Ht)` and `dY` likewise for y,
        `A = |dX|^2`, `B = |dY|^2`, `C = dX . dY`, the axis squared is `(A + B) / 2 +
        sqrt((A - B)^2 / 4 + C^2)`. `lambda` is clamped to [0, L - 1]: below one texel per
        pixel (magnification) and at a zero Jacobian this is bilinear in the texture; past
        the last level, bilinear in it.
      "anisotropic": OpenGL's rule (EXT_texture_filter_anisotropic): with `Px = |dX|`, `Py =
        |dY|`, `Pmax` the larger and `Pmin` the smaller, `N = min(ceil(Pmax / Pmin),
        max_aniso)` trilinear taps at the level of detail `log2(Pmax / N)`, spread evenly
        along the longer derivative, at `uv + ((k + 0.5) / N - 0.5) * duv` for k = 0 .. N - 1,
        and averaged. A footprint of zero width takes `max_aniso` taps; a zero Jacobian one
        tap, bilinear in the texture.

    Args:
      tex: `(Ht, Wt, C)` texture image, floating point.
      uv: `(..., 2)` texture coordinates, e.g. `sj.interpolate(mesh.uvs[mesh.face_uvs],
        frags, mesh)`.
      uv_jacobian: `(..., 2, 2)` derivatives of the UVs with respect to the pixel position
        (`[..., a, b]`: of u (a = 0) or v (a = 1) along the pixel x (b = 0, to the right) or
        y (b = 1) axis), in UV units per pixel. Required by the mipmapped filters.
      filter: "nearest", "linear", "trilinear" or "anisotropic". Static.
      wrap: "clamp" (coordinates outside [0, 1] take the border texels) or "wrap" (the
        texture repeats). Static.
      mips: for the mipmapped filters, the pyramid to sample instead of `mipmaps(tex)`: a
        sequence of `(Hk, Wk, C)` images whose level 0 has the shape of `tex` (gradients then
        go to these levels, and through them to whatever they were built from).
      max_aniso: the most taps of "anisotropic", a positive integer. Static.
      convention: how `uv` addresses `tex`: "opengl" (the rule above), "pytorch3d"
        (`TexturesUV`'s default, `align_corners=True`: texel (i, j) at `(j / (Wt - 1), 1 - i
        / (Ht - 1))`; "clamp" only) or "nvdiffrast" (`dr.texture` on the array as given:
        texel (i, j) at `((j + 0.5) / Wt, (i + 0.5) / Ht)`, row 0 at v = 0), as
        `Mesh(uv_convention=...)`. The UVs (and `uv_jacobian`) are mapped to the OpenGL
        rule for `tex`'s size; `mips` are then read by that rule too. Static.

    Returns:
      `(..., C)` in the promoted dtype of the inputs; differentiable with respect to the
      texels, `uv` (not for "nearest", piecewise constant) and `uv_jacobian` (through the
      blend between levels).
    """
    as_choice(filter, "filter", FILTERS)
    max_aniso = as_int(max_aniso, "max_aniso", minimum=1)
    as_choice(wrap, "wrap", ("clamp", "wrap"))
    as_choice(convention, "convention", UV_CONVENTIONS)
    if convention == "pytorch3d" and wrap == "wrap":
        raise ValueError('convention="pytorch3d" has no "wrap": use wrap="clamp"')
    tex, uv = _texture_image(tex, "tex"), jnp.asarray(uv)
    if uv.ndim < 1 or uv.shape[-1] != 2:
        raise ValueError(f"`uv` must have shape (..., 2), got {tuple(uv.shape)}")
    if not jnp.issubdtype(uv.dtype, jnp.floating):
        uv = uv.astype(tex.dtype)
    size = tex.shape[:2]
    uv_first = jnp.moveaxis(opengl_uv(uv, convention, *size), -1, 0)
    if filter not in MIPMAPPED:
        return jnp.moveaxis(sample_filtered(tex, uv_first, None, filter, wrap), 0, -1)
    if uv_jacobian is None:
        raise ValueError(f'filter="{filter}" needs `uv_jacobian` (..., 2, 2)')
    jac = jnp.asarray(uv_jacobian)
    if jac.shape != (*uv.shape[:-1], 2, 2):
        raise ValueError(
            f"`uv_jacobian` must have shape {(*uv.shape[:-1], 2, 2)} for `uv` of shape "
            f"{tuple(uv.shape)}, got {tuple(jac.shape)}"
        )
    if not jnp.issubdtype(jac.dtype, jnp.floating):
        jac = jac.astype(uv.dtype)
    if mips is None:
        levels = mipmaps(tex)
    else:
        levels = [_texture_image(x, f"mips[{k}]") for k, x in enumerate(mips)]
        if not levels or levels[0].shape != tex.shape:
            raise ValueError(f"`mips[0]` must have the shape of `tex` {tuple(tex.shape)}")
        if any(x.shape[-1] != tex.shape[-1] for x in levels):
            raise ValueError("every level of `mips` must have the channels of `tex`")
    jac_first = jnp.moveaxis(jac, (-2, -1), (0, 1))
    su, sv = opengl_uv_scale(convention, *size)
    jac_first = jnp.stack([jac_first[0] * su, jac_first[1] * sv])
    out = sample_filtered(levels, uv_first, jac_first, filter, wrap, max_aniso)
    return jnp.moveaxis(out, 0, -1)


def mipmaps(tex) -> tuple:
    """The mip pyramid of a texture, for `texture(..., filter="trilinear", mips=...)`.

    Level 0 is `tex`; each next level halves every side larger than 1, each texel the mean
    of the 2 x 2 texels it covers (2 x 1 once a side is 1). The pyramid ends at 1 x 1, or at
    the first level with an odd side larger than 1, which cannot be halved exactly (a 96 x 64
    texture has levels 96 x 64, 48 x 32, 24 x 16, 12 x 8, 6 x 4 and 3 x 2). Differentiable:
    a gradient at any level reaches `tex`.

    Args:
      tex: `(Ht, Wt, C)` texture image, floating point.

    Returns:
      A tuple of `(Hk, Wk, C)` images, level 0 first.
    """
    return build_mipmaps(_texture_image(tex, "tex"))


def edge_topology(mesh: Mesh) -> EdgeTopology:
    """The edge adjacency of `mesh`'s faces, to build once and pass to `antialias`, `render`
    and `render_silhouette` (`topology=`), which otherwise build it on every call.

    It depends on `mesh.faces` and `mesh.face_mask` only: a fit that moves vertices keeps
    it. The hard path reads from it which edges are silhouette edges.

    Args:
      mesh: the mesh (its faces and face mask must be concrete: call it outside `jit`, or
        inside on a mesh whose faces are constants).

    Returns:
      `sj.EdgeTopology(across)`, `across (F, 3)` int32: the face across the edge opposite
      each corner, -1 where none (a boundary edge, an edge shared by more than two faces, or
      a neighbour that `face_mask` leaves out).
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a softjax Mesh, got {type(mesh).__name__}")
    across = _neighbours(mesh.faces, mesh.face_mask, num_verts=mesh.verts.shape[0])
    return EdgeTopology(across.astype(jnp.int32))


_neighbours = jax.jit(neighbours, static_argnames=("num_verts",))


def antialias(
    image, fragments: Fragments, mesh: Mesh, camera: Camera, topology: EdgeTopology | None = None
) -> jax.Array:
    """Analytic antialiasing of silhouette and occlusion edges (after Laine et al. 2020).

    Where two neighbouring pixels (in a row or a column) show different faces, the nearer
    pixel's triangle is tested for the edge through which the segment joining the two centres
    leaves it. If that edge is a silhouette edge of the mesh (no face continues across it, or
    the face across it faces the other way), the two pixels' colours are blended by where the
    edge crosses the segment, as a box filter over a straight edge would: the pixel past the
    crossing takes `|t - 1/2|` of the other's colour, t the crossing's position from the nearer
    centre. The result is a continuous function of the vertex positions along silhouettes, so
    its gradient reaches them; interior edges, where colours are continuous anyway, are left
    alone, and so are pixels away from silhouettes (their gradients are plain interpolation's).

    Args:
      image: `(H, W, C)` or `(H, W)` values per pixel, e.g. colours shaded from `fragments`
        with the background where `face_id` is -1, and a coverage channel (1 on faces, 0
        elsewhere) to get an antialiased alpha.
      fragments: `sj.rasterize(mesh, camera, cfg)` (with layers, the nearest one is used).
      mesh, camera: what was rasterized. Windings must agree across shared edges, as for any
        consistently oriented mesh.
      topology: optional `sj.edge_topology(mesh)`, built once instead of on every call.

    Returns:
      The antialiased image, shaped like `image`.
    """
    check_fragments(fragments, mesh)
    across = topology_of(topology, mesh)
    if not isinstance(camera, Camera):
        raise TypeError(f"`camera` must be a softjax Camera, got {type(camera).__name__}")
    image = jnp.asarray(image)
    frags = first_layer(fragments)
    flat = image.ndim == 2
    if image.shape[:2] != frags.face_id.shape or image.ndim not in (2, 3):
        raise ValueError(
            f"`image` must be (H, W) or (H, W, C) with (H, W) = {frags.face_id.shape} like the "
            f"fragments, got shape {tuple(image.shape)}"
        )
    if mesh.num_faces == 0:
        return image
    dtype = compute_dtype(image.dtype)
    mesh, camera = in_dtype((mesh, camera), dtype)
    # The depths the fragments were ordered by.
    p = Planes(frags.face_id, frags.triangle, None, frags.depth)
    planes = [image] if flat else [image[..., c] for c in range(image.shape[-1])]
    out = reverse_only(antialias_image, [x.astype(dtype) for x in planes], p, mesh, camera, across)
    return (out[0] if flat else jnp.stack(out, axis=-1)).astype(image.dtype)


def fit_pair_capacity(mesh: Mesh, camera: Camera, cfg: RasterConfig, margin: float = 1.25):
    """`cfg` with `pair_capacity` sized so that every view of `mesh` bins in one round.

    The tiled path bins (tile, face) candidate pairs `cfg.pair_capacity` at a time and takes
    further rounds for views with more (same image, more time). This counts the pairs of each
    view eagerly and returns `dataclasses.replace(cfg, pair_capacity=ceil(margin * max))`.
    Call it once, outside `jit`, on a representative mesh (for example the initial or target
    mesh of a fit), then use the returned config everywhere.

    Args:
      mesh: the mesh, with concrete (non-traced) arrays.
      camera: one camera or a batch of cameras (fields with a leading batch axis).
      cfg: the settings to size; `cfg.method` is not changed.
      margin: head room above the largest count, at least 1.

    Returns:
      A `RasterConfig`.
    """
    check_args(mesh, jax.tree.map(lambda x: x[0], camera) if camera.eye.ndim == 2 else camera,
               cfg)  # fmt: skip
    if not all(is_concrete(x) for x in jax.tree.leaves((mesh, camera))):
        raise ValueError("`fit_pair_capacity` counts pairs eagerly: call it outside jit/vmap/grad")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 1):
        raise ValueError(f"`margin` must be a finite number >= 1, got {margin!r}")
    hard_only = cfg.visibility == "hard"  # binned with no blur radius
    st = static_settings(cfg, PIECES * mesh.num_faces, not camera.orthographic,
                         typical_faces=mesh.num_faces, hard=hard_only)  # fmt: skip
    dtype = compute_dtype(mesh.verts.dtype)
    mesh, camera = in_dtype((mesh, camera), dtype)

    def count(cam):
        tris = project(mesh.verts, mesh.faces, cam, cfg.cull_backfaces, mesh.face_mask)
        faces, valid = face_data(tris, jnp.zeros((tris.valid.shape[0], 3, 0), tris.xy.dtype))
        # Each block of faces is binned in rounds of its own.
        reach = 0.0 if hard_only else face_reach2(faces, cfg.sigma, cfg.model)
        bins = bin_faces(faces, valid, st, reach)
        return jnp.max(num_pairs(bins))

    counts = jax.jit(jax.vmap(count) if camera.eye.ndim == 2 else count)(camera)
    return dataclasses.replace(cfg, pair_capacity=max(1, math.ceil(margin * int(jnp.max(counts)))))
