"""``ssl``: Structured Sparsity Learning, group lasso on conv filters and channels.

Wen, Wu, Wang, Chen, Li, "Learning Structured Sparsity in Deep Neural Networks", NIPS 2016. For every
unit of coupled channels (``methods/groups.py``; on most layers one conv with weight W of shape (F, C, kh, kw)):

    penalty = sum_l [ sum_f ||W[l][f]||_2 + channel_weight * sum_c ||W[l][:, c]||_2 ]

with each group norm ``sqrt(sum w**2 + eps)`` (eps = 1e-8 keeps the gradient finite at zero). The square
root is kept: dropping it turns group lasso into plain weight decay, which does not zero whole groups.
Wen et al. add the group-lasso subgradient inside the solver; as a loss term autograd gives the same
gradient, ``w_g / ||w_g||`` summed over the groups that contain w. Sparsity is made exact by the
``threshold:1e-4`` zeroing rule after every optimizer step (their "stabilizing sparsity").

A filter group is all weights of a group of coupled channels (for a single conv: the filter ``W[l][f]``);
channel and shape groups are each member conv's own. ``groups`` selects the structures: ``filter+channel`` (default), ``filter``, ``channel``, or ``shape``
(the filter-shape groups ``W[l][:, c, i, j]``, Wen et al.'s shape-wise sparsity).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import register_method
from .base import HparamsBase, Method, MethodState, option
from .groups import Unit, filter_norms, is_depthwise

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
        return self.layer_sum(model, lambda unit: unit_group_lasso(unit, hp.groups, hp.channel_weight, hp.eps))

    @torch.no_grad()
    def importance(self, model: nn.Module, state: MethodState) -> dict[str, torch.Tensor]:
        """Its filter groups' l2 norms (the groups the lasso drives to zero), each unit over its mean."""
        units = {unit.name: unit for unit in self.units(model)}
        return {layer: filter_norms(units[layer], lambda rows: rows.norm(dim=1)).float() for layer in state.layers}

    @torch.no_grad()
    def add_penalty_grad(self, model: nn.Module, weight: float) -> None:
        hp = self.hparams
        for unit in self.units(model):
            members = unit.weights()
            if len(members) == 1:
                coefs = [group_lasso_coef(members[0][1], hp.groups, hp.channel_weight, hp.eps)]
            else:
                coefs = unit_group_lasso_coefs(unit, hp.groups, hp.channel_weight, hp.eps)
            for (part, w), coef in zip(members, coefs):
                grad = unit.grad_rows(part)
                grad.addcmul_(w, coef, value=weight)


def unit_group_lasso(unit: Unit, groups: str = "filter+channel", channel_weight: float = 1.0,
                     eps: float = 1e-8) -> torch.Tensor:
    """The SSL group lasso of one unit: a filter group is all weights of a group of coupled channels (every
    member conv's filter at that channel), channel and shape groups are each member conv's own (a depthwise
    member has none: its only input channel is the group's)."""
    members = unit.weights()
    if len(members) == 1:
        return group_lasso(members[0][1], groups, channel_weight, eps)
    total = members[0][1].new_zeros(())
    if groups in ("filter+channel", "filter"):
        sq = sum(w.square().flatten(1).sum(1) for _, w in members)
        total = total + torch.sqrt(sq + eps).sum()
    for part, w in members:
        if is_depthwise(part.module):
            continue
        if groups in ("filter+channel", "channel"):
            total = total + channel_weight * torch.sqrt(w.square().sum(dim=(0, 2, 3)) + eps).sum()
        if groups == "shape":
            total = total + torch.sqrt(w.square().sum(dim=0) + eps).sum()
    return total


def unit_group_lasso_coefs(unit: Unit, groups: str = "filter+channel", channel_weight: float = 1.0,
                           eps: float = 1e-8) -> list[torch.Tensor]:
    """:func:`group_lasso_coef` for each member of a unit of several convs (gradient = rows * coef)."""
    members = unit.weights()
    filt = None
    if groups in ("filter+channel", "filter"):
        sq = sum(w.square().flatten(1).sum(1) for _, w in members)
        filt = torch.rsqrt(sq + eps).view(-1, 1, 1, 1)
    out = []
    for part, w in members:
        coef = filt if filt is not None else torch.zeros((), device=w.device, dtype=w.dtype)
        if not is_depthwise(part.module):
            if groups in ("filter+channel", "channel"):
                coef = coef + torch.rsqrt(w.square().sum(0).flatten(1).sum(1) + eps).mul_(channel_weight).view(1, -1, 1, 1)
            if groups == "shape":
                coef = coef + torch.rsqrt(w.square().sum(dim=0, keepdim=True) + eps)
        out.append(coef)
    return out


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
