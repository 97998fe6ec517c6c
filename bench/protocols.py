"""What the prune-to-target protocol refuses (docs/methods.md), checked with the sweep's settings. Imports nothing
of bench but the settings (``bench.config`` calls it), no torch."""
from __future__ import annotations

import dataclasses
from typing import Any

from .settings import ConfigError

CONTROLS = ("scratch",)   # --controls


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_prune_to_target(sweep: Any) -> None:
    """The settings of a prune-to-target ``bench.config.SweepConfig``: a target, none of the regularize protocol's search settings,
    known controls, a method that prunes; a :class:`ConfigError` naming the culprit otherwise."""
    _check(bool(sweep.target_values), "--protocol prune-to-target prunes to a target: give --target-flops-reduction, "
           "--target-sparsity or --target-params-reduction")
    for name, flag in (("target_tolerance", "--target-tolerance"), ("max_probes", "--max-probes"),
                       ("stop_overshoots", "--stop-overshoots")):
        default = next(f.default for f in dataclasses.fields(sweep) if f.name == name)
        _check(getattr(sweep, name) == default, f"{flag} belongs to the regularize protocol's target search; "
               "prune-to-target runs one trial per method, target and seed and meets the target within one group")
    _check(not sweep.zeroing, "--zeroing does not apply under --protocol prune-to-target: its sparse epochs zero "
           "nothing and its pruning step removes the groups")
    _check(not sweep.ratios, "--ratios does not apply under --protocol prune-to-target: the target sets how much "
           "is pruned")
    for control in sweep.controls:
        _check(control in CONTROLS, f"unknown control {control!r}; controls: {', '.join(CONTROLS)} (random "
               "pruning is the method `random`)")
    from methods import get_method
    _check(any(not get_method(m).reference for m in sweep.methods), "--protocol prune-to-target needs a method that "
           f"prunes; --methods {','.join(sweep.methods)} holds only the dense reference")
