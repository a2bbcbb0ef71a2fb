"""The eval stage: score one checkpoint on the configured suites and held-out text, or follow a run.

Runs in every rank (torchrun or single process); rows are split across ranks and gathered on rank 0,
which writes results.json, samples.jsonl, summary.md and logs to the run's W&B run.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

from triglot.eval import checkpoints, results
from triglot.eval.checkpoints import Checkpoint
from triglot.eval.generation import build_gen_requests, gen_record, gen_scores, generate
from triglot.eval.perplexity import heldout_rows, perplexity_by_language
from triglot.eval.report import write_run_summary
from triglot.eval.scoring import encode_pairs, question_rows, score_rows, shard_rows
from triglot.eval.tasks import build_requests, fit_shots, load_suites
from triglot.train.run_state import training_finished

from triglot.config import to_container
from triglot.dist import read_dist_env
from triglot.errors import InputError
from triglot.manifest import StageManifest
from triglot.paths import run_dir as run_dir_of
from triglot.tracking import start_tracker

log = logging.getLogger(__name__)
PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "deepspeed", "wandb", "triglot")
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def run_eval_stage(cfg: Any, force: bool = False) -> dict:
    """Score eval.checkpoint, or the run's newest complete checkpoint (else its export/).

    When the run also fine-tunes (`sft` or `dpo` in run.stages), its tuned models in <run.dir>/sft/export
    and <run.dir>/dpo/export are scored as well, into eval/sft-export/ and eval/dpo-export/.
    """
    load_suites(cfg.eval)  # a bad suite file is reported before a checkpoint is looked for
    if cfg.eval.checkpoint:
        return evaluate_checkpoint(cfg, checkpoints.resolve(cfg.eval.checkpoint), force=force)
    summary = evaluate_checkpoint(cfg, checkpoints.default_checkpoint(run_dir_of(cfg)), force=force)
    tuned = {stage: evaluate_checkpoint(cfg, ckpt, force=force) for stage, ckpt in tuned_exports(cfg)}
    return {"pretrain": summary, **tuned} if tuned else summary


def tuned_exports(cfg: Any) -> list[tuple[str, Any]]:
    """(stage, checkpoint labelled <stage>-export) for each fine-tuning stage of the run that has exported."""
    out = []
    for stage in ("sft", "dpo"):
        export = run_dir_of(cfg) / stage / "export"
        if stage in cfg.run.stages and (export / "config.json").is_file():
            out.append((stage, replace(checkpoints.resolve(export), label=f"{stage}-export")))
    return out


def eval_root(cfg: Any, run_dir: Path | None = None) -> Path:
    return Path(cfg.eval.output_dir) if cfg.eval.output_dir else (run_dir or run_dir_of(cfg)) / "eval"


def _state(cfg: Any) -> Any:
    """accelerate's process state: joins the torchrun process group (backend from the hardware profile)."""
    from accelerate import PartialState

    from triglot.hardware import get_accelerator

    if read_dist_env().world_size > 1:
        on_cpu = get_accelerator().device_name() == "cpu"
        from triglot.dist import comm_backend

        return PartialState(cpu=on_cpu, backend=comm_backend(cfg.hardware))
    return PartialState()


def load_model(cfg: Any, ckpt: Checkpoint, local_rank: int) -> tuple[Any, Any]:
    """Model at the hardware profile's precision and attention, on this rank's device, plus tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from triglot.train.model import attention_implementation

    from triglot.hardware import device_for

    if not any(ckpt.hf_dir.glob("tokenizer*")):
        raise InputError(f"{ckpt.hf_dir} has no tokenizer files; the Hugging Face export must include the tokenizer")
    dtype = getattr(torch, _DTYPES[cfg.hardware.precision.value])
    model = AutoModelForCausalLM.from_pretrained(ckpt.hf_dir, dtype=dtype,
                                                 attn_implementation=attention_implementation(cfg.hardware))
    model.to(device_for(local_rank)).eval()
    return model, AutoTokenizer.from_pretrained(ckpt.hf_dir)


def _manifest_config(cfg: Any) -> dict:
    ecfg = to_container(cfg.eval)
    for key in ("checkpoint", "output_dir", "watch_interval_s", "watch_idle_timeout_s"):
        ecfg.pop(key, None)
    return {"eval": ecfg, "precision": cfg.hardware.precision.value, "attention": cfg.hardware.attention.value}


def evaluate_checkpoint(cfg: Any, ckpt: Checkpoint, force: bool = False, tracking_dir: Path | None = None) -> dict:
    """Score one checkpoint into <eval root>/<checkpoint name>/; skipped when its manifest is current."""
    env = read_dist_env()
    out_dir = eval_root(cfg, tracking_dir) / ckpt.label
    loaded = load_suites(cfg.eval)  # bad suite paths fail here, before the model loads
    inputs = [ckpt.hf_dir, *[ls.suite.root for ls in loaded], *[h.path for h in cfg.eval.heldout]]
    manifest = StageManifest.open(out_dir, "eval", _manifest_config(cfg), inputs)
    if manifest.is_current() and not force:
        log.info("eval of %s is current in %s; skipping", ckpt.source, out_dir)
        return manifest.previous
    state = _state(cfg)
    started = time.time()
    model, tokenizer = load_model(cfg, ckpt, env.local_rank)
    max_length = int(cfg.eval.max_length or getattr(model.config, "max_position_embeddings", 2048))
    batch_size = int(cfg.eval.batch_size or cfg.hardware.micro_batch_size * 4)
    gen_loaded = [ls for ls in loaded if getattr(ls.suite, "kind", "") == "generation"]
    mc_loaded = [ls for ls in loaded if ls not in gen_loaded]
    requests = [r for ls in mc_loaded for r in build_requests(ls, cfg.eval.num_fewshot, cfg.eval.mode.value)]
    if cfg.eval.long_prompts.value == "drop_shots":
        requests = fit_shots(requests, tokenizer, max_length)
    pairs = encode_pairs(tokenizer, [r.prompt for r in requests], [r.continuations for r in requests])
    rows = [row for i, (ctx, conts) in enumerate(pairs) for row in question_rows(i, ctx, conts, max_length)]
    ppl_rows, owners = heldout_rows(tokenizer, list(cfg.eval.heldout), max_length, first_owner=len(requests))
    rows += ppl_rows
    mine = shard_rows(rows, env.rank, env.world_size)
    scoring_started = time.time()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scored = score_rows(model, mine, batch_size, pad_id)
    gen_requests = [r for ls in gen_loaded for r in build_gen_requests(ls, cfg.eval.num_fewshot)]
    generated = _generate(model, tokenizer, gen_loaded, gen_requests, env, batch_size, max_length,
                          cfg.eval.max_new_tokens)
    if env.world_size > 1:
        from accelerate.utils import gather_object

        scored = gather_object(scored)
        generated = gather_object(generated)
    timing = {"load_seconds": scoring_started - started, "scoring_seconds": time.time() - scoring_started,
              "world_size": env.world_size, "rows": len(rows), "questions": len(requests)}
    state.wait_for_everyone()
    if env.rank != 0:
        return {"out_dir": str(out_dir), "rank": env.rank}
    texts = dict(generated)
    gen_records = [gen_record(r, texts[i]) for i, r in enumerate(gen_requests)]
    return _write_outputs(cfg, ckpt, out_dir, manifest, loaded, requests, rows, scored, owners, timing,
                          started, tracking_dir, gen_records)


def _generate(model: Any, tokenizer: Any, gen_loaded: list, gen_requests: list, env: Any, batch_size: int,
              max_length: int, max_new_tokens: int) -> list[tuple[int, str]]:
    """This rank's share of the generation requests (every world_size-th), suite by suite."""
    out = []
    for ls in gen_loaded:
        mine = [(i, r.prompt) for i, r in enumerate(gen_requests)
                if r.question.suite == ls.suite.name and i % env.world_size == env.rank]
        out += generate(model, tokenizer, mine, max_new_tokens or ls.suite.max_new_tokens, ls.suite.stop, batch_size,
                        max_length)
    return out


def _collect(requests: list, rows: list, scored: list) -> tuple[dict, dict]:
    per_question: dict[int, dict[int, tuple[float, int]]] = defaultdict(dict)
    per_text: dict[int, tuple[float, int]] = {}
    for row_id, key, ll, n in scored:
        owner = rows[row_id].owner
        if owner < len(requests):
            per_question[owner][key] = (ll, n)
        else:
            prev = per_text.get(owner, (0.0, 0))
            per_text[owner] = (prev[0] + ll, prev[1] + n)
    return per_question, per_text


def _write_outputs(cfg: Any, ckpt: Checkpoint, out_dir: Path, manifest: StageManifest, loaded: list,
                   requests: list, rows: list, scored: list, owners: dict, timing: dict, started: float,
                   tracking_dir: Path | None, gen_records: list | None = None) -> dict:
    mode = cfg.eval.mode.value
    per_question, per_text = _collect(requests, rows, scored)
    records = []
    for i, req in enumerate(requests):
        got = per_question[i]
        records.append(results.make_record(req, [got[k][0] for k in range(len(req.continuations))],
                                           [got[k][1] for k in range(len(req.continuations))], mode))
    suites = {ls.suite.name: ls.suite for ls in loaded}
    gen_records = gen_records or []
    timing["seconds"] = time.time() - started
    timing["questions_per_second"] = len(requests) / max(timing["scoring_seconds"], 1e-9)
    out_dir.mkdir(parents=True, exist_ok=True)
    submission = results.ceval_submission(records)
    if submission:
        results.write_json(out_dir / "ceval_submission.json", submission)
    res = {
        "checkpoint": {"path": str(ckpt.source), "step": ckpt.step, "label": ckpt.label},
        "settings": {"num_fewshot": cfg.eval.num_fewshot, "mode": mode, "template": cfg.eval.template,
                     "precision": cfg.hardware.precision.value},
        "suites": {ls.suite.name: {"file": str(ls.suite.file), "template": _template_source(ls.suite),
                                   "language": ls.suite.language, "script": ls.suite.script,
                                   "derived_from": getattr(ls.suite, "derived_from", None)} for ls in loaded},
        "scores": results.aggregate(records, suites),
        "generation": gen_scores(gen_records, suites) if gen_records else {},
        "perplexity": perplexity_by_language(owners, per_text) if owners else {},
        "skipped_rows": {ls.suite.name: ls.report.by_file() for ls in loaded},
        "ceval_submission": str(out_dir / "ceval_submission.json") if submission else None,
        "lineage": checkpoints.lineage(ckpt),
        "config": to_container(cfg),
        "packages": _versions(),
        "timing": timing,
    }
    results.write_json(out_dir / "results.json", res)
    results.write_samples(out_dir / "samples.jsonl", records + gen_records)
    summary = results.summary_markdown(res)
    (out_dir / "summary.md").write_text(summary, encoding="utf-8")
    write_run_summary(out_dir.parent, tracking_dir or run_dir_of(cfg))  # every model of the run, side by side
    metrics = results.flat_metrics(res)
    _track(cfg, tracking_dir or run_dir_of(cfg), out_dir, ckpt, metrics, res)
    outputs = [out_dir / n for n in ("results.json", "samples.jsonl", "summary.md", "ceval_submission.json")]
    counts = {"questions": len(records) + len(gen_records),
              "skipped_rows": sum(f["rows"] for s in res["skipped_rows"].values() for f in s.values())}
    manifest.write(outputs=[p for p in outputs if p.exists()], counts=counts, checkpoint=str(ckpt.source),
                   step=ckpt.step, metrics=metrics)
    log.info("eval of %s: %d questions in %.1f s; %s", ckpt.source, len(records), timing["seconds"], out_dir)
    return {"out_dir": str(out_dir), "checkpoint": str(ckpt.source), "step": ckpt.step, "counts": counts,
            "metrics": metrics}


def _template_source(suite: Any) -> str:
    template = suite.template
    return template.get("source", "") if isinstance(template, dict) else template.source


def _versions() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _track(cfg: Any, run_dir: Path, out_dir: Path, ckpt: Checkpoint, metrics: dict, res: dict) -> None:
    """Log against the training step on the run's eval W&B run (same group as its training); summary plus
    a per-subject table."""
    tracker = start_tracker(cfg, run_dir, "eval", rank=0, metrics_dir=out_dir, id_suffix="eval")
    try:
        if getattr(tracker, "wandb_run", None) is not None:
            tracker.wandb_run.define_metric("eval/train_step")
            tracker.wandb_run.define_metric("eval/*", step_metric="eval/train_step")
        step = {"eval/train_step": ckpt.step} if ckpt.step is not None else {}
        tracker.log({**metrics, **step})
        tracker.summary(metrics)
        rows = [[name, subject, v["questions"], v["accuracy"], ", ".join(v["categories"])]
                for name, s in res["scores"].items() for subject, v in s["subjects"].items()]
        tracker.table("eval/subjects", ["suite", "subject", "questions", "accuracy", "categories"], rows)
    finally:
        tracker.finish()


def watch(cfg: Any, run_dir: Path, force: bool = False) -> list[dict]:
    """Score each new complete checkpoint of a training run as it appears, until the run ends.

    The run has ended when its stage manifest is written and no training process marks it as running
    (an export or manifest left by an earlier run does not count while a new one trains).
    """
    load_suites(cfg.eval)  # every suite file checked before the first checkpoint is waited for
    state = _state(cfg)
    seen: set[str] = set()
    done, last_new = [], time.time()
    while True:
        finished = training_finished(run_dir / "checkpoints")  # looked at first: no checkpoint is missed
        found = [str(p) for p in checkpoints.complete_checkpoints(run_dir / "checkpoints")]
        found, finished = _agree(state, (found, finished))
        for path in found:
            if path not in seen:
                seen.add(path)
                done.append(evaluate_checkpoint(cfg, checkpoints.resolve(path), force, tracking_dir=run_dir))
                last_new = time.time()
        timeout = cfg.eval.watch_idle_timeout_s
        if (timeout <= 0 and finished) or (timeout > 0 and time.time() - last_new > timeout):
            return done
        time.sleep(cfg.eval.watch_interval_s)


def _agree(state: Any, value: Any) -> Any:
    """Rank 0's view, so every rank scores the same checkpoints."""
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]
