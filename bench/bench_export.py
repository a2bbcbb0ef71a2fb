"""Memory of the ZeRO-3 Hugging Face export: the streamed export against the whole-model gather it replaced.

Two CPU ranks (gloo, fp32). Each rank builds a ~26M-parameter model under zero.Init and wraps it with
triglot's own build_engine, takes one optimizer step (so the optimizer states exist, as at a real save), then
exports. Before the export the rank collects garbage and calls glibc's malloc_trim(0), which hands the
pages of freed heap blocks back to the system, so memory the export reuses from earlier (freed) training
buffers counts as a rise too. Measured per rank: the rise of the process's resident memory during the export alone, that is the
high-water mark VmHWM (reset through /proc/self/clear_refs just before the export) less VmRSS at that moment.
A thread also samples VmRSS every 2 ms as a cross-check. Everything the rank already held (its ZeRO-3
partition, optimizer states, libraries) is in the starting RSS; the rise is what the export itself costs.
The bar compares the larger rank's rise with the model's fp32 size (parameters x 4 bytes).

Reference: the export as it was before streaming (GatheredParameters over every parameter at once, rank 0
copies the state dict and calls save_pretrained), run the same way in fresh processes.

Run `python -m bench.bench_export` from the repo root (about a minute); it writes the "export" section of
docs/BENCHMARKS.md (`--smoke`: prints, records nothing).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.report import goal, machine_description, markdown_table, publish, versions
from triglot.dist import finish_rank
from triglot.testing import run_torchrun

VOCAB, SEQ_LEN, MICRO, WORLD = 8000, 64, 2, 2
BAR = 0.6
MODEL = {"hidden_size": 512, "intermediate_size": 1376, "num_layers": 7, "num_heads": 8, "num_kv_heads": 8}
MODES = ("streamed", "full-gather")


def run_config():
    from triglot.config import compose

    return compose({"defaults": {"model": "tiny", "hardware": "cpu"}, "model": MODEL,
                    "tracking": {"mode": "disabled"}, "run": {"name": "bench-export"},
                    "train": {"zero_stage": 3, "seq_len": SEQ_LEN, "micro_batch_size": MICRO,
                              "global_batch_size": MICRO * WORLD}})


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


class RssSampler:
    """Largest VmRSS seen by a thread reading /proc/self/status every `interval` seconds."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib("VmRSS:"))
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = _status_kib("VmRSS:")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib("VmRSS:"))


def full_gather_export(model, out_dir: Path, is_main: bool) -> None:
    """The export before streaming (kept here as the reference): every parameter gathered at once."""
    import deepspeed
    import torch

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None), torch.no_grad():
        if not is_main:
            return
        state = {name: t.detach().clone().cpu() for name, t in model.state_dict().items()}
        model.save_pretrained(out_dir, state_dict=state, safe_serialization=True)


def worker(mode: str, out: str) -> None:
    import deepspeed
    import torch.distributed as dist
    from transformers.integrations import HfDeepSpeedConfig
    from triglot.train.engine import batch_layout, build_engine, deepspeed_config
    from triglot.train.export import export_hf, parameter_count
    from triglot.train.model import build_model, packed_loss_sum

    cfg = run_config()
    deepspeed.init_distributed(dist_backend="gloo", verbose=False)
    rank = int(os.environ["RANK"])
    layout = batch_layout(cfg.train, cfg.hardware, WORLD)
    keep = HfDeepSpeedConfig(deepspeed_config(cfg, layout, rank))  # zero.Init while alive
    engine, _ = build_engine(cfg, build_model(cfg, VOCAB), layout, rank)
    import torch

    g = torch.Generator().manual_seed(rank)
    ids = torch.randint(1, VOCAB, (MICRO, SEQ_LEN), generator=g)
    loss, _ = packed_loss_sum(engine, {"input_ids": ids, "labels": ids.roll(-1, 1),
                                       "position_ids": torch.arange(SEQ_LEN).repeat(MICRO, 1)}, engine.device)
    engine.backward(loss)
    engine.step()
    params = parameter_count(engine.module)
    target = Path(out).with_name(f"hf-{mode}")
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # free heap pages back to the system: reusing them counts again
    dist.barrier()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS from here on
    start = _status_kib("VmRSS:")
    began = time.perf_counter()
    with RssSampler() as sampler:
        if mode == "streamed":
            export_hf(engine.module, target, None, 3, rank == 0, "5GB")
        else:
            full_gather_export(engine.module, target, rank == 0)
    seconds = time.perf_counter() - began
    hwm = _status_kib("VmHWM:")
    dist.barrier()
    files = sorted(p.name for p in target.glob("*.safetensors")) if rank == 0 else []
    # The export reloads in plain transformers with the training model's logits (a ZeRO-3 forward is collective).
    probe = torch.randint(1, VOCAB, (2, 64), generator=torch.Generator().manual_seed(7))
    engine.eval()
    with torch.no_grad():
        trained = engine(input_ids=probe, use_cache=False).logits.float()
    logits_diff = None
    del keep  # transformers would build the reloaded model under zero.Init while the ZeRO-3 config lives
    gc.collect()
    if rank == 0 and mode == "streamed":
        from transformers import AutoModelForCausalLM

        reloaded = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
        with torch.no_grad():
            logits_diff = float((reloaded(input_ids=probe, use_cache=False).logits.float() - trained).abs().max())
    Path(f"{out}.{rank}").write_text(json.dumps({
        "params": params, "rss_start": start * 1024, "rise": (hwm - start) * 1024,
        "sampled_rise": (sampler.peak - start) * 1024, "seconds": seconds, "files": files,
        "logits_max_diff": logits_diff}))


def measure(mode: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "m.json")
        run_torchrun(WORLD, ["--worker", mode, out], script=__file__, timeout=600, env={"DS_ACCELERATOR": "cpu"})
        ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(WORLD)]
        shutil.rmtree(Path(tmp), ignore_errors=True)
    for r in ranks:
        print(json.dumps({"mode": mode, **r}), flush=True)
    return ranks


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(argv[1], argv[2])
        finish_rank()  # a torchrun rank: see triglot.dist.leave
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="print, record nothing")
    args = parser.parse_args(argv)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    results = {mode: measure(mode) for mode in MODES}
    mib = 1024 ** 2
    params = results["streamed"][0]["params"]
    fp32 = params * 4
    rows, ratios = [], {}
    for mode, ranks in results.items():
        ratios[mode] = max(r["rise"] for r in ranks) / fp32
        for rank, r in enumerate(ranks):
            rows.append([mode, rank, f"{r['rss_start'] / mib:.0f}", f"{r['rise'] / mib:.1f}",
                         f"{r['sampled_rise'] / mib:.1f}", f"{r['rise'] / fp32:.2f}", f"{r['seconds']:.2f}"])
    baseline = f"the model's fp32 size ({params / 1e6:.1f}M parameters x 4 bytes = {fp32 / mib:.0f} MiB)"
    goals = [goal("peak RSS rise per rank during the streamed ZeRO-3 export / fp32 model size",
                  ratios["streamed"], BAR, at_most=True, baseline=baseline)]
    body = "\n".join([
        "## ZeRO-3 export memory (`bench/bench_export.py`)", "",
        f"Machine: {machine_description()}; load average {os.getloadavg()[0]:.2f} at the end.", "",
        f"Two CPU ranks (gloo, fp32, {versions('torch', 'deepspeed')}), a {params / 1e6:.1f}M-parameter model "
        "(hidden 512, 7 layers, vocabulary 8000, tied embeddings) built under zero.Init by triglot's build_model "
        "and build_engine, one optimizer step, garbage collection and glibc's malloc_trim(0) (freed heap pages go back "
        "to the system, so reusing them counts), then the export. *Rise*: the process's high-water mark (VmHWM, "
        "reset through /proc/self/clear_refs right before the export) less its VmRSS at that moment, so what "
        "the rank already held (its partition, optimizer states, libraries) is not counted and nothing else is "
        "subtracted. *Sampled*: the largest VmRSS a thread read every 2 ms, less the same start. *full-gather*: "
        "the export before streaming (every parameter gathered at once, state dict copied, save_pretrained).", "",
        markdown_table(["export", "rank", "RSS at start MiB", "rise MiB", "sampled rise MiB", "rise / fp32 size",
                        "seconds"], rows), "",
        f"Result: the streamed export's largest rise is {ratios['streamed']:.2f} of the fp32 size (goal <= {BAR}); "
        f"the full gather's is {ratios['full-gather']:.2f}. The streamed export, reloaded with "
        f"`transformers.AutoModelForCausalLM`, gives logits within {results['streamed'][0]['logits_max_diff']:.2e} "
        "(largest absolute difference) of the ZeRO-3 training model's on the same tokens.",
    ])
    if not results["streamed"][0]["logits_max_diff"] < 1e-4:
        print(f"!! the streamed export's logits differ by {results['streamed'][0]['logits_max_diff']}")
        return 1
    publish("bench_export", body, goals, record=not args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
