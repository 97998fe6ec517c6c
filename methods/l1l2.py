"""``l1l2``: the l1/l2 pseudo-norm on kernel norms, the primary method.

Berthelier, Yan, Chateau, Blanc, Duffner, Garcia, "Learning Sparse Filters in Deep Convolutional Neural
Networks with a l1/l2 Pseudo-Norm", 2020 (arXiv 2007.10022), eq. 5:

    L_s = ||N||_1 / ||N||_2 = sum(N) / sqrt(sum(N**2) + eps)

N is the kernel pseudo-norm vector (eqs. 2-4, see ``kernel_norms.py``). The ratio is scale-invariant: it
rewards concentrating the norm in few filters rather than shrinking all of them. Zeroing follows the
paper's cumulative rule at t = 1% (Sec. III-C).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import register_method
from .base import HparamsBase, Method, option
from .kernel_norms import NORM_SCALES, add_kernel_norm_grad, kernel_norm_vector


@register_method
class L1OverL2(Method):
    name = "l1l2"
    description = "l1/l2 pseudo-norm on the kernel pseudo-norm vector N (primary method)"
    paper = "Berthelier et al. 2020 (arXiv 2007.10022), eq. 5"
    formula = "sum(N) / sqrt(sum(N**2) + eps)"
    default_zeroing = "cumulative:0.01"
    closed_form_grad = True
    sweep_axis = "lam"
    default_grid = (0.05, 0.2, 1.0)

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        lam: float = option(0.5, "penalty strength: loss = task_loss + lam * ||N||_1/||N||_2", min=0.0)
        norm_scale: str = option("filters", "divide each filter's l1 norm by its layer's filter count (eq. 2) or not",
                                 choices=NORM_SCALES)
        eps: float = option(1e-12, "added under the square root so the ratio is finite at N = 0", min=0.0)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        n = kernel_norm_vector(model, self.hparams.norm_scale, self.units(model))
        return n.sum() / torch.sqrt(n.square().sum() + self.hparams.eps)

    def add_penalty_grad(self, model: nn.Module, weight: float) -> None:
        eps = self.hparams.eps

        def dratio_dn(n: torch.Tensor) -> torch.Tensor:   # d/dN of sum(N) / sqrt(sum(N**2) + eps)
            l2 = torch.sqrt(n.square().sum() + eps)
            return (1.0 / l2) - n * (n.sum() / l2 ** 3)

        add_kernel_norm_grad(self.units(model), self.hparams.norm_scale, dratio_dn, weight)
