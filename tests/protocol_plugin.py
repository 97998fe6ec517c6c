"""A protocol registered from outside bench/ (``--plugin tests/protocol_plugin.py``): ``dense-then-prune`` trains
the network plainly for the sparse epochs (no penalty, no method hook: the method is only its importance), prunes
once to the target, then fine-tunes; its settings, refusals, records and report section are prune-to-target's."""
from __future__ import annotations

from bench.protocols import Phase, Plan, register_protocol
from bench.protocols.prune_to_target import PruneToTarget

DENSE = Phase("dense", penalty=False, hooks=False, removal=False)


@register_protocol
class DenseThenPrune(PruneToTarget):
    name = "dense-then-prune"
    description = "plain training for the sparse epochs, one pruning step to the target, fine-tuning"

    def plan(self, trial):
        if trial.target is None:
            return Plan()
        last = trial.train.prune_epoch
        return Plan(((1, DENSE), (last + 1, self.finetune_phase(trial.train))), self.steps(trial.train),
                    defer_pruning=True)
