"""`triglot sft CONFIG` (fine-tune under torchrun), `triglot chat CHECKPOINT` and `triglot generate CHECKPOINT`.

Imports stay cheap here: torch and transformers load inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any


def _sft(args: argparse.Namespace) -> int:
    from triglot.train.coordination import exit_code
    from triglot.train.sft.stage import run_sft_stage, run_sft_training

    from triglot.cli import config_from_args

    cfg = config_from_args(args)
    run = run_sft_training if args.as_given else run_sft_stage
    return exit_code("sft", lambda: run(cfg, force=args.force))


def _settings(args: argparse.Namespace) -> Any:
    """sft.generation defaults with the options given on the command line over them."""
    from triglot.config.sft import GenerationSection

    given = {f.name: getattr(args, f.name) for f in fields(GenerationSection) if getattr(args, f.name) is not None}
    return GenerationSection(**given)


def _chat(args: argparse.Namespace) -> int:
    from triglot.train.sft.generation import chat_loop, load_chatbot

    bot = load_chatbot(args.checkpoint, _settings(args), args.template)
    print(bot.describe(), flush=True)
    chat_loop(bot, system=args.system)
    return 0


def _generate(args: argparse.Namespace) -> int:
    import torch
    from triglot.train.sft.generation import generate_batch, load_chatbot, read_prompts

    conversations = read_prompts(Path(args.prompts), args.system)
    bot = load_chatbot(args.checkpoint, _settings(args), args.template)
    print(bot.describe(), file=sys.stderr, flush=True)  # stdout may be the JSONL
    torch.manual_seed(int(bot.settings.seed))
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for start in range(0, len(conversations), args.batch_size):
            batch = conversations[start: start + args.batch_size]
            for conv, answer in zip(batch, generate_batch(bot, batch), strict=True):
                record = {"prompt": conv[-1]["content"], "response": answer}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _add_generation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="Hugging Face folder, checkpoint folder (uses hf/) or run folder (its sft/export/ "
                                               "when there is one, else export/)")
    parser.add_argument("--system", default="", help="system prompt")
    parser.add_argument("--template", default="auto", help="chat template: auto, tokenizer, chatml, llama3, qwen")
    parser.add_argument("--temperature", type=float, help="0 means greedy (default 0.7)")
    parser.add_argument("--top-p", dest="top_p", type=float, help="nucleus sampling mass (default 0.9)")
    parser.add_argument("--top-k", dest="top_k", type=int, help="sample among the k likeliest tokens (default 50)")
    parser.add_argument("--max-new-tokens", dest="max_new_tokens", type=int,
                        help="(default 256; always cut to what fits the model's context after the prompt)")
    parser.add_argument("--repetition-penalty", dest="repetition_penalty", type=float, help="(default 1.0)")
    parser.add_argument("--seed", type=int, help="sampling seed (default 0)")


def add_commands(subparsers: Any, groups: dict) -> None:
    from triglot.cli import add_config_args

    sft = subparsers.add_parser("sft", help="fine-tune on chat data (run under torchrun); the `sft` stage")
    add_config_args(sft)
    sft.add_argument("--as-given", action="store_true",
                     help="use model.pretrained and the output folders as configured, not the pipeline's "
                          "<run.dir>/export -> <run.dir>/sft/ layout")
    sft.set_defaults(func=_sft)

    chat = subparsers.add_parser("chat", help="chat with a model in the terminal, answers streamed")
    _add_generation_args(chat)
    chat.set_defaults(func=_chat)

    gen = subparsers.add_parser("generate", help="answer a file of prompts (text lines or JSONL), JSONL out")
    _add_generation_args(gen)
    gen.add_argument("--prompts", required=True, help="text file (one prompt a line) or JSONL (prompt / messages)")
    gen.add_argument("--output", default="", help="JSONL file to write (default stdout)")
    gen.add_argument("--batch-size", dest="batch_size", type=int, default=8)
    gen.set_defaults(func=_generate)
