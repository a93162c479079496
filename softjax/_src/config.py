"""Static rendering settings: `RasterConfig`, hashable, holding every setting that fixes a
shape or a compiled program."""

from __future__ import annotations

import dataclasses
import functools

import jax

from softjax._src.checks import as_choice, as_finite_real, as_flag, as_image_size, as_int
from softjax._src.shading import texture
from softjax._src.soft import coverage
from softjax._src.soft.colour import COLOURS
from softjax._src.soft.tconorms import T_CONORM_P, T_CONORMS, check_t_conorm_p

METHODS = ("tiled", "dense")
SHADING_MODES = ("flat", "gouraud", "phong", "pbr")
AOVS = ("depth", "normals", "face_id")
VISIBILITIES = ("soft", "hard", "splat")


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class RasterConfig:
    """Hashable rendering settings; everything that fixes an array shape lives here.

    `RasterConfig` is registered as a static pytree (no array leaves), so
    `jax.jit(sj.render)(mesh, camera, cfg, lights, material)` needs no `static_argnames`:
    every setting that is not an array (shading mode, auxiliary outputs, method, sizes) is
    here. A new config value means a new compilation; blur values that change during a fit
    go to `sj.render(..., sigma=, gamma=)` instead, which takes traced values.

    Args:
      image_size: `(H, W)` in pixels (an int means a square image).
      sigma: blur of the coverage probability, a squared distance in screen units (NDC-y:
        half the image height is 1): `D = sigmoid(sign * d**2 / sigma)` (with the defaults
        below; a distance when `squared=False`). SoftRas's renderer defaults to 1e-5 (its
        shape-deformation demo uses 1e-4). `render(..., sigma=)` replaces it per call.
      gamma: temperature of the depth softmax on the normalised inverse depth
        `zn = (far - z) / (far - near)`. Smaller is closer to a z-buffer (in the limit of a
        small sigma too). SoftRas's default is 1e-4.
      background: RGB colour behind the mesh.
      eps: the background's depth in the colour softmax (SoftRas's epsilon): its weight is
        `exp(eps / gamma)`.
      dist_eps: coverage below which a face is ignored at a pixel, as in SoftRas: a face
        whose outside squared distance exceeds `sigma * ln(1 / dist_eps - 1)` (for the
        default logistic coverage; `-sigma * coverage.quantile(coverage, dist_eps)` in
        general) takes no part in the silhouette or the colour there (it would change
        alpha by less than `dist_eps`).
        This is what lets the colour fall back to `background` away from the mesh (otherwise
        the depth weight `exp(zn / gamma)` of a far face outweighs the background's). 0 keeps
        every face everywhere.
      cull_backfaces: drop faces that appear clockwise on screen (front = counter-clockwise
        seen by the camera, which is outward for `ico_sphere`) from the colour, the
        silhouette and the auxiliary outputs (SoftRas keeps them in its silhouette).
      shading: where `render`'s lights are evaluated: "flat" once per face with its normal
        and centroid (SoftRas's surface lighting), "gouraud" at the vertices with smooth
        vertex normals and interpolated (SoftRas's vertex lighting), "phong" at every
        fragment with interpolated smooth normals and positions; "pbr" at every fragment
        too, radiometrically, with a GGX `PBRMaterial` (see `softjax.PBRMaterial`).
        "gouraud", "phong" and "pbr" need `lights`, except to choose smooth normals for the
        "normals" output of an unlit render; without lights the colours are unlit.
      texture_filter: how `render` samples UV textures and PBR material maps, as
        `sj.texture`'s filters: "linear" (bilinear, default), "nearest", "trilinear"
        (mipmapped: the level of detail from the footprint of the pixel, against aliasing
        where texels are smaller than pixels) or "anisotropic" (up to
        `texture_max_aniso` trilinear taps along the footprint's long axis, sharper at
        grazing angles). The mipmapped filters take the UVs' screen derivatives from each
        fragment's own face, exactly: per pixel on the hard path, per (pixel, face) pair
        on the soft path, where gradients also flow through them to the vertices. Per-face
        atlases keep their nearest-texel lookup, and a user's `shader` samples its own
        textures (`sj.texture`). The pyramid halves the texture until a side is odd
        (`sj.mipmaps`): a 513 x 513 texture has one level, so the mipmapped filters are
        bilinear on it; resize such textures to a power of two to filter them.
      texture_max_aniso: the most taps of "anisotropic" (a positive integer).
      aovs: auxiliary outputs `render` returns beside the image, any of "depth", "normals"
        and "face_id" (see `render`). With none (the default) `render` returns the image
        alone; with some, `(rgba, {name: image})`.
      method: "tiled" (default) bins faces to screen tiles and streams each tile's candidate
        faces, with memory O(pixels + batch_pairs + pair_capacity); "dense" evaluates every
        pixel against every face
        (O(pixels x faces) memory; the reference the tiled path is tested against). Both give
        the same images and reverse-mode gradients. The tiled path defines its own backward
        pass (`jax.custom_vjp`), so forward-mode and higher-order derivatives (`jax.jvp`,
        `jax.jacfwd`, `jax.hessian`) need `method="dense"`.
      tile_size: side of a screen tile in pixels ("tiled").
      chunk: candidate faces per work item ("tiled"): a tile's list is processed in
        chunks of this many faces.
      batch_pairs: about how many pixel-face pairs the forward pass evaluates at once
        ("tiled"; the backward pass takes half as many); the working memory of both passes is
        proportional to it.
      pair_capacity: (tile, face) candidate pairs binned at a time ("tiled"); None picks
        room for small faces (see `default_capacity` in `softjax._src.tiles.bins`). A view
        with more pairs is binned and streamed in further rounds of this size: the image is
        the same and no face is ever dropped, only time is spent. `sj.fit_pair_capacity`
        sizes it to a scene so that every view takes one round.
      parallel_views: how many views of a `jax.vmap`-ed batch the tiled path renders in
        lockstep as one vectorised stream (the groups of that many run one after another;
        it is rounded down to a divisor of the batch size). None chooses per backend: the
        whole batch on an accelerator, one view at a time on a CPU (or one group per device
        when there are several, so that sharded views are partitioned). Every setting gives
        the same images; it trades memory (per view in flight) for parallelism.
      visibility: "soft" (default): SoftRas's coverage and depth softmax, every edge blurred
        by `sigma`. "hard": a z-buffer (the nearest face whose interior holds each pixel
        centre) shaded per pixel and antialiased analytically across silhouette and
        occlusion edges (`sj.antialias`), so its gradients still reach the vertices there;
        `sigma`, `gamma`, `eps`, `dist_eps` and the coverage and aggregation choices below
        then play no part, and the work is binned with
        no blur radius (faces only reach the tiles under their screen boxes). "splat":
        rasterize-then-splat (Cole et al. 2021): the z-buffer's `splat_layers` nearest
        surfaces shaded per pixel, each pixel's shaded point splatted onto its 3x3
        neighbourhood with a Gaussian (variance 1/4 px^2) at its surface point's screen
        position and the splats composited front to back (`sj.splat`); the image is
        slightly blurred and its gradients reach the vertices across silhouette and
        occlusion edges by plain autodiff (forward and reverse mode). The blur and soft-family
        settings play no part, as for "hard".
      coverage: the distribution whose CDF turns the signed scaled distance `s` into the
        coverage `D = F(s)`: "logistic" (SoftRas, default), "gaussian", "laplace",
        "cauchy", "uniform", "cubic_hermite", "wigner_semicircle", "gudermannian",
        "reciprocal", "gumbel_max", "gumbel_min", "exponential", "exponential_rev",
        "gamma", "gamma_rev", "levy", "levy_rev" (GenDR's set) or "dibr" (Kaolin's DIB-R: 1
        inside, `exp(-d**2 / sigma)` outside). Formulas in `softjax.coverage`.
      coverage_shape: the shape `k > 0` of "gamma" and "gamma_rev" (unused otherwise).
      squared: `s = sign * d**2 / sigma` (True, SoftRas) or `s = sign * d / sigma` (GenDR's
        default).
      distance: "euclidean" (the screen distance to the triangle) or "barycentric"
        (SoftRas's option: `d` is the smallest screen barycentric coordinate, so `sigma` is
        relative to the face's size).
      alpha: the T-conorm that aggregates the faces' coverages into the silhouette:
        "probabilistic" (`1 - prod(1 - D)`, SoftRas, default), "max", "einstein",
        "hamacher", "yager", "frank", "aczel_alsina", "dombi", "schweizer_sklar" (GenDR's
        set), "sum" (SoftRas's mean coverage over the mesh's faces) or "hard" (1 where any
        `D > 1/2`, no gradient). Formulas in `softjax.blend`.
      t_conorm_p: the parameter of "hamacher" (p > 0; default 0.5), "frank" (p > 0, not 1;
        2), "yager" (p > 0; 2), "aczel_alsina" (0 < p <= 10; 2), "dombi" (0 < p <= 4; 2) and
        "schweizer_sklar" (-4 <= p < 0; -2); None picks the default. The others take none.
        `render(..., t_conorm_p=)` replaces it per call (traced values do not recompile).
      color: "softmax" (SoftRas's depth softmax, default) or "hard" (the colour of the
        nearest face whose interior holds the pixel centre, the background where none:
        gradients reach the colours and, through the barycentrics, the vertices, but not
        the silhouette edges; those come from alpha).
      strip_pixels: about how many pixels `visibility="hard"` shades at once, in strips of
        whole rows whose per-pixel values are recomputed in the backward pass (memory then
        grows with the strip, not the image). None: one pass up to 512x512 pixels, strips
        of 2**17 pixels above. Every setting gives the same image.
      antialias_capacity: pixel pairs `visibility="hard"` (and `sj.antialias`) blend per
        round: only pairs that may blend are listed and computed. None: `max(256, 4 (H +
        W))`; 0 computes every pixel pair as planes instead (the reference). Every setting
        gives the same image.
      splat_layers: how many layers of the z-buffer `visibility="splat"` shades and splats
        per pixel (depth peeling, as `sj.rasterize(..., layers=)`). 1 (default, as in the
        paper's reference code) splats the visible surface alone: silhouettes and occlusion
        edges get their gradients from the splats of the surfaces on either side. More
        layers also splat what lies behind, which a surface moving aside would reveal, at
        the cost of one z-buffer pass and one shading pass per layer; with more than one,
        `cull_backfaces=True` keeps a closed mesh's far side from counting as a layer.

    Each compiled program keys only on the settings its stage reads (`for_stage`): a new
    `sigma`, `eps` or coverage choice does not recompile `visibility="hard"`, and shading
    and colour settings do not recompile a silhouette.
    """

    image_size: tuple[int, int] = (64, 64)
    sigma: float = 1e-4
    gamma: float = 1e-4
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    eps: float = 1e-3
    dist_eps: float = 1e-4
    cull_backfaces: bool = False
    shading: str = "flat"
    texture_filter: str = "linear"
    texture_max_aniso: int = 8
    aovs: tuple[str, ...] = ()
    method: str = "tiled"
    tile_size: int = 8
    chunk: int = 16
    batch_pairs: int = 2**16
    pair_capacity: int | None = None
    parallel_views: int | None = None
    visibility: str = "soft"
    coverage: str = "logistic"
    coverage_shape: float = 2.0
    squared: bool = True
    distance: str = "euclidean"
    alpha: str = "probabilistic"
    t_conorm_p: float | None = None
    color: str = "softmax"
    strip_pixels: int | None = None
    antialias_capacity: int | None = None
    splat_layers: int = 1

    def __post_init__(self):
        hint = "Pass traced blur values to `sj.render(..., sigma=, gamma=)` instead."
        object.__setattr__(self, "image_size", as_image_size(self.image_size))
        for name in ("sigma", "gamma"):
            value = as_finite_real(getattr(self, name), name, positive=True, traced_hint=hint)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "eps", as_finite_real(self.eps, "eps"))
        dist_eps = as_finite_real(self.dist_eps, "dist_eps")
        if not 0.0 <= dist_eps < 0.5:
            raise ValueError(f"`dist_eps` must be in [0, 0.5), got {dist_eps!r}")
        object.__setattr__(self, "dist_eps", dist_eps)
        try:
            bg = tuple(as_finite_real(c, "background") for c in self.background)
        except (TypeError, ValueError):
            bg = ()
        if len(bg) != 3:
            raise ValueError(f"`background` must be three finite numbers, got {self.background!r}")
        object.__setattr__(self, "background", bg)
        object.__setattr__(self, "cull_backfaces", as_flag(self.cull_backfaces, "cull_backfaces"))
        as_choice(self.method, "method", METHODS)
        as_choice(self.visibility, "visibility", VISIBILITIES)
        as_choice(self.shading, "shading", SHADING_MODES)
        as_choice(self.texture_filter, "texture_filter", texture.FILTERS)
        aniso = as_int(self.texture_max_aniso, "texture_max_aniso", minimum=1)
        object.__setattr__(self, "texture_max_aniso", aniso)
        object.__setattr__(self, "aovs", _as_aovs(self.aovs))
        for name in ("tile_size", "chunk", "batch_pairs", "splat_layers"):
            object.__setattr__(self, name, as_int(getattr(self, name), name, minimum=1))
        # Optional counts: None picks a default.
        for name, minimum in (("pair_capacity", 1), ("parallel_views", 1), ("strip_pixels", 1),
                              ("antialias_capacity", 0)):  # fmt: skip
            if getattr(self, name) is not None:
                object.__setattr__(self, name, as_int(getattr(self, name), name, minimum=minimum))
        as_choice(self.coverage, "coverage", coverage.DISTRIBUTIONS)
        shape = as_finite_real(self.coverage_shape, "coverage_shape", positive=True)
        object.__setattr__(self, "coverage_shape", shape)
        object.__setattr__(self, "squared", as_flag(self.squared, "squared"))
        as_choice(self.distance, "distance", coverage.DISTANCES)
        as_choice(self.alpha, "alpha", T_CONORMS)
        as_choice(self.color, "color", COLOURS)
        if self.t_conorm_p is not None:
            p = as_finite_real(self.t_conorm_p, "t_conorm_p", traced_hint=_P_HINT)
            object.__setattr__(self, "t_conorm_p", check_t_conorm_p(self.alpha, p))

    def for_stage(self, stage: str) -> RasterConfig:
        """This config with every setting that `stage` does not read at its default, so that
        the stage's compiled program keys only on what it reads: "soft" (soft visibility with
        colours), "silhouette" (soft visibility without), "hard" (hard visibility), "splat"
        (rasterize-then-splat)."""
        return _for_stage(self, stage)

    @property
    def p(self):
        """The T-conorm's parameter: `t_conorm_p`, or the T-conorm's default (None for one
        without a parameter)."""
        if self.t_conorm_p is not None:
            return self.t_conorm_p
        return T_CONORM_P[self.alpha][1] if self.alpha in T_CONORM_P else None

    @property
    def model(self) -> coverage.Model:
        """The static coverage choices, with the cull's start `quantile(dist_eps)`."""
        start = coverage.quantile(self.coverage, self.dist_eps, self.coverage_shape)
        return coverage.Model(self.coverage, self.coverage_shape, self.squared, self.distance,
                              start)  # fmt: skip

    @property
    def cull_dist2(self) -> float:
        """Outside squared screen distance beyond which a face is ignored (inf when nothing
        is; 0 for the barycentric distance, whose reach depends on the face)."""
        return 0.0 if self.distance == "barycentric" else coverage.reach2(self.sigma, self.model)


# What each stage does not read. Shading and the auxiliary outputs are resolved before
# visibility (into per-corner attributes, whose shapes key the programs anyway).
_BEFORE_VISIBILITY = ("shading", "texture_filter", "texture_max_aniso", "aovs", "visibility")
_SOFT_ONLY = ("sigma", "gamma", "eps", "dist_eps", "coverage", "coverage_shape", "squared",
              "distance", "alpha", "t_conorm_p", "color")  # fmt: skip
_HARD_ONLY = ("strip_pixels", "antialias_capacity")
_SPLAT_ONLY = ("splat_layers",)
_UNREAD = {
    "soft": _BEFORE_VISIBILITY + _HARD_ONLY + _SPLAT_ONLY,
    "silhouette": _BEFORE_VISIBILITY + _HARD_ONLY + _SPLAT_ONLY + ("color", "eps"),
    "hard": _BEFORE_VISIBILITY[:4] + _SOFT_ONLY + _SPLAT_ONLY,
    "splat": _BEFORE_VISIBILITY[:4] + _SOFT_ONLY + _HARD_ONLY,
}


@functools.lru_cache(maxsize=256)
def _for_stage(cfg: RasterConfig, stage: str) -> RasterConfig:
    defaults = {f.name: f.default for f in dataclasses.fields(RasterConfig)}
    return dataclasses.replace(cfg, **{name: defaults[name] for name in _UNREAD[stage]})


_P_HINT = "Pass a traced value to `sj.render(..., t_conorm_p=)` instead."


def _as_aovs(aovs) -> tuple[str, ...]:
    if isinstance(aovs, str):
        raise TypeError(f"`aovs` takes a tuple of names, e.g. aovs=({aovs!r},)")
    if not isinstance(aovs, (tuple, list)):
        raise TypeError(f"`aovs` must be a tuple of names from {AOVS}, got {aovs!r}")
    aovs = tuple(aovs)
    unknown = [a for a in aovs if a not in AOVS]
    if unknown:
        raise ValueError(f"unknown `aovs` {unknown}; choose from {AOVS}")
    if len(set(aovs)) != len(aovs):
        raise ValueError(f"`aovs` lists a name twice: {aovs}")
    return aovs
