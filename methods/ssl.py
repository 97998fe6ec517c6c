"""``ssl``: Structured Sparsity Learning, group lasso on conv filters and channels.

Wen, Wu, Wang, Chen, Li, "Learning Structured Sparsity in Deep Neural Networks", NIPS 2016. For every
eligible conv layer with weight W of shape (F, C, kh, kw):

    penalty = sum_l [ sum_f ||W[l][f]||_2 + channel_weight * sum_c ||W[l][:, c]||_2 ]

with each group norm ``sqrt(sum w**2 + eps)`` (eps = 1e-8 keeps the gradient finite at zero). The square
root is kept: dropping it turns group lasso into plain weight decay, which does not zero whole groups.
Wen et al. add the group-lasso subgradient inside the solver; as a loss term autograd gives the same
gradient, ``w_g / ||w_g||`` summed over the groups that contain w. Sparsity is made exact by the
``threshold:1e-4`` zeroing rule after every optimizer step (their "stabilizing sparsity").

``groups`` selects the structures: ``filter+channel`` (default), ``filter``, ``channel``, or ``shape``
(the filter-shape groups ``W[l][:, c, i, j]``, Wen et al.'s shape-wise sparsity).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import register_method
from .base import HparamsBase, Method, grad_of, option

GROUPS = ("filter+channel", "filter", "channel", "shape")


@register_method
class SSL(Method):
    name = "ssl"
    description = "SSL group lasso: filter-wise plus channel-wise l2 group norms of every conv"
    paper = "Wen et al. 2016, Learning Structured Sparsity in Deep Neural Networks (NIPS)"
    formula = "sum_l [ sum_f ||W[l][f]||_2 + channel_weight * sum_c ||W[l][:,c]||_2 ]"
    default_zeroing = "threshold:1e-4"
    closed_form_grad = True
    sweep_axis = "lam"
    default_grid = (0.003, 0.01, 0.03)

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        lam: float = option(0.01, "penalty strength: loss = task_loss + lam * group lasso", min=0.0)
        groups: str = option("filter+channel", "which groups: filter+channel, filter, channel or shape",
                             choices=GROUPS)
        channel_weight: float = option(1.0, "weight of the channel groups relative to the filter groups "
                                       "(lambda_c / lambda_n)", min=0.0)
        eps: float = option(1e-8, "added under each group's square root", min=0.0)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        hp = self.hparams
        return self.layer_sum(model, lambda _, conv: group_lasso(conv.weight, hp.groups, hp.channel_weight, hp.eps))

    @torch.no_grad()
    def add_penalty_grad(self, model: nn.Module, weight: float) -> None:
        hp = self.hparams
        for _, conv in self.eligible(model):
            w = conv.weight
            grad_of(w).addcmul_(w, group_lasso_coef(w, hp.groups, hp.channel_weight, hp.eps), value=weight)


def group_lasso_coef(weight: torch.Tensor, groups: str = "filter+channel", channel_weight: float = 1.0,
                     eps: float = 1e-8) -> torch.Tensor:
    """The group lasso's gradient is ``weight * coef``: the sum over the groups holding a weight of one over
    the group's norm (times ``channel_weight`` for channel groups). Shaped to broadcast against the weight."""
    sq = weight.square()
    if groups == "shape":
        return torch.rsqrt(sq.sum(dim=0, keepdim=True) + eps)
    coef = None
    if groups in ("filter+channel", "filter"):   # (reductions written in the order that is fast on CPU)
        coef = torch.rsqrt(torch.linalg.vector_norm(weight.flatten(1), dim=1).square_().add_(eps)).view(-1, 1, 1, 1)
    if groups in ("filter+channel", "channel"):
        channel = torch.rsqrt(sq.sum(0).flatten(1).sum(1) + eps).mul_(channel_weight).view(1, -1, 1, 1)
        coef = channel if coef is None else coef + channel
    return coef


def group_lasso(weight: torch.Tensor, groups: str = "filter+channel", channel_weight: float = 1.0,
                eps: float = 1e-8) -> torch.Tensor:
    """The SSL group lasso of one conv weight (F, C, kh, kw), vectorised over its groups."""
    sq = weight.square()
    total = weight.new_zeros(())
    if groups in ("filter+channel", "filter"):
        total = total + torch.sqrt(sq.sum(dim=(1, 2, 3)) + eps).sum()
    if groups in ("filter+channel", "channel"):
        total = total + channel_weight * torch.sqrt(sq.sum(dim=(0, 2, 3)) + eps).sum()
    if groups == "shape":
        total = total + torch.sqrt(sq.sum(dim=0) + eps).sum()
    return total
