"""Supervised chat fine-tuning: chat datasets, templates with answer-only loss, LoRA, and chatting.

The training loop is train.trainer's; this package supplies its data, adapters and export.
"""
