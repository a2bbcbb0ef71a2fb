"""Plots beside the benchmark tables: loss curves of a run (the quickstart by default).

    python -m bench.plots [RUN_DIR]    # writes docs/img/quickstart_loss.png and updates its section
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from bench.report import DOC, machine_description, update_section

IMG = DOC.parent / "img"


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


def plot_losses(run_dir: Path, out: Path) -> dict:
    """Training loss per step and validation loss per language; returns first/last values for the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        for key, value in r.items():
            if key.startswith("val_loss/"):
                val[key.split("/", 1)[1]].append((r["step"], value))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train, strict=True), lw=0.8, alpha=0.6, label="train loss")
    for language, points in sorted(val.items()):
        ax.plot(*zip(*points, strict=True), marker="o", label=f"val loss {language}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(f"{run_name(run_dir)}: pretraining loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return {"first": train[0][1], "last": train[-1][1], "steps": train[-1][0],
            "val": {k: (v[0][1], v[-1][1]) for k, v in sorted(val.items())}}


def main() -> int:
    run_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")
    if not (run_dir / "checkpoints" / "metrics.jsonl").is_file():
        print(f"{run_dir} has no training metrics: run the quickstart first")
        return 2
    out = IMG / "quickstart_loss.png"
    stats = plot_losses(run_dir, out)
    val = ", ".join(f"{k} {a:.2f} -> {b:.2f}" for k, (a, b) in stats["val"].items())
    body = "\n".join([
        "## Quickstart loss curves (`bench/plots.py`)",
        "",
        f"Machine: {machine_description()}",
        "",
        f"Tiny Llama, 2 CPU ranks, ZeRO-2, fp32: training loss {stats['first']:.2f} -> {stats['last']:.2f} over "
        f"{stats['steps']} steps; validation loss by language: {val}.",
        "",
        f"![quickstart loss]({out.relative_to(DOC.parent)})",
    ])
    update_section("plots", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
