"""The memory plan (triglot/plan.py) against measured memory on CPU and against DeepSpeed's own estimators.

Measured, two ranks over gloo, fp32, each ZeRO stage, the tiny model and a 26M one, built and wrapped by
triglot's own build_model and build_engine, three optimizer steps:
- allocation peak: every CPU allocation and free through torch's allocator, recorded by torch.profiler
  (profile_memory), summed in time order from before the model is built; the highest point during the last
  step (forward, backward and optimizer step, each phase reported) against the plan's model states +
  gradient buffers + live ZeRO-3 parameters + activations (goal: within 15%). It sees what the garbage
  collector cannot (tensors only C++ holds) and the peaks inside backward, where gradients wait for their
  reduction;
- peak RSS: the rise of the process's high-water mark (VmHWM, reset through /proc/self/clear_refs) over the
  same span (no goal: it also holds allocator and library overhead, and the profiler's own records).
The 26M model also runs with DeepSpeed's contiguous_gradients on, as triglot configures accelerators, so the
fixed-size reduction buffer the plan counts there is measured too. Activations are checked in one process: the
bytes of the tensors autograd saves in forward (torch.autograd.graph.saved_tensors_hooks, once per storage)
against saved_activation_bytes.

Run `python -m bench.bench_plan` from the repo root (a few minutes); it writes the "plan" section of
docs/BENCHMARKS.md (`--smoke`: the tiny model only, nothing recorded).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
from pathlib import Path

from bench.report import machine_description, markdown_table, publish
from triglot.dist import finish_rank
from triglot.testing import run_torchrun

VOCAB, SEQ_LEN, MICRO, WORLD = 8000, 64, 2, 2
TOLERANCE = 0.15
MODELS = {"tiny": {},
          "26M": {"hidden_size": 512, "intermediate_size": 1376, "num_layers": 7, "num_heads": 8, "num_kv_heads": 8}}


STEPS = 3
PHASES = ("forward", "backward", "step")  # of the last step, each measured
# (model, ZeRO stage, DeepSpeed contiguous_gradients): triglot's CPU setting (off) for every row, and the
# accelerator setting (on) for the 26M model.
ROWS = [(m, stage, False) for m in MODELS for stage in (0, 1, 2, 3)] + [("26M", stage, True) for stage in (1, 2, 3)]


def run_config(model: str, stage: int, contiguous: bool = False):
    from triglot.config import compose

    train = {"zero_stage": stage, "seq_len": SEQ_LEN, "micro_batch_size": MICRO, "global_batch_size": MICRO * WORLD}
    if contiguous:
        train["deepspeed"] = {"zero_optimization": {"contiguous_gradients": True}}
    return compose({"defaults": {"model": "tiny", "hardware": "cpu"}, "model": MODELS[model],
                    "tracking": {"mode": "disabled"}, "run": {"name": "bench-plan"}, "train": train})


def allocation_peaks(events, phases: list[str]) -> dict[str, int]:
    """Highest live bytes inside each named record_function range, from the profiler's CPU memory events
    summed in time order (the first event is the first allocation after profiling began)."""
    memory = sorted((e.start_ns(), e.nbytes()) for e in events
                    if e.name() == "[memory]" and str(e.device_type()).endswith("CPU"))
    ranges = sorted((e.start_ns(), e.end_ns(), e.name()) for e in events if e.name() in phases)
    peaks, live, i = {}, 0, 0
    for start, end, name in ranges:
        while i < len(memory) and memory[i][0] < start:
            live += memory[i][1]
            i += 1
        peak = live
        while i < len(memory) and memory[i][0] <= end:
            live += memory[i][1]
            i += 1
            peak = max(peak, live)
        peaks[name] = peak
    return peaks


def high_water_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def batch(vocab: int):
    import torch

    g = torch.Generator().manual_seed(int(os.environ["RANK"]))
    ids = torch.randint(1, vocab, (MICRO, SEQ_LEN), generator=g)
    return {"input_ids": ids, "labels": ids.roll(-1, 1), "position_ids": torch.arange(SEQ_LEN).repeat(MICRO, 1)}


def worker(model: str, stage: int, contiguous: bool, out: str) -> None:
    """Build the model and DeepSpeed engine as triglot's trainer does; record allocations through STEPS steps."""
    import deepspeed
    from torch.profiler import ProfilerActivity, profile, record_function
    from triglot.train.engine import batch_layout, build_engine, deepspeed_config
    from triglot.train.model import build_model, packed_loss_sum

    cfg = run_config(model, stage, contiguous)
    deepspeed.init_distributed(dist_backend="gloo", verbose=False)
    rank = int(os.environ["RANK"])
    layout = batch_layout(cfg.train, cfg.hardware, WORLD)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    rss_before = high_water_kib()
    last = STEPS - 1
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        if stage == 3:
            from transformers.integrations import HfDeepSpeedConfig

            keep = HfDeepSpeedConfig(deepspeed_config(cfg, layout, rank))  # noqa: F841 (zero.Init while alive)
        with record_function("bench.init"):
            engine, _ = build_engine(cfg, build_model(cfg, VOCAB), layout, rank)
        for step in range(STEPS):
            with record_function(f"bench.forward.{step}"):
                loss, _tokens = packed_loss_sum(engine, batch(VOCAB), engine.device)
            with record_function(f"bench.backward.{step}"):
                engine.backward(loss)
            with record_function(f"bench.step.{step}"):
                engine.step()
    rss = (high_water_kib() - rss_before) * 1024
    names = ["bench.init"] + [f"bench.{phase}.{last}" for phase in PHASES]
    peaks = allocation_peaks(prof.profiler.kineto_results.events(), names)
    result = {"init": peaks["bench.init"], **{phase: peaks[f"bench.{phase}.{last}"] for phase in PHASES},
              "rss_peak": rss}
    Path(f"{out}.{rank}").write_text(json.dumps(result))


def saved_activations(model: str) -> int:
    """Bytes autograd saves in one forward and loss of the model (one process, fp32)."""
    import torch
    from triglot.train.model import build_model, packed_loss_sum

    os.environ.setdefault("RANK", "0")
    model_ = build_model(run_config(model, 0), VOCAB)
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    params = {p.untyped_storage().data_ptr() for p in model_.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        packed_loss_sum(model_, batch(VOCAB), torch.device("cpu"))
    return sum(n for ptr, n in seen.items() if ptr not in params)


def predicted(model: str, stage: int, contiguous: bool = False):
    from triglot.plan import Setting, Workload, estimate, gradient_reduction, model_shape

    cfg = run_config(model, stage, contiguous)
    work = Workload(precision="fp32", micro_batch=MICRO, seq_len=SEQ_LEN, attention=cfg.hardware.attention.value,
                    world=WORLD, **gradient_reduction(cfg.train, cfg.hardware))
    return estimate(model_shape(cfg.model, VOCAB), Setting(stage), work, accelerator="cpu")


def measure_rows(rows_wanted: list[tuple[str, int, bool]]) -> list[dict]:
    rows = []
    for model, stage, contiguous in rows_wanted:
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "m.json")
            args = ["--worker", model, str(stage), "1" if contiguous else "0", out]
            run_torchrun(WORLD, args, script=__file__, timeout=600)
            ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(WORLD)]
        est = predicted(model, stage, contiguous)
        measured = {key: max(r[key] for r in ranks) for key in ("init", *PHASES, "rss_peak")}
        rows.append({"model": model, "stage": stage, "contiguous": contiguous, "params": _params(model),
                     "states": est.model_states, "buffers": est.buffers, "live": est.live,
                     "activations": est.activations, "predicted_peak": est.total - est.allowance, **measured,
                     "measured_peak": max(measured[phase] for phase in PHASES)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _params(model: str) -> int:
    from triglot.plan import model_shape

    return model_shape(run_config(model, 0).model, VOCAB).params


def estimator_rows() -> list[list[object]]:
    """Model states per GPU for 7B and 70B on H100 nodes: the plan against DeepSpeed's estimators (bf16)."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    from triglot.config import compose
    from triglot.plan import GIB, Setting, Workload, estimate, model_shape

    rows = []
    for name in ("7b", "70b"):
        cfg = compose({"defaults": {"model": name, "hardware": "nvidia-h100"}})
        shape = model_shape(cfg.model, 32000)
        for nodes in (1, 2, 8):
            gpus = nodes * 8
            work = Workload("bf16", 1, 4096, "sdpa", gpus)
            for setting, ds in (
                (Setting(2), estimate_zero2_model_states_mem_needs(shape.params, 8, nodes, cpu_offload=False)[1]),
                (Setting(2, True), estimate_zero2_model_states_mem_needs(shape.params, 8, nodes, cpu_offload=True)[1]),
                (Setting(3), estimate_zero3_model_states_mem_needs(
                    shape.params, shape.largest_layer_params, 8, nodes, cpu_offload=False)[1]),
                (Setting(3, True), estimate_zero3_model_states_mem_needs(
                    shape.params, shape.largest_layer_params, 8, nodes, cpu_offload_params=False)[1]),
                (Setting(3, True, True), estimate_zero3_model_states_mem_needs(
                    shape.params, shape.largest_layer_params, 8, nodes)[1])):
                ours = estimate(shape, setting, work).model_states
                rows.append([name, nodes, setting.label, f"{ours / GIB:.2f}", f"{ds / GIB:.2f}",
                             f"{(ours - ds) / ds:+.1%}"])
    return rows


def report(rows: list[dict], activation_rows: list[list[object]], record: bool) -> None:
    mib = 1024 ** 2
    table, misses = [], []
    for r in rows:
        diff = (r["predicted_peak"] - r["measured_peak"]) / r["measured_peak"]
        ok = abs(diff) <= TOLERANCE
        label = f"{r['model']} ZeRO-{r['stage']}" + (" contiguous" if r["contiguous"] else "")
        if not ok:
            misses.append(label)
        table.append([r["model"], f"{r['params'] / 1e6:.2f}M", r["stage"], "on" if r["contiguous"] else "off",
                      f"{r['states'] / mib:.1f}", f"{r['buffers'] / mib:.1f}", f"{r['live'] / mib:.1f}",
                      f"{r['activations'] / mib:.1f}",
                      f"{r['predicted_peak'] / mib:.1f}", *(f"{r[phase] / mib:.1f}" for phase in PHASES),
                      f"{diff:+.1%}", "yes" if ok else "**not met**", f"{r['init'] / mib:.1f}",
                      f"{r['rss_peak'] / mib:.1f}"])
    body = "\n".join([
        "## Memory plan (`bench/bench_plan.py`)", "",
        f"Machine: {machine_description()}; load average {os.getloadavg()[0]:.2f} at the end.", "",
        f"Two CPU ranks (gloo, fp32), sequence {SEQ_LEN}, micro batch {MICRO}, vocabulary {VOCAB}, {STEPS} steps "
        "under triglot's build_model + build_engine. *Measured*: the highest live bytes of torch's CPU allocator "
        "(torch.profiler with profile_memory: every allocation and free, summed in time order from before the model "
        "is built) in each phase of the last step, on the busier rank; the goal compares the plan's model states "
        "+ gradient buffers + live ZeRO-3 parameters + activations (its total less the allowance) with the highest "
        "of the three (within 15%). *contiguous*: DeepSpeed's "
        "contiguous_gradients, which triglot turns on for accelerators: one reduction buffer of reduce_bucket_size "
        "(5e8 elements) whatever the model's size. *init*: the peak while the engine is built. *Peak RSS*: rise of "
        "VmHWM over the whole run (no goal: it also holds allocator and library overhead, and the profiler's own "
        "records; in the contiguous rows it stays below the allocation because the host only maps the pages of "
        "the reduction buffer that gradients touch, where a GPU allocation counts whole).", "",
        markdown_table(["model", "params", "ZeRO", "contiguous", "plan states MiB", "plan buffers MiB",
                        "plan live MiB", "plan activations MiB", "plan peak MiB", "forward MiB", "backward MiB", "step MiB",
                        "plan - measured", "within 15%", "init MiB", "peak RSS MiB"], table), "",
        "Activations saved in forward (one process, fp32, autograd's saved tensors, each storage once) against "
        "`saved_activation_bytes`:", "",
        markdown_table(["model", "plan MiB", "measured MiB", "diff"], activation_rows), "",
        "Model states per GPU (bf16, 8 H100 per node, vocabulary 32000) against DeepSpeed 0.19's estimators. "
        "ZeRO-2 matches; ZeRO-3 differs by design: DeepSpeed also keeps a 16-bit gradient partition "
        "(2Ψ/N, `grad_partitions_flat_buffer`) that its estimator leaves out, and steps the partition in "
        "sub-groups of 1e9 elements, so only one sub-group's fp32 gradients (at most 4 GB) exist at once where the "
        "estimator counts 4Ψ/N. Neither side of this table holds the gradient buffers and live ZeRO-3 parameters "
        "that the plan adds beside the model states (measured above):", "",
        markdown_table(["model", "nodes", "setting", "plan GiB", "DeepSpeed GiB", "diff"], estimator_rows()), "",
        f"Result: {'every row within 15%' if not misses else 'not met for ' + ', '.join(misses)}.",
    ])
    publish("bench_plan", body, [], record=record)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(argv[1], int(argv[2]), argv[3] == "1", argv[4])
        finish_rank()  # a torchrun rank: see triglot.dist.leave
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model only; print, record nothing")
    args = parser.parse_args(argv)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    models = ["tiny"] if args.smoke else list(MODELS)
    rows = measure_rows([row for row in ROWS if row[0] in models])
    activation_rows = []
    for model in models:
        plan = _saved_plan(model)
        measured = saved_activations(model)
        activation_rows.append([model, f"{plan / 1024 ** 2:.2f}", f"{measured / 1024 ** 2:.2f}",
                                f"{(measured - plan) / measured:+.1%}"])
    report(rows, activation_rows, record=not args.smoke)
    return 0


def _saved_plan(model: str) -> int:
    from triglot.plan import model_shape, saved_activation_bytes

    cfg = run_config(model, 0)
    return saved_activation_bytes(model_shape(cfg.model, VOCAB), MICRO, SEQ_LEN, "fp32",
                                  cfg.hardware.attention.value, False)


if __name__ == "__main__":
    sys.exit(main())
