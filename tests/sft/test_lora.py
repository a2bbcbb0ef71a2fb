"""LoRA through peft: adapters only train, and the merged export is a plain model with the adapter's logits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from triglot.train.sft.lora import apply_lora, export_merged

from triglot.config import compose
from triglot.errors import ConfigError

# Loads the export with peft made unimportable, and prints its logits for the given ids.
PLAIN_LOAD = """
import json, sys
sys.modules["peft"] = None
import torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
ids = torch.tensor(json.loads(sys.argv[2]))
with torch.no_grad():
    print(json.dumps(model(input_ids=ids).logits.tolist()))
"""


def lora_section(**kw):
    return compose({"sft": {"lora": {"enabled": True, **kw}}}).sft.lora


def test_merged_export_matches_adapter_logits(tiny_model_dir: Path, tokenizer, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = apply_lora(model, lora_section(rank=4, alpha=8.0, dropout=0.1, target_modules=["q_proj", "v_proj",
                                                                                                 "down_proj"]))
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert any("q_proj.lora_A" in n for n in trainable) and not any("k_proj" in n for n in trainable)
    torch.manual_seed(1)
    with torch.no_grad():  # as after training: B is no longer zero, so the adapter changes the output
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    peft_model.eval()
    ids = tokenizer(["Give three tips for staying healthy.", "講廣東話好難嗎？你覺得點樣？"], padding=True,
                    return_tensors="pt")["input_ids"]
    with torch.no_grad():
        adapter_logits = peft_model(input_ids=ids).logits
    export_merged(peft_model, tmp_path / "export", tokenizer, zero_stage=0, is_main=True)
    out = tmp_path / "export"
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert "lora" not in json.dumps(json.loads((out / "config.json").read_text())).lower()
    with peft_model.disable_adapter(), torch.no_grad():
        plain_base = peft_model(input_ids=ids).logits
    assert (adapter_logits - plain_base).abs().max() > 1e-3  # the adapter matters
    proc = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(out), json.dumps(ids.tolist())],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged_logits = torch.tensor(json.loads(proc.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-5, rtol=0)
    # Exporting did not merge the training model itself.
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())


def test_unknown_target_module_is_a_config_error(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ConfigError, match="c_attn"):
        apply_lora(model, lora_section(target_modules=["c_attn"]))


def test_streamed_merge_equals_peft_merge_one_module_at_a_time(tiny_model_dir: Path, tokenizer, tmp_path: Path) -> None:
    """The module-by-module merged export writes exactly what peft's merge_and_unload gives, modules_to_save
    included, and no unit gathers more than one module's tensors."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    from triglot.train.sft.lora import _export_merged_whole, merged_units

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = apply_lora(model, lora_section(rank=4, alpha=8.0, target_modules=["q_proj", "v_proj", "down_proj"],
                                                modules_to_save=["lm_head"]))
    torch.manual_seed(2)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.1)
    export_merged(peft_model, tmp_path / "streamed", tokenizer, zero_stage=0, is_main=True)
    _export_merged_whole(peft_model, tmp_path / "whole", tokenizer, zero_stage=0, is_main=True, adapter_too=True)
    streamed = load_file(tmp_path / "streamed" / "model.safetensors")
    whole = load_file(tmp_path / "whole" / "model.safetensors")
    assert set(streamed) == set(whole) and "lm_head.weight" in streamed  # the trained head, untied
    for name, tensor in whole.items():
        assert torch.equal(streamed[name], tensor), name
    config = {k: json.loads((tmp_path / d / "config.json").read_text())["tie_word_embeddings"] for k, d in
              (("streamed", "streamed"), ("whole", "whole"))}
    assert config == {"streamed": False, "whole": False}
    base = load_file(tiny_model_dir / "model.safetensors")
    changed = {n for n in base if not torch.equal(base[n], whole[n])}
    assert {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"} <= changed
    assert "model.layers.0.self_attn.k_proj.weight" not in changed
    assert (tmp_path / "streamed" / "adapter" / "adapter_config.json").is_file()
    largest = max(sum(p.numel() for p in m.parameters()) for m in peft_model.modules()
                  if "lora" in type(m).__module__ or not list(m.children()))
    units = merged_units(peft_model.get_base_model())
    assert max(sum(t.numel() for t in u.gather) for u in units) <= largest
