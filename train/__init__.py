"""Pretraining and fine-tuning with DeepSpeed ZeRO: model, data, engine, loop and checkpoints.

The stage entry point is `train.trainer.run_train_stage`; `triglot train` runs it under torchrun.
"""
