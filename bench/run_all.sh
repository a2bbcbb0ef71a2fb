#!/usr/bin/env bash
# Regenerate docs/BENCHMARKS.md: every bench/bench_*.py once, in a fixed order (the ones listed first, then any
# others alphabetically), then bench/gpu_train.py when the machine has a GPU. Records `uptime` before and after
# in the run_all section. Refuses to start on a busy machine (1-minute load average above cores / 4, i.e. 0.5 on
# 2 cores): the figures are only worth recording on an otherwise idle machine.
#
#   bash bench/run_all.sh [--allow-busy]
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
export PYTHONUNBUFFERED=1
allow_busy=0
for arg in "$@"; do
  case "$arg" in
    --allow-busy) allow_busy=1 ;;
    *) echo "usage: bash bench/run_all.sh [--allow-busy]" >&2; exit 2 ;;
  esac
done

# The baselines are the bench extra (datatrove for bench_clean, lm-eval for bench_eval): check before a long run.
if ! "$py" -c "import datatrove, lm_eval, matplotlib" 2>/dev/null; then
  echo "bench/run_all.sh: the bench extra is not installed in $py (datatrove, lm-eval, matplotlib): run $py -m pip install -e '.[bench]'" >&2
  exit 2
fi

cores=$(nproc)
load1=$(cut -d' ' -f1 /proc/loadavg)
limit=$(awk -v c="$cores" 'BEGIN { printf "%.2f", c / 4 }')
before="$(date -u '+%F %T UTC'): $(uptime)"
if awk -v l="$load1" -v m="$limit" 'BEGIN { exit !(l > m) }'; then
  echo "!! machine is busy: load average $load1 > $limit on $cores cores ($(uptime))" >&2
  if [ "$allow_busy" -eq 0 ]; then
    echo "!! not starting: figures from a busy machine are not worth recording (--allow-busy to run anyway)" >&2
    exit 3
  fi
  echo "!! --allow-busy: running anyway; the run_all section will say so" >&2
fi

order=(bench_train bench_eval bench_pack bench_clean bench_dedup bench_dpo bench_export bench_plan bench_hetero
       bench_quickstart)
scripts=()
for name in "${order[@]}"; do
  [ -f "bench/$name.py" ] && scripts+=("$name")
done
for path in bench/bench_*.py; do
  name=$(basename "$path" .py)
  [[ " ${scripts[*]} " == *" $name "* ]] || scripts+=("$name")
done

status=0
failed=()
for name in "${scripts[@]}"; do
  echo "== $name ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"
  if ! "$py" -m "bench.$name"; then
    echo "!! $name failed" >&2
    failed+=("$name")
    status=1
  fi
done
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo "== gpu_train ($(date +%T))"
  "$py" -m bench.gpu_train || { echo "!! gpu_train failed" >&2; failed+=(gpu_train); status=1; }
else
  echo "== gpu_train skipped: no GPU on this machine"
fi
after="$(date -u '+%F %T UTC'): $(uptime)"

BEFORE="$before" AFTER="$after" SCRIPTS="${scripts[*]}" FAILED="${failed[*]:-}" BUSY="$allow_busy" "$py" - <<'EOF'
import os

from bench.report import machine_description, update_section

busy = os.environ["BUSY"] == "1" and "load average above the idle limit at the start (--allow-busy); " or ""
body = "\n".join([
    "## This page's run (`bench/run_all.sh`)", "",
    f"Machine: {machine_description()}", "",
    f"Scripts, in order: {', '.join(os.environ['SCRIPTS'].split())}; failed: {os.environ['FAILED'] or 'none'}.", "",
    f"- before: `{os.environ['BEFORE']}`",
    f"- after: `{os.environ['AFTER']}`", "",
    f"{busy}Load averages are 1, 5 and 15 minutes; the run refuses to start above cores / 4.",
])
update_section("run_all", body)
print(body)
EOF
if [ "$status" -ne 0 ]; then
  echo "!! FAILED: ${failed[*]}" >&2
fi
echo "== done ($(date +%T)): docs/BENCHMARKS.md"
exit "$status"
