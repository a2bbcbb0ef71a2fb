"""`triglot plan`: per-device memory and a recommendation for 7B and 70B on H100 nodes, checked against
DeepSpeed's own model-state estimators where they describe the same allocation, and exact for the tiny model."""

from __future__ import annotations

import json

import pytest

from triglot.cli import main as triglot_main
from triglot.config import compose
from triglot.plan import GIB, SPEED_ORDER, Setting, Workload, estimate, model_shape

QUICKSTART = "configs/experiments/quickstart.yaml"
PARTS = ("params", "grads", "optimizer", "gathered", "buffers", "live", "activations", "allowance")


def plan_json(capsys, *args: str) -> dict:
    code = triglot_main(["plan", QUICKSTART, *args, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


@pytest.mark.parametrize("model", ["7b", "70b"])
@pytest.mark.parametrize("nodes", [1, 2, 8])
def test_plan_gives_memory_and_a_recommendation_on_h100_nodes(capsys, model, nodes):
    plan = plan_json(capsys, f"model={model}", "hardware=nvidia-h100", "--nodes", str(nodes))
    assert plan["nodes"] == nodes and plan["gpus_per_node"] == 8 and plan["workload"]["world"] == 8 * nodes
    assert plan["capacity"] == 80 * GIB
    assert {7: 6.5e9, 70: 6.5e10}[int(model[:-1])] < plan["parameters"] < {7: 7.5e9, 70: 7.5e10}[int(model[:-1])]
    settings = {(e["zero_stage"], e["offload_optimizer"], e["offload_params"], e["activation_checkpointing"]): e
                for e in plan["estimates"]}
    assert len(settings) == len(SPEED_ORDER)
    for stage in (0, 1, 2, 3):  # every stage, with and without activation checkpointing
        plain, ckpt = settings[(stage, False, False, False)], settings[(stage, False, False, True)]
        assert ckpt["activations"] < plain["activations"]
        assert all(plain[k] >= 0 for k in PARTS) and plain["total"] == sum(plain[k] for k in PARTS)
    assert settings[(2, True, False, False)]["host"] > 0 and settings[(2, True, False, False)]["optimizer"] == 0
    fits = [e for e in plan["estimates"] if e["fits"]]
    if fits:  # the recommendation is the first (fastest) setting that fits
        assert plan["recommended"]["setting"] == fits[0]["setting"]
        assert plan["recommendation"].startswith(fits[0]["setting"])
    else:
        assert plan["recommended"] is None and plan["min_nodes"] > nodes
        assert f"at least {plan['min_nodes']} nodes" in plan["recommendation"]
    if model == "7b":  # 7B fits one H100 node with a ZeRO setting; 70B needs its states spread further
        assert fits and fits[0]["zero_stage"] >= 1
    else:
        assert not settings[(0, False, False, False)]["fits"]


def test_plan_text_names_the_recommendation(capsys):
    assert triglot_main(["plan", QUICKSTART, "model=70b", "hardware=nvidia-h100", "--nodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "70b" in out and "16 data-parallel ranks" in out and "recommended: " in out
    assert "configured (*): " in out and "GiB per device" in out


def _ds_zero2(params: int, nodes: int, offload: bool) -> int:
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    return estimate_zero2_model_states_mem_needs(params, 8, nodes, cpu_offload=offload)[1]


def _ds_zero3_offload(params: int, largest: int, nodes: int) -> int:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    return estimate_zero3_model_states_mem_needs(params, largest, 8, nodes, cpu_offload=True,
                                                 cpu_offload_params=True)[1]


@pytest.mark.parametrize("model", ["7b", "70b"])
@pytest.mark.parametrize("nodes", [1, 2, 8])
def test_model_states_agree_with_deepspeeds_estimators(model, nodes):
    """ZeRO-2 (plain and optimizer offload) and ZeRO-3 with everything offloaded describe the same buffers in
    DeepSpeed's estimators and in the plan: within 5%."""
    cfg = compose({"defaults": {"model": model, "hardware": "nvidia-h100"}})
    shape = model_shape(cfg.model, 32000)
    work = Workload("bf16", 1, 4096, "sdpa", 8 * nodes)
    pairs = [(Setting(2), _ds_zero2(shape.params, nodes, False)),
             (Setting(2, True), _ds_zero2(shape.params, nodes, True)),
             (Setting(3, True, True), _ds_zero3_offload(shape.params, shape.largest_layer_params, nodes))]
    for setting, theirs in pairs:
        ours = estimate(shape, setting, work).model_states
        assert abs(ours - theirs) <= 0.05 * theirs, (setting.label, ours / GIB, theirs / GIB)


def test_tiny_model_plan_counts_its_parameters_exactly():
    from triglot.train.model import build_model

    cfg = compose({"defaults": {"model": "tiny", "hardware": "cpu"}, "tracking": {"mode": "disabled"}})
    vocab = 512
    model = build_model(cfg, vocab)
    shape = model_shape(cfg.model, vocab)
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert shape.largest_layer_params == max(sum(p.numel() for p in m.parameters(recurse=False))
                                             for m in model.modules())
    # fp32 plain AdamW (ZeRO-0): weights, gradients and two moments, 16 bytes a parameter.
    states = estimate(shape, Setting(0), Workload("fp32", 2, 64, "sdpa", 2), accelerator="cpu")
    assert states.params + states.grads + states.optimizer == 16 * shape.params


def test_cpu_profile_states_no_capacity(capsys):
    code = triglot_main(["plan", QUICKSTART, "hardware=cpu", "--nodes", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "memory not stated by the profile" in out and "recommended: none" in out


def test_plan_reads_how_gradients_are_reduced():
    """contiguous_gradients (on for accelerators) keeps one reduce_bucket_size buffer whatever the model's
    size; train.deepspeed overrides reach the plan."""
    from triglot.plan import DS_BUCKET_ELEMENTS, plan_for_config

    def configured(model: str = "tiny", stage: int = 2, **zero):
        train = {"zero_stage": stage, "deepspeed": {"zero_optimization": zero} if zero else {}}
        cfg = compose({"defaults": {"model": model, "hardware": "nvidia-h100"}, "tracking": {"mode": "disabled"},
                       "train": train})
        return plan_for_config(cfg, nodes=1, gpus_per_node=8).configured

    def buffers(**zero) -> int:
        return configured(**zero).buffers

    assert buffers() >= 2 * DS_BUCKET_ELEMENTS  # bf16, the full bucket although the model is tiny
    assert buffers(reduce_bucket_size=1000) < 2 * DS_BUCKET_ELEMENTS / 100
    assert buffers(contiguous_gradients=False) < 2 * DS_BUCKET_ELEMENTS / 100
    # ZeRO-3 keeps up to stage3_max_live_parameters gathered (all of a 7B model's first 1e9 elements).
    assert configured("7b", 3).live >= 2 * 0.8e9
    assert configured("7b", 3, stage3_max_live_parameters=1e8).live < 2 * 1e8
    assert configured("7b", 2).live == 0
    cpu = compose({"defaults": {"model": "tiny", "hardware": "cpu"}, "tracking": {"mode": "disabled"}})
    assert plan_for_config(cpu, nodes=1, gpus_per_node=0).configured.buffers < DS_BUCKET_ELEMENTS / 100


@pytest.mark.distributed
def test_plan_matches_the_measured_allocation_peak_with_contiguous_gradients():
    """Two gloo ranks, ZeRO-2 with contiguous_gradients as on accelerators: torch's allocator peak over the last
    step (bench/bench_plan.py's measurement) is within 15% of the plan's states + buffers + activations."""
    from bench.bench_plan import TOLERANCE, measure_rows

    (row,) = measure_rows([("tiny", 2, True)])
    assert abs(row["predicted_peak"] - row["measured_peak"]) <= TOLERANCE * row["measured_peak"], row


@pytest.mark.parametrize("override, key", [
    ("train.deepspeed.zero_optimization.reduce_bucket_size=abc", "reduce_bucket_size"),
    ("train.deepspeed.zero_optimization.contiguous_gradients=maybe", "contiguous_gradients"),
    ("train.deepspeed.zero_optimization=5", "zero_optimization"),
])
def test_a_bad_deepspeed_override_is_a_config_error(capsys, override, key):
    code = triglot_main(["plan", QUICKSTART, "hardware=nvidia-h100", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and key in err and "Traceback" not in err, err
