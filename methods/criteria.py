"""The field's standard importance criteria, from Torch-Pruning (``torch_pruning.pruner.importance``).

They add nothing to training: under ``--protocol prune-to-target`` a trial trains densely for its sparse epochs,
scores every group with the criterion, prunes the lowest by one global ranking to the target (``bench/pruning.py``)
and fine-tunes. Each scores Torch-Pruning's own ``Group`` of a unit (``Unit.group``, kept by
``bench.structure.derive`` on the trial's model): the output channels of its convs and BatchNorms and the input
channels of the layers that read them, reduced by the mean over the group's layers, exactly as Torch-Pruning's
pruners score them. Torch-Pruning normalises inside the criterion; here the criterion runs with
``normalizer=None`` and the pruning step applies the method's :attr:`importance_normalizer` (Torch-Pruning's
defaults: ``mean`` per unit, LAMP's own for ``lamp``, none for ``random``), so one function does it for every
method and the tests check it once.

Where Torch-Pruning 1.6 needs help:
- ``taylor`` needs ``.grad``: the gradient of the mean cross-entropy is accumulated over ``samples`` training
  examples (drawn from the method's own generator, in evaluation mode: BatchNorm statistics untouched);
- ``hessian`` (group OBD): ``GroupHessianImportance.accumulate_grad`` tests a parameter's name but keys by the
  parameter, so it keeps only the last sample; the mean of the squared per-example gradients (the empirical
  Fisher, OBD's diagonal Hessian) is computed here and handed over as ``.grad``;
- ``bn-scale`` returns None for a group without a BatchNorm: ``check_model`` refuses such a model first;
- ``random`` draws from torch's global generator: it runs under a fork of it seeded with the trial's seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from .base import HparamsBase, MethodError, MethodState, PostHocMethod, eval_mode, following_batchnorms, option
from .registry import register_method

REDUCTIONS = ("mean", "first")


class Criterion(PostHocMethod):
    """A Torch-Pruning importance on each unit's group; subclasses say which (:meth:`scorer`)."""

    protocols: ClassVar[tuple[str, ...]] = ("prune-to-target",)
    default_zeroing: ClassVar[str] = "none"
    needs_batchnorm: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        pass

    def scorer(self) -> Any:
        raise NotImplementedError

    def check_model(self, model: nn.Module) -> None:
        if self.needs_batchnorm and "_units" not in self.__dict__:
            following_batchnorms(model, require=True)
        missing = [unit.name for unit in self.units(model) if not unit.norms] if self.needs_batchnorm else []
        if missing:
            raise MethodError(f"{type(model).__name__} has no BatchNorm on the channels of {', '.join(missing)}: "
                              f"{self.name} scores BatchNorm scale factors; use a model with BatchNorm (lenet5-bn, "
                              "vgg11, resnet20) or leave those layers out with --exclude-layers")

    def prepare(self, model: nn.Module, state: MethodState) -> None:
        """What the criterion needs before scoring (gradients, say)."""

    def importance(self, model: nn.Module, state: MethodState) -> dict[str, torch.Tensor]:
        units = {unit.name: unit for unit in self.units(model)}
        scorer = self.scorer()
        self.prepare(model, state)
        try:
            out = {}
            for layer in state.layers:
                unit = units[layer]
                if unit.group is None:
                    raise MethodError(f"{self.name} scores Torch-Pruning groups: bind the units that "
                                      "bench.structure.derive gives (Method.bind)")
                scores = scorer(unit.group)
                if scores is not None and unit.per > 1 and scores.numel() == unit.size * unit.per:
                    scores = scores.view(unit.size, unit.per).mean(1)   # a head: the mean of its channels' scores
                if scores is None or scores.numel() != unit.size:
                    raise MethodError(f"{self.name}: Torch-Pruning's criterion gave no score per group of {layer}")
                out[layer] = scores.detach().float()
            return out
        finally:
            model.zero_grad(set_to_none=True)


def _tp() -> Any:
    return tp.pruner.importance


@register_method
class MagnitudeL1(Criterion):
    name = "magnitude-l1"
    description = "group l1 norm of the weights (Torch-Pruning's GroupMagnitudeImportance, p=1)"
    paper = "Li et al. 2017, Pruning Filters for Efficient ConvNets (ICLR); Fang et al. 2023, DepGraph (CVPR)"
    formula = "0 (criterion: mean over the group's layers of sum |w| of each channel; prune the lowest)"
    p: ClassVar[int] = 1

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        reduction: str = option("mean", "mean: over every layer of the group (Torch-Pruning's group norm); first: "
                                "the filter's own weights only (Li et al.)", choices=REDUCTIONS)

    def scorer(self) -> Any:
        return _tp().GroupMagnitudeImportance(p=self.p, group_reduction=self.hparams.reduction, normalizer=None)


@register_method
class MagnitudeL2(MagnitudeL1):
    name = "magnitude-l2"
    description = "group l2 norm of the weights (Torch-Pruning's GroupMagnitudeImportance, p=2)"
    formula = "0 (criterion: mean over the group's layers of sum w^2 of each channel; prune the lowest)"
    p = 2


@register_method
class LAMP(Criterion):
    name = "lamp"
    description = "LAMP: squared magnitudes normalised within each layer by the mass of those not smaller"
    paper = "Lee et al. 2021, Layer-adaptive Sparsity for the Magnitude-based Pruning (ICLR)"
    formula = "0 (criterion: s_i / sum_{j: s_j >= s_i} s_j on the group l2 magnitudes s; prune the lowest)"
    importance_normalizer = "lamp"

    def scorer(self) -> Any:
        return _tp().GroupMagnitudeImportance(p=2, group_reduction="mean", normalizer=None)


@register_method
class FPGM(Criterion):
    name = "fpgm"
    description = "FPGM: filters closest to the geometric median of their layer (sum of distances to the others)"
    paper = "He et al. 2019, Filter Pruning via Geometric Median for Deep CNN Acceleration (CVPR)"
    formula = "0 (criterion: sum_j ||w_i - w_j|| over the layer's filters; prune the smallest)"

    def scorer(self) -> Any:
        return _tp().FPGMImportance(p=2, group_reduction="mean", normalizer=None)


@register_method
class BNScale(Criterion):
    name = "bn-scale"
    description = "BatchNorm scale factors |gamma| of each channel, without sparse training"
    paper = "Liu et al. 2017, Network Slimming (ICCV): its criterion (Torch-Pruning's BNScaleImportance)"
    formula = "0 (criterion: |gamma| of each channel's BatchNorm; prune the lowest)"
    needs_batchnorm = True

    def scorer(self) -> Any:
        return _tp().BNScaleImportance(group_reduction="mean", normalizer=None)


class _GradientCriterion(Criterion):
    """A criterion that reads gradients of the training loss on ``samples`` examples."""

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        samples: int = option(256, "training examples whose loss gradients the criterion reads", min=1)
        chunk: int = option(64, "examples per forward pass while accumulating them", min=1)

    def batches(self, state: MethodState):
        left = self.hparams.samples
        while left > 0:
            n = min(self.hparams.chunk, left)
            yield state.draw_batch(n)
            left -= n


@register_method
class Taylor(_GradientCriterion):
    name = "taylor"
    description = "first-order Taylor: |w * dL/dw| summed over each group (Torch-Pruning's GroupTaylorImportance)"
    paper = "Molchanov et al. 2019, Importance Estimation for Neural Network Pruning (CVPR)"
    formula = "0 (criterion: sum |w * dL/dw| over the group, gradient of the mean loss on samples; prune the lowest)"

    def scorer(self) -> Any:
        return _tp().GroupTaylorImportance(group_reduction="mean", normalizer=None)

    def prepare(self, model: nn.Module, state: MethodState) -> None:
        model.zero_grad(set_to_none=True)
        total = self.hparams.samples
        with eval_mode(model), torch.enable_grad():
            for x, y in self.batches(state):
                (F.cross_entropy(model(x), y, reduction="sum") / total).backward()


@register_method
class Hessian(_GradientCriterion):
    name = "hessian"
    description = "group OBD: w^2 times the empirical Fisher diagonal (Torch-Pruning's GroupHessianImportance)"
    paper = "LeCun et al. 1989, Optimal Brain Damage (NeurIPS); Torch-Pruning's group Hessian criterion"
    formula = "0 (criterion: sum w^2 * mean_n (dL_n/dw)^2 over the group; prune the lowest)"

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        samples: int = option(64, "training examples whose per-example loss gradients are squared and averaged",
                              min=1)
        chunk: int = option(64, "examples per forward pass (their gradients are taken one by one)", min=1)

    def scorer(self) -> Any:
        return _tp().GroupHessianImportance(group_reduction="mean", normalizer=None)

    def prepare(self, model: nn.Module, state: MethodState) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        fisher = [torch.zeros_like(p) for p in params]
        with eval_mode(model), torch.enable_grad():
            for x, y in self.batches(state):
                losses = F.cross_entropy(model(x), y, reduction="none")
                for i in range(len(y)):
                    grads = torch.autograd.grad(losses[i], params, retain_graph=i + 1 < len(y), allow_unused=True)
                    for f, g in zip(fisher, grads):
                        if g is not None:
                            f.add_(g.square())
        for p, f in zip(params, fisher):
            p.grad = f / self.hparams.samples


@register_method
class Random(Criterion):
    name = "random"
    description = "random pruning: every group scored uniformly at random (a control)"
    paper = "Torch-Pruning's RandomImportance; the control of Liu et al. 2019, Rethinking the Value of Pruning"
    formula = "0 (criterion: U(0, 1) per group; prune the lowest)"
    importance_normalizer = "none"

    def scorer(self) -> Any:
        return _tp().RandomImportance()

    def importance(self, model: nn.Module, state: MethodState) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(state.seed)
            return super().importance(model, state)
