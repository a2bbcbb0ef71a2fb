"""Evaluation stage: multiple-choice suites (C-Eval, CMMLU, MMLU, HKCanto-Eval) and held-out perplexity.

Entry points: eval.runner:run_eval_stage and the `triglot eval` command (eval/commands.py).
"""
