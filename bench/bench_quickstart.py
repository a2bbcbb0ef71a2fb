"""The quickstart end to end, timed, with its loss curves plotted beside the table.

    python -m bench.bench_quickstart                  # runs configs/experiments/quickstart.yaml in a scratch folder
    python -m bench.bench_quickstart --run-dir runs/quickstart   # plots a run that already finished
    python -m bench.bench_quickstart --smoke          # a short quickstart; prints, records nothing

Writes docs/img/quickstart_loss.png and the bench_quickstart section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.report import DOC, machine_description, markdown_table, pyplot, savefig, update_section

EXPERIMENT = "configs/experiments/quickstart.yaml"
SMOKE_STEPS = 20
# A short quickstart that still runs every stage (and one validation) end to end.
SMOKE_OVERRIDES = [f"train.steps={SMOKE_STEPS}", "train.warmup_steps=2", f"train.val_every={SMOKE_STEPS}",
                   "sft.train.steps=4", "sft.train.warmup_steps=1"]


def read_metrics(run_dir: Path, job: str = "train") -> list[dict]:
    path = run_dir / "checkpoints" / "metrics.jsonl"
    return [r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if r.get("job") == job]


def run_name(run_dir: Path) -> str:
    """The run's name from its resolved config, else the folder's name."""
    import yaml

    config = run_dir / "config.yaml"
    if config.is_file():
        return str(yaml.safe_load(config.read_text(encoding="utf-8"))["run"]["name"])
    return run_dir.name


def plot_losses(run_dir: Path, draw: bool = True) -> tuple[str, dict]:
    """Training loss per step and validation loss per language; the figure's path and first/last values."""
    rows = read_metrics(run_dir)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        for key, value in r.items():
            if key.startswith("val_loss/"):
                val[key.split("/", 1)[1]].append((r["step"], value))
    stats = {"first": train[0][1], "last": train[-1][1], "steps": train[-1][0],
             "val": {k: (v[0][1], v[-1][1]) for k, v in sorted(val.items())}}
    if not draw:
        return "not drawn in a smoke run", stats
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train, strict=True), lw=0.8, alpha=0.6, label="train loss")
    for language, points in sorted(val.items()):
        ax.plot(*zip(*points, strict=True), marker="o", label=f"val loss {language}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(f"{run_name(run_dir)}: pretraining loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = savefig(fig, "quickstart_loss.png")
    plt.close(fig)
    return path, stats


def stage_seconds(run_dir: Path) -> list[tuple[str, float]]:
    """(stage and output folder, wall seconds) of each stage in the order they ran, from their manifests."""
    runs = []
    for path in run_dir.rglob("manifest.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        if "seconds" in record.get("timings", {}):
            label = f"{record['stage']} (`{path.parent.relative_to(run_dir)}`)"
            runs.append((record["timings"]["started"], label, float(record["timings"]["seconds"])))
    return [(label, seconds) for _, label, seconds in sorted(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="plot this finished run instead of running the quickstart")
    parser.add_argument("--smoke", action="store_true",
                        help=f"the quickstart with {SMOKE_STEPS} training steps; prints, records nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-quickstart-") as tmp:
        run_dir, wall = args.run_dir, None
        if run_dir is None:
            run_dir = Path(tmp) / "quickstart"
            started = time.perf_counter()
            smoke = SMOKE_OVERRIDES if args.smoke else []
            subprocess.run([sys.executable, "-m", "triglot", "run", EXPERIMENT, f"run.dir={run_dir}", *smoke],
                           check=True)
            wall = time.perf_counter() - started
        if not (run_dir / "checkpoints" / "metrics.jsonl").is_file():
            print(f"{run_dir} has no training metrics: run the quickstart first")
            return 2
        figure, stats = plot_losses(run_dir, draw=not args.smoke)
        stages = stage_seconds(run_dir)
    val = ", ".join(f"{k} {a:.2f} -> {b:.2f}" for k, (a, b) in stats["val"].items())
    lines = [
        "## Quickstart (`bench/bench_quickstart.py`)", "",
        f"Machine: {machine_description()}", "",
        f"`triglot run {EXPERIMENT}`: tiny Llama, 2 CPU ranks, ZeRO-2, fp32. Training loss "
        f"{stats['first']:.2f} -> {stats['last']:.2f} over {stats['steps']} steps; validation loss by language: {val}."
        + (f" Whole run: {wall / 60:.1f} minutes." if wall else ""),
    ]
    if stages:
        lines += ["", markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in stages])]
    lines += ["", f"![quickstart loss]({figure})"]
    body = "\n".join(lines)
    if args.smoke:
        print("(smoke run: docs/BENCHMARKS.md left unchanged)")
        print(body)
        return 0
    update_section("bench_quickstart", body)
    print(body)
    print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
