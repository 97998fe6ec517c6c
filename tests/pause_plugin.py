"""A ``--plugin`` for tests that stop a sweep in the middle of a trial: with ``BENCH_PAUSE_AFTER_EPOCH`` set to
``N`` or ``METHOD:N`` in the trial's environment, the trial sleeps for an hour once the checkpoint of its
epoch N is kept (the test then kills or interrupts the sweep). Loaded in every trial's worker, as any plugin;
without the variable it changes nothing."""
from __future__ import annotations

import os
import time

from bench.recording import TrialRecorder

PAUSE_ENV = "BENCH_PAUSE_AFTER_EPOCH"


def _pausing(keep):
    def keep_then_pause(self: TrialRecorder, epoch: int, state: dict) -> None:
        keep(self, epoch, state)
        method, _, epoch_text = os.environ.get(PAUSE_ENV, "").rpartition(":")
        if epoch_text.isdigit() and method in ("", self.trial.method) and epoch == int(epoch_text):
            time.sleep(3600)
    keep_then_pause.pausing = True   # type: ignore[attr-defined]
    return keep_then_pause


if not getattr(TrialRecorder.keep, "pausing", False):
    TrialRecorder.keep = _pausing(TrialRecorder.keep)   # type: ignore[method-assign]
