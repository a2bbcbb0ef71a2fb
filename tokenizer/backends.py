"""The two tokenizer backends: byte-level BPE with `tokenizers`, and SentencePiece with byte fallback.

Both return a `tokenizers.Tokenizer` that reproduces its input exactly on decode (no normaliser that
changes text), so one `tokenizer.json` serves packing and `transformers` for either backend.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

log = logging.getLogger(__name__)

# Pre-tokenisation for text with and without spaces. Han runs are kept apart from other scripts, digits
# and punctuation so merges form Chinese words but never glue Han to Latin or to numbers; a Latin word
# takes its leading space (GPT-2 style); newlines and runs of spaces are their own units.
HAN_RUNS = r"\p{Han}+"
HAN_CHARS = r"\p{Han}"
LATIN_ETC = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}&&[^\p{Han}]]+"
DIGITS_ONE = r"\p{N}"
DIGITS_RUN = r"\p{N}{1,3}"
REST = r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def pretokenize_pattern(han_split: str, split_digits: bool) -> str:
    han = HAN_RUNS if han_split == "runs" else HAN_CHARS
    digits = DIGITS_ONE if split_digits else DIGITS_RUN
    return "|".join((han, LATIN_ETC, digits, REST))


@dataclass
class TrainOptions:
    vocab_size: int
    min_frequency: int
    max_token_length: int
    han_split: str
    split_digits: bool
    special_tokens: list[str]
    sp_model_type: str = "unigram"
    character_coverage: float = 0.9995
    seed: int = 1234


def train_bpe(texts: list[str], opts: TrainOptions) -> Tokenizer:
    """Byte-level BPE: every byte is in the base alphabet, so no text is ever unknown."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pretokenize_pattern(opts.han_split, opts.split_digits)), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=opts.vocab_size, min_frequency=opts.min_frequency, special_tokens=opts.special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), max_token_length=opts.max_token_length,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def _sentencepiece_lines(texts: list[str], path: Path) -> None:
    # SentencePiece reads one sentence per line; newlines inside documents become line breaks there
    # and are encoded through byte fallback at use time.
    with open(path, "w", encoding="utf-8") as fh:
        for text in texts:
            for line in text.splitlines():
                if line.strip():
                    fh.write(line + "\n")


def train_sentencepiece(texts: list[str], opts: TrainOptions, workdir: Path) -> tuple[Tokenizer, Path]:
    """SentencePiece (unigram or BPE) with byte fallback, no normalisation and no dummy prefix."""
    import sentencepiece as spm

    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "sp_corpus.txt"
    _sentencepiece_lines(texts, corpus)
    prefix = workdir / "tokenizer"
    # special_tokens[0] is the unknown piece SentencePiece requires; the rest are user-defined symbols.
    unk, *others = opts.special_tokens
    try:
        _run_sentencepiece_trainer(spm, corpus, prefix, unk, others, opts)
    except RuntimeError as err:
        if "required_chars" in str(err):
            from triglot.errors import ConfigError

            raise ConfigError(f"SentencePiece: {err}. Raise tokenizer.vocab_size or lower "
                              "tokenizer.character_coverage (rarer characters then use byte fallback)") from err
        raise
    corpus.unlink()
    model_path = prefix.with_suffix(".model")
    return sentencepiece_to_tokenizer(model_path), model_path


def _run_sentencepiece_trainer(spm, corpus: Path, prefix: Path, unk: str, others: list[str], opts: TrainOptions) -> None:
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=opts.vocab_size, model_type=opts.sp_model_type,
        character_coverage=opts.character_coverage, byte_fallback=True, split_digits=opts.split_digits,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
        allow_whitespace_only_pieces=True, split_by_whitespace=True, max_sentencepiece_length=opts.max_token_length,
        unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, unk_piece=unk, user_defined_symbols=others,
        input_sentence_size=0, shuffle_input_sentence=False,
        num_threads=max(1, os.cpu_count() or 1), minloglevel=2, hard_vocab_limit=False,
    )


def sentencepiece_to_tokenizer(model_path: Path) -> Tokenizer:
    """The same model as a `tokenizers` pipeline: spaces as U+2581, pieces, byte fallback on decode."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(Path(model_path).read_bytes())
    pieces = [(p.piece, p.score) for p in proto.pieces]
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    if proto.trainer_spec.model_type == pb.TrainerSpec.UNIGRAM:
        model = models.Unigram(pieces, unk_id=sp.unk_id(), byte_fallback=True)
    else:
        vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
        merges = _bpe_merges(vocab, pieces)
        model = models.BPE(vocab, merges, unk_token=sp.id_to_piece(sp.unk_id()), byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = [p.piece for p in proto.pieces if p.type in (pb.ModelProto.SentencePiece.CONTROL,
                                                              pb.ModelProto.SentencePiece.USER_DEFINED,
                                                              pb.ModelProto.SentencePiece.UNKNOWN)]
    tok.add_special_tokens(specials)
    return tok


def _bpe_merges(vocab: dict[str, int], pieces: list[tuple[str, float]]) -> list[tuple[str, str]]:
    """Merges in SentencePiece's order (by piece score), each splitting a piece into two known pieces."""
    merges = []
    for piece, score in pieces:
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                merges.append((score, vocab[left], vocab[right], left, right))
    merges.sort(key=lambda m: (-m[0], m[1], m[2]))
    return [(left, right) for _, _, _, left, right in merges]
