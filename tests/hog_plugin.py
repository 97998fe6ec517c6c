"""A ``--plugin`` for the test of a trial worker killed by Ray's memory monitor: with ``BENCH_HOG_AFTER_EPOCH``
set to ``METHOD:N`` and ``BENCH_HOG_FLAG`` to a file path in the trial's environment, the trial of that method,
once the checkpoint of its epoch N is kept, takes memory in 256 MiB steps up to ``BENCH_HOG_GB`` (the test sets
Ray's kill threshold below that) and waits, the first time only (it creates the flag file); its restart trains
on. Loaded in every trial's worker, as any plugin; without the variables it changes nothing."""
from __future__ import annotations

import os
import time
from pathlib import Path

from bench.recording import TrialRecorder

HOG_ENV, FLAG_ENV, GB_ENV = "BENCH_HOG_AFTER_EPOCH", "BENCH_HOG_FLAG", "BENCH_HOG_GB"


def _hogging(keep):
    def keep_then_hog(self: TrialRecorder, epoch: int, state: dict) -> None:
        keep(self, epoch, state)
        method, _, epoch_text = os.environ.get(HOG_ENV, "").rpartition(":")
        flag = Path(os.environ.get(FLAG_ENV, "/nonexistent/flag"))
        if method == self.trial.method and epoch_text.isdigit() and epoch == int(epoch_text) and \
                flag.parent.is_dir() and not flag.exists():
            flag.touch()
            held = []
            for _ in range(int(float(os.environ.get(GB_ENV, "4")) * 4)):
                held.append(bytearray(256 * 2 ** 20))   # zero-filled: every page touched
                time.sleep(0.05)
            time.sleep(600)
    keep_then_hog.hogging = True   # type: ignore[attr-defined]
    return keep_then_hog


if not getattr(TrialRecorder.keep, "hogging", False):
    TrialRecorder.keep = _hogging(TrialRecorder.keep)   # type: ignore[method-assign]
