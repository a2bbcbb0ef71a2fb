#!/usr/bin/env bash
# Regenerate docs/BENCHMARKS.md: runs every bench/bench_*.py in turn (CPU, about 20 minutes on 2 cores),
# then bench/gpu_train.py when the machine has a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
export PYTHONUNBUFFERED=1
status=0
for script in bench/bench_*.py; do
  name=$(basename "$script" .py)
  echo "== $name ($(date +%T))"
  if ! "$py" -m "bench.$name"; then
    echo "!! $name failed" >&2
    status=1
  fi
done
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo "== gpu_train ($(date +%T))"
  "$py" -m bench.gpu_train || { echo "!! gpu_train failed" >&2; status=1; }
else
  echo "== gpu_train skipped: no GPU on this machine"
fi
echo "== done ($(date +%T)): docs/BENCHMARKS.md"
exit "$status"
