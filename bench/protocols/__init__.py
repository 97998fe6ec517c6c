"""The protocols: how a trial trains and prunes, one file each, registered like the methods (``bench list``
lists them with their settings). A protocol is one object (:class:`Protocol`, bench/protocols/base.py): the
phases of a trial as data (:class:`Plan`: penalty, hooks, removals and the learning-rate schedule per epoch, the
pruning steps), the settings it takes and refuses, the trials a sweep expands to under it, what its sweep run
records and which report section reads its trials. The trainer runs a trial's plan and knows no protocol by
name; nothing outside this package compares a protocol's name. A ``--plugin`` file registers more with
``register_protocol``. No torch at import."""
from __future__ import annotations

from typing import Any

from .base import FINETUNE, FINETUNES, REWOUND, SPARSE, TRAIN, Phase, Plan, Protocol, Step, is_default
from .registry import DEFAULT as DEFAULT_PROTOCOL
from .registry import get_protocol, list_protocols, register_protocol
from . import regularize, prune_to_target, iterative  # noqa: F401,E402  (the built-in protocols register)


def refuse_other_protocols(settings: Any, protocol: Protocol) -> None:
    """A setting that belongs to other protocols only (their ``settings``), changed from its default on a
    ``TrainSettings`` or ``SweepConfig`` of ``protocol``: a ConfigError naming it and the protocols it applies to."""
    from ..settings import ConfigError
    owners: dict[str, list[str]] = {}
    for name in list_protocols():
        for setting in get_protocol(name).settings:
            owners.setdefault(setting, []).append(name)
    for setting, names in owners.items():
        if setting in protocol.settings or not hasattr(settings, setting) or is_default(settings, setting):
            continue
        raise ConfigError(f"--{setting.replace('_', '-')} applies to --protocol {' or '.join(names)} (this sweep's "
                          f"protocol is {protocol.name})")


def owners() -> dict[str, str]:
    """Per setting that belongs to some protocols, their names (the README's options table)."""
    out: dict[str, list[str]] = {}
    for name in list_protocols():
        for setting in get_protocol(name).settings:
            out.setdefault(setting, []).append(name)
    return {setting: ", ".join(names) for setting, names in out.items()}


__all__ = ["DEFAULT_PROTOCOL", "FINETUNE", "FINETUNES", "REWOUND", "Phase", "Plan", "Protocol", "SPARSE", "Step", "TRAIN", "get_protocol",
           "list_protocols", "owners", "refuse_other_protocols", "register_protocol"]
