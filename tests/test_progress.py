"""The sweep's progress line and its estimate of the time left (bench/progress.py), on a fake clock."""
from __future__ import annotations

import re

from bench.progress import Eta, clock_text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _left(line: str) -> float:
    h, m, s = map(int, re.search(r"(\d+):(\d\d):(\d\d) left", line).groups())
    return 3600 * h + 60 * m + s


def test_the_estimate_at_half_way_is_the_time_really_left():
    """8 trials of 5 epochs, 2 at a time, each epoch 3 s (a trial 15 s, the sweep 60 s): half-way (30 s) the
    line counts 4 done, 2 running (they just started), 2 to start, and says about 30 s left; before the first
    epoch it says it is estimating."""
    clock = Clock()
    eta = Eta(8, 5, clock=clock)
    lines = {}
    start = clock.now
    for pair in range(4):
        names = [f"t{2 * pair}", f"t{2 * pair + 1}"]
        for name in names:
            eta.started(name)
        if pair == 0:
            lines["first"] = eta.line()
        if pair == 2:
            lines["half"] = eta.line()
        for epoch in range(1, 6):
            clock.now += 3
            for name in names:
                eta.epoch(name, epoch)
        for name in names:
            eta.ended(name)
    assert clock.now - start == 60
    assert lines["first"] == "0/8 trials done, 2 running, 6 to start; estimating the time left"
    assert lines["half"].startswith("4/8 trials done, 2 running, 2 to start; about ")
    assert abs(_left(lines["half"]) - 30) <= 3
    assert eta.line() == "8/8 trials done, 0 running, 0 to start; about 0:00:00 left"


def test_a_trial_that_ends_early_and_a_target_search_bound():
    clock = Clock()
    eta = Eta(3, 10, clock=clock)
    eta.started("a")
    clock.now += 10
    eta.epoch("a", 2)          # 2 trial-epochs in 10 s
    eta.ended("a")             # failed at epoch 2: nothing more to run for it
    assert eta.seconds_left() == 2 * 10 * 5.0   # 2 trials of 10 epochs at 0.2 trial-epochs/s
    search = Eta(12, 4, bound=True, clock=clock)
    search.started("baseline")
    clock.now += 4
    search.epoch("baseline", 4)
    search.ended("baseline")
    assert search.line() == ("1 trials done, 0 running, up to 11 more (target search); at most about "
                             f"{clock_text(11 * 4)} left")
