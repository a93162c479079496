"""Test-session housekeeping."""

import gc

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop compiled executables after each test module. The suite compiles a few hundred
    programs; keeping all of them alive in one process let XLA's CPU compiler crash
    (segmentation fault) late in the run."""
    yield
    jax.clear_caches()
    gc.collect()
