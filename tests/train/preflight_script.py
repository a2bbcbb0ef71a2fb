"""Run under torchrun by test_failures: rank 1 never reaches the preflight check."""

import sys
import time

import torch.distributed as dist
from triglot.train.coordination import PreflightError, preflight

dist.init_process_group("gloo")
if dist.get_rank() == 1:
    time.sleep(8)
    sys.exit(0)
try:
    preflight(timeout_s=2)
except PreflightError as err:
    print(f"PREFLIGHT FAILED: {err}", flush=True)
    sys.exit(0)
print("PREFLIGHT PASSED", flush=True)
