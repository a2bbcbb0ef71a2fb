#!/usr/bin/env bash
# Create .venv and install triglot into it, torch first so that nothing pulls a CUDA build.
#   bash scripts/bootstrap.sh        # runtime
#   bash scripts/bootstrap.sh dev    # + test, lint and benchmark tools, and the local Slurm packages
# TRIGLOT_TORCH picks another torch build (for example a ROCm or CUDA wheel on a GPU cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
venv="${TRIGLOT_VENV:-.venv}"
torch_spec="${TRIGLOT_TORCH:-torch==2.13.0}"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
pip=("$py" -m pip install --disable-pip-version-check --progress-bar on)
echo "bootstrap: creating $venv and installing triglot (first time: about 4 minutes and 3 GB; later runs: seconds)"
"${pip[@]}" -q --upgrade pip setuptools wheel
# torch first: a bare `torch` requirement resolved later would fetch the newest CUDA build.
"$py" -c "import torch" 2>/dev/null || "${pip[@]}" "$torch_spec"
# DeepSpeed ships only an sdist whose setup.py imports torch; build it against the torch above.
"$py" -c "import deepspeed" 2>/dev/null || DS_BUILD_OPS=0 "${pip[@]}" --no-build-isolation "deepspeed>=0.19,<0.20"
if [ -n "$extra" ]; then
  "${pip[@]}" -e ".[$extra]"
else
  "${pip[@]}" -e .
fi

# The Slurm tests drive a real one-node cluster built from Debian's packages.
if [ "$extra" = "dev" ] && ! command -v slurmctld >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Slurm and munge from Debian's packages for the Slurm tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
  else
    echo "note: slurmctld not found and cannot install it here (needs root and apt); Slurm tests will be skipped"
  fi
fi
# Versions from the package metadata: importing deepspeed here would print its accelerator warning.
echo "triglot installed in $venv ($("$py" -c 'from importlib.metadata import version as v; print("torch", v("torch"), "deepspeed", v("deepspeed"))'))"
