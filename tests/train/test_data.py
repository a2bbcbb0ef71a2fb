"""Sample order, document boundaries and batch layout of the training data (single process)."""

from __future__ import annotations

import numpy as np
import pytest
from triglot.train.data import IGNORE, BatchLayout, MixtureSampler, split_documents
from triglot.train.engine import batch_layout, lr_lambda

from triglot.config import compose
from triglot.errors import ConfigError
from triglot.packed import PackedDataset


def _sampler(packed_dir, seed=5, mixture=None):
    packed = PackedDataset(packed_dir)
    docs, _ = split_documents(packed, 0.0, seed)
    return packed, MixtureSampler(packed, docs, 32, seed, mixture or {}, "language")


def test_order_is_a_pure_function_of_seed_and_index(packed_dir):
    _, a = _sampler(packed_dir)
    _, b = _sampler(packed_dir)
    forward = [a[i].input_ids for i in range(0, 300)]
    backward = [b[i].input_ids for i in reversed(range(0, 300))][::-1]
    assert all(np.array_equal(x, y) for x, y in zip(forward, backward, strict=True))
    _, c = _sampler(packed_dir, seed=6)
    assert not all(np.array_equal(a[i].input_ids, c[i].input_ids) for i in range(20))


def test_positions_restart_and_no_target_crosses_a_document(packed_dir):
    packed, sampler = _sampler(packed_dir)
    eos = packed.eos_id
    for i in range(50):
        s = sampler[i]
        starts = np.flatnonzero(s.position_ids == 0)
        assert starts[0] == 0
        # Every EOS ends a document: the next position starts a new one and EOS predicts nothing.
        for j in np.flatnonzero(s.input_ids[:-1] == eos):
            assert s.position_ids[j + 1] == 0
            assert s.labels[j] == IGNORE
        # Inside a document positions count up by one and the label is the next input.
        inside = np.flatnonzero(s.position_ids[1:] != 0)
        assert np.all(s.position_ids[1:][inside] == s.position_ids[:-1][inside] + 1)
        assert np.all(s.labels[:-1][inside] == s.input_ids[1:][inside])


def test_mixture_weights_are_followed(packed_dir):
    _, sampler = _sampler(packed_dir, mixture={"en": 0.6, "yue": 0.4})
    groups = [sampler.names[sampler.locate(i)[0]] for i in range(2048)]
    assert groups.count("en") == int(0.6 * 2048) or abs(groups.count("en") - 0.6 * 2048) <= 2
    assert "zh-Hans" not in groups
    with pytest.raises(ConfigError, match="train.mixture"):
        _sampler(packed_dir, mixture={"fr": 1.0})


@pytest.mark.parametrize("world,train", [
    (1, {"micro_batch_size": 8}), (2, {"micro_batch_size": 4}), (2, {"micro_batch_size": 2}),
    (2, {"micro_batch_sizes": [3, 5]}), (4, {"micro_batch_size": 1}),
])
def test_every_layout_reads_the_same_global_batch(world, train):
    cfg = compose({"train": {"global_batch_size": 8, **train}})
    layout = batch_layout(cfg.train, cfg.hardware, world)
    for step in (0, 3):
        seen = sorted(i for r in range(world) for group in layout.indices(step, r) for i in group)
        assert seen == list(range(step * 8, step * 8 + 8))


def test_layout_errors_name_the_keys():
    cfg = compose({"train": {"global_batch_size": 8, "micro_batch_sizes": [3, 4]}})
    with pytest.raises(ConfigError, match="global_batch_size"):
        batch_layout(cfg.train, cfg.hardware, 2)
    with pytest.raises(ConfigError, match="one size per rank"):
        batch_layout(cfg.train, cfg.hardware, 3)
    assert BatchLayout((3, 5), 2).global_batch == 16


@pytest.mark.parametrize("schedule", ["cosine", "linear", "wsd", "constant"])
def test_schedules_warm_up_and_end_where_configured(schedule):
    cfg = compose({"train": {"steps": 100, "warmup_steps": 10, "schedule": schedule, "min_lr_ratio": 0.1}})
    f = lr_lambda(cfg.train)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(100) == pytest.approx(1.0 if schedule == "constant" else 0.1)
    if schedule == "wsd":
        assert f(79) == pytest.approx(1.0) and f(90) < 1.0
