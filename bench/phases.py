"""Shared phases: trials that train alike up to their first pruning step train that prefix once, then branch.

Under a protocol with pruning steps (prune-to-target, iterative) a trial trains, then prunes at the end of an
epoch S, then fine-tunes. Everything before the pruning step of epoch S (epochs 1 to S - 1 and the training
steps of epoch S) is the same for two trials of one seed when their training settings are the same (but for
those that act only from the pruning step on: the protocol's own settings, whose effect on the prefix is its
schedule up to S, compared instead), their zeroing rule is, and either they run the same method with the same
options (a penalty method at one strength: every target) or both methods do nothing while training (no penalty,
no hooks: the criteria and the dense reference ``none``). Such trials form a group; the group's phase trains the
prefix once (as its first member) and leaves a checkpoint of it (bench/checkpoints.py, random states included);
each member, a branch, starts from that checkpoint and continues epoch S from its pruning step. On CPU a branch's
metrics are exactly those of the same trial run straight through (tests/test_phases.py).

A phase is recorded as a run of its own (param ``phase``, not a trial); a branch's run starts with the phase's
epochs copied into it (tag ``bench.shared_phase``). Scratch controls and a target search's probes never share.
No Ray or MLflow here; the methods are looked up through the registry (torch)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from methods import Method

from . import checkpoints
from .config import TrainSettings, TrialConfig
from .outcomes import TrialOutcome
from .protocols import get_protocol, list_protocols
from .settings import RUNTIME, declared
from .trainer import train

HOOKS = ("on_epoch_start", "after_step", "on_epoch_end")


def trains_plain(method: Method) -> bool:
    """Whether ``method`` does nothing while a prune-to-target trial trains: no penalty and none of the hooks a
    method may run during training (a criterion, the dense reference)."""
    return not method.has_penalty and all(getattr(type(method), h) is getattr(Method, h) for h in HOOKS)


def split_epoch(trial: TrialConfig) -> int | None:
    """The epoch whose pruning step is the trial's first (None: a trial with no pruning step)."""
    steps = get_protocol(trial.train.protocol).plan(trial).steps
    return min((s.epoch for s in steps), default=None)


def signature(trial: TrialConfig, split: int) -> str:
    """What a trial trains before the pruning step of epoch ``split``, as a hash: two trials with the same
    signature train the very same prefix (module docstring)."""
    protocol = get_protocol(trial.train.protocol)
    plain = trains_plain(trial.build_method())
    skip = {f.name for f in declared(TrainSettings) if f.metadata["role"] == RUNTIME} | {"protocol"}
    owned = {s for name in list_protocols() for s in get_protocol(name).settings}
    train = {k: v for k, v in dataclasses.asdict(trial.train).items() if k not in skip | owned}
    schedule = [(start, phase.rewind if plain else dataclasses.asdict(phase))
                for start, phase in protocol.plan(trial).phases if start <= split]
    blob = {"train": train, "seed": trial.seed, "zeroing": trial.zeroing, "split": split, "schedule": schedule,
            "method": None if plain else [trial.method, dict(trial.options)]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass
class Group:
    """Trials that share a phase: the phase (a TrialConfig with ``phase`` set) and its branches."""

    phase: TrialConfig
    branches: list[TrialConfig] = field(default_factory=list)

    @property
    def split(self) -> int:
        return int(self.phase.phase["split"])   # type: ignore[index]


def groups(trials: Sequence[TrialConfig], done: set[str] = frozenset()) -> list[Group]:  # type: ignore[assignment]
    """The groups of ``trials`` that share a phase: two or more trials, or one whose phase already finished
    (its key in ``done``). Controls and probes (a ``stop_above``) train straight through. A trial without a
    pruning step (the dense reference) joins the group of a targeted trial whose prefix it trains (the latest
    split first)."""
    found: dict[str, tuple[TrialConfig, int, list[TrialConfig]]] = {}
    dense = []
    for t in trials:
        if t.control is not None or t.stop_above is not None or t.phase is not None:
            continue
        split = split_epoch(t)
        if split is None:
            dense.append(t)
            continue
        sig = signature(t, split)
        found.setdefault(sig, (t, split, []))[2].append(t)
    splits = sorted({split for _, split, _ in found.values()}, reverse=True)
    for t in dense:
        for split in splits:
            sig = signature(t, split)
            if sig in found:
                found[sig][2].append(t)
                break
    out = []
    for sig, (first, split, members) in found.items():
        phase = _phase(first, split, sig)
        if len(members) >= 2 or phase.key in done:
            out.append(Group(phase, [replace(m, shared=phase.key) for m in members]))
    return out


def _phase(first: TrialConfig, split: int, sig: str) -> TrialConfig:
    plain = trains_plain(first.build_method())
    who = "plain" if plain else first.method + (f"-{first.sweep_axis}{first.swept_value:g}"
                                               if first.sweep_axis == "lam" else "")
    name = f"phase-{who}-s{first.seed}-e{split}-{sig[:6]}"
    return replace(first, phase={"name": name, "split": split, "signature": sig, "plain": plain}, shared=None)


def shared(trials: Sequence[TrialConfig], done: set[str] = frozenset(),  # type: ignore[assignment]
           found: list[Group] | None = None) -> tuple[list[TrialConfig], list[TrialConfig]]:
    """``trials`` planned for sharing: (the phases, the trials with each branch marked by its phase's key);
    ``found``: their :func:`groups`, when already known."""
    found = groups(trials, done) if found is None else found
    branch = {b.key: b for g in found for b in g.branches}
    return [g.phase for g in found], [branch.get(t.key, t) for t in trials]


def epochs_trained(trials: Sequence[TrialConfig], done: set[str] = frozenset(),  # type: ignore[assignment]
                   found: list[Group] | None = None) -> tuple[int, int]:
    """(trial-epochs trained, trial-epochs shared) of ``trials`` planned for sharing: a phase trains S epochs
    (the last one's training half), a branch the E - S after it, a trial run straight through its E; a branch
    shares S. ``found``: their :func:`groups`, when already known."""
    found = groups(trials, done) if found is None else found
    branched = {b.key: g.split for g in found for b in g.branches}
    trained = sum(g.split for g in found) + sum(t.train.epochs - branched.get(t.key, 0) for t in trials)
    return trained, sum(branched.values())


def branch_snapshot(phase_snapshot: dict[str, Any], plain: bool) -> dict[str, Any]:
    """The phase's checkpoint as a branch starts from it: the method's state left as the branch builds it when
    the phase was shared by methods that do nothing while training (whose state the phase did not change)."""
    return {**phase_snapshot, "method": None} if plain else dict(phase_snapshot)


def start_of(trial: TrialConfig, storage: str, parent_run_id: str, device: str):
    """Where a trial (or a phase) starts: the checkpoint an earlier attempt of it left (bench/checkpoints.py);
    else, for a branch, its phase's split checkpoint, with the phase's run (whose epochs its run copies) and
    the split epoch; else None (from epoch 1)."""
    earlier = checkpoints.latest(storage, trial.key, parent_run_id, map_location=device)
    if earlier is not None or trial.shared is None:
        return earlier
    found = checkpoints.latest(storage, trial.shared, parent_run_id, map_location=device)
    if found is None or "part" not in found[0]:
        raise RuntimeError(f"the shared phase of {trial.name} left no checkpoint (phase key {trial.shared}) under "
                           f"{storage}: resume the sweep (the phase runs again), or run it with --no-share")
    snapshot, record = found
    return (branch_snapshot(snapshot, trains_plain(trial.build_method())),
            {"run_id": None, "phase_run_id": record["run_id"], "split": int(snapshot["epoch"]) + 1})


def run(trial: TrialConfig, data, recorder) -> dict[str, float]:
    """Train a trial, or a phase up to its split (a phase that split already reports its checkpoint again),
    recorded by ``recorder`` (bench/recording.py's TrialRecorder)."""
    if trial.phase is None:
        return train(trial, data, recorder.on_epoch, recorder.finish, keep=recorder.keep, resume=recorder.snapshot)
    if recorder.snapshot is not None and "part" in recorder.snapshot:
        recorder.split(recorder.snapshot)
        return {}
    return train(trial, data, recorder.on_epoch, keep=recorder.keep, resume=recorder.snapshot,
                 split=(int(trial.phase["split"]), recorder.split))


def first(sweep, todo: list[TrialConfig], done: Mapping[str, Any], launch: Callable[[list[TrialConfig]], list],
          write: Callable[[str], None]) -> tuple[list[TrialConfig], list | None]:
    """The shared phases of ``todo`` run first, by ``launch`` (a sweep's runner); returns the trials to run then
    (each branch marked by its phase; those of a failed phase run straight through) and, when a phase was
    interrupted, their outcomes (not run) instead."""
    if not sweep.share or sweep.searching or not todo:
        return todo, None
    planned_groups = groups(todo, set(done))   # planned once, read twice below
    found, planned = shared(todo, found=planned_groups)
    pending = [p for p in found if p.key not in done]
    branches = sum(t.shared is not None for t in planned)
    if not branches:
        return todo, None
    trained, _ = epochs_trained(todo, found=planned_groups)
    write(f"share  {len(found)} shared phase{'s' * (len(found) != 1)} ({len(pending)} to run) for {branches} trials "
          f"that train alike up to their pruning step: {trained} trial-epochs instead of "
          f"{sum(t.train.epochs for t in todo)} (--no-share runs every trial straight through)")
    ran = launch(pending) if pending else []
    if any(o.status == "KILLED" for o in ran):
        return planned, [TrialOutcome(t.name, "KILLED", {}, "not run: its shared phase was interrupted", t.key, t)
                         for t in planned]
    failed = {o.key for o in ran if o.status != "FINISHED"}
    for o in ran:
        if o.status != "FINISHED":
            write(f"note   shared phase {o.name} {o.status}: its trials run straight through ({o.error})")
    return [replace(t, shared=None) if t.shared in failed else t for t in planned], None
