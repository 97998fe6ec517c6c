"""``--protocol iterative``: prune-to-target in ``--prune-steps`` steps (Torch-Pruning's ``iterative_steps`` with
its linear schedule). The sparse epochs train with the method's penalty; the k-th step, at the end of sparse
epoch ceil(k E / N), removes groups until k / N of the target is met, the importance recomputed on the network as
it is then (removed groups stay removed; the walk, the layer bound and the normaliser are prune-to-target's);
training goes on between steps; the last step, at the end of the sparse epochs, meets the target within one
group; then fine-tuning. Each step logs, at its epoch, its target (``prune_step_target``), what it reached
(``prune_step_achieved``) and the accuracies before and after it."""
from __future__ import annotations

from typing import Any

from .base import Step, check
from .prune_to_target import PruneToTarget
from .registry import register_protocol

DEFAULT_STEPS = 5   # Torch-Pruning's benchmark recipes prune in 5 steps (capped at the sparse epochs)


@register_protocol
class Iterative(PruneToTarget):
    name = "iterative"
    description = ("prune-to-target in --prune-steps steps over the sparse epochs (Torch-Pruning's linear "
                   "schedule): the k-th step meets k/N of the target, the importance recomputed before each, "
                   "training in between; then fine-tuning")
    settings = (*PruneToTarget.settings, "prune_steps")

    def check_train(self, train: Any) -> None:
        super().check_train(train)
        steps = self.count(train)
        check(steps <= train.prune_epoch, f"--prune-steps {steps}: at most one step per sparse epoch, and there are "
              f"{train.prune_epoch} (--sparse-epochs); ask for fewer steps or more sparse epochs")

    def count(self, train: Any) -> int:
        """N: ``--prune-steps``, by default 5 or the sparse epochs if fewer."""
        return train.prune_steps or min(DEFAULT_STEPS, train.prune_epoch)

    def steps(self, train: Any) -> tuple[Step, ...]:
        n, last = self.count(train), train.prune_epoch
        return tuple(Step(-(-k * last // n), k / n) for k in range(1, n + 1))   # epoch ceil(k E / N)

    def tags(self, train: Any) -> list[str]:
        return [f"it{self.count(train)}", *super().tags(train)]

    def sweep_params(self, sweep: Any) -> dict[str, Any]:
        return {**super().sweep_params(sweep), "prune_steps": self.count(sweep.train)}
