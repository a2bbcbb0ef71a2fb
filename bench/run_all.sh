#!/usr/bin/env bash
# Regenerate every CPU section of docs/BENCHMARKS.md: runs each bench/bench_*.py in turn.
# GPU measurements (bench/gpu_train.py) run only on a machine with a GPU; see that script.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
status=0
for script in bench/bench_*.py; do
  name=$(basename "$script" .py)
  echo "== $name"
  if ! "$py" -m "bench.$name" "$@"; then
    echo "!! $name failed" >&2
    status=1
  fi
done
exit "$status"
