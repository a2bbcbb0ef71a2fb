"""Memory plan: per-device bytes for parameters, gradients, optimizer states and activations of a Llama model
under each ZeRO stage and offload choice, and the fastest setting that fits the hardware profile's memory.

Pure arithmetic on the config (no torch, no torch.distributed), so `triglot plan` and `launch slurm` run on a
login node. Notation: Ψ parameters, N data-parallel ranks, e bytes per element of the compute dtype (2 for
bf16/fp16, 4 for fp32), s sequence length, b micro batch, h hidden size, k key/value width, I MLP width,
a attention heads, L layers, V vocabulary.

Model states follow what DeepSpeed allocates, which is the ZeRO paper's accounting (Rajbhandari et al. 2020,
"ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", sec. 3 and 5: 2Ψ + 2Ψ + KΨ with
K = 12 for fp32 master weights and Adam moments, divided by N_d for the partitioned parts) plus the fp32
gradient partition DeepSpeed builds at the optimizer step, which the paper leaves out; that gives DeepSpeed's
own estimator figures (`estimate_zero2_model_states_mem_needs`: 2Ψ + 18Ψ/N; ZeRO-3: 18Ψ/N + 4 x largest layer).
Beside the model states the plan counts what those estimators leave out and the device still holds at the
step's peak: gradients waiting in reduction buckets and their flat buffers (`gradient_buffer_bytes`), and the
parameters ZeRO-3 keeps gathered after forward (`live_parameter_bytes`); bench/bench_plan.py checks the sum
against torch's allocation peak.

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"
(sec. 4.1: s·b·h·(34 + 5·a·s/h) bytes per GPT layer with 16-bit activations), recounted tensor by tensor for
the Llama block as transformers builds it (see `layer_activation_bytes`): RMSNorm saves an fp32 copy of its
input, SwiGLU keeps four I-wide tensors instead of GELU's two 4h-wide ones, there is no dropout, and with
SDPA/flash attention the a·s² score matrices are never stored (only a log-sum-exp per row), which removes
the 5·a·s/h term that dominates at long sequences. Eager attention keeps the fp32 softmax (and its 16-bit
copy). FlexAttention and flash-attn are counted as SDPA: they keep less (no b·s² mask, key/value heads not
repeated), so their plan is an upper bound, not yet measured against a GPU's allocation peak. Activation
checkpointing (transformers' per-layer, non-reentrant) keeps each layer's input and recomputes one layer at a
time in backward.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from triglot.errors import ConfigError, number_hint

GIB = 1024 ** 3
# DeepSpeed's default bucket sizes (reduce_bucket_size, and the ZeRO-0 all-reduce bucket): 5e8 elements.
# ZeRO-1/2/3 reduce gradients through a bucket of reduce_bucket_size; with contiguous_gradients it is one buffer
# of exactly that size, allocated whatever the model's size (2 GB in fp32, 1 GB in bf16).
DS_BUCKET_ELEMENTS = 500_000_000
# ZeRO-3's default sub_group_size: the optimizer steps this many elements at a time, so only that much of the
# fp32 gradient partition exists at once.
DS_SUB_GROUP_ELEMENTS = 1_000_000_000
# ZeRO-3's default stage3_max_live_parameters: gathered parameters stay on the device, for reuse in backward,
# until this many elements are live; only then does it release them.
DS_MAX_LIVE_ELEMENTS = 1_000_000_000
# ZeRO-3 keeps parameters below stage3_param_persistence_threshold (1e5 elements) whole on every rank.
DS_PERSISTENCE_ELEMENTS = 100_000
# Runtime context per accelerator: CUDA/ROCm context and kernels (~0.5 GiB with lazy module loading) plus
# NCCL communicators and their buffers (~0.5 GiB at 8+ ranks). Zero on CPU ranks.
CONTEXT_BYTES = 1 * GIB
# Caching-allocator fragmentation: blocks freed each step (activations, gathered ZeRO-3 layers) come back in
# other sizes; 10% of that churning memory is the usual overhead seen with PyTorch's caching allocator.
FRAGMENTATION = 0.10
ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class ModelShape:
    """The dimensions that set memory; parameter counts follow transformers' LlamaForCausalLM (no biases)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = True

    @property
    def kv_width(self) -> int:
        return self.hidden * self.kv_heads // self.heads

    def tensors(self) -> list[tuple[int, int]]:
        """(count, elements) of every parameter tensor: embeddings, q/o, k/v, gate/up/down, norms."""
        h, k, i = self.hidden, self.kv_width, self.intermediate
        return [(1 if self.tied else 2, self.vocab * h), (2 * self.layers, h * h), (2 * self.layers, h * k),
                (3 * self.layers, h * i), (2 * self.layers + 1, h)]

    @property
    def params(self) -> int:
        return sum(count * size for count, size in self.tensors())

    @property
    def largest_layer_params(self) -> int:
        """Parameters of the biggest single module (what ZeRO-3 gathers at once): the embedding or a matrix."""
        return max(size for _, size in self.tensors())

    @property
    def persistent_params(self) -> int:
        """Parameters ZeRO-3 keeps whole on every rank (tensors under its persistence threshold)."""
        return sum(count * size for count, size in self.tensors() if size < DS_PERSISTENCE_ELEMENTS)


def model_shape(model_cfg: Any, vocab_size: int) -> ModelShape:
    return ModelShape(hidden=int(model_cfg.hidden_size), intermediate=int(model_cfg.intermediate_size),
                      layers=int(model_cfg.num_layers), heads=int(model_cfg.num_heads),
                      kv_heads=int(model_cfg.num_kv_heads), vocab=int(vocab_size), tied=bool(model_cfg.tie_embeddings))


@dataclass(frozen=True)
class Setting:
    zero_stage: int
    offload_optimizer: bool = False
    offload_params: bool = False
    activation_checkpointing: bool = False

    @property
    def label(self) -> str:
        parts = [f"ZeRO-{self.zero_stage}"]
        if self.offload_optimizer:
            parts.append("offload opt")
        if self.offload_params:
            parts[-1] = "offload opt+params"
        if self.activation_checkpointing:
            parts.append("act ckpt")
        return " + ".join(parts)

    @property
    def overrides(self) -> list[str]:
        """The config keys that select this setting."""
        return [f"train.zero_stage={self.zero_stage}", f"train.offload_optimizer={str(self.offload_optimizer).lower()}",
                f"train.offload_params={str(self.offload_params).lower()}",
                f"hardware.activation_checkpointing={str(self.activation_checkpointing).lower()}"]


def _speed_order() -> tuple[Setting, ...]:
    """Every setting, fastest first.

    ZeRO-1 and -2 move the same bytes per step as plain data parallelism (a reduce-scatter plus an all-gather
    is one all-reduce; ZeRO paper sec. 7), only with more, smaller collectives, so lower stages come first;
    ZeRO-3 adds an all-gather of the parameters in backward (1.5x the traffic). Activation checkpointing
    repeats the forward pass (about +33% compute, Korthikanti et al. sec. 5), which costs more than ZeRO-3's
    extra traffic on a fast fabric. Optimizer offload runs Adam on the host and moves gradients and
    parameters over PCIe every step, typically slower again; parameter offload also streams every layer's
    weights in forward and backward, so it comes last.
    """
    plain = [Setting(stage) for stage in (0, 1, 2, 3)]
    ckpt = [replace(s, activation_checkpointing=True) for s in plain]
    offload = [Setting(2, offload_optimizer=True), Setting(3, offload_optimizer=True)]
    offload_ckpt = [replace(s, activation_checkpointing=True) for s in offload]
    params = [Setting(3, True, True), Setting(3, True, True, True)]
    return tuple(plain + ckpt + offload + offload_ckpt + params)


SPEED_ORDER = _speed_order()


@dataclass(frozen=True)
class Workload:
    precision: str = "bf16"
    micro_batch: int = 1
    seq_len: int = 2048
    attention: str = "sdpa"
    world: int = 1  # data-parallel ranks
    # How gradients are reduced (see gradient_buffer_bytes): DeepSpeed's reduce_bucket_size in elements, its
    # contiguous_gradients (triglot turns it on for accelerators only), and triglot's overlapped all-reduce.
    reduce_bucket: int = DS_BUCKET_ELEMENTS
    contiguous_gradients: bool = True
    overlap_grad_reduce: bool = True
    max_live_parameters: int = DS_MAX_LIVE_ELEMENTS  # ZeRO-3's stage3_max_live_parameters


@dataclass
class Estimate:
    """Bytes per device for one setting; `host` is what offload keeps in host memory per rank."""

    setting: Setting
    params: int
    grads: int
    optimizer: int
    gathered: int  # ZeRO-3: the largest module's full parameters and gradients while it computes
    buffers: int  # gradients in flight at the end of backward, beyond `grads`: reduction buckets and copies
    live: int  # ZeRO-3: gathered parameters kept for reuse beyond `gathered` (stage3_max_live_parameters)
    activations: int
    allowance: int
    host: int
    capacity: int  # device memory in bytes; 0 when the profile does not say

    @property
    def model_states(self) -> int:
        return self.params + self.grads + self.optimizer + self.gathered

    @property
    def total(self) -> int:
        return self.model_states + self.buffers + self.live + self.activations + self.allowance

    @property
    def fits(self) -> bool | None:
        return None if not self.capacity else self.total <= self.capacity

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "setting"}
        return {"setting": self.setting.label, **asdict(self.setting), **out, "model_states": self.model_states,
                "total": self.total, "fits": self.fits}


def model_state_bytes(shape: ModelShape, setting: Setting, precision: str, world: int) -> dict[str, int]:
    """params, grads, optimizer and gathered bytes on the device, and host bytes, as DeepSpeed allocates them.

    Stage 0 with fp32 is plain AdamW on the model's own parameters; mixed precision keeps fp32 master weights
    and fp32 gradients beside the 16-bit ones (DeepSpeed's FP16_Optimizer, also used for bf16). From stage 1
    the fp32 master, fp32 gradient and both moments are partitioned over N. Stage 2 also partitions the
    16-bit gradients, stage 3 the 16-bit parameters.
    """
    psi, n, e, stage = shape.params, max(1, world), ELEMENT_BYTES[precision], setting.zero_stage
    part = psi / n
    if stage == 0:
        optimizer = 8 * psi if precision == "fp32" else 16 * psi
        states = {"params": e * psi, "grads": e * psi, "optimizer": optimizer, "gathered": 0, "host": 0}
        return {k: int(v) for k, v in states.items()}
    # ZeRO-3 steps the partition in sub-groups, so only one sub-group's fp32 gradients exist at a time.
    fp32_grad = 4 * (part if stage < 3 else min(part, DS_SUB_GROUP_ELEMENTS))
    if stage == 1:
        # The step frees the gradients outside this rank's partition before it builds the fp32 copy of its
        # own, so the peak is the larger of the full 16-bit gradients and the partition's 16-bit + fp32 ones:
        # the ZeRO paper's 4Ψ + 12Ψ/N for bf16 once N >= 3.
        fp32_grad = max(0.0, (e + 4) * part - e * psi)
    if precision == "fp32" and stage < 3:
        fp32_grad = 0  # the gradient partition is already fp32: DeepSpeed steps on it without a copy
    optimizer = 4 * part + 8 * part + fp32_grad  # master weights, Adam moments, fp32 gradient partition
    params = e * (part + shape.persistent_params) if stage == 3 else e * psi
    grads = e * psi if stage == 1 else e * part
    gathered = 2 * e * shape.largest_layer_params if stage == 3 else 0
    host = 0
    if setting.offload_optimizer:
        host, optimizer = optimizer + grads, 0  # the partitioned gradients go to the host for the CPU Adam step
        grads = 0 if stage >= 2 else grads
    if setting.offload_params:
        host, params = host + params, 0
    return {"params": int(params), "grads": int(grads), "optimizer": int(optimizer), "gathered": int(gathered),
            "host": int(host)}


def gradient_buffer_bytes(shape: ModelShape, setting: Setting, work: Workload) -> int:
    """Gradient bytes live at the end of backward beyond the kept gradients (`grads`), as measured under
    DeepSpeed 0.19 (bench/bench_plan.py records the allocation peaks).

    - ZeRO-0 with triglot's overlapped all-reduce (train.overlap_grad_reduce, two or more ranks): every bucket's
      flat copy lives until backward ends, one more copy of all gradients. Without it DeepSpeed flattens one
      all-reduce bucket of up to 5e8 elements at a time.
    - ZeRO-1/2/3: gradients wait for their reduce-scatter in a bucket of B = reduce_bucket_size elements, so
      at most min(Ψ, Ψ/N + B) full-size gradients exist (all Ψ in ZeRO-1, which reduces at the step's last
      backward; min(Ψ, B) with optimizer offload, which moves each reduced partition to the host), plus the
      reduction's flat buffer: with contiguous_gradients one preallocated buffer of B elements whatever the
      model's size, otherwise a flattened copy of up to min(Ψ, B) elements (also where triglot's overlapped
      all-reduce replaces that reduction: it flattens the same Ψ ≤ B elements in train.grad_bucket_mb buckets).
    """
    psi, n, e, stage = shape.params, max(1, work.world), ELEMENT_BYTES[work.precision], setting.zero_stage
    kept = model_state_bytes(shape, setting, work.precision, work.world)["grads"]
    if stage == 0:
        copies = psi if work.overlap_grad_reduce and n > 1 else min(psi, DS_BUCKET_ELEMENTS)
        return int(e * copies)
    bucket = max(1, int(work.reduce_bucket))
    # The kept partition accumulates on the device, unless optimizer offload copies it to the host as it comes.
    partition = 0 if setting.offload_optimizer else psi / n
    pending = psi if stage == 1 else min(psi, partition + bucket)
    flat = bucket if work.contiguous_gradients else min(psi, bucket)
    return int(max(0.0, e * pending - kept) + e * flat)


def live_parameter_bytes(shape: ModelShape, setting: Setting, work: Workload) -> int:
    """ZeRO-3: parameters that stay gathered after their module ran, beyond the largest module that `gathered`
    counts. DeepSpeed releases a gathered parameter only once stage3_max_live_parameters elements are live, so
    forward ends with up to that many whole parameters on the device (all of them for models under 1e9)."""
    if setting.zero_stage != 3:
        return 0
    partitioned = shape.params - shape.persistent_params
    return int(ELEMENT_BYTES[work.precision] * max(0, min(partitioned, work.max_live_parameters)
                                                   - shape.largest_layer_params))


def layer_activation_bytes(shape: ModelShape, micro_batch: int, seq_len: int, precision: str,
                           attention: str) -> int:
    """Bytes one decoder layer saves for backward (the Korthikanti count redone for transformers' Llama).

    RMSNorm (x.to(fp32), x*rsqrt(var), weight*y): the fp32 input (4 bytes), the normalised y and the weighted
    output that feeds the projections (e each); twice per layer. Attention: q, k and v after RoPE as
    SDPA/flash saves them (k and v at full width: with a packed-document mask transformers repeats the
    key/value heads before SDPA), its output, the transposed copy o_proj reads, and a fp32 log-sum-exp per
    head and row; eager attention instead keeps the fp32 softmax and, in 16-bit runs, its 16-bit copy, and
    not the output. SwiGLU MLP: gate output, SiLU output, up output and their product, each I wide.
    """
    sb, e = seq_len * micro_batch, ELEMENT_BYTES[precision]
    h, a = shape.hidden, shape.heads
    norms = 2 * (4 + 2 * e) * sb * h
    mlp = 4 * e * sb * shape.intermediate
    if attention == "eager":
        scores = (4 + (e if e != 4 else 0)) * a * seq_len * seq_len * micro_batch
        attn = e * 4 * sb * h + scores  # q, repeated k and v, o_proj input
    else:
        attn = e * 5 * sb * h + 4 * a * sb  # q, k, v, output, o_proj input; log-sum-exp
    return int(norms + attn + mlp)


def saved_activation_bytes(shape: ModelShape, micro_batch: int, seq_len: int, precision: str, attention: str,
                           checkpointing: bool) -> int:
    """Bytes one micro-batch's forward keeps for backward: the layers, the final norm, the saved log-softmax
    of the loss (fp32, s·b·V) and the block-diagonal mask of packed documents (one boolean b·s² tensor shared
    by all layers; e bytes per entry for eager attention). With checkpointing every layer keeps its input and
    one layer's activations are rebuilt at a time in backward.
    """
    sb, e = seq_len * micro_batch, ELEMENT_BYTES[precision]
    layer = layer_activation_bytes(shape, micro_batch, seq_len, precision, attention)
    final_norm = (4 + 2 * e) * sb * shape.hidden
    mask = (e if attention == "eager" else 1) * micro_batch * seq_len * seq_len
    if checkpointing:
        layers = shape.layers * e * sb * shape.hidden + layer
    else:
        layers = shape.layers * layer
    return int(layers + final_norm + 4 * sb * shape.vocab + mask)


def activation_bytes(shape: ModelShape, micro_batch: int, seq_len: int, precision: str, attention: str,
                     checkpointing: bool) -> int:
    """Activations at the step's peak: what forward saves, plus the loss's working set beside it.

    The loss (packed_loss_sum) casts the logits to fp32 for the log-softmax: at its peak the fp32 logits (or,
    in backward, the log-softmax gradient, 4·s·b·V) and in 16-bit runs the 16-bit logits (e·s·b·V) are alive
    next to the saved log-softmax; in fp32 the cast is a no-op.
    """
    sb, e = seq_len * micro_batch, ELEMENT_BYTES[precision]
    saved = saved_activation_bytes(shape, micro_batch, seq_len, precision, attention, checkpointing)
    return int(saved + (4 + (e if e != 4 else 0)) * sb * shape.vocab)


def allowance_bytes(accelerator: str, dynamic: int) -> int:
    """Runtime context (accelerators only) and fragmentation of `dynamic` bytes (what is freed every step)."""
    context = CONTEXT_BYTES if accelerator != "cpu" else 0
    return int(context + FRAGMENTATION * dynamic)


def estimate(shape: ModelShape, setting: Setting, work: Workload, capacity: int = 0,
             accelerator: str = "cuda") -> Estimate:
    states = model_state_bytes(shape, setting, work.precision, work.world)
    acts = activation_bytes(shape, work.micro_batch, work.seq_len, work.precision, work.attention,
                            setting.activation_checkpointing)
    buffers = gradient_buffer_bytes(shape, setting, work)
    live = live_parameter_bytes(shape, setting, work)
    allowance = allowance_bytes(accelerator, acts + states["gathered"] + buffers + live)
    return Estimate(setting=setting, activations=acts, buffers=buffers, live=live, allowance=allowance,
                    capacity=int(capacity), **states)


@dataclass
class Plan:
    """Every setting's estimate for one model, workload and device, and the fastest one that fits."""

    model: str
    shape: ModelShape
    work: Workload
    device: str
    capacity: int
    nodes: int
    gpus_per_node: int
    configured: Estimate
    estimates: list[Estimate] = field(default_factory=list)
    recommended: Estimate | None = None
    min_nodes: int | None = None  # the fewest nodes at which some setting fits, when none fits now

    @property
    def configured_fits(self) -> bool | None:
        return self.configured.fits

    def to_dict(self) -> dict:
        return {"model": self.model, "parameters": self.shape.params, "shape": asdict(self.shape),
                "workload": asdict(self.work), "device": self.device, "capacity": self.capacity,
                "nodes": self.nodes, "gpus_per_node": self.gpus_per_node, "configured": self.configured.to_dict(),
                "recommended": self.recommended.to_dict() if self.recommended else None,
                "min_nodes": self.min_nodes, "estimates": [est.to_dict() for est in self.estimates]}


def make_plan(shape: ModelShape, work: Workload, configured: Setting, capacity: int, accelerator: str = "cuda",
              model: str = "", device: str = "", nodes: int = 1, gpus_per_node: int = 1) -> Plan:
    """Estimate every setting in speed order; recommend the first that fits (none when capacity is unknown)."""
    estimates = [estimate(shape, s, work, capacity, accelerator) for s in SPEED_ORDER]
    plan = Plan(model=model, shape=shape, work=work, device=device, capacity=capacity, nodes=nodes,
                gpus_per_node=gpus_per_node, configured=estimate(shape, configured, work, capacity, accelerator),
                estimates=estimates)
    if capacity:
        plan.recommended = next((est for est in estimates if est.fits), None)
        if plan.recommended is None:
            plan.min_nodes = _min_nodes(shape, work, capacity, accelerator, nodes, gpus_per_node)
    return plan


def _min_nodes(shape: ModelShape, work: Workload, capacity: int, accelerator: str, nodes: int,
               gpus_per_node: int, limit: int = 4096) -> int | None:
    """The fewest nodes (doubling) at which the most frugal setting fits; None if even `limit` nodes do not."""
    frugal = SPEED_ORDER[-1]
    more = max(1, nodes)
    while more < limit:
        more *= 2
        wider = replace(work, world=more * max(1, gpus_per_node))
        if estimate(shape, frugal, wider, capacity, accelerator).fits:
            return more
    return None


# ---- from a run config ---------------------------------------------------------------------------------


def vocab_for_plan(cfg: Any) -> tuple[int, str]:
    """The vocabulary the trainer would use, and where it comes from (the tokenizer is not trained yet)."""
    if int(cfg.model.vocab_size):
        return int(cfg.model.vocab_size), "model.vocab_size"
    return int(cfg.tokenizer.vocab_size), "tokenizer.vocab_size"


def pretrained_shape(folder: str) -> ModelShape | None:
    """The shape of a local Hugging Face folder (its config.json), for fine-tuning from it."""
    import json
    from pathlib import Path

    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    hf = json.loads(path.read_text(encoding="utf-8"))
    heads = int(hf["num_attention_heads"])
    return ModelShape(hidden=int(hf["hidden_size"]), intermediate=int(hf["intermediate_size"]),
                      layers=int(hf["num_hidden_layers"]), heads=heads,
                      kv_heads=int(hf.get("num_key_value_heads") or heads), vocab=int(hf["vocab_size"]),
                      tied=bool(hf.get("tie_word_embeddings", True)))


def gradient_reduction(train: Any, hw: Any) -> dict[str, Any]:
    """Workload fields for how the trainer reduces gradients and keeps ZeRO-3 parameters: train.engine's
    deepspeed_config choices (contiguous gradients on accelerators only) with train.deepspeed's
    zero_optimization overrides."""
    zero = (train.deepspeed or {}).get("zero_optimization", {}) or {}
    if not hasattr(zero, "get"):
        raise ConfigError(f"train.deepspeed.zero_optimization must be a mapping of DeepSpeed ZeRO options, "
                          f"got {zero!r}")

    def count(key: str, default: int) -> int:
        value = zero.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"train.deepspeed.zero_optimization.{key} must be a positive number of elements, "
                              f"got {value!r}{number_hint(value)}")
        return int(value)

    contiguous = zero.get("contiguous_gradients", str(hw.accelerator) != "cpu")
    if not isinstance(contiguous, bool):
        raise ConfigError(f"train.deepspeed.zero_optimization.contiguous_gradients must be true or false, "
                          f"got {contiguous!r}")
    return {"reduce_bucket": count("reduce_bucket_size", DS_BUCKET_ELEMENTS), "contiguous_gradients": contiguous,
            "overlap_grad_reduce": bool(train.overlap_grad_reduce),
            "max_live_parameters": count("stage3_max_live_parameters", DS_MAX_LIVE_ELEMENTS)}


def micro_batch_for_plan(train: Any, hardware: Any, world: int) -> int:
    """The largest per-rank micro batch, as train.engine.batch_layout picks it."""
    if train.micro_batch_sizes:
        return max(int(s) for s in train.micro_batch_sizes)
    micro = int(train.micro_batch_size or hardware.micro_batch_size or 1)
    return max(1, min(micro, int(train.global_batch_size) // max(1, world)))


def plan_for_config(cfg: Any, nodes: int, gpus_per_node: int, train: Any = None, world: int | None = None) -> Plan:
    """The plan for cfg's model, train section (or `train`, e.g. fine-tuning's) and hardware on nodes x devices.

    gpus_per_node 0 means CPU ranks (run.nproc_per_node per node), whose memory the profile does not state.
    `world` gives the rank count where nodes differ in devices (a heterogeneous job's components).
    """
    train = cfg.train if train is None else train
    hw = cfg.hardware
    ranks = gpus_per_node if gpus_per_node > 0 else max(1, int(cfg.run.nproc_per_node))
    if world is None:
        world = max(1, nodes) * ranks
    else:
        ranks = max(1, world // max(1, nodes))
    shape = pretrained_shape(cfg.model.pretrained) if cfg.model.pretrained else None
    if shape is None:
        shape = model_shape(cfg.model, vocab_for_plan(cfg)[0])
    work = Workload(precision=hw.precision.value, micro_batch=micro_batch_for_plan(train, hw, world),
                    seq_len=int(train.seq_len), attention=hw.attention.value, world=world,
                    **gradient_reduction(train, hw))
    configured = Setting(int(train.zero_stage), bool(train.offload_optimizer), bool(train.offload_params),
                         bool(hw.activation_checkpointing))
    capacity = int(float(hw.memory_gb) * GIB) if gpus_per_node > 0 or hw.accelerator != "cpu" else 0
    return make_plan(shape, work, configured, capacity, str(hw.accelerator), model=str(cfg.model.name),
                     device=f"{hw.name} ({hw.description})" if hw.description else str(hw.name), nodes=max(1, nodes),
                     gpus_per_node=ranks)
