"""Hostile inputs to `triglot generate` and the SFT dataset reader: a model folder with no tokenizer, prompt and
dataset files that are not UTF-8. Each is an InputError naming the folder or file; the CLI exits 2, one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from triglot.train.sft.formats import load_conversations
from triglot.train.sft.generation import load_chatbot, read_prompts

from triglot.config import compose
from triglot.errors import InputError

BINARY = b"\xff\xfe\x00\x81binary\n"


def _no_tokenizer_model(tmp_path: Path) -> Path:
    """A Hugging Face export without its tokenizer files (what a pretraining export of a bare pack looks like)."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    return folder


def test_a_model_folder_without_tokenizer_files_is_an_input_error(tmp_path: Path) -> None:
    folder = _no_tokenizer_model(tmp_path)
    with pytest.raises(InputError, match=rf"^{re.escape(str(folder))} has no tokenizer files; the Hugging Face "
                                         "export must include the tokenizer"):
        load_chatbot(folder)


@pytest.mark.parametrize("name", ["p.txt", "p.jsonl"])
def test_a_prompts_file_that_is_not_utf8_names_file_and_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b'{"prompt": "hello"}\n' + BINARY)
    with pytest.raises(InputError, match=rf"^--prompts: {re.escape(str(path))}:2: not UTF-8 text"):
        read_prompts(path)


def test_prompts_that_are_a_directory_or_not_objects_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        read_prompts(tmp_path)
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "hi"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InputError, match=rf"{re.escape(str(path))}:2: expected an object"):
        read_prompts(path)
    path.write_text('{"messages": [{"role": "user"}]}\n', encoding="utf-8")
    with pytest.raises(InputError, match=rf"{re.escape(str(path))}:1: 'messages' must be a list"):
        read_prompts(path)


@pytest.mark.parametrize("name", ["sft.jsonl", "sft.json"])
def test_an_sft_dataset_file_that_is_not_utf8_names_dataset_file_and_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b'[{"instruction": "a", "output": "b"},\n' + BINARY)
    spec = compose({"sft": {"datasets": [{"name": "mine", "paths": [str(path)]}]}}).sft.datasets[0]
    with pytest.raises(InputError, match=rf"^sft.datasets 'mine': {re.escape(str(path))}:2: not UTF-8 text"):
        load_conversations(spec)


def _generate(tmp_path: Path, model: Path, prompts: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triglot", "generate", str(model), "--prompts", str(prompts)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"})


def test_cli_generate_exits_2_with_one_line(tmp_path: Path) -> None:
    model = _no_tokenizer_model(tmp_path)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(BINARY)
    text = tmp_path / "p.txt"
    text.write_text("hello\n", encoding="utf-8")
    for prompts, line in ((binary, f"triglot: --prompts: {binary}:1: not UTF-8 text (byte 0); save the prompts "
                                   "as UTF-8"),
                          (text, f"triglot: {model} has no tokenizer files; the Hugging Face export must include "
                                 "the tokenizer")):
        proc = _generate(tmp_path, model, prompts)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines() == [line]
