"""Hugging Face export that streams: sharded safetensors written a tensor at a time, never the whole model.

Under ZeRO-3 every rank gathers one module's parameters at a time; rank 0 writes them into shard files
laid out in advance from the (unsharded) shapes, then the gathered copies are freed. The offline export
(train/export_offline.py) writes the same files from a saved checkpoint's shards.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import struct
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triglot.errors import ConfigError

log = logging.getLogger(__name__)

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# safetensors' dtype names (https://github.com/huggingface/safetensors, format section of the README).
DTYPE_NAMES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64", "int64": "I64",
               "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: Any  # torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


def shard_bytes(max_shard_size: str | int) -> int:
    """'5GB', '200MB' or a byte count, read the way transformers reads its `max_shard_size`."""
    from transformers.utils.hub import convert_file_size_to_int

    try:
        size = int(convert_file_size_to_int(max_shard_size))
    except (ValueError, TypeError) as err:
        raise ConfigError(f"train.export.max_shard_size: '{max_shard_size}' is not a size; use e.g. '5GB' or "
                          "'500MB'") from err
    if size <= 0:
        raise ConfigError(f"train.export.max_shard_size must be positive, got '{max_shard_size}'")
    return size


def plan_shards(specs: list[TensorSpec], max_bytes: int) -> list[list[TensorSpec]]:
    """Consecutive tensors per shard, each shard at most `max_bytes` unless one tensor alone is larger."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if shards[-1] and size + spec.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    return shards if shards[0] else []


class ShardedSafetensorsWriter:
    """Shard files whose headers are written first, so tensors (or pieces of them) arrive in any order.

    safetensors' own writer needs every tensor in memory at once; this one writes the documented layout
    (8-byte header length, JSON header, raw little-endian data) with positioned writes, one piece at a time.
    """

    def __init__(self, folder: Path, specs: list[TensorSpec], max_bytes: int):
        self.folder = folder
        shards = plan_shards(specs, max_bytes)
        count = len(shards)
        self.names = [SINGLE] if count == 1 else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        self.place: dict[str, tuple[int, int, TensorSpec]] = {}  # name -> (shard, byte position, spec)
        self.written: dict[str, int] = {spec.name: 0 for spec in specs}
        self.fds = []
        for index, (name, shard) in enumerate(zip(self.names, shards, strict=True)):
            self.fds.append(self._create(folder / name, index, shard))

    def _create(self, path: Path, index: int, shard: list[TensorSpec]) -> int:
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for spec in shard:
            header[spec.name] = {"dtype": DTYPE_NAMES[str(spec.dtype).split(".")[-1]], "shape": list(spec.shape),
                                 "data_offsets": [offset, offset + spec.nbytes]}
            offset += spec.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
        start = 8 + len(raw)
        for spec in shard:
            self.place[spec.name] = (index, start + header[spec.name]["data_offsets"][0], spec)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.pwrite(fd, struct.pack("<Q", len(raw)) + raw, 0)
        os.ftruncate(fd, start + offset)
        return fd

    def write(self, name: str, tensor: Any, start: int = 0) -> None:
        """Elements [start, start + tensor.numel()) of tensor `name` (flattened, any dtype: cast to the spec's)."""
        import torch

        index, position, spec = self.place[name]
        flat = tensor.detach().reshape(-1).to(device="cpu", dtype=spec.dtype).contiguous()
        if start + flat.numel() > spec.numel:
            raise ValueError(f"{name}: elements {start}..{start + flat.numel()} past its {spec.numel}")
        data = memoryview(flat.view(torch.uint8).numpy())
        at = position + start * spec.dtype.itemsize
        while data:
            done = os.pwrite(self.fds[index], data, at)
            data, at = data[done:], at + done
        self.written[name] += flat.numel()

    def close(self) -> None:
        """Check every tensor was written whole, flush the files and write the index (several shards)."""
        for fd in self.fds:
            os.fsync(fd)
            os.close(fd)
        self.fds = []
        short = [name for name, n in self.written.items() if n != self.place[name][2].numel]
        if short:
            raise RuntimeError(f"export incomplete: {short[:3]} not written whole")
        if len(self.names) > 1:
            index = {"metadata": {"total_size": sum(spec.nbytes for _, _, spec in self.place.values())},
                     "weight_map": {name: self.names[i] for name, (i, _, _) in self.place.items()}}
            (self.folder / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")

    def abort(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def module_groups(model: Any) -> list[list[tuple[str, Any]]]:
    """(name, tensor) per module, its own parameters and persistent buffers: the unit gathered at once.

    A tied weight appears once, under its first name (how transformers saves it too).
    """
    seen: set[int] = set()
    groups = [module_tensors(module, f"{prefix}." if prefix else "", seen) for prefix, module in model.named_modules()]
    return [group for group in groups if group]


def module_tensors(module: Any, dot: str, seen: set[int]) -> list[tuple[str, Any]]:
    """A module's own parameters not in `seen` (added to it) and its persistent buffers, named `dot` + name."""
    group = []
    for name, param in module.named_parameters(recurse=False):
        if id(param) not in seen:
            seen.add(id(param))
            group.append((dot + name, param))
    skip = getattr(module, "_non_persistent_buffers_set", set())
    return group + [(dot + name, buf) for name, buf in module.named_buffers(recurse=False)
                    if buf is not None and name not in skip]


def full_shape(tensor: Any) -> tuple[int, ...]:
    """The unsharded shape (ZeRO-3 keeps it as ds_shape while the local tensor is a flat slice)."""
    return tuple(int(d) for d in getattr(tensor, "ds_shape", tensor.shape))


def _gathered(tensors: list[Any], zero_stage: int) -> Any:
    params = [t for t in tensors if hasattr(t, "ds_id")]
    if zero_stage != 3 or not params:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def parameter_count(model: Any) -> int:
    """Parameters of the whole model (ZeRO-3: their full size), tied ones once."""
    return sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters())


@dataclass
class ExportUnit:
    """Tensors gathered together (one module's) and the tensors written from them while they are whole:
    each output is its spec and a call that returns it (the tensor itself, or one computed from the gathered
    ones, such as a base weight with its LoRA delta folded in)."""

    gather: list[Any]
    outputs: list[tuple[TensorSpec, Callable[[], Any]]]

    @classmethod
    def as_is(cls, group: list[tuple[str, Any]]) -> ExportUnit:
        """Tensors written as they are, under their names."""
        return cls([t for _, t in group], [(TensorSpec(name, full_shape(t), t.dtype), lambda t=t: t)
                                           for name, t in group])


def plain_units(model: Any) -> list[ExportUnit]:
    """Every module's own parameters and persistent buffers, written as they are."""
    return [ExportUnit.as_is(group) for group in module_groups(model)]


def stream_units(units: list[ExportUnit], writer: ShardedSafetensorsWriter | None, zero_stage: int) -> None:
    """Collective under ZeRO-3: gather unit by unit; the rank with a `writer` writes each output.

    A write error (a full disk) stops the writing but not the gathering, so every rank leaves the loop
    together; the error is raised after it.
    """
    import torch

    failure: BaseException | None = None
    release = host_memory_release()
    for unit in units:
        with _gathered(unit.gather, zero_stage), torch.no_grad():
            if writer is None or failure is not None:
                continue
            try:
                for spec, produce in unit.outputs:
                    writer.write(spec.name, produce())
            except Exception as err:  # noqa: BLE001 - re-raised below, once the other ranks are done
                failure = err
        release()
    if failure is not None:
        raise failure


def stream_weights(model: Any, writer: ShardedSafetensorsWriter | None, zero_stage: int) -> None:
    """Collective under ZeRO-3: gather module by module; the rank with a `writer` writes each tensor."""
    stream_units(plain_units(model), writer, zero_stage)


def host_memory_release() -> Any:
    """A call that hands freed heap pages back to the kernel (glibc's malloc_trim), else one that does nothing.

    Training keeps freed host memory in the process (see triglot.hardware.tune_host_allocator); during an
    export each module's gathered copy is freed and the next one has another size, so without this the
    holes add up and a rank's resident memory grows with the model instead of with its largest module.
    """
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def write_folder_files(tmp: Path, config: Any, tokenizer: Any, generation_config: Any = None) -> None:
    """config.json (and generation_config.json) and the tokenizer next to the weights."""
    config.save_pretrained(tmp)
    if generation_config is not None:
        generation_config.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)


def replace_folder(tmp: Path, out_dir: Path) -> None:
    """The finished temporary folder takes the export's place (a reader never sees half a folder)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def export_hf(model: Any, out_dir: Path, tokenizer_dir: Path | None, zero_stage: int, is_main: bool,
              max_shard_size: str | int = "5GB") -> None:
    """Write a Hugging Face folder (sharded safetensors, config, tokenizer) from a model under any ZeRO stage.

    Collective under ZeRO-3 (every rank must call it). Extra memory per rank: the largest module's
    parameters (gathered), not the model's.
    """
    if not is_main and zero_stage != 3:
        return  # the parameters are whole on rank 0: nothing to gather
    tokenizer = None
    if tokenizer_dir is not None and is_main:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    export_units(model, plain_units(model), out_dir, tokenizer, zero_stage, is_main, max_shard_size)


def export_units(model: Any, units: list[ExportUnit], out_dir: Path, tokenizer: Any, zero_stage: int,
                 is_main: bool, max_shard_size: str | int = "5GB",
                 extra: Callable[[Path], None] | None = None, config_changes: dict | None = None) -> None:
    """The streamed export of `units` into `out_dir`, with `model`'s config and `tokenizer` beside the weights.

    Collective under ZeRO-3. Written into a temporary folder that replaces `out_dir` once whole; `extra`, when
    given, is called on every rank with that folder before the rename (to add files, collectively if need be).
    `config_changes` are set on the written config.json.
    """
    max_bytes = shard_bytes(max_shard_size)
    specs = [spec for unit in units for spec, _ in unit.outputs]
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    writer = None
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        writer = ShardedSafetensorsWriter(tmp, specs, max_bytes)
    try:
        stream_units(units, writer, zero_stage)
    finally:
        if writer is not None:
            writer.abort()
    if is_main:
        writer.close()
    if extra is not None:
        extra(tmp)
    if not is_main:
        return
    config = hf_config(model, specs)
    for key, value in (config_changes or {}).items():
        setattr(config, key, value)
    write_folder_files(tmp, config, tokenizer, getattr(model, "generation_config", None))
    replace_folder(tmp, out_dir)
    log.info("exported %s (%d shard(s))", out_dir, len(writer.names))


def hf_config(model: Any, specs: list[TensorSpec]) -> Any:
    """The model's config as save_pretrained would write it: architectures and the weights' dtype set."""
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    floats = [s.dtype for s in specs if s.dtype.is_floating_point]
    if floats:
        config.dtype = floats[0]
    return config


def iter_slices(tensors: list[Any], start: int, end: int) -> Iterator[Any]:
    """Elements [start, end) of the concatenation of flat `tensors`, as views (nothing is concatenated)."""
    base = 0
    for t in tensors:
        n = t.numel()
        lo, hi = max(start, base), min(end, base + n)
        if lo < hi:
            yield t.reshape(-1)[lo - base:hi - base]
        base += n
        if base >= end:
            return
