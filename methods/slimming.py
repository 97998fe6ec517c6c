"""``slimming``: Network Slimming, l1 on BatchNorm scale factors, then a global percentile cut.

Liu, Li, Shen, Huang, Yan, Zhang, "Learning Efficient Convolutional Networks through Network Slimming",
ICCV 2017. Each prunable group's channels are scaled by the BatchNorms on them; the scale factors
gamma measure the channels' importance:

1. Train with ``penalty = sum over the BN channels of every prunable group of |gamma|`` (lam 1e-4 in the paper's
   CIFAR experiments).
2. At the end of epoch ``epochs - finetune_epochs``: remove the fraction ``ratio`` of all alive channels
   with the smallest |gamma|, over the whole network (one global percentile, not per layer); the last
   channel of a layer always stays.
3. Fine-tune for ``finetune_epochs`` without the penalty, removed channels frozen.

Swept over ``ratio`` (the paper's pruning percentile), so the sweep traces accuracy against sparsity.
A group's score is the mean |gamma| over the BatchNorms on its channels (one, for a plain conv and its BN).
Needs a model with a BatchNorm on the channels of every prunable layer (``vgg11``, ``lenet5-bn``, ``resnet20``,
``resnet56``); on another one it stops with a clear error before any training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .registry import register_method
from .base import (HparamsBase, MethodError, MethodState, PruneThenFinetune, following_batchnorms, grad_of,
                   option)


@register_method
class Slimming(PruneThenFinetune):
    name = "slimming"
    description = "Network Slimming: l1 on the BatchNorm scale factors, global percentile cut, fine-tune"
    paper = "Liu et al. 2017, Learning Efficient Convolutional Networks through Network Slimming (ICCV)"
    formula = "sum of |gamma| over the BN channels of prunable groups; remove the fraction ratio of smallest |gamma|"
    default_zeroing = "none"   # the percentile cut removes channels
    closed_form_grad = True
    sweep_axis = "ratio"
    default_grid = (0.25, 0.5, 0.75, 0.9)

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        ratio: float = option(0.5, "fraction of all channels removed, by the smallest |gamma| over the whole "
                              "network", open_min=0.0, open_max=1.0)
        lam: float = option(1e-4, "strength of the l1 penalty on the BN scale factors", min=0.0)
        finetune_epochs: int = option(0, "epochs of fine-tuning after the cut; 0 = half of the epochs "
                                      "(rounded down, at least 1)", min=0)

    def check_model(self, model: nn.Module) -> None:
        if "_units" not in self.__dict__:
            following_batchnorms(model, require=True)
        missing = [unit.name for unit in self.units(model) if not unit.norms]
        if missing or not self.units(model):
            raise MethodError(f"{type(model).__name__} has no BatchNorm on the channels of "
                              f"{', '.join(missing) or '(no prunable layer)'}: this method regularizes BN scale "
                              "factors; use a model with BatchNorm (vgg11, lenet5-bn, resnet20, resnet56) or leave "
                              "those layers out with --exclude-layers")

    def gammas(self, model: nn.Module) -> list[tuple[object, torch.Tensor]]:
        """Each unit with the BN scale factors of its groups, one row per member BatchNorm."""
        return [(unit, [unit._rows(p, p.module.weight) for p in unit.norms]) for unit in self.units(model)]

    def training_penalty(self, model: nn.Module) -> torch.Tensor:
        return torch.stack([g.abs().sum() for _, rows in self.gammas(model) for g in rows]).sum()

    @torch.no_grad()
    def add_training_penalty_grad(self, model: nn.Module, weight: float) -> None:
        for unit in self.units(model):
            for part in unit.norms:
                gamma = part.module.weight
                unit._rows(part, grad_of(gamma)).add_(torch.sign(unit._rows(part, gamma)), alpha=weight)

    #: |gamma| is on one scale across layers (every BatchNorm normalises its input): ranked raw, as its own global
    #: percentile cut ranks them
    importance_normalizer = "none"

    @torch.no_grad()
    def importance(self, model: nn.Module, state: MethodState) -> dict[str, torch.Tensor]:
        """Each group's |gamma| (the mean over a coupled group's BatchNorms)."""
        scores = {unit.name: torch.stack([r.abs() for r in rows]).mean(0) for unit, rows in self.gammas(model)}
        return {layer: scores[layer].float() for layer in state.layers}

    @torch.no_grad()
    def prune(self, model: nn.Module, state: MethodState) -> None:
        scores = {unit.name: rows[0] if len(rows) == 1 else torch.stack([r.abs() for r in rows]).mean(0)
                  for unit, rows in self.gammas(model)}
        for layer, idx in global_percentile_cut({layer: scores[layer] for layer in state.layers},
                                                {layer: state.alive(layer) for layer in state.layers},
                                                self.hparams.ratio).items():
            if len(idx):
                state.remove(layer, idx)


def global_percentile_cut(gammas: dict[str, torch.Tensor], alive: dict[str, torch.Tensor], ratio: float
                          ) -> dict[str, torch.Tensor]:
    """The ``floor(ratio * alive channels)`` alive channels with the smallest |gamma| over all layers
    (ties: layer order, then index), as indices per layer."""
    if not 0.0 < ratio < 1.0:
        raise MethodError(f"ratio must be in (0, 1), got {ratio}")
    layers = list(gammas)
    values = torch.cat([gammas[l].detach().abs().double().cpu().masked_fill(~alive[l].cpu(), math.inf)
                        for l in layers])
    n_alive = int(sum(int(alive[l].sum()) for l in layers))
    k = math.floor(ratio * n_alive)
    chosen = torch.zeros(values.numel(), dtype=torch.bool)
    chosen[torch.argsort(values, stable=True)[:k]] = True
    return {l: part.nonzero().flatten() for l, part in zip(layers, torch.split(chosen, [gammas[l].numel()
                                                                                         for l in layers]))}
