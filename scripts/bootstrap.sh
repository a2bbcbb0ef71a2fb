#!/usr/bin/env bash
# Create .venv and install triglot into it, torch first so that nothing pulls a CUDA build.
#   bash scripts/bootstrap.sh        # runtime
#   bash scripts/bootstrap.sh dev    # runtime + test/lint/bench tools
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
venv="${TRIGLOT_VENV:-.venv}"
torch_spec="${TRIGLOT_TORCH:-torch==2.13.0}"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip setuptools wheel
# torch first: a bare `torch` requirement resolved later would fetch the newest CUDA build.
"$py" -c "import torch" 2>/dev/null || "$py" -m pip install -q "$torch_spec"
# DeepSpeed ships only an sdist whose setup.py imports torch; build it against the torch above.
"$py" -c "import deepspeed" 2>/dev/null || DS_BUILD_OPS=0 "$py" -m pip install -q --no-build-isolation "deepspeed>=0.19,<0.20"
if [ -n "$extra" ]; then
  "$py" -m pip install -q -e ".[$extra]"
else
  "$py" -m pip install -q -e .
fi
echo "triglot installed in $venv ($("$py" -c 'import torch, deepspeed; print("torch", torch.__version__, "deepspeed", deepspeed.__version__)' 2>/dev/null))"
