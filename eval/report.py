"""The run's eval report: every scored model side by side, with chance level, and PNG plots.

`<eval root>/summary.md` is rewritten after each eval from every `<eval root>/*/results.json`, so the
pretrained checkpoints and the fine-tuned model of one run are read in one table.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from triglot.eval.results import few, few_note, pct, spread_table

log = logging.getLogger(__name__)


def scored_models(eval_root: Path) -> dict[str, dict]:
    """label -> results.json of every model scored below `eval_root`: checkpoints by step, then exports."""
    found = {}
    for path in eval_root.glob("*/results.json"):
        try:
            found[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s is unreadable; left out of the run's summary", path)

    def order(item: tuple[str, dict]) -> tuple[int, int, str]:
        step = item[1].get("checkpoint", {}).get("step")
        return (0 if step is not None else 1, step or 0, item[0])

    return dict(sorted(found.items(), key=order))


def comparison_markdown(models: dict[str, dict], plots: list[str] = ()) -> str:
    """Accuracy per suite for every model, chance level and question counts beside them."""
    labels = list(models)
    lines = ["# Eval of this run's models", "",
             "Accuracy in % (weighted: every question once). **chance** is what guessing scores; "
             "⚠ marks rows with too few questions to mean much.", ""]
    for label, res in models.items():
        ck = res["checkpoint"]
        lines.append(f"- **{label}**: {ck['path']}" + (f" (training step {ck['step']})" if ck.get("step") is not None
                                                        else ""))
    lines += ["", "| suite | split | questions | chance | " + " | ".join(labels) + " |",
              "|---|---|---|---|" + "---|" * len(labels)]
    suites: dict[str, dict] = {}
    for res in models.values():
        for name, s in res["scores"].items():
            suites.setdefault(name, s)
    for name, first in suites.items():
        cells = [pct(m["scores"][name]["overall"]["accuracy_question_weighted"]) if name in m["scores"] else "—"
                 for m in models.values()]
        lines.append(f"| {name} | {first['split']} | {few(first['overall']['questions'])} | "
                     f"{pct(first['overall'].get('chance'))} | " + " | ".join(cells) + " |")
    lines += few_note(suites)
    lines += generation_comparison(models)
    languages = sorted({lang for m in models.values() for lang in (m.get("perplexity") or {})})
    if languages:
        lines += ["", "Held-out text, bits per character (lower is better):", "",
                  "| language | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for lang in languages:
            cells = [f"{m['perplexity'][lang]['bits_per_character']:.4f}" if lang in (m.get("perplexity") or {})
                     else "—" for m in models.values()]
            lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    lines += ["", *spread_table(models)]
    if plots:
        lines += ["", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots]]
    return "\n".join(lines) + "\n"


def generation_comparison(models: dict[str, dict]) -> list[str]:
    """chrF per generation task and subject (translation: direction) for every model."""
    keys = list(dict.fromkeys((name, subject) for m in models.values() for name, g in (m.get("generation") or {}).items()
                              for subject in g["subjects"]))
    if not keys:
        return []
    lines = ["", "Generation, chrF (0-100):", "", "| suite | subject | " + " | ".join(models) + " |",
             "|---|---|" + "---|" * len(models)]
    for name, subject in keys:
        cells = [f"{m['generation'][name]['subjects'][subject]['chrf']:.2f}"
                 if subject in (m.get("generation") or {}).get(name, {}).get("subjects", {}) else "—"
                 for m in models.values()]
        lines.append(f"| {name} | {subject} | " + " | ".join(cells) + " |")
    return lines


def validation_curves(run_dir: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{job: {language: [(step, val_loss)]}} from the run's training and fine-tuning metrics."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for job, path in (("pretrain", run_dir / "checkpoints" / "metrics.jsonl"),
                      ("sft", run_dir / "sft" / "checkpoints" / "metrics.jsonl")):
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            for key, value in rec.items():
                if key.startswith("val_loss/") and "step" in rec:
                    curves.setdefault(job, {}).setdefault(key.split("/", 1)[1], []).append((rec["step"], value))
    return curves


def write_plots(models: dict[str, dict], run_dir: Path | None, out_dir: Path) -> list[str]:
    """scores.png (accuracy per suite per model, chance dashed) and val_loss.png; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: the eval summary has no plots")
        return []
    written = []
    suites = list(dict.fromkeys(name for m in models.values() for name in m["scores"]))
    if suites:
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(suites)), 3.5))
        width = 0.8 / max(1, len(models))
        for i, (label, res) in enumerate(models.items()):
            values = [100 * (res["scores"].get(s, {}).get("overall", {}).get("accuracy_question_weighted") or 0)
                      for s in suites]
            ax.bar([j + i * width for j in range(len(suites))], values, width, label=label)
        for j, s in enumerate(suites):
            chance = next((m["scores"][s]["overall"].get("chance") for m in models.values() if s in m["scores"]), None)
            if chance:
                ax.hlines(100 * chance, j - width / 2, j + 0.8 - width / 2, colors="k", linestyles="dashed")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(suites))], suites, rotation=20)
        ax.set_ylabel("accuracy % (dashed: chance)")
        written.append(_save(fig, ax, out_dir / "scores.png"))
    curves = validation_curves(run_dir) if run_dir else {}
    if curves:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for job, by_lang in curves.items():
            for lang, points in sorted(by_lang.items()):
                ax.plot(*zip(*sorted(points), strict=True), linestyle="-" if job == "pretrain" else "--",
                        label=f"{job} {lang}")
        ax.set_xlabel("step")
        ax.set_ylabel("validation loss")
        written.append(_save(fig, ax, out_dir / "val_loss.png"))
    return written


def _save(fig: Any, ax: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def write_run_summary(eval_root: Path, run_dir: Path | None) -> Path:
    """Rewrite `<eval root>/summary.md` (and its plots) from every model scored there."""
    models = scored_models(eval_root)
    plots = write_plots(models, run_dir, eval_root)
    path = eval_root / "summary.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(comparison_markdown(models, plots), encoding="utf-8")
    tmp.replace(path)
    return path

