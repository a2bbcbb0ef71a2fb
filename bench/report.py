"""Shared by bench scripts: describe the machine and update one section of docs/BENCHMARKS.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
RESULTS = DOC.with_name("benchmarks.json")  # every goal's latest measurement, for the summary table
IMG = DOC.parent / "img"
PACKAGES = ("torch", "deepspeed", "transformers", "tokenizers", "datasets", "datatrove", "lm_eval")


def machine_description() -> str:
    """CPU model, cores, memory, GPU and package versions, as one markdown line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{mem_kb / 1024 ** 2:.0f} GiB"
    except (OSError, AttributeError):
        mem = "unknown"
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip() or "none"
    except (OSError, subprocess.SubprocessError):
        gpu = "none"
    versions = []
    for pkg in PACKAGES:
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return (f"{cpu}, {os.cpu_count()} cores, {mem} RAM, GPU: {gpu}; Python {platform.python_version()}; "
            + ", ".join(versions))


def update_section(name: str, body: str, doc: Path = DOC) -> Path:
    """Replace (or append) the section between `<!-- bench:NAME -->` markers with `body`."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")
    return doc


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def goal(measure: str, value: float, target: float, *, at_most: bool = False, unit: str = "",
         baseline: str = "") -> dict:
    """One measured ratio against its goal (at least `target`, or at most with `at_most`).

    `baseline` names what the ratio is measured against, with its version (see `versions`).
    """
    met = value <= target if at_most else value >= target
    out = {"measure": measure, "value": round(float(value), 4), "goal": f"{'<=' if at_most else '>='} {target:g}{unit}",
           "unit": unit, "met": bool(met)}
    return {**out, "baseline": baseline} if baseline else out


def versions(*packages: str) -> str:
    """'torch 2.13.0+cpu, deepspeed 0.19.8': installed versions of the named packages (missing ones skipped)."""
    found = []
    for pkg in packages:
        try:
            found.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def publish(section: str, body: str, goals: list[dict], record: bool = True) -> None:
    """Write the section and its goals, or with `record=False` (smoke runs on a busy machine) only print them."""
    if record:
        update_section(section, body)
        record_goals(section, goals)
    else:
        print("(smoke run: docs/BENCHMARKS.md and docs/benchmarks.json left unchanged)")
        for g in goals:
            print(f"goal: {g['measure']} = {_number(g['value'])}{g['unit']} ({g['goal']}, "
                  f"{'met' if g['met'] else 'NOT met'}) against {g.get('baseline', '-')}")
    print(body)


def record_goals(section: str, goals: list[dict], results: Path = RESULTS, doc: Path = DOC) -> None:
    """Store this section's goals with the date and machine, then rewrite the summary table at the top."""
    stored = json.loads(results.read_text(encoding="utf-8")) if results.exists() else {}
    stored[section] = {"date": datetime.date.today().isoformat(), "machine": machine_description(), "goals": goals}
    results.write_text(json.dumps(stored, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    rows = [[f"`bench/{name}.py`", g["measure"], g.get("baseline", ""), f"{_number(g['value'])}{g['unit']}", g["goal"],
             "met" if g["met"] else "**NOT met**", entry["date"]]
            for name, entry in stored.items() for g in entry["goals"]]
    body = "\n".join(["## Summary: every goal", "",
                      "The latest measurement of each ratio with a goal; details, machine and baseline in the "
                      "script's section below.", "",
                      markdown_table(["script", "measure", "baseline", "value", "goal", "status", "measured"], rows)]
                     + ([] if "gpu_train" in stored else [
                         "", "GPU goals (`bench/gpu_train.py`: MFU >= 45% on an H100 or H200, tokens/s against a plain "
                         "PyTorch loop): not measured yet, see the GPU section."]))
    update_section("summary", body, doc)


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.3g}"


def savefig(fig, name: str) -> str:
    """Save a matplotlib figure under docs/img and return its path relative to BENCHMARKS.md."""
    IMG.mkdir(parents=True, exist_ok=True)
    out = IMG / name
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return str(out.relative_to(DOC.parent))


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
