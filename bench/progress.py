"""A sweep's progress and the time it has left, from the epochs seen so far (pure Python: sweep.py feeds it
Ray Tune's events and prints its lines).

The estimate is the sweep's own throughput: trial-epochs finished per second of wall time since the first
trial started (whatever the number of trials running at once), applied to the trial-epochs still to run
(every epoch of each trial not started, the rest of each running one). Trials that end early (failed,
diverged) count as done. A target search does not know its probes in advance: its estimate is an upper
bound, as if every search spent its whole ``--max-probes``.
"""
from __future__ import annotations

import time
from collections.abc import Callable


def clock_text(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


class Eta:
    """Counts of a sweep's trials and the time it has left. ``total``: the trials it will run; ``bound``
    instead for a target search: at most that many (its baselines and every probe it may spend)."""

    def __init__(self, total: int, epochs: int, bound: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.epochs, self.bound, self.clock = total, max(1, epochs), bound, clock
        self.first: float | None = None                # when the first trial started
        self.seen: dict[str, int] = {}                 # trial -> epochs reported (running ones)
        self.done = 0
        self.epochs_done = 0

    def started(self, trial: str) -> None:
        if self.first is None:
            self.first = self.clock()
        self.seen.setdefault(trial, 0)

    def epoch(self, trial: str, epoch: int) -> None:
        self.started(trial)
        if epoch > self.seen[trial]:
            self.epochs_done += epoch - self.seen[trial]
            self.seen[trial] = epoch

    def ended(self, trial: str) -> None:
        if trial in self.seen:
            del self.seen[trial]
        self.done += 1

    @property
    def running(self) -> int:
        return len(self.seen)

    @property
    def waiting(self) -> int:
        return max(0, self.total - self.done - self.running)

    def seconds_left(self) -> float | None:
        """The estimate, or None before the first epoch."""
        if self.first is None or self.epochs_done == 0:
            return None
        rate = self.epochs_done / max(1e-9, self.clock() - self.first)
        remaining = self.waiting * self.epochs + sum(max(0, self.epochs - e) for e in self.seen.values())
        return remaining / rate

    def line(self) -> str:
        """``4/9 trials done, 2 running, 3 to start; about 0:02:10 left`` (``at most about 0:40:00 left``
        for a target search)."""
        left = self.seconds_left()
        counts = (f"{self.done} trials done, {self.running} running, up to {self.waiting} more (target search)"
                  if self.bound else
                  f"{self.done}/{self.total} trials done, {self.running} running, {self.waiting} to start")
        when = "estimating the time left" if left is None else \
            f"{'at most about' if self.bound else 'about'} {clock_text(left)} left"
        return f"{counts}; {when}"
