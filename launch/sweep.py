"""Sweeps: a base experiment plus a grid, list or random sample over dotted keys, run as one Slurm job array.

The sweep folder holds sweep.json (every run: index, hash, values, folder), configs.txt (run I's config on
line I+1, for people and scripts; the array jobs carry their own list), a run folder per config, and the
results table (results.md/.csv/.json) across the sweep. Runs whose launch or hardware settings differ (a sweep
over launch.time, say) go into one array each, so every task gets its own run's resources.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from triglot.launch.clusters import check_account, load_cluster
from triglot.launch.frozen import freeze_config, frozen_config_path
from triglot.launch.results import collect_results
from triglot.launch.sbatch import CONFIG_VAR, SBATCH_SAFE, JobSpec, Step
from triglot.launch.slurm import JOBS_DIR, job_config, record_job, sbatch, submit_chain, write_script
from triglot.launch.sweep_files import DONE_MARKER

from triglot.config import config_hash, load_config, save_config, to_container
from triglot.config.launch import SweepSpec
from triglot.config.loader import _read_yaml
from triglot.errors import ConfigError
from triglot.stages import STAGES

log = logging.getLogger(__name__)


def load_sweep(path: Path) -> Any:
    """The sweep file, checked: a ConfigError names the file and the key (parameters.<key>, runs[i]) to fix."""
    body = _read_yaml(path)
    if not isinstance(body.get("parameters", {}), dict):
        raise ConfigError(f"{path}: parameters must be a mapping of dotted key -> values (e.g. train.lr: [0.001, "
                          f"0.003]), got {type(body['parameters']).__name__}")
    runs = body.get("runs", [])
    if not isinstance(runs, list):
        raise ConfigError(f"{path}: runs must be a list of mappings of dotted key -> value (e.g. - {{train.lr: "
                          f"0.001}}), got {type(runs).__name__}")
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise ConfigError(f"{path}: runs[{i}] must be a mapping of dotted key -> value (e.g. {{train.lr: "
                              f"0.001}}), got {run!r}")
    try:
        spec = OmegaConf.merge(OmegaConf.structured(SweepSpec), body)
        OmegaConf.to_container(spec, throw_on_missing=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or ""
        raise ConfigError(f"{path}: sweep key '{key}': {str(err).splitlines()[0]}") from None
    except (TypeError, ValueError) as err:  # OmegaConf's own errors for some container mismatches
        raise ConfigError(f"{path}: {err}; see configs/sweeps/ for the shape of a sweep file") from None
    if spec.method not in ("grid", "list", "random"):
        raise ConfigError(f"{path}: method is '{spec.method}'; use grid, list or random")
    for stage in spec.stages:
        if stage not in STAGES:
            raise ConfigError(f"{path}: unknown stage '{stage}' in stages; stages are: {', '.join(STAGES)}")
    names = [*spec.parameters, *(key for run in spec.runs for key in run)]
    for name in names:
        if not DOTTED_KEY.fullmatch(str(name)):
            raise ConfigError(f"{path}: sweep parameter {str(name)!r} is not a dotted config key "
                              "(e.g. train.lr or model.hidden_size)")
    try:
        expand(spec)  # every value spec checked (and drawn) here, before any config is composed
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return spec


DOTTED_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", re.ASCII)


def _draw(rng: random.Random, key: str, values: Any) -> Any:
    """One random value of parameters.<key>: a choice from a list, or uniform (log-uniform) in {min, max}."""
    if isinstance(values, list) and values:
        return rng.choice(values)
    shape = "a non-empty list of values or {min: , max: } (add log: true for log-uniform)"
    if not isinstance(values, dict):
        raise ConfigError(f"parameters.{key}: a random sweep needs {shape}; got {values!r}")
    unknown = sorted(set(values) - {"min", "max", "log"})
    if unknown or "min" not in values or "max" not in values:
        raise ConfigError(f"parameters.{key}: a random range needs min and max" +
                          (f" (unknown key '{unknown[0]}')" if unknown else "") + f"; write {shape}")
    bounds = []
    for bound in ("min", "max"):
        value = values[bound]
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ConfigError(f"parameters.{key}.{bound}: {value!r} is not a finite number")
        bounds.append(number)
    low, high = bounds
    if low > high:
        raise ConfigError(f"parameters.{key}: min {low:g} is above max {high:g}")
    log_scale = values.get("log", False)
    if not isinstance(log_scale, bool):
        raise ConfigError(f"parameters.{key}.log: must be true or false, got {log_scale!r}")
    if log_scale:
        if low <= 0:
            raise ConfigError(f"parameters.{key}: a log range needs min > 0, got {low:g}; set a positive min or "
                              "log: false")
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    return rng.uniform(low, high)


def expand(spec: Any) -> list[dict[str, Any]]:
    """The sweep's points: one mapping of dotted key -> value per run, in a fixed order."""
    params = OmegaConf.to_container(spec.parameters)
    if spec.method == "list":
        points = [dict(run) for run in OmegaConf.to_container(spec.runs)]
    elif spec.method == "grid":
        for key, values in params.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"parameters.{key}: a grid needs a non-empty list of values, got {values!r}")
        keys = list(params)
        points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*params.values())]
    else:
        if spec.samples < 1:
            raise ConfigError("a random sweep needs samples >= 1")
        rng = random.Random(spec.seed)
        points = [{key: _draw(rng, key, values) for key, values in params.items()} for _ in range(spec.samples)]
    if not points:
        raise ConfigError(f"sweep '{spec.name}' expands to no runs; set parameters (grid, random) or runs (list)")
    return points


def sweep_dir(spec: Any) -> Path:
    return Path(spec.dir or f"runs/sweeps/{spec.name}")


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value, ensure_ascii=False)}"  # JSON is YAML: strings stay strings


def point_tag(key: str, value: Any) -> str:
    text = f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
    return text[:64]  # W&B's tag length limit


def run_folder_name(point: dict[str, Any], digest: str) -> str:
    """`lr=0.003_hidden_size=64-1a2b3c4d`: the overrides by their last key part, then the config hash's start.

    A key whose last part two keys share keeps its full dotted name; the hash keeps names unique.
    """
    last = [key.rsplit(".", 1)[-1] for key in point]
    parts = []
    for key, short in zip(point, last, strict=True):
        value = point[key]
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{short if last.count(short) == 1 else key}={text}")
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "-", "_".join(parts)).strip("-_")[:100]
    return f"{name}-{digest[:8]}" if name else digest[:8]


def write_sweep(spec: Any, overrides: list[str] = (), write: bool = True,
                for_cluster: bool = False) -> tuple[Path, list[dict]]:
    """Compose every run's config and (unless `write` is false) save them; returns the sweep folder and runs.

    Each run reads its frozen config (<run>/configs/<hash>.yaml, listed in configs.txt); sweep.json lists them.
    For Slurm (`for_cluster`), `hardware: auto` resolves for the cluster's nodes (launch.slurm.job_config).
    """
    compose = job_config if for_cluster else load_config
    root = sweep_dir(spec)
    points = expand(spec)
    varied = sorted({key for point in points for key in point})
    runs = []
    for index, point in enumerate(points):
        base_overrides = [*spec.overrides, *overrides, *(_override(k, v) for k, v in point.items())]
        digest = config_hash(compose(spec.base, base_overrides))
        run_dir = root / "runs" / run_folder_name(point, digest)
        tags = [f"sweep:{spec.name}", *(point_tag(k, point[k]) for k in varied if k in point)]
        cfg = compose(spec.base, [*base_overrides, _override("run.name", f"{spec.name}-{index:03d}"),
                                      _override("run.dir", str(run_dir)), _override("tracking.group", spec.name)])
        cfg.tracking.tags = list(cfg.tracking.tags) + tags
        config_path = freeze_config(cfg) if write else frozen_config_path(cfg)
        if write:
            save_config(cfg, run_dir / "config.yaml")  # for people; the job reads the frozen file
        runs.append({"index": index, "hash": digest, "values": point, "run_dir": str(run_dir),
                     "config": str(config_path), "done": is_done(run_dir, digest)})
        COMPOSED[str(config_path)] = cfg
    if write:
        manifest = {"name": spec.name, "base": spec.base, "method": spec.method, "varied": varied,
                    "stages": list(spec.stages), "group": spec.name, "runs": runs}
        root.mkdir(parents=True, exist_ok=True)
        (root / "sweep.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        (root / "configs.txt").write_text("".join(r["config"] + "\n" for r in runs), encoding="utf-8")
    return root, runs


# Configs composed by write_sweep in this process, by frozen path: a dry run has not written them.
COMPOSED: dict[str, Any] = {}


def run_config(run: dict) -> Any:
    return COMPOSED.get(run["config"]) or load_config(run["config"])


def runs_table(runs: list[dict]) -> str:
    """index, overrides, run folder and state of each run, as aligned text."""
    rows = [("index", "overrides", "run folder", "state")]
    rows += [(f"{r['index']:03d}", " ".join(_override(k, v) for k, v in r["values"].items()), r["run_dir"],
              "finished" if r["done"] else "to run") for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
                     for row in rows)


def is_done(run_dir: Path, digest: str) -> bool:
    marker = run_dir / DONE_MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == digest


def stage_command(stage: str, config: str) -> list[str]:
    """Distributed stages always go through torchrun (one process too), others run as plain commands."""
    spec = STAGES[stage]
    if spec.distributed:
        from triglot.launch.local import torchrun_command

        nproc = max(1, int(load_config(config).run.nproc_per_node))
        return torchrun_command(stage, Path(config), nproc)
    return [sys.executable, "-m", "triglot", *spec.command, config]


def run_local(runs: list[dict], stages: list[str]) -> list[int]:
    """Run the unfinished configs one after another, stage by stage; returns the indices that ran."""
    ran = []
    for run in runs:
        if run["done"]:
            log.info("sweep run %03d already finished; skipping it", run["index"])
            continue
        for stage in stages:
            cmd = stage_command(stage, run["config"])
            log.info("sweep run %03d: %s", run["index"], shlex.join(cmd))
            if subprocess.run(cmd).returncode != 0:
                raise SystemExit(f"sweep run {run['index']:03d} failed in stage {stage}; see {run['run_dir']}")
        (Path(run["run_dir"]) / DONE_MARKER).write_text(run["hash"] + "\n", encoding="utf-8")
        ran.append(run["index"])
    return ran


def job_shape(cfg: Any) -> str:
    """What of a run's config its array script is made from: the launch and hardware sections, ranks per node.

    Runs of one shape share an array; a sweep over, say, launch.time or run.nproc_per_node has several shapes.
    """
    return json.dumps({"launch": to_container(cfg.launch), "hardware": to_container(cfg.hardware),
                       "nproc_per_node": int(cfg.run.nproc_per_node)}, sort_keys=True, default=str)


def shape_groups(todo: list[dict]) -> list[list[dict]]:
    """The runs to submit, grouped by job shape in the order their first run appears."""
    groups: dict[str, list[dict]] = {}
    for run in todo:
        groups.setdefault(job_shape(run_config(run)), []).append(run)
    return list(groups.values())


def sweep_jobs(spec: Any, root: Path, todo: list[dict], sweep_file: Path, part: int = 0,
               parts: int = 1) -> tuple[JobSpec, JobSpec]:
    """One array job over runs of one shape (task I runs run I's config) and a results job after it.

    The array's resources (nodes, ranks, time, partition, env) come from its runs' common launch and hardware
    sections; `part` of `parts` names the array when a sweep needs several.
    """
    first = run_config(todo[0])
    steps = []
    for stage in spec.stages:
        steps.extend([Step(stage, [*STAGES[stage].command, CONFIG_VAR],
                           f"stage {stage} of this task's config", STAGES[stage].distributed)])
    steps.append(Step("mark-done", ["sweep", str(sweep_file.resolve()), "--mark-done", CONFIG_VAR],
                      "mark this config finished so a rerun of the sweep skips it"))
    ranks = max(1, int(first.launch.gpus_per_node) or int(first.run.nproc_per_node))
    name = f"sweep-{spec.name}" + (f"-part{part + 1}of{parts}" if parts > 1 else "")
    array = JobSpec(name=name, run_dir=root, steps=steps, invocation=f"sweep {sweep_file}",
                    configs={int(r["index"]): str(Path(r["config"]).resolve()) for r in todo},
                    array=",".join(str(r["index"]) for r in todo), nodes=int(first.launch.nodes),
                    ranks_per_node=ranks, gpus_per_node=int(first.launch.gpus_per_node))
    results = JobSpec(name=f"sweep-{spec.name}-results", run_dir=root, invocation=f"sweep {sweep_file} --collect",
                      steps=[Step("results", ["sweep", str(sweep_file.resolve()), "--collect"],
                                  "results table across the sweep")], config=todo[0]["config"])
    return array, results


def submit_sweep(spec: Any, root: Path, runs: list[dict], sweep_file: Path, dry_run: bool) -> dict:
    """Submit the unfinished runs: one array per job shape (usually one), then the results job after all."""
    todo = [r for r in runs if not r["done"]]
    if not todo:
        return {"submitted": False, "reason": "every config has finished"}
    folder = str(root.resolve())
    if not SBATCH_SAFE.fullmatch(folder):
        raise ConfigError(f"{sweep_file}: the sweep folder {folder!r} (its `dir`, else runs/sweeps/<name>) cannot "
                          "be written on an #SBATCH line; set dir: to a path of letters, digits and _.,:/@+=-")
    groups = shape_groups(todo)
    arrays, texts, results = [], [], None
    for part, group in enumerate(groups):
        first = run_config(group[0])
        cluster = load_cluster(str(first.launch.cluster))
        if not dry_run:
            check_account(cluster)
        array, results = sweep_jobs(spec, root, group, sweep_file, part, len(groups))
        [record] = submit_chain([array], first, cluster, dry_run=dry_run)
        arrays.append(record)
        texts.append(record["text"])
    first = run_config(todo[0])
    cluster = load_cluster(str(first.launch.cluster))
    [results_record] = submit_chain([results], first, cluster, dry_run=True)
    if not dry_run:
        dependency = "afterany:" + ":".join(record["job_id"] for record in arrays)
        script = write_script(results, results_record.pop("text"))
        results_record.update(script=str(script.resolve()), job_id=sbatch(script, dependency), dependency=dependency)
        record_job(root, results_record)
    return {"submitted": not dry_run, "array_job": arrays[0]["job_id"],
            "array_jobs": [record["job_id"] for record in arrays], "results_job": results_record["job_id"],
            "tasks": [r["index"] for r in todo], "script": arrays[0]["script"],
            "scripts": [record["script"] for record in arrays], "script_text": "\n".join(texts)}


def mark_done(config: Path) -> None:
    """Called by an array task after its stages succeeded."""
    found = next((p / "sweep.json" for p in config.resolve().parents if (p / "sweep.json").is_file()), None)
    if found is None:
        raise ConfigError(f"{config} is not inside a sweep folder (no sweep.json above it)")
    manifest = json.loads(found.read_text(encoding="utf-8"))
    for run in manifest["runs"]:
        if Path(run["config"]) == config.resolve():
            (Path(run["run_dir"]) / DONE_MARKER).write_text(run["hash"] + "\n", encoding="utf-8")
            return
    raise ConfigError(f"{config} is not a config of sweep {manifest['name']}")


def run_sweep(path: Path, dry_run: bool = False, local: bool = False, collect: bool = False,
              overrides: list[str] = (), mark_done_config: str = "") -> dict:
    """`triglot sweep FILE`: expand, write, then submit one array (or run here with --local) and tabulate."""
    spec = load_sweep(path)
    if mark_done_config:
        mark_done(Path(mark_done_config))
        return {"marked": mark_done_config}
    if collect:
        return collect_results(sweep_dir(spec))
    root, runs = write_sweep(spec, list(overrides), write=not dry_run, for_cluster=not local)
    summary = {"sweep": spec.name, "dir": str(root), "runs": len(runs), "finished_before": sum(r["done"] for r in runs)}
    if dry_run:
        summary["table"] = runs_table(runs)
    if local:
        summary["ran"] = run_local(runs, list(spec.stages))
        summary["results"] = collect_results(root)
    else:
        summary.update(submit_sweep(spec, root, runs, path, dry_run))
    if not dry_run:
        (root / JOBS_DIR).mkdir(exist_ok=True)
    return summary
