#!/usr/bin/env bash
# One prepared check for a machine with a GPU and JAX preinstalled (no network needed):
#   1. correctness: the tiled path against the dense reference on the GPU, GPU against CPU,
#      and a vmapped batch of views rendered in parallel against one view at a time;
#   2. the benchmark table at GPU sizes (1024x1024 with 81,920 faces; 64 views at 256x256
#      with 5,120 faces, colour + silhouette and silhouette only, and their cost against one
#      view; a padded batch of 8 meshes), written to benchmarks/RESULTS.md under "## GPU".
# Usage: benchmarks/gpu_check.sh [folder to copy RESULTS.md and the log into]
# SOFTJAX_DRY_RUN=1 runs the same steps at small sizes (for trying the script on a CPU).
# SOFTJAX_CONFIG_TIMEOUT bounds each benchmark configuration's process (seconds, default 120).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
dest="${1:-}"
log="${dest:+$dest/gpu_check.log}"
{
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
  python3 benchmarks/gpu_correctness.py || echo "correctness check failed (exit $?)"
  if [ "${SOFTJAX_DRY_RUN:-0}" = 1 ]; then
    python3 benchmarks/bench.py --quick --reps 2 --timeout "${SOFTJAX_CONFIG_TIMEOUT:-120}"
  else
    python3 benchmarks/bench.py --gpu --reps 5 --timeout "${SOFTJAX_CONFIG_TIMEOUT:-120}"
  fi
} 2>&1 | tee ${log:+"$log"}
if [ -n "$dest" ] && [ "${SOFTJAX_DRY_RUN:-0}" != 1 ]; then cp benchmarks/RESULTS.md "$dest/"; fi
