"""Equal-sparsity targets: find each method's strength that reaches a sparsity (or FLOP / parameter reduction).

``bench run --target-sparsity 0.5,0.8`` asks, for every method and seed, for the strength (``lam``, or ``ratio``
for the methods swept over a ratio) whose final-epoch value is within ``--target-tolerance`` of each target.
One :class:`Search` per (method, seed) owns that question for all the targets at once: every probe (an
ordinary trial, with its own MLflow run) is data for every target of the search. No torch, no Ray here
(``bench/sweep.py`` wraps the searches in a Ray Tune ``Searcher``), so the logic is tested on its own.

The search, per target, on the probes that have finished:

1. **Start.** ``lam`` methods start at the geometric middle of their grid (the method's default grid, or the
   values ``--lambdas`` gives for it: with targets, ``--lambdas`` are the search's starting points); ``ratio``
   methods start at the target itself. A seed whose siblings (same method, other seeds) have already reached the
   target starts at the value they found (the median over them), since a strength transfers across seeds far
   better than a grid does; until then the seeds search side by side, and a seed without a bracket of its own
   steps into a bracket of its probes pooled with its siblings', where there is one.
2. **Bracket.** While every probe is below the target, the next probe is the next grid value above the largest
   probed (at least x1.5 above it: the start often lies next to a grid value), then past the grid geometrically (x10 per probe, x100 when the last step did not move the value at
   all); symmetrically downwards. A probe that diverged (the trial failed: NaN loss) counts as an overshoot,
   above any target (of its own search: a sibling's pooled probes bracket only through finished ones). When
   the value falls again past the best probe (stronger penalties removing fewer filters, as l1 does on LeNet
   once conv1 is down to a filter or two), the search stops expanding: it probes the geometric middle between
   the best probe and the next stronger one while that gap is wider than x3, then gives the target up as not
   monotone.
3. **Narrow.** Inside a bracket (one probe below, the next one above) the next probe interpolates the value
   linearly in log lambda (in the ratio for ratio methods), kept inside the middle 80 % of the bracket so that
   every probe shrinks it, and bisects where the upper end diverged.
   A probe that passes the search's highest target plus the tolerance stops at that epoch (the removed
   fractions never decrease during a trial, so it can only overshoot; ``TrialConfig.overshoot``): its value is
   a lower bound of what it would have reached. As the upper end of a bracket it is interpolated with that
   bound, which puts the next probe at or above where its true value would (still inside the bracket's middle
   80 %, so the bracket shrinks); it never reaches a target, is never the closest point, and a sibling's
   search does not interpolate across it.
4. **Stop.** A target is ``reached`` by the probe within tolerance closest to it. It is ``unreachable`` when the
   bracket has narrowed to nothing (lambda within 2 %, ratio within 0.002: the value jumps over the target, a
   collapse), when the probes leave no bracket at all although values on both sides exist (not monotone there),
   or when ``--max-probes`` (per method and seed, shared by its targets) is spent; its record then holds the
   closest point, never nothing. A search stopped while it still had a strength to probe (an interrupted
   sweep) is ``unfinished``: resuming the sweep continues it.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from . import names as N

KINDS = {"sparsity": N.TOTAL_SPARSITY, "flops": N.FLOPS_REDUCTION, "params": N.PARAMS_REDUCTION}
RATIO_BOUNDS = (0.01, 0.99)


@dataclass(frozen=True)
class Target:
    kind: str      # sparsity, flops or params: each a fraction removed
    value: float

    @property
    def metric(self) -> str:
        return KINDS[self.kind]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.value:g}"


@dataclass
class Probe:
    value: float
    achieved: dict[str, float] | None = None   # metric -> final value; None while pending or when it failed
    accuracy: float | None = None
    run_id: str | None = None
    failed: bool = False
    pending: bool = True
    bound: bool = False   # stopped past every target (an overshoot): ``achieved`` holds lower bounds


@dataclass
class Search:
    """The strength search of one method and seed for every target (module docstring)."""

    method: str
    seed: int
    axis: str                        # "lam" or "ratio"
    grid: Sequence[float]
    targets: Sequence[Target]
    tolerance: float = 0.02
    max_probes: int = 8
    siblings: list[Search] = field(default_factory=list)   # the same method's searches on other seeds
    probes: list[Probe] = field(default_factory=list)
    _serving: dict[float, Target] = field(default_factory=dict)   # pending value -> the target it was asked for
    _given_up: dict[Target, str] = field(default_factory=dict)

    # -- what the searcher calls -----------------------------------------------------------------------------

    def propose(self) -> float | None:
        """The next strength to probe, or None (nothing to ask now: waiting for probes, or done)."""
        if len(self.probes) >= self.max_probes:
            return None
        for target in self.targets:
            if self.reached(target) is not None or target in self._given_up or target in self._serving.values():
                continue
            value = self._next(target)
            if value is None:
                continue
            if any(_same(value, p.value) for p in self.probes):
                if any(_same(value, p.value) and p.pending for p in self.probes):
                    continue                     # already on its way for another target: wait for it
                self._given_up[target] = "not monotone: the next probe repeats one already made"
                continue
            self.probes.append(Probe(value))
            self._serving[value] = target
            return value
        return None

    def record(self, value: float, metrics: Mapping[str, float] | None, run_id: str | None = None,
               failed: bool = False, bound: bool = False) -> None:
        """A probe's final metrics (None and ``failed`` when the trial raised or diverged); ``bound``: the probe
        stopped early past every target, its metrics are lower bounds of what it would have reached."""
        probe = next((p for p in self.probes if _same(p.value, value) and p.pending), None)
        if probe is None:   # a probe recorded in an earlier run of the sweep (resume)
            probe = Probe(value)
            self.probes.append(probe)
        probe.pending = False
        probe.failed = failed or metrics is None
        probe.bound = bound and not probe.failed
        probe.run_id = run_id
        if not probe.failed and metrics is not None:
            probe.achieved = {t.metric: float(metrics.get(t.metric, math.nan)) for t in self.targets}
            probe.accuracy = float(metrics.get(N.TEST_ACCURACY, math.nan))
        self._serving = {v: t for v, t in self._serving.items() if not _same(v, value)}

    @property
    def finished(self) -> bool:
        if any(p.pending for p in self.probes):
            return False
        return len(self.probes) >= self.max_probes or all(
            self.reached(t) is not None or t in self._given_up or self._next(t) is None for t in self.targets)

    def results(self) -> list[dict]:
        """One record per target: the keys of ``targets.json`` (the caller adds nothing but may add the run's
        name)."""
        out = []
        for target in self.targets:
            going = False   # stopped (an interrupted sweep) while it still had a strength to probe
            if self.reached(target) is None and target not in self._given_up:
                # a search rebuilt from its records learns why it stopped, or that it had not
                going = self._next(target) is not None and len(self.probes) < self.max_probes
            probe = self.reached(target)
            status = "reached" if probe is not None else "unfinished" if going else "unreachable"
            probe = probe or self.closest(target)
            out.append({"method": self.method, "seed": self.seed, "target": target.value, "kind": target.kind,
                        "value": probe.value if probe else None,
                        "achieved": probe.achieved[target.metric] if probe and probe.achieved else None,
                        "test_accuracy": probe.accuracy if probe else None,
                        "probes": sum(not p.pending for p in self.probes), "status": status,
                        "run_id": probe.run_id if probe else None,
                        **({"reason": self.reason(target)} if status == "unreachable" else
                           {"reason": "interrupted before the search settled: resuming the sweep continues it"}
                           if status == "unfinished" else {})})
        return out

    # -- the rules -------------------------------------------------------------------------------------------

    def _done(self) -> list[Probe]:
        return sorted((p for p in self.probes if not p.pending), key=lambda p: p.value)

    def _value(self, p: Probe, target: Target) -> float:
        return math.inf if p.failed or p.achieved is None else p.achieved[target.metric]

    def reached(self, target: Target) -> Probe | None:
        within = [p for p in self._done() if not p.failed and not p.bound and abs(self._value(p, target)
                                                                                    - target.value)
                  <= self.tolerance + 1e-12]
        return min(within, key=lambda p: abs(self._value(p, target) - target.value)) if within else None

    def closest(self, target: Target) -> Probe | None:
        ok = [p for p in self._done() if not p.failed and not p.bound and math.isfinite(self._value(p, target))]
        return min(ok, key=lambda p: abs(self._value(p, target) - target.value)) if ok else None

    def reason(self, target: Target) -> str:
        if target in self._given_up:
            return self._given_up[target]
        return f"--max-probes {self.max_probes} spent" if len(self.probes) >= self.max_probes else "no bracket"

    def estimate(self, target: Target) -> float | None:
        """Where this search puts the target now: the value that reached it, else an interpolation inside a
        bracket (for siblings to start from)."""
        probe = self.reached(target)
        if probe is not None:
            return probe.value
        bracket = self._bracket(target)
        return self._inside(*bracket, target) if bracket and bracket[0] is not bracket[1] else None

    def _bracket(self, target: Target) -> tuple[Probe, Probe] | None:
        """Adjacent finished probes (in strength) whose values straddle the target, the first such pair."""
        done = self._done()
        for a, b in zip(done, done[1:]):
            if self._value(a, target) < target.value < self._value(b, target):
                return a, b
        return None

    def _next(self, target: Target) -> float | None:
        done = self._done()
        if not done:
            return self._start(target)
        bracket = self._bracket(target)
        if bracket is not None:
            lo, hi = bracket
            if self._narrow(lo.value, hi.value):
                self._given_up[target] = (f"collapses: between {self.axis} {lo.value:.4g} and {hi.value:.4g} the "
                                          f"{target.kind} jumps from {self._value(lo, target):.3f} to "
                                          f"{self._value(hi, target):.3f}")
                return None
            return self._inside(lo, hi, target)
        below = [p for p in done if self._value(p, target) < target.value]
        above = [p for p in done if self._value(p, target) > target.value]
        if below and above:
            self._given_up[target] = "not monotone in the strength: no two neighbouring probes straddle it"
            return None
        if below and not above:
            turned = self._turned(done, target)
            if turned is not None:
                return turned if turned > 0 else None
        edge = max(p.value for p in below) if below else min(p.value for p in above)
        hint = self._pooled(target)
        if hint is not None and (hint > edge * 1.0001 if below else hint < edge * 0.9999):
            return hint
        return self._expand(edge, up=bool(below), target=target)

    def _turned(self, done: list[Probe], target: Target) -> float | None:
        """Every probe below the target, and past the best of them the value falls again (by more than the
        tolerance): stronger penalties remove fewer filters there (training collapses onto a few dominant
        filters, or stalls), so expanding further up wastes probes. Returns the geometric middle between the
        best probe and the next stronger one while that gap is wider than x3 (ratio: 0.02), the peak being
        somewhere inside; else gives the target up (returns 0) as not monotone; None when the curve has not
        turned."""
        ok = [p for p in done if not p.failed]
        if len(ok) < 2:
            return None
        best = max(range(len(ok)), key=lambda i: self._value(ok[i], target))
        peak = ok[best]
        if best == len(ok) - 1 or self._value(ok[-1], target) >= self._value(peak, target) - self.tolerance:
            return None
        beyond = ok[best + 1]
        wide = beyond.value - peak.value > 0.02 if self.axis == "ratio" else beyond.value / peak.value > 3.0
        if wide:
            return _from_x((_x(peak.value, self.axis) + _x(beyond.value, self.axis)) / 2, self.axis)
        self._given_up[target] = (f"not monotone: the {target.kind} peaks at {self._value(peak, target):.3f} near "
                                  f"{self.axis} {peak.value:.4g} and falls at stronger ones (down to "
                                  f"{self._value(ok[-1], target):.3f} at {ok[-1].value:.4g})")
        return 0.0

    def _pooled(self, target: Target) -> float | None:
        """An interpolation inside a bracket of this search's and its siblings' probes together (a seed's curve
        is close to its siblings'), or None."""
        pooled = sorted((p for s in (self, *self.siblings) for p in s._done()), key=lambda p: p.value)
        for a, b in zip(pooled, pooled[1:]):   # a sibling's divergence bounds nothing but its own search
            if self._value(a, target) < target.value < self._value(b, target) and not _same(a.value, b.value) \
                    and not b.failed and not b.bound:
                return self._inside(a, b, target)
        return None

    def _start(self, target: Target) -> float:
        found = [v for v in (s.estimate(target) for s in self.siblings) if v is not None]
        if found:
            return statistics.median(found)
        if self.axis == "ratio":
            return min(max(target.value, RATIO_BOUNDS[0]), RATIO_BOUNDS[1])
        logs = sorted(math.log(v) for v in self.grid)
        return math.exp((logs[0] + logs[-1]) / 2) if logs else 1.0

    def _expand(self, edge: float, up: bool, target: Target) -> float | None:
        if self.axis == "ratio":
            done = self._done()
            bound = RATIO_BOUNDS[1] if up else RATIO_BOUNDS[0]
            if _same(edge, bound):
                self._given_up[target] = f"out of reach: ratio {bound} does not get there"
                return None
            # secant through the probes so far (ratio -> value), else halfway to the bound
            step = (bound - edge) / 2
            pts = [(p.value, self._value(p, target)) for p in done if not p.failed]
            y_edge = next((y for x, y in pts if _same(x, edge)), None)
            slope = 1.0 if len(pts) == 1 else _slope(pts)
            if y_edge is not None and slope > 0:
                step = (target.value - y_edge) / slope
            nxt = min(max(edge + step, RATIO_BOUNDS[0]), RATIO_BOUNDS[1])
            return nxt if not _same(nxt, edge) else bound
        # the next grid value at least x1.5 away: the start (the grid's geometric middle) often lies next to one
        beyond = [v for v in sorted(self.grid) if (v > edge * 1.5 if up else v < edge / 1.5)]
        if beyond:
            return beyond[0] if up else beyond[-1]
        factor = 10.0
        done = self._done()
        if len(done) >= 2:
            ordered = sorted(done, key=lambda p: p.value, reverse=up)
            if abs(self._value(ordered[0], target) - self._value(ordered[1], target)) < 1e-3:
                factor = 100.0   # the last step did not move it: a flat region
        return edge * factor if up else edge / factor

    def _inside(self, lo: Probe, hi: Probe, target: Target) -> float:
        a, b = self._value(lo, target), self._value(hi, target)
        x0, x1 = _x(lo.value, self.axis), _x(hi.value, self.axis)
        t = 0.5 if not math.isfinite(b) else (target.value - a) / (b - a)
        t = min(max(t, 0.1), 0.9)
        return _from_x(x0 + t * (x1 - x0), self.axis)

    def _narrow(self, lo: float, hi: float) -> bool:
        return hi - lo < 0.002 if self.axis == "ratio" else hi / lo < 1.02


def _x(value: float, axis: str) -> float:
    return value if axis == "ratio" else math.log(value)


def _from_x(x: float, axis: str) -> float:
    return x if axis == "ratio" else math.exp(x)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def _slope(points: list[tuple[float, float]]) -> float:
    xs, ys = zip(*sorted(points))
    return (ys[-1] - ys[0]) / (xs[-1] - xs[0]) if xs[-1] != xs[0] else 1.0


def parse_targets(values: Mapping[str, Sequence[float]]) -> list[Target]:
    """Targets from ``{"sparsity": [...], "flops": [...], "params": [...]}``, each in (0, 1)."""
    out = []
    for kind, vals in values.items():
        for v in vals:
            if not 0.0 < v < 1.0:
                raise ValueError(f"a {kind} target is a fraction removed in (0, 1), got {v}")
            out.append(Target(kind, float(v)))
    return out


__all__ = ["KINDS", "Probe", "Search", "Target", "parse_targets"]
