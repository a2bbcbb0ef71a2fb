"""Tokenizer stage: train byte-level BPE or SentencePiece tokenizers, extend existing ones, pack tokens.

Entry points: `tokenizer.train:run_tokenizer_stage`, `tokenizer.pack:run_pack_stage`, `tokenizer.extend`.
"""
