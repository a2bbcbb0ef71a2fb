"""SFT data: readers on the real shared files, answer-only masks under each template, mixing and packing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from triglot.train.data import IGNORE
from triglot.train.sft.data import SftSampler, TokenizedDataset, build_sft_sampler, pack_conversations
from triglot.train.sft.formats import load_conversations
from triglot.train.sft.templates import BUILTIN, prepare_tokenizer, tokenize_conversation

from triglot.config import compose
from triglot.errors import ConfigError

SFT = "corpora/sft"
BILINGUAL = f"{SFT}/sft_alpaca_bilingual_en_zh/alpaca_chinese_part_*.json"
EN_FIELDS = {"instruction": "en_instruction", "input": "en_input", "output": "en_output"}
ZH_FIELDS = {"instruction": "zh_instruction", "input": "zh_input", "output": "zh_output"}


def spec(name: str, paths: list[str], **kw) -> object:
    return compose({"sft": {"datasets": [{"name": name, "paths": paths, **kw}]}}).sft.datasets[0]


def multi_turn(shared_data: Path, n: int, offset: int = 0) -> list[dict]:
    """A real multi-turn chat: consecutive Cantonese instruction records as turns, with a system prompt."""
    lines = (shared_data / SFT / "yue_alpaca_seed/regen.jsonl").read_text().splitlines()[offset: offset + n]
    conv = [{"role": "system", "content": "你係一個識講廣東話嘅助手。"}]
    for line in lines:
        r = json.loads(line)
        conv += [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]
    return conv


def test_alpaca_bilingual_fields_and_seed_instances(shared_data: Path) -> None:
    en = load_conversations(spec("en", [str(shared_data / BILINGUAL)], fields=EN_FIELDS))
    zh = load_conversations(spec("zh", [str(shared_data / BILINGUAL)], fields=ZH_FIELDS), "Be helpful.")
    assert len(en) > 2900 and len(zh) > 2900
    assert en[0] == [{"role": "user", "content": "Give three tips for staying healthy."},
                     {"role": "assistant", "content": en[0][1]["content"]}]
    assert en[0][1]["content"].startswith("1.Eat a balanced diet")
    assert zh[0][0] == {"role": "system", "content": "Be helpful."} and zh[0][1]["content"] == "给出保持健康的三个建议。"
    with_input = next(c for c in en if "\n\n" in c[0]["content"])
    assert with_input[0]["content"].split("\n\n")[1]  # instruction, blank line, input
    seed = load_conversations(spec("seed", [str(shared_data / SFT / "sft_alpaca_seed_en/seed_tasks.jsonl")]))
    assert len(seed) >= 175  # one conversation per instance
    assert seed[1][0]["content"] == "What is the relation between the given pairs?\n\nNight : Day :: Right : Left"
    yue = load_conversations(spec("yue", [str(shared_data / SFT / "yue_alpaca_seed/*.jsonl")], max_samples=50))
    assert len(yue) == 50 and all(c[-1]["role"] == "assistant" for c in yue)


def test_sharegpt_and_messages_files(shared_data: Path, tmp_path: Path) -> None:
    conv = multi_turn(shared_data, 3)
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    sharegpt = {"conversations": [{"from": names[t["role"]], "value": t["content"]} for t in conv]}
    (tmp_path / "chat.json").write_text(json.dumps([sharegpt, {"conversations": [{"from": "gpt", "value": "x"}]}]))
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": conv}) + "\n{broken\n")
    assert load_conversations(spec("sg", [str(tmp_path / "chat.json")], format="sharegpt")) == [conv]
    assert load_conversations(spec("m", [str(tmp_path / "chat.jsonl")], format="messages")) == [conv]
    with pytest.raises(ConfigError, match="format"):
        load_conversations(spec("x", [str(tmp_path / "chat.json")], format="csv"))


def assistant_runs(ids: np.ndarray, mask: np.ndarray) -> list[list[int]]:
    runs, current = [], []
    for token, on in zip(ids.tolist(), mask.tolist(), strict=True):
        if on:
            current.append(token)
        elif current:
            runs, current = [*runs, current], []
    return runs + ([current] if current else [])


@pytest.mark.parametrize("template", [*BUILTIN, "own"])
def test_mask_covers_exactly_the_assistant_turns(template: str, tokenizer, shared_data: Path) -> None:
    if template == "own":  # a template without generation markers, as many tokenizers ship
        tokenizer.chat_template = ("{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + eos_token"
                                   " + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")
    end = {"own": "</s>", **{k: v[2] for k, v in BUILTIN.items()}}[template]
    prepare_tokenizer(tokenizer, "auto" if template == "own" else template)
    conv = multi_turn(shared_data, 3)
    ids, mask = tokenize_conversation(tokenizer, conv)
    answers = [t["content"].strip() + end for t in conv if t["role"] == "assistant"]
    assert [tokenizer.decode(run) for run in assistant_runs(ids, mask)] == answers
    assert ids.tolist() == tokenizer.apply_chat_template(conv, return_dict=True)["input_ids"]
    if template != "own":  # agrees with transformers' own {% generation %} mask
        hf = tokenizer.apply_chat_template(conv, return_assistant_tokens_mask=True, return_dict=True)
        assert np.array_equal(np.asarray(hf["assistant_masks"], dtype=bool), mask)


def tokenized(tokenizer, shared_data: Path, name: str, offset: int, n: int, weight: float) -> TokenizedDataset:
    convs = [multi_turn(shared_data, 1 + i % 2, offset + i) for i in range(n)]
    pairs = [tokenize_conversation(tokenizer, c) for c in convs]
    return TokenizedDataset(name, name, weight, [p[0][:200] for p in pairs], [p[1][:200] for p in pairs])


def test_packing_keeps_masks_and_boundaries(tokenizer, tiny_model_dir: Path, shared_data: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    prepare_tokenizer(tokenizer, "chatml")
    data = tokenized(tokenizer, shared_data, "yue", 0, 12, 1.0)
    sampler = SftSampler([data], seq_len=512, seed=7, pad_id=tokenizer.pad_token_id)
    sample = sampler[0]
    first, end = sampler.span(0)
    assert end - first >= 2  # several conversations in one sequence
    starts = np.flatnonzero(sample.position_ids == 0)
    offset = 0
    for j in range(first, end):
        d, c = sampler.conversation(j)
        ids, mask = data.tokens[c], data.masks[c]
        n = len(ids)
        assert offset in starts
        assert np.array_equal(sample.input_ids[offset: offset + n], ids)
        assert np.array_equal(sample.labels[offset: offset + n - 1], np.where(mask[1:], ids[1:], IGNORE))
        assert sample.labels[offset + n - 1] == IGNORE  # nothing is predicted across the boundary
        offset += n
    assert (sample.labels[offset:] == IGNORE).all()
    # Attention stays inside each conversation: packed logits equal each conversation's own logits.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    with torch.no_grad():
        packed = model(input_ids=torch.from_numpy(sample.input_ids)[None],
                       position_ids=torch.from_numpy(sample.position_ids)[None], use_cache=False).logits[0]
        d, c = sampler.conversation(first + 1)
        alone = model(input_ids=torch.from_numpy(data.tokens[c])[None]).logits[0]
    a = int(starts[1])
    torch.testing.assert_close(packed[a: a + len(data.tokens[c])], alone, atol=1e-5, rtol=1e-5)


def test_mixture_weights_and_fixed_order(tokenizer, shared_data: Path) -> None:
    prepare_tokenizer(tokenizer, "chatml")
    a = tokenized(tokenizer, shared_data, "a", 0, 5, 3.0)
    b = tokenized(tokenizer, shared_data, "b", 20, 7, 1.0)
    sampler = SftSampler([a, b], seq_len=256, seed=3, pad_id=0, pack=False)
    drawn = [sampler.conversation(j)[0] for j in range(2048)]
    assert drawn.count(0) == 1536 and drawn.count(1) == 512  # 3:1 exactly per block of 1024
    again = SftSampler([a, b], seq_len=256, seed=3, pad_id=0, pack=False)
    assert np.array_equal(again[37].input_ids, sampler[37].input_ids)  # random access, same result
    other_seed = SftSampler([a, b], seq_len=256, seed=4, pad_id=0, pack=False)
    assert [other_seed.conversation(j) for j in range(20)] != [sampler.conversation(j) for j in range(20)]


def test_build_sampler_from_config(tokenizer, shared_data: Path) -> None:
    cfg = compose({"train": {"seq_len": 256}, "sft": {"template": "qwen", "datasets": [
        {"name": "en", "paths": [str(shared_data / BILINGUAL)], "fields": EN_FIELDS, "weight": 1, "language": "en",
         "max_samples": 40},
        {"name": "yue", "paths": [str(shared_data / SFT / "yue_alpaca_seed/regen.jsonl")], "language": "yue",
         "max_samples": 40}]}})
    sampler = build_sft_sampler(cfg, tokenizer)
    assert "<|im_start|>" in tokenizer.get_vocab()
    langs: dict[str, int] = {}
    for i in range(8):
        s = sampler[i]
        assert s.input_ids.shape == s.labels.shape == s.position_ids.shape == (256,)
        assert (s.labels != IGNORE).sum() == sum(s.languages.values()) > 0
        for k, v in s.languages.items():
            langs[k] = langs.get(k, 0) + v
    assert set(langs) == {"en", "yue"}
    with pytest.raises(ValueError):
        pack_conversations([(np.arange(10), np.ones(10, bool), "x")], 5, 0)


def test_quickstart_sft_section_loads(repo_root: Path) -> None:
    from triglot.config import load_config

    cfg = load_config(repo_root / "configs/experiments/quickstart.yaml")
    counts = {d.name: len(load_conversations(d)) for d in cfg.sft.datasets}
    assert counts["alpaca_en"] == counts["alpaca_zh"] == 600 and counts["seed_en"] >= 175 and counts["alpaca_yue"] >= 190
