#!/usr/bin/env bash
# One prepared check for a machine with a GPU and JAX preinstalled (no network needed):
#   1. correctness: the tiled path against the dense reference on the GPU, and GPU against CPU;
#   2. the benchmark table at GPU sizes (1024x1024 with 81,920 faces, 64 views at 256x256),
#      appended to benchmarks/RESULTS.md under "## GPU".
# Usage: benchmarks/gpu_check.sh [folder to copy RESULTS.md into]
# SOFTJAX_DRY_RUN=1 runs the same steps at small sizes (for trying the script on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import jax; print('jax', jax.__version__, jax.devices())"
python benchmarks/gpu_correctness.py
if [ "${SOFTJAX_DRY_RUN:-0}" = 1 ]; then
  python benchmarks/bench.py --quick --reps 2
else
  python benchmarks/bench.py --gpu --reps 5
  if [ -n "${1:-}" ]; then cp benchmarks/RESULTS.md "$1/"; fi
fi
