"""The summary `triglot run` ends with: stages and their times, losses, eval scores, where things are, what next.

Read from the run folder's artifacts (metrics.jsonl, eval results.json), so it says what the run holds,
whichever attempt made it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Every built-in suite asks four-choice (A-D) questions.
CHANCE = 0.25


@dataclass
class StageOutcome:
    name: str
    status: str  # "ran", "current" (skipped: its manifest is current) or "not installed"
    seconds: float


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _records(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def loss_lines(run: Path) -> list[str]:
    """Final train loss and the last validation loss per language, for pretraining and fine-tuning."""
    lines = []
    for job, path in (("train", run / "checkpoints" / "metrics.jsonl"), ("sft", run / "sft" / "checkpoints" /
                                                                         "metrics.jsonl")):
        records = _records(path)
        losses = [r for r in records if "loss" in r and "step" in r]
        if not losses:
            continue
        last = losses[-1]
        val: dict[str, float] = {}
        for r in records:
            val.update({k.split("/", 1)[1]: float(v) for k, v in r.items() if k.startswith("val_loss/")})
        text = f"{job:<8} final loss {float(last['loss']):.3f} at step {last['step']}; validation loss "
        text += ", ".join(f"{lang} {v:.3f}" for lang, v in sorted(val.items())) if val else "not measured"
        lines.append(text)
    return lines


def eval_table(run: Path) -> list[str]:
    """Each suite's accuracy per scored model, side by side, with the number of questions and chance level."""
    models: dict[str, dict] = {}
    for path in sorted((run / "eval").glob("*/results.json")):
        try:
            models[path.parent.name] = json.loads(path.read_text(encoding="utf-8")).get("scores", {})
        except (OSError, ValueError):
            continue
    suites = sorted({suite for scores in models.values() for suite in scores})
    if not suites:
        return []
    names = list(models)
    width = max(12, *(len(n) for n in names))
    rows = ["suite".ljust(16) + "".join(n.rjust(width + 2) for n in names) + "chance".rjust(9)]
    for suite in suites:
        cells = []
        for name in names:
            overall = models[name].get(suite, {}).get("overall", {})
            acc = overall.get("accuracy_question_weighted", overall.get("accuracy_micro"))
            cells.append((f"{100 * acc:.1f} (n={overall.get('questions', 0)})" if acc is not None else "-")
                         .rjust(width + 2))
        chance = next((m[suite].get("chance") for m in models.values() if m.get(suite, {}).get("chance")), CHANCE)
        rows.append(suite.ljust(16) + "".join(cells) + f"{100 * float(chance):.1f}".rjust(9))
    return rows


def artifact_lines(run: Path) -> tuple[list[str], list[str]]:
    """(reports, models) that exist in the run folder."""
    reports = [p for p in (run / "data" / "clean" / "report.md", run / "tokenizer" / "fertility.md",
                           run / "eval" / "summary.md") if p.is_file()]
    models = [(label, p) for label, p in (("pretrained model", run / "export"), ("chat model", run / "sft" / "export"))
              if (p / "config.json").is_file()]
    return [str(p) for p in reports], [f"{label}: {p}" for label, p in models]


def next_commands(run: Path, config: str) -> list[str]:
    chat = run / "sft" / "export"
    model = chat if (chat / "config.json").is_file() else run / "export"
    lines = []
    if (model / "config.json").is_file():
        lines.append(f"triglot chat {shlex.quote(str(model))}")
    if (run / "eval" / "summary.md").is_file():
        lines.append(f"less {shlex.quote(str(run / 'eval' / 'summary.md'))}")
    if list(run.glob("wandb/offline-run-*")):
        lines.append(f"wandb sync {shlex.quote(str(run))}/wandb/offline-run-* {shlex.quote(str(run))}/sft/wandb/"
                     "offline-run-*")
    lines.append(f"triglot run {shlex.quote(config)} train.steps=1000 run.dir={shlex.quote(str(run))}-long"
                 "   # a longer run in a folder of its own")
    return lines


def run_summary(cfg: Any, outcomes: list[StageOutcome], config: str) -> str:
    """The closing summary of `triglot run`, as printed."""
    run = Path(cfg.run.dir)
    total = sum(o.seconds for o in outcomes)
    out = [f"== triglot run {cfg.run.name}: finished in {duration(total)}, run folder {run}", "stages:"]
    for o in outcomes:
        what = {"ran": "ran", "current": "skipped (current)"}.get(o.status, f"skipped ({o.status})")
        out.append(f"  {o.name:<10} {what:<18} {duration(o.seconds):>7}")
    losses = loss_lines(run)
    if losses:
        out += ["losses:", *(f"  {line}" for line in losses)]
    table = eval_table(run)
    if table:
        out += ["eval accuracy, % (n = questions; few questions mean little):", *(f"  {line}" for line in table)]
    reports, models = artifact_lines(run)
    if reports:
        out += ["reports:", *(f"  {r}" for r in reports)]
    if models:
        out += ["models:", *(f"  {m}" for m in models)]
    out += ["next:", *(f"  {c}" for c in next_commands(run, config))]
    return "\n".join(out)
