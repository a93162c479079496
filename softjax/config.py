"""Static rendering settings."""

from __future__ import annotations

import dataclasses
import math
import numbers

import jax


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class RasterConfig:
    """Hashable rendering settings; everything that fixes an array shape lives here.

    `RasterConfig` is registered as a static pytree (no array leaves), so
    `jax.jit(sj.render)(mesh, camera, cfg)` needs no `static_argnames`; a new config value
    (including a new `sigma` or `gamma`) means a new compilation.

    Args:
      image_size: `(H, W)` in pixels (an int means a square image).
      sigma: blur of the coverage probability, a squared distance in screen units (NDC-y:
        half the image height is 1): `D = sigmoid(sign * d**2 / sigma)`. SoftRas uses 1e-4.
      gamma: temperature of the depth softmax on the normalised inverse depth
        `zn = (far - z) / (far - near)`. Smaller is closer to a z-buffer.
      background: RGB colour behind the mesh.
      eps: the background's depth in the colour softmax (SoftRas's epsilon): its weight is
        `exp(eps / gamma)`.
      dist_eps: coverage below which a face is ignored at a pixel, as in SoftRas: a face
        whose outside squared distance exceeds `sigma * ln(1 / dist_eps - 1)` takes no part in
        the silhouette or the colour there (it would change alpha by less than `dist_eps`).
        This is what lets the colour fall back to `background` away from the mesh (otherwise
        the depth weight `exp(zn / gamma)` of a far face outweighs the background's). 0 keeps
        every face everywhere.
      cull_backfaces: drop faces that appear clockwise on screen (front = counter-clockwise
        seen by the camera, which is outward for `ico_sphere`).
      method: "tiled" (default) bins faces to screen tiles and streams each tile's candidate
        faces, with memory O(pixels x chunk); "dense" evaluates every pixel against every face
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
        room for small faces (see `softjax.tiled.default_capacity`). A view with more pairs
        is binned and streamed in further rounds of this size: the image is the same and no
        face is ever dropped, only time is spent. `sj.fit_pair_capacity` sizes it to a scene
        so that every view takes one round.
    """

    image_size: tuple[int, int] = (64, 64)
    sigma: float = 1e-4
    gamma: float = 1e-4
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    eps: float = 1e-3
    dist_eps: float = 1e-4
    cull_backfaces: bool = False
    method: str = "tiled"
    tile_size: int = 8
    chunk: int = 16
    batch_pairs: int = 2**16
    pair_capacity: int | None = None

    def __post_init__(self):
        size = self.image_size
        if _is_int(size):
            size = (size, size)
        if not (isinstance(size, (tuple, list)) and len(size) == 2
                and all(_is_int(s) and s > 0 for s in size)):  # fmt: skip
            raise ValueError(
                f"`image_size` must be two positive integers (H, W), got {self.image_size!r}"
            )
        size = (int(size[0]), int(size[1]))
        object.__setattr__(self, "image_size", size)
        for name in ("sigma", "gamma"):
            value = getattr(self, name)
            if not _is_real(value) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not _is_real(self.eps) or not math.isfinite(self.eps):
            raise ValueError(f"`eps` must be a finite number, got {self.eps!r}")
        object.__setattr__(self, "eps", float(self.eps))
        if not _is_real(self.dist_eps) or not 0.0 <= self.dist_eps < 0.5:
            raise ValueError(f"`dist_eps` must be in [0, 0.5), got {self.dist_eps!r}")
        object.__setattr__(self, "dist_eps", float(self.dist_eps))
        try:
            bg = tuple(float(c) for c in self.background)
        except (TypeError, ValueError):
            bg = ()
        if len(bg) != 3 or not all(math.isfinite(c) for c in bg):
            raise ValueError(f"`background` must be three finite numbers, got {self.background!r}")
        object.__setattr__(self, "background", bg)
        object.__setattr__(self, "cull_backfaces", bool(self.cull_backfaces))
        if self.method not in ("tiled", "dense"):
            raise ValueError(f'`method` must be "tiled" or "dense", got {self.method!r}')
        for name in ("tile_size", "chunk", "batch_pairs"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.pair_capacity is not None:
            if not _is_int(self.pair_capacity) or self.pair_capacity < 1:
                raise ValueError(
                    "`pair_capacity` must be a positive integer or None, got "
                    f"{self.pair_capacity!r}"
                )
            object.__setattr__(self, "pair_capacity", int(self.pair_capacity))

    @property
    def cull_log(self) -> float:
        """`ln(1 / dist_eps - 1)`: the cull distance in units of sigma (inf when dist_eps is
        0)."""
        if self.dist_eps == 0.0:
            return math.inf
        return math.log(1.0 / self.dist_eps - 1.0)

    @property
    def cull_dist2(self) -> float:
        """Outside squared distance beyond which a face is ignored (inf when dist_eps is 0)."""
        return self.sigma * self.cull_log


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)
