"""``--protocol prune-to-target``: per (method, target, seed) one trial of ``--sparse-epochs`` with the method's
penalty and nothing removed, one global pruning step to the target by the method's importance (bench/pruning.py),
then fine-tuning with no penalty, no method hook and the masks frozen (docs/methods.md)."""
from __future__ import annotations

from typing import Any, Sequence

from .base import FINETUNE, REWOUND, SPARSE, Plan, Protocol, Step, check, is_default
from .registry import register_protocol


def control_kind(name: str) -> str:
    """A ``--controls`` name as its trials record it: ``scratch`` (Scratch-E: its first name, kept so that the
    trials of earlier sweeps keep their keys) or ``scratch-b``."""
    return "scratch" if name in ("scratch", "scratch-e") else name


@register_protocol
class PruneToTarget(Protocol):
    name = "prune-to-target"
    description = ("per (method, target, seed) one trial: --sparse-epochs with the method's penalty, one global "
                   "pruning step to the --target-* value by the method's importance, then fine-tuning")
    settings = ("sparse_epochs", "max_layer_ratio", "finetune", "controls", "scratch_b_max_factor")
    accepts = ("regularize", "prune-to-target")
    per_target = True
    controls = ("scratch-e", "scratch-b", "scratch")   # scratch: scratch-e's first name

    def check_train(self, train: Any) -> None:
        check(train.prune_epoch < train.epochs, f"--sparse-epochs {train.prune_epoch} leaves no epoch to fine-tune "
              f"in {train.epochs} epochs")

    def check_sweep(self, sweep: Any) -> None:
        """A target, none of the regularize protocol's search settings, known controls, a method that prunes."""
        from methods import get_method  # lazy: keeps bench --help, the report, import bench.api free of torch

        check(bool(sweep.target_values), f"--protocol {self.name} prunes to a target: give --target-flops-reduction, "
              "--target-sparsity or --target-params-reduction")
        for name, flag in (("target_tolerance", "--target-tolerance"), ("max_probes", "--max-probes"),
                           ("stop_overshoots", "--stop-overshoots")):
            check(is_default(sweep, name), f"{flag} belongs to the regularize protocol's target search; {self.name} "
                  "runs one trial per method, target and seed and meets the target within one group")
        check(not sweep.zeroing, f"--zeroing does not apply under --protocol {self.name}: its sparse epochs zero "
              "nothing and its pruning step removes the groups")
        check(not sweep.ratios, f"--ratios does not apply under --protocol {self.name}: the target sets how much "
              "is pruned")
        for control in sweep.controls:
            check(control in self.controls, f"unknown control {control!r}; controls: {', '.join(self.controls)} "
                  "(scratch is scratch-e; random pruning is the method `random`)")
        kinds = [control_kind(c) for c in sweep.controls]
        check(len(set(kinds)) == len(kinds), f"--controls {','.join(sweep.controls)} names a control twice (scratch "
              "is scratch-e)")
        for name in sweep.methods:
            check(self.runs(get_method(name)), f"method {name!r} cannot run under --protocol {self.name}")
        check(any(not get_method(m).reference for m in sweep.methods), f"--protocol {self.name} needs a method that "
              f"prunes; --methods {','.join(sweep.methods)} holds only the dense reference")

    def zeroing_for(self, sweep: Any, method: str) -> str | None:
        return "none"   # the sparse epochs zero nothing; the pruning step removes

    def layer_bound(self, train: Any) -> float | None:
        return train.max_layer_ratio

    def sweep_params(self, sweep: Any) -> dict[str, Any]:
        t = sweep.train
        return {"sparse_epochs": t.prune_epoch, "max_layer_ratio": t.max_layer_ratio, "finetune": t.finetune,
                **({"controls": ",".join(sweep.controls)} if sweep.controls else {}),
                **({"scratch_b_max_factor": sweep.scratch_b_max_factor} if "scratch-b" in sweep.controls else {})}

    def steps(self, train: Any) -> tuple[Step, ...]:
        """The pruning steps of a trial with a target: one, at the end of the sparse epochs."""
        return (Step(train.prune_epoch),)

    def plan(self, trial: Any) -> Plan:
        if trial.target is None:   # the dense reference and the controls: plain training
            return Plan()
        last = trial.train.prune_epoch
        return Plan(((1, SPARSE), (last + 1, self.finetune_phase(trial.train))), self.steps(trial.train),
                    defer_pruning=True)

    def tags(self, train: Any) -> list[str]:
        return ["rw"] * (train.finetune == "rewind")

    def finetune_phase(self, train: Any):
        """The fine-tuning phase of ``--finetune``: the schedule running on (standard) or rewound (rewind)."""
        return REWOUND if train.finetune == "rewind" else FINETUNE

    def plan_line(self, sweep: Any, trials: Sequence[Any], train: Any) -> str:
        t = train
        steps = self.steps(t)
        what = "one global pruning step" if len(steps) == 1 else \
            f"{len(steps)} global pruning steps (ends of epochs {', '.join(str(s.epoch) for s in steps)})"
        return (f"{self.name} {', '.join(tg.label for tg in sweep.targets)}: {len(trials)} trial"
                f"{'s' * (len(trials) != 1)}, one per method, target and seed ({len(sweep.seeds)} seed"
                f"{'s' * (len(sweep.seeds) > 1)}): {t.prune_epoch} sparse epochs, {what} taking at most "
                f"{t.max_layer_ratio:g} of a layer, {t.epochs - t.prune_epoch} fine-tuning"
                + (" (learning rate rewound)" if t.finetune == "rewind" else "") + "; " + ", ".join(
                    f"{m}" + (f" (lam {','.join(f'{v:g}' for v in sweep.sparse_strengths(m) if v is not None)})"
                              if any(v is not None for v in sweep.sparse_strengths(m)) else "")
                    for m in sweep.methods))
