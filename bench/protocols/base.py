"""What a protocol is: the phases of a trial as data (:class:`Plan`, which the trainer runs), the settings it
takes and refuses, the trials a sweep expands to under it, what its sweep records and which report section reads
its trials. One file per protocol in bench/protocols/, registered like a method (``register_protocol``); a plugin
(``--plugin FILE.py``) registers its own. No torch at import: the settings, ``bench list`` and the report read
protocols."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..settings import ConfigError


@dataclass(frozen=True)
class Phase:
    """How the epochs of one phase train: with the method's penalty, with its hooks (``on_epoch_start``,
    ``after_step``, ``on_epoch_end``), with its own removals open (its zeroing rule, a prune-then-fine-tune
    method's cut); ``rewind``: the learning-rate schedule read from the phase's first epoch as from epoch 1
    (Renda et al.'s learning-rate rewinding) instead of running on."""

    name: str
    penalty: bool = True
    hooks: bool = True
    removal: bool = True
    rewind: bool = False


TRAIN = Phase("train")                                                      # the method as it is
SPARSE = Phase("sparse", removal=False)                                    # its penalty, nothing removed
FINETUNE = Phase("fine-tune", penalty=False, hooks=False, removal=False)    # plain training, the masks frozen
REWOUND = Phase("fine-tune", penalty=False, hooks=False, removal=False, rewind=True)   # the same, lr rewound
FINETUNES = ("standard", "rewind")   # --finetune: the fine-tuning phase's learning rate


@dataclass(frozen=True)
class Step:
    """A pruning step at the end of ``epoch``: groups removed by the method's importance until ``fraction`` of
    the trial's target is met (1.0: the target itself)."""

    epoch: int
    fraction: float = 1.0


@dataclass(frozen=True)
class Plan:
    """A trial's schedule: ``phases`` as (first epoch, phase) in order, each lasting until the next one starts;
    the pruning ``steps``; ``defer_pruning``: the protocol's steps replace a method's own pruning step."""

    phases: tuple[tuple[int, Phase], ...] = ((1, TRAIN),)
    steps: tuple[Step, ...] = ()
    defer_pruning: bool = False

    def phase(self, epoch: int) -> tuple[int, Phase]:
        """The phase ``epoch`` trains in, with the phase's first epoch."""
        current = self.phases[0]
        for start, phase in self.phases:
            if start <= epoch:
                current = (start, phase)
        return current

    def steps_at(self, epoch: int) -> list[Step]:
        """The pruning steps at the end of ``epoch``."""
        return [s for s in self.steps if s.epoch == epoch]


class Protocol:
    """A protocol's declaration (class attributes) and its rules (methods); a subclass per protocol.

    ``settings``: the ``bench run`` settings that belong to it (field names of ``TrainSettings`` or
    ``SweepConfig``); a setting another protocol declares and this one does not is refused when changed from
    its default. ``accepts``: which methods it runs, by the names a method lists in ``Method.protocols``
    (``regularize``: trains with a penalty and its own removals; ``prune-to-target``: scores groups for a
    pruning step). ``per_target``: one trial per ``--target-*`` value, each recording its target (params
    ``target_kind``, ``target``), which is what the report reads them by: its "Accuracy at equal target"
    sections (and, for a study over protocols, "Protocol against protocol"); else the values start target
    searches and the trials are read by the fronts and equal-sparsity sections. ``controls``: the
    ``--controls`` it offers."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings: ClassVar[tuple[str, ...]] = ()
    accepts: ClassVar[tuple[str, ...]] = ("regularize",)
    per_target: ClassVar[bool] = False
    controls: ClassVar[tuple[str, ...]] = ()

    # -- the settings ---------------------------------------------------------------------------------------
    def check_train(self, train: Any) -> None:
        """Raise :class:`ConfigError` for training settings (``TrainSettings``) this protocol cannot run."""

    def check_sweep(self, sweep: Any) -> None:
        """Raise :class:`ConfigError` for sweep settings (``SweepConfig``) this protocol cannot run."""

    def runs(self, method_cls: Any) -> bool:
        """Whether a method class runs under this protocol (its ``protocols`` name one this protocol accepts)."""
        return any(kind in method_cls.protocols for kind in self.accepts)

    def zeroing_for(self, sweep: Any, method: str) -> str | None:
        """The zeroing rule of ``method``'s trials, or None for the sweep's (``--zeroing``, else the method's
        default)."""
        return None

    def layer_bound(self, train: Any) -> float | None:
        """The largest fraction of a unit's groups one pruning step may take (``--max-layer-ratio``), or None
        when every unit may keep one group only: what a target is checked against before any trial."""
        return None

    def sweep_params(self, sweep: Any) -> dict[str, Any]:
        """The protocol's settings among the sweep run's flat params."""
        return {}

    def tags(self, train: Any) -> list[str]:
        """What a trial's name adds after its target, so that trials of a study axis have names of their own."""
        return []

    def plan_line(self, sweep: Any, trials: Sequence[Any], train: Any) -> str:
        """The line of ``bench run``'s plan that says what a protocol that prunes to targets runs: ``trials``
        under the training settings ``train`` (one protocol and fine-tuning of the sweep)."""
        return f"{self.name}: {len(trials)} trials"

    # -- a trial --------------------------------------------------------------------------------------------
    def plan(self, trial: Any) -> Plan:
        """The phase schedule of one trial (``TrialConfig``)."""
        return Plan()


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def default_of(obj: Any, name: str) -> Any:
    """The declared default of the setting ``name`` of a settings dataclass."""
    f = next(f for f in dataclasses.fields(obj) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]


def is_default(obj: Any, name: str) -> bool:
    value = getattr(obj, name)
    default = default_of(obj, name)
    return value == default or (isinstance(value, Mapping) and not value and not default)
