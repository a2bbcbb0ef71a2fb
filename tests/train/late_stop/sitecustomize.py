"""Imported at start-up by the ranks of test_late_stop (PYTHONPATH): the stop signal lands after the last step.

Rank 0 sends SIGUSR1 to the launcher (rank -> torchrun -> `triglot launch local`) as the final export
(<run.dir>/export) begins; every rank waits until the launcher's relay has passed the signal on to it, then exports.
"""

import os
import sys

if os.environ.get("RANK") is not None and "train" in sys.argv:
    import signal
    import time

    import psutil
    from triglot.train import trainer as _trainer

    _export = _trainer.Trainer.export

    def export(self, out_dir):
        if os.path.basename(out_dir) != "export":  # a checkpoint's own hf/ copy, inside the last save
            return _export(self, out_dir)
        if self.rank == 0:
            os.kill(psutil.Process(os.getppid()).ppid(), signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while not self.stop.requested and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"LATE STOP rank {self.rank}: {self.stop.signal_name or 'none'}", flush=True)
        return _export(self, out_dir)

    _trainer.Trainer.export = export
