"""Coverage distributions of the soft rasterizer: how a face's signed screen distance to a pixel
becomes the probability that it covers it (`RasterConfig(coverage=...)`).

`DISTRIBUTIONS` names them and `DISTANCES` the distances they take; `log_coverage(s, name)`
gives `(log D, log(1 - D))`, accurate in both tails, `cdf(s, name)` gives `D`, and
`quantile(name, p)` the `s` at which `D = p` (what the `dist_eps` cull uses). The formulas and
their sources are in `softjax._src.soft.coverage`'s docstring.
"""

from softjax._src.soft.coverage import DISTANCES, DISTRIBUTIONS, cdf, log_coverage, quantile

__all__ = ["DISTANCES", "DISTRIBUTIONS", "cdf", "log_coverage", "quantile"]
