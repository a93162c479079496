"""Test-session housekeeping."""

import gc
import os

# The suite compiles a few hundred small programs and runs each a handful of times, so LLVM's
# optimisation passes cost more than they save (about a quarter of the suite's CPU time).
# Only the code generator's effort changes: the programs are the same, and the benchmarks and
# users keep XLA's defaults. Set before JAX creates its CPU backend.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
).strip()

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests: a fixed, reproducible set of examples in every run (no flaky CI), without
# per-example deadlines (the first example of a property includes its compilation).
# `HYPOTHESIS_PROFILE=thorough` explores many more, with fresh random examples each run.
settings.register_profile(
    "default", max_examples=25, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
settings.register_profile(
    "thorough", max_examples=500, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop compiled executables after each test module. The suite compiles a few hundred
    programs; keeping all of them alive in one process let XLA's CPU compiler crash
    (segmentation fault) late in the run."""
    yield
    jax.clear_caches()
    gc.collect()
