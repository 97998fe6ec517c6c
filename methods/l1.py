"""``l1``: the l1 norm of the kernel pseudo-norm vector N (the numerator of l1/l2 alone).

Berthelier et al. 2020 compare it with l1/l2 in Tables I-III. Not scale-invariant: it shrinks every
filter, so with BatchNorm after a conv the network can compensate through the BN scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import register_method
from .base import HparamsBase, Method, option
from .kernel_norms import NORM_SCALES, add_kernel_norm_grad, kernel_norm_vector


@register_method
class L1(Method):
    name = "l1"
    description = "l1 norm of the kernel pseudo-norm vector N"
    paper = "Berthelier et al. 2020 (arXiv 2007.10022), baseline of Tables I-III"
    formula = "sum(N)"
    default_zeroing = "cumulative:0.01"
    closed_form_grad = True
    sweep_axis = "lam"
    default_grid = (0.02, 0.05, 0.2)

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        lam: float = option(0.05, "penalty strength: loss = task_loss + lam * sum(N)", min=0.0)
        norm_scale: str = option("filters", "divide each filter's l1 norm by its layer's filter count (eq. 2) or not",
                                 choices=NORM_SCALES)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        return kernel_norm_vector(model, self.hparams.norm_scale, self.units(model)).sum()

    def add_penalty_grad(self, model: nn.Module, weight: float) -> None:
        add_kernel_norm_grad(self.units(model), self.hparams.norm_scale, torch.ones_like, weight)
