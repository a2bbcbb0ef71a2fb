"""The clean stage: plan work units over the sources, clean them in worker processes, then merge.

`run_clean_stage(cfg)` does everything on one node; with `shard=(i, n)` it cleans only slice i of n
(a Slurm array task) and `merge_clean_stage(cfg)` later deduplicates globally and writes the output.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import fields
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tqdm import tqdm
from triglot.data_pipeline.merge import merge_units
from triglot.data_pipeline.readers import FORMATS
from triglot.data_pipeline.report import build_report, write_report
from triglot.data_pipeline.stats import CleanStats
from triglot.data_pipeline.worker import WorkUnit, plan_units, process_unit

from triglot.config import config_hash
from triglot.config.data import LANGUAGES, SOURCE_KINDS, Thresholds
from triglot.errors import ConfigError, InputError
from triglot.manifest import MANIFEST, StageManifest
from triglot.paths import fsync_path, stage_dir

log = logging.getLogger(__name__)
PII_TYPES = ("email", "ip", "phone_hk", "phone_cn", "hkid", "cn_id", "card")
# What marks a clean folder complete, the manifest first: a merge removes them before it rewrites any part.
COMPLETION_MARKERS = (MANIFEST, "report.json", "report.md")


def data_options(cfg: Any) -> Any:
    """cfg.data as plain dataclasses (fast attribute access in the per-document loop, picklable)."""
    return OmegaConf.to_object(cfg.data) if OmegaConf.is_config(cfg.data) else cfg.data


def validate(data: Any) -> None:
    """Raise ConfigError naming the key for values the stage cannot use."""
    if not data.sources:
        raise ConfigError("data.sources is empty; list at least one source (see configs/data/quickstart.yaml)")
    for i, spec in enumerate(data.sources):
        where = f"data.sources[{i}] ({spec.name})"
        if spec.format not in FORMATS:
            raise ConfigError(f"{where}.format is '{spec.format}'; use one of {', '.join(FORMATS)}")
        if spec.text_mode not in ("line", "paragraph", "file"):
            raise ConfigError(f"{where}.text_mode is '{spec.text_mode}'; use line, paragraph or file")
        if spec.language is not None and spec.language not in LANGUAGES:
            raise ConfigError(f"{where}.language is '{spec.language}'; use one of {', '.join(LANGUAGES)}")
        if not spec.paths:
            raise ConfigError(f"{where}.paths is empty; give one or more path globs")
        if spec.kind not in SOURCE_KINDS:
            raise ConfigError(f"{where}.kind is '{spec.kind}'; use one of {', '.join(SOURCE_KINDS)}")
        bad = sorted(set(spec.filters) - {f.name for f in fields(Thresholds)})
        if bad:
            raise ConfigError(f"{where}.filters has unknown setting(s) {bad}; use keys of data.filters.<language> "
                              f"({', '.join(f.name for f in fields(Thresholds))})")
    for key, values, allowed in (("keep_languages", data.keep_languages, LANGUAGES),
                                 ("filters", list(data.filters), LANGUAGES), ("pii.types", data.pii.types, PII_TYPES)):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ConfigError(f"data.{key} has {bad}; allowed: {', '.join(allowed)}")
    if data.dedup.bands * data.dedup.rows > data.dedup.num_perm:
        raise ConfigError("data.dedup.bands * data.dedup.rows must not exceed data.dedup.num_perm")
    if data.workers < 1:
        raise ConfigError(f"data.workers is {data.workers}; use 1 or more")


def resolve_sources(data: Any) -> list[tuple[Any, list[Path]]]:
    """Each source with its files (globs expanded, sorted, each real file once however many links or
    `**` paths reach it); a source matching no readable file is an InputError. A match that is not a
    readable regular file (a dangling link, a link loop) stays in the list, so that its unit counts it
    as `cannot_open` with its path."""
    resolved = []
    for spec in data.sources:
        files, broken, seen, repeats = [], [], set(), 0
        for name in sorted({p for pattern in spec.paths for p in glob.glob(pattern, recursive=True)}):
            path = Path(name)
            try:
                real = path.resolve()  # a dangling link resolves to its missing target
            except (OSError, RuntimeError):  # a link loop: named by its resolved folder
                real = path.parent.resolve() / path.name
            if real in seen or path.is_dir():
                repeats += real in seen
                continue
            seen.add(real)
            (files if path.is_file() else broken).append(path)
        if not files:
            found = f"; only broken links or special files: {[str(p) for p in broken[:5]]}" if broken else ""
            raise InputError(f"data source '{spec.name}': no file matches {list(spec.paths)} "
                             f"(relative to {Path.cwd()}){found}; fix data.sources[].paths")
        if repeats:
            log.warning("clean: source %s: %d matched paths are links or `**` paths to files already listed; "
                        "each file is read once", spec.name, repeats)
        if broken:
            log.warning("clean: source %s: %d matched paths are not readable files (dangling links, link loops, "
                        "special files), counted as cannot_open: %s", spec.name, len(broken),
                        ", ".join(map(str, broken[:5])))
        resolved.append((spec, sorted(files + broken)))
    return resolved


def pipeline_fingerprint() -> str:
    """Hash of this package's code and word lists: cached units are reused only by the same pipeline."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted([*package.glob("*.py"), *package.glob("resources/*")]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def work_dir(out_dir: Path, cfg: Any) -> Path:
    """Unit outputs live under a folder named by the config (minus settings that do not change them)
    and the pipeline's code, so a rerun or a later shard reuses finished units and nothing stale."""
    plain = OmegaConf.to_container(cfg.data, resolve=True) if OmegaConf.is_config(cfg.data) else dict(cfg.data)
    for key in ("workers", "output_dir", "rows_per_part", "name"):
        plain.pop(key, None)
    if isinstance(plain.get("dedup"), dict):
        plain["dedup"].pop("partitions", None)  # how the global dedup is split does not change a unit
    plain["pipeline"] = pipeline_fingerprint()
    return out_dir / "_work" / config_hash(plain)


def run_units(units: list[WorkUnit], data: Any, units_dir: Path, workers: int) -> list[dict]:
    """Clean units, largest first, in `workers` processes (in this process when workers == 1)."""
    specs = {i: spec for i, spec in enumerate(data.sources)}
    order = sorted(units, key=lambda u: -u.size / u.parts)
    results = []
    bar = tqdm(total=len(order), desc="clean", unit="unit")
    if workers == 1:
        for unit in order:
            results.append(process_unit(unit, specs[unit.source_index], data, units_dir))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(process_unit, u, specs[u.source_index], data, units_dir) for u in order]
            for future in as_completed(futures):
                results.append(future.result())
                bar.update()
    bar.close()
    return results


def _plan(cfg: Any) -> tuple[Any, Path, list[tuple[Any, list[Path]]], list[WorkUnit]]:
    data = data_options(cfg)
    validate(data)
    out_dir = stage_dir(cfg, "clean", data.output_dir)
    sources = resolve_sources(data)
    return data, out_dir, sources, plan_units(sources, data.unit_bytes, data.max_docs_per_source)


def run_clean_stage(cfg: Any, force: bool = False, workers: int | None = None,
                    shard: tuple[int, int] | None = None) -> dict:
    """Clean every source (or shard i of n of the work units); merge unless only a shard was asked for."""
    data, out_dir, sources, units = _plan(cfg)
    workers = workers or data.workers
    inputs = [str(p) for _, files in sources for p in files]
    manifest = StageManifest.open(out_dir, "clean", cfg.data, inputs)
    if shard is None and manifest.is_current() and not force:
        log.info("clean: %s is up to date; skipping", out_dir)
        return manifest.previous
    units_dir = work_dir(out_dir, cfg) / "units"
    if force and shard is None and units_dir.exists():
        shutil.rmtree(units_dir)
    started = time.time()
    if shard is not None:
        index, count = shard
        mine = [u for j, u in enumerate(units) if j % count == index]
        results = run_units(mine, data, units_dir, workers)
        marker = units_dir.parent / "shards" / f"shard-{index:04d}-of-{count:04d}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        summary = {"shard": index, "of": count, "units": len(mine), "kept_before_dedup": sum(r["kept"] for r in results),
                   "seconds": time.time() - started}
        marker.write_text(json.dumps(summary), encoding="utf-8")
        log.info("clean shard %d/%d: %d units done; run `triglot data merge` when all shards finish",
                 index, count, len(mine))
        return summary
    run_units(units, data, units_dir, workers)
    return _merge(cfg, data, out_dir, units, units_dir, manifest, started, workers)


def merge_clean_stage(cfg: Any, force: bool = False) -> dict:
    """After all shards: global dedup, final shards, report and manifest."""
    data, out_dir, sources, units = _plan(cfg)
    inputs = [str(p) for _, files in sources for p in files]
    manifest = StageManifest.open(out_dir, "clean", cfg.data, inputs)
    if manifest.is_current() and not force:
        return manifest.previous
    return _merge(cfg, data, out_dir, units, work_dir(out_dir, cfg) / "units", manifest, time.time(), data.workers)


def _merge(cfg: Any, data: Any, out_dir: Path, units: list[WorkUnit], units_dir: Path,
           manifest: StageManifest, started: float, workers: int) -> dict:
    from triglot.data_pipeline.worker import unit_done

    stats = CleanStats(data.examples_per_reason)
    missing = []
    for unit in units:
        saved = unit_done(unit, units_dir)
        if saved is None:
            missing.append(unit.uid)
        else:
            stats.add(saved["stats"])
    if missing:
        raise InputError(f"{len(missing)} of {len(units)} work units are not done (first: {missing[0]}); "
                         f"run the missing `triglot data clean --shard I/N` tasks first")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / "_work").glob("*"):
        if stale != units_dir.parent and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)  # units of an older config or pipeline version
    _withdraw_completion(out_dir)
    parts, kept = merge_units([units_dir / f"{u.uid}.parquet" for u in units], out_dir, data, stats)
    report = build_report(stats, kept, time.time() - started, workers)
    report_files = write_report(out_dir, report)
    counts = {k: v for k, v in report["accounting"].items() if k != "balanced"}
    counts["chars_in"], counts["chars_out"] = report["chars_in"], report["chars_out"]
    languages = {k: v["docs_out"] for k, v in report["by_language"].items() if v["docs_out"]}
    log.info("clean: kept %d of %d documents -> %s", kept["docs"], stats.docs_in, out_dir)
    return manifest.write(outputs=[*parts, *report_files], counts=counts, languages=languages,
                          parts=[p.name for p in parts])


def _withdraw_completion(out_dir: Path) -> None:
    """Remove the manifest and reports before the parts are replaced, so a merge that dies midway leaves
    a folder the tokenizer and pack refuse, not an old manifest over new parts."""
    for name in COMPLETION_MARKERS:
        (out_dir / name).unlink(missing_ok=True)
    fsync_path(out_dir)
