"""``l2``: the l2 norm (not squared) of the kernel pseudo-norm vector N (the denominator of l1/l2 alone).

Berthelier et al. 2020 compare it with l1/l2 in Tables I-III. Not squared, so its gradient is
N / ||N||_2: it pushes large filters hardest and behaves as a group penalty on N.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import register_method
from .base import HparamsBase, Method, option
from .kernel_norms import NORM_SCALES, add_kernel_norm_grad, kernel_norm_vector


@register_method
class L2(Method):
    name = "l2"
    description = "l2 norm (not squared) of the kernel pseudo-norm vector N"
    paper = "Berthelier et al. 2020 (arXiv 2007.10022), baseline of Tables I-III"
    formula = "sqrt(sum(N**2) + eps)"
    default_zeroing = "cumulative:0.01"
    closed_form_grad = True
    sweep_axis = "lam"
    default_grid = (0.05, 0.5, 2.0)

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        lam: float = option(0.5, "penalty strength: loss = task_loss + lam * ||N||_2", min=0.0)
        norm_scale: str = option("filters", "divide each filter's l1 norm by its layer's filter count (eq. 2) or not",
                                 choices=NORM_SCALES)
        eps: float = option(1e-12, "added under the square root so the gradient is finite at N = 0", min=0.0)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        n = kernel_norm_vector(model, self.hparams.norm_scale, self.units(model))
        return torch.sqrt(n.square().sum() + self.hparams.eps)

    def add_penalty_grad(self, model: nn.Module, weight: float) -> None:
        eps = self.hparams.eps
        add_kernel_norm_grad(self.units(model), self.hparams.norm_scale,
                             lambda n: n / torch.sqrt(n.square().sum() + eps), weight)
