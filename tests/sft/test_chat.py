"""`triglot chat` in a real pseudo-terminal and `triglot generate` on a prompts file, with a tiny model
taught one real Cantonese answer (answer-only loss), so a correct reply is recognisable.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from triglot.train.sft.templates import prepare_tokenizer, tokenize_conversation

ANSWER_STEPS = 150


@pytest.fixture(scope="module")
def taught_model(shared_data: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The tiny model fitted to one question and answer from yue_alpaca_seed; saved with its chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    record = json.loads((shared_data / "corpora/sft/yue_alpaca_seed/regen.jsonl").read_text().splitlines()[2])
    question, answer = record["instruction"], record["output"][:30]
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(tiny_model_dir), "chatml")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    ids, mask = tokenize_conversation(tokenizer, [{"role": "user", "content": question},
                                                  {"role": "assistant", "content": answer}])
    inputs = torch.from_numpy(ids)[None]
    labels = torch.where(torch.from_numpy(mask), inputs[0], -100)[None]
    torch.manual_seed(0)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(ANSWER_STEPS):
        loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    out = tmp_path_factory.mktemp("taught")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out, question, answer


def read_until(fd: int, marker: str, seen: str, deadline: float) -> str:
    while marker not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {marker!r} from the terminal; got:\n{seen[-3000:]}")
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            seen += chunk.decode("utf-8", errors="replace")
    return seen


def test_chat_answers_in_a_terminal(taught_model: tuple) -> None:
    folder, question, answer = taught_model
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "triglot", "chat", str(folder), "--temperature", "0",
                             "--max-new-tokens", "160"], stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    deadline = time.monotonic() + 300
    try:
        seen = read_until(master, ">>> ", "", deadline)
        assert f"model: {folder} (" in seen and "context 512 tokens" in seen, seen  # which model answers
        start = len(seen)
        os.write(master, (question + "\n").encode())
        seen = read_until(master, ">>> ", seen[start:], deadline)
        os.write(master, b"/exit\n")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    reply = seen.replace("\r\n", "\n").split(question, 1)[1].rsplit(">>> ", 1)[0].strip()
    assert reply == answer


def test_generate_prompts_file(taught_model: tuple, tmp_path: Path) -> None:
    folder, question, answer = taught_model
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": question}, ensure_ascii=False) + "\n"
                       + json.dumps({"messages": [{"role": "user", "content": "Hello"}]}) + "\n")
    out = tmp_path / "answers.jsonl"
    common = [sys.executable, "-m", "triglot", "generate", str(folder), "--prompts", str(prompts),
              "--max-new-tokens", "160"]
    proc = subprocess.run([*common, "--temperature", "0", "--output", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [question, "Hello"] and rows[0]["response"] == answer
    import torch
    from triglot.train.sft.generation import generate_batch, load_chatbot

    from triglot.config.sft import GenerationSection

    bot = load_chatbot(folder, GenerationSection(temperature=1.5, top_k=0, top_p=1.0, max_new_tokens=12))
    samples = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        samples.append(generate_batch(bot, [[{"role": "user", "content": "Hello"}]] * 2))
    assert samples[0] == samples[1] and samples[0] != samples[2]  # the seed fixes the sample
    missing = subprocess.run([*common[:5], "--prompts", str(tmp_path / "none.txt")], capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_a_run_folder_chats_with_its_newest_chat_model(taught_model: tuple, tmp_path: Path) -> None:
    """<run>/sft/export (fine-tuned) when there is one, else <run>/export; the chat says which it loaded."""
    import shutil

    from triglot.train.sft.generation import model_folder

    folder = taught_model[0]
    run = tmp_path / "run"
    shutil.copytree(folder, run / "export")
    assert model_folder(run) == run / "export"
    shutil.copytree(folder, run / "sft" / "export")
    assert model_folder(run) == run / "sft" / "export"
    proc = subprocess.run([sys.executable, "-m", "triglot", "chat", str(run)], input="/exit\n", capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0].startswith(f"model: {run / 'sft' / 'export'} ("), proc.stdout


def test_replies_fit_the_model_context(taught_model: tuple) -> None:
    """The default of 256 new tokens is cut to what the 512-position context leaves after the prompt; a
    conversation that fills the context is refused in words, and the chat goes on."""
    import io

    from triglot.train.sft.generation import _encode, chat_loop, generation_kwargs, load_chatbot

    from triglot.config.sft import GenerationSection
    from triglot.errors import InputError

    bot = load_chatbot(taught_model[0], GenerationSection(temperature=0))
    assert bot.context == 512
    assert generation_kwargs(bot, 100)["max_new_tokens"] == 256
    assert generation_kwargs(bot, 400)["max_new_tokens"] == 112
    with pytest.raises(InputError, match="fills the model's context of 512"):
        generation_kwargs(bot, 512)
    long = "你好" * 600
    assert _encode(bot, [[{"role": "user", "content": long}]])["input_ids"].shape[1] > 512
    out = io.StringIO()
    chat_loop(bot, stdin=io.StringIO(f"{long}\nHello\n/exit\n"), out=out)
    text = out.getvalue()
    assert "fills the model's context of 512" in text and text.count(">>> ") == 3, text
