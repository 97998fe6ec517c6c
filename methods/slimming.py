"""``slimming``: Network Slimming, l1 on BatchNorm scale factors, then a global percentile cut.

Liu, Li, Shen, Huang, Yan, Zhang, "Learning Efficient Convolutional Networks through Network Slimming",
ICCV 2017. Each eligible conv's channels are scaled by the BatchNorm that follows it; the scale factors
gamma measure the channels' importance:

1. Train with ``penalty = sum over the BNs after eligible convs of sum |gamma|`` (lam 1e-4 in the paper's
   CIFAR experiments).
2. At the end of epoch ``epochs - finetune_epochs``: remove the fraction ``ratio`` of all alive channels
   with the smallest |gamma|, over the whole network (one global percentile, not per layer); the last
   channel of a layer always stays.
3. Fine-tune for ``finetune_epochs`` without the penalty, removed channels frozen.

Swept over ``ratio`` (the paper's pruning percentile), so the sweep traces accuracy against sparsity.
Needs a model with a BatchNorm after every eligible conv (``vgg11``, ``lenet5-bn``, ``resnet20``,
``resnet56``); on another one it stops with a clear error before any training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import register_method
from .base import (HparamsBase, MethodError, MethodState, PruneThenFinetune, following_batchnorms, grad_of,
                   option)


@register_method
class Slimming(PruneThenFinetune):
    name = "slimming"
    description = "Network Slimming: l1 on the BatchNorm scale factors, global percentile cut, fine-tune"
    paper = "Liu et al. 2017, Learning Efficient Convolutional Networks through Network Slimming (ICCV)"
    formula = "sum over BNs after eligible convs of sum |gamma|; remove the fraction ratio of smallest |gamma|"
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
        following_batchnorms(model, require=True)

    def batchnorms(self, model: nn.Module) -> dict[str, nn.BatchNorm2d]:
        """The BN after each eligible conv, remembered for the last model seen (called at every step)."""
        return self.per_model(model, "batchnorms", lambda: following_batchnorms(model, require=True))

    def training_penalty(self, model: nn.Module) -> torch.Tensor:
        bns = self.batchnorms(model)
        return torch.stack([bn.weight.abs().sum() for bn in bns.values()]).sum()

    @torch.no_grad()
    def add_training_penalty_grad(self, model: nn.Module, weight: float) -> None:
        for bn in self.batchnorms(model).values():
            grad_of(bn.weight).add_(torch.sign(bn.weight), alpha=weight)

    @torch.no_grad()
    def prune(self, model: nn.Module, state: MethodState) -> None:
        bns = following_batchnorms(model, require=True)
        for layer, idx in global_percentile_cut({layer: bns[layer].weight for layer in state.layers},
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
