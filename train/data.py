"""Training samples from packed shards: mixture-weighted, document-masked, in a seed-fixed global order.

Sample `i` of a run is a pure function of (seed, i): the mixture group comes from a seeded shuffle of
fixed per-block group counts, the window within the group from a seeded per-epoch permutation.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from triglot.errors import ConfigError
from triglot.packed import PackedDataset

IGNORE = -100
BLOCK = 1024  # samples whose group counts are fixed by the mixture weights


@dataclass
class Sample:
    input_ids: np.ndarray  # [seq_len]
    labels: np.ndarray  # [seq_len], IGNORE where the next token starts another document
    position_ids: np.ndarray  # [seq_len], restarting at each document start
    languages: dict[str, int]  # target tokens per language


class TokenStream:
    """One mixture group's documents laid end to end, cut into overlapping windows of seq_len + 1."""

    def __init__(self, packed: PackedDataset, docs: np.ndarray, seq_len: int):
        self.packed = packed
        self.docs = docs
        self.seq_len = seq_len
        lengths = packed.lengths[docs].astype(np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)])
        self.num_windows = max(0, int(self.starts[-1] - 1) // seq_len)

    def window(self, w: int) -> Sample:
        start, end = w * self.seq_len, w * self.seq_len + self.seq_len + 1
        k = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces, begins, languages = [], [], {}
        pos = start
        while pos < end:
            doc = int(self.docs[k])
            a, b = pos - int(self.starts[k]), min(end, int(self.starts[k + 1])) - int(self.starts[k])
            pieces.append(self.packed.tokens(doc)[a:b])
            begins.append((pos - start, a == 0))
            lang = self.packed.languages[doc]
            languages[lang] = languages.get(lang, 0) + (b - a)
            pos += b - a
            k += 1
        languages[lang] -= 1  # the window's last token is only a target
        tokens = np.concatenate(pieces).astype(np.int64)
        doc_start = np.zeros(self.seq_len + 1, dtype=bool)
        for offset, is_start in begins:
            doc_start[offset] = doc_start[offset] or is_start
        doc_start[0] = True
        labels = tokens[1:].copy()
        labels[doc_start[1:]] = IGNORE  # never predict across a document boundary
        idx = np.arange(self.seq_len)
        position_ids = idx - np.maximum.accumulate(np.where(doc_start[:-1], idx, 0))
        return Sample(tokens[:-1], labels, position_ids, languages)


def split_documents(packed: PackedDataset, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out document indices; the split is fixed by the seed."""
    if val_fraction <= 0:
        return np.arange(len(packed)), np.zeros(0, dtype=np.int64)
    held_out = np.random.default_rng([seed, 3]).random(len(packed)) < val_fraction
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


def group_documents(packed: PackedDataset, docs: np.ndarray, by: str) -> dict[str, np.ndarray]:
    if by not in ("language", "source"):
        raise ConfigError(f"train.mixture_by must be 'language' or 'source', got '{by}'")
    keys = packed.languages if by == "language" else packed.sources
    groups: dict[str, list[int]] = {}
    for d in docs:
        groups.setdefault(keys[d], []).append(int(d))
    return {name: np.asarray(ids, dtype=np.int64) for name, ids in sorted(groups.items())}


class MixtureSampler:
    """Global sample index -> Sample, a pure function of (seed, index)."""

    def __init__(self, packed: PackedDataset, docs: np.ndarray, seq_len: int, seed: int,
                 mixture: dict[str, float], by: str = "language"):
        self.seed = seed
        groups = group_documents(packed, docs, by)
        unknown = sorted(set(mixture) - set(groups))
        if unknown:
            raise ConfigError(f"train.mixture names {unknown} but the data has {by}s {sorted(groups)}; "
                              "fix the weights or train.mixture_by")
        self.names, self.streams = [], []
        for name, ids in groups.items():
            shuffled = ids[np.random.default_rng([seed, 4, _stable(name)]).permutation(len(ids))]
            stream = TokenStream(packed, shuffled, seq_len)
            if stream.num_windows and (not mixture or mixture.get(name, 0) > 0):
                self.names.append(name)
                self.streams.append(stream)
        if not self.streams:
            raise ConfigError(f"no {by} group has {seq_len + 1} tokens with positive weight; "
                              "lower train.seq_len or fix train.mixture")
        weights = np.array([mixture[n] if mixture else s.starts[-1] for n, s in zip(self.names, self.streams, strict=True)],
                           dtype=np.float64)
        self.schedule = InterleavedSchedule(weights, [s.num_windows for s in self.streams], seed, salts=(1, 2))
        self.weights = self.schedule.weights

    def locate(self, index: int) -> tuple[int, int]:
        """(group, window) of global sample `index`."""
        return self.schedule.locate(index)

    def __getitem__(self, index: int) -> Sample:
        g, w = self.locate(index)
        return self.streams[g].window(w)


class InterleavedSchedule:
    """Position -> (group, item) for groups drawn in proportion to their weights, a pure function of the seed.

    Every block of BLOCK consecutive positions holds each group a fixed number of times (largest-remainder
    rounding of the weights), in a seeded order; a group's items are visited in a seeded permutation per
    epoch, so a small group repeats only after all of its items have been seen. `salts` keep the random
    streams of different users of the schedule apart.
    """

    def __init__(self, weights: np.ndarray, sizes: list[int], seed: int, salts: tuple[int, int]):
        weights = np.asarray(weights, dtype=np.float64)
        self.weights = weights / weights.sum()
        self.sizes, self.seed, self.salts = sizes, seed, salts
        self.block_counts = _largest_remainder(self.weights, BLOCK)
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Group of each position in block `b`, and how many of that group come before it in the block."""
        if b not in self._blocks:
            groups = np.repeat(np.arange(len(self.sizes)), self.block_counts)
            groups = groups[np.random.default_rng([self.seed, self.salts[0], b]).permutation(BLOCK)]
            rank_in_group = np.zeros(BLOCK, dtype=np.int64)
            for g in range(len(self.sizes)):
                mask = groups == g
                rank_in_group[mask] = np.arange(int(mask.sum()))
            if len(self._blocks) > 8:
                self._blocks.clear()
            self._blocks[b] = (groups, rank_in_group)
        return self._blocks[b]

    def _epoch_order(self, g: int, epoch: int) -> np.ndarray:
        if (g, epoch) not in self._orders:
            if len(self._orders) > 64:
                self._orders.clear()
            rng = np.random.default_rng([self.seed, self.salts[1], g, epoch])
            self._orders[(g, epoch)] = rng.permutation(self.sizes[g])
        return self._orders[(g, epoch)]

    def locate(self, index: int) -> tuple[int, int]:
        """(group, item within the group) at position `index`."""
        b, offset = divmod(index, BLOCK)
        groups, rank_in_group = self._block(b)
        g = int(groups[offset])
        j = b * int(self.block_counts[g]) + int(rank_in_group[offset])
        epoch, p = divmod(j, self.sizes[g])
        return g, int(self._epoch_order(g, epoch)[p])


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    raw = weights * total
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def _stable(name: str) -> int:
    return int.from_bytes(name.encode("utf-8")[:8].ljust(8, b"\0"), "little") % (2**31)


# ---- batches for one rank --------------------------------------------------------------------


@dataclass(frozen=True)
class BatchLayout:
    """How a global batch of `global_batch` samples is cut into ranks and accumulation steps."""

    micro_sizes: tuple[int, ...]  # per rank
    accumulation: int

    @property
    def global_batch(self) -> int:
        return sum(self.micro_sizes) * self.accumulation

    def indices(self, step: int, rank: int) -> list[list[int]]:
        """Global sample indices this rank reads at `step`, one list per accumulation step."""
        per_micro = sum(self.micro_sizes)
        base = step * self.global_batch
        first = sum(self.micro_sizes[:rank])
        return [list(range(base + a * per_micro + first, base + a * per_micro + first + self.micro_sizes[rank]))
                for a in range(self.accumulation)]


def collate(samples: list[Sample]) -> dict:
    import torch

    languages: dict[str, int] = {}
    for s in samples:
        for lang, n in s.languages.items():
            languages[lang] = languages.get(lang, 0) + n
    return {
        "input_ids": torch.from_numpy(np.stack([s.input_ids for s in samples])),
        "labels": torch.from_numpy(np.stack([s.labels for s in samples])),
        "position_ids": torch.from_numpy(np.stack([s.position_ids for s in samples])),
        "languages": languages,
    }


class Prefetcher:
    """Builds this rank's micro-batches for the coming steps on a thread, so loading overlaps compute."""

    def __init__(self, sampler: MixtureSampler, layout: BatchLayout, rank: int, first_step: int, last_step: int,
                 depth: int = 2):
        self.sampler, self.layout, self.rank = sampler, layout, rank
        self.collate = getattr(sampler, "collate", collate)  # a sampler may stack its samples its own way
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(first_step, last_step), daemon=True)
        self._thread.start()

    def _fill(self, first: int, last: int) -> None:
        try:
            for step in range(first, last):
                groups = self.layout.indices(step, self.rank)
                item = (step, groups, [self.collate([self.sampler[i] for i in g]) for g in groups])
                while not self._stop.is_set():
                    try:
                        self.queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as err:  # surfaced to the training thread
            self.queue.put(err)

    def next(self) -> tuple[int, list[list[int]], list[dict], float]:
        """(step, indices, micro-batches, seconds waited)."""
        t0 = time.perf_counter()
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return (*item, time.perf_counter() - t0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def validation_batches(packed: PackedDataset, docs: np.ndarray, seq_len: int, micro: int, batches: int,
                       rank: int, world: int) -> Iterator[tuple[str, dict]]:
    """(language, micro-batch) pairs of held-out windows, this rank's share.

    Every rank yields the same number of micro-batches (ZeRO-3 forwards are collective); a rank
    without data left gets a batch whose labels are all ignored.
    """
    for language, ids in group_documents(packed, docs, "language").items():
        stream = TokenStream(packed, ids, seq_len)
        total = min(batches * world * micro, stream.num_windows)
        rounds = -(-total // (world * micro))
        for r in range(rounds):
            first = (r * world + rank) * micro
            take = [w for w in range(first, first + micro) if w < total]
            if take:
                yield language, collate([stream.window(w) for w in take])
            else:
                batch = collate([stream.window(0)])
                batch["labels"].fill_(IGNORE)
                batch["languages"] = {}
                yield language, batch
