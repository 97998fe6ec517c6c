"""The protocols: how a trial trains and prunes, one file each, registered like the methods (``bench list``
lists them with their settings). A protocol is one object (:class:`Protocol`, bench/protocols/base.py): the
phases of a trial as data (:class:`Plan`: penalty, hooks, removals and the learning-rate schedule per epoch, the
pruning steps), the settings it takes and refuses, the trials a sweep expands to under it, what its sweep run
records (per-target trials record their target, by which the report's equal-target sections read them).
The trainer runs a trial's plan and knows no protocol by name; nothing outside this package compares a
protocol's name. A ``--plugin`` file registers more with ``register_protocol``. No torch at import."""
from __future__ import annotations

from typing import Any

from .base import (FINETUNE, FINETUNES, REWOUND, SPARSE, TRAIN, Phase, Plan, Protocol, Step, check, default_of,
                   is_default)
from ..settings import ConfigError
from .registry import DEFAULT as DEFAULT_PROTOCOL
from .registry import get_protocol, list_protocols, register_protocol
from . import regularize, prune_to_target, iterative  # noqa: F401,E402  (the built-in protocols register)
import dataclasses


def refuse_other_protocols(settings: Any, *protocols: Protocol) -> None:
    """A setting that belongs to other protocols only (their ``settings``), changed from its default on a
    ``TrainSettings`` or ``SweepConfig`` of ``protocols``: a ConfigError naming it and the protocols it applies
    to."""
    mine = {s for p in protocols for s in p.settings}
    for setting, names in _owners().items():
        if setting in mine or not hasattr(settings, setting) or is_default(settings, setting):
            continue
        raise ConfigError(f"--{setting.replace('_', '-')} applies to --protocol {' or '.join(names)} (this "
                          f"sweep's protocol is {','.join(p.name for p in protocols)})")


def axis(train: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The protocols and fine-tunings a sweep's training settings name (``--protocol prune-to-target,iterative
    --finetune standard,rewind``: a study axis, one trial per combination)."""
    return tuple(train.protocol.split(",")), tuple(train.finetune.split(","))


def first(train: Any) -> Protocol:
    """The protocol of a trial's training settings (the first of a sweep's axis: they share what a sweep asks of
    its protocol, per-target trials and zeroing)."""
    return get_protocol(axis(train)[0][0])


def check_train(train: Any) -> None:
    """The training settings against their protocol (or each protocol and fine-tuning of an axis): a
    ConfigError naming the culprit."""
    protocols, finetunes = axis(train)
    for what, names in (("--protocol", protocols), ("--finetune", finetunes)):
        check(len(set(names)) == len(names) and all(names), f"{what} {','.join(names)} lists a value twice or an "
              "empty one")
    for name in finetunes:
        check(name in FINETUNES, f"--finetune must be one of {', '.join(FINETUNES)}, got {name!r}")
    objs = [get_protocol(name) for name in protocols]   # an unknown one: the protocols named
    if len(protocols) == 1 and len(finetunes) == 1:
        objs[0].check_train(train)
        refuse_other_protocols(train, objs[0])
        return
    check(all(p.per_target for p in objs), f"--protocol {train.protocol}: a study over protocols compares protocols "
          "that prune to a target (" + ", ".join(n for n in list_protocols() if get_protocol(n).per_target) + ")")
    check(len(finetunes) == 1 or all("finetune" in p.settings for p in objs), f"--finetune {train.finetune}: "
          "every protocol of the sweep must take --finetune")
    refuse_other_protocols(train, *objs)
    variants(train)   # each combination checked as it is built


def variants(train: Any) -> list[Any]:
    """One training settings per (protocol, fine-tuning) of the axis, in order, each with the other protocols'
    settings at their defaults (so a prune-to-target trial of an axis with iterative has prune-to-target's key);
    ``[train]`` for a sweep of one protocol."""

    protocols, finetunes = axis(train)
    if len(protocols) == 1 and len(finetunes) == 1:
        return [train]
    others = {s for name in protocols for s in get_protocol(name).settings}
    out = []
    for name in protocols:
        drop = {s: default_of(train, s) for s in others - set(get_protocol(name).settings) if hasattr(train, s)}
        out += [dataclasses.replace(train, protocol=name, finetune=f, **drop) for f in finetunes]
    return out


def check_sweep(sweep: Any) -> None:
    """The sweep's settings against each protocol of its axis."""
    objs = [get_protocol(name) for name in axis(sweep.train)[0]]
    for protocol in objs:
        protocol.check_sweep(sweep)
    refuse_other_protocols(sweep, *objs)


def _owners() -> dict[str, list[str]]:
    """Per setting that belongs to some protocols, their names in registration order."""
    out: dict[str, list[str]] = {}
    for name in list_protocols():
        for setting in get_protocol(name).settings:
            out.setdefault(setting, []).append(name)
    return out


def owners() -> dict[str, str]:
    """Per setting that belongs to some protocols, their names (the options table)."""
    return {setting: ", ".join(names) for setting, names in _owners().items()}


__all__ = ["axis", "check_sweep", "check_train", "first", "variants", "DEFAULT_PROTOCOL", "FINETUNE", "FINETUNES", "REWOUND", "Phase", "Plan", "Protocol", "SPARSE", "Step", "TRAIN", "get_protocol",
           "list_protocols", "owners", "refuse_other_protocols", "register_protocol"]
