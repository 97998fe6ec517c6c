"""``l0sgl``: l0 sparse group lasso by variable splitting and hard thresholding.

Bui, Park, Hoang, Chen, Shen, Zhang, "l0 Regularized Structured Sparsity Convolutional Neural Networks",
arXiv 1912.07868 (2019). The groups are the conv filters, each weighted by the square root of its size
``|g| = C_l * kh * kw``. With an auxiliary copy U of the conv weights the objective is

    L(W) + lam * sum_g sqrt(|g|) * ||W_g||_2 + (beta / 2) * ||W - U||^2     (+ lam0 * ||U||_0)

minimised alternately: an SGD step on W, then the exact minimiser over U, the hard threshold
``U = W * (|W| > sqrt(2 * lam0 / beta))`` (:func:`hard_threshold`), after every step. beta grows by
``beta_growth`` every ``beta_every`` epochs, pulling W towards its sparse copy.

The network that is evaluated (and measured, and compacted) is U: at the end of every epoch the convs'
weights are swapped for U, filters whose U is entirely zero are removed through the masks (bias and BN
channel too, frozen from then on), and W comes back at the start of the next epoch (with removed filters
zero). ``lam`` (the group lasso) and ``beta`` both act inside ``penalty``, so ``penalty_weight`` is 1 and
the logged ``penalty`` is ``lam * group lasso + beta / 2 * ||W - U||^2`` (the second term is 0 at the
end of an epoch, where W is U).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .registry import register_method
from .base import HparamsBase, Method, MethodState, option
from .groups import Unit, filter_norms


@register_method
class L0SGL(Method):
    name = "l0sgl"
    description = "l0 sparse group lasso: filter group lasso + l0 by variable splitting, hard-thresholded copy U"
    paper = "Bui et al. 2019, l0 Regularized Structured Sparsity Convolutional Neural Networks (arXiv 1912.07868)"
    formula = "lam * sum_g sqrt(|g|) ||W_g||_2 + beta/2 ||W - U||^2, U = W * (|W| > sqrt(2 lam0 / beta))"
    default_zeroing = "none"   # filters whose hard-thresholded copy is all zero are removed by the method
    closed_form_grad = True
    sweep_axis = "lam"
    default_grid = (1.5e-4, 5e-4, 2e-3)

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        lam: float = option(5e-4, "group lasso strength: lam * sum over filters of sqrt(|g|) * ||W_g||_2", min=0.0)
        lam0: float = option(1e-5, "l0 strength; the hard threshold is sqrt(2 * lam0 / beta)", min=0.0)
        beta: float = option(1.0, "initial weight of the splitting term beta / 2 * ||W - U||^2", open_min=0.0)
        beta_growth: float = option(1.25, "beta is multiplied by this every beta_every epochs", min=1.0)
        beta_every: int = option(40, "epochs between two increases of beta", min=1)
        eps: float = option(1e-8, "added under each group's square root (finite gradient at zero)", min=0.0)

    def __init__(self, hparams: HparamsBase | None = None, **options: Any) -> None:
        super().__init__(hparams, **options)
        self.beta = self.hparams.beta
        self._u: dict[str, torch.Tensor] = {}      # the hard-thresholded copies, by conv name
        self._w: dict[str, torch.Tensor] = {}      # W kept aside while the convs hold U (end of epoch)

    def state_dict(self) -> dict[str, Any]:
        """beta (grown every beta_every epochs), the hard-thresholded copies U and, between an epoch's end and
        the next one's start, the weights W set aside while the convs hold U."""
        return {"beta": self.beta, "u": dict(self._u), "w": dict(self._w)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])
        self._u = dict(state["u"])
        self._w = dict(state["w"])

    @property
    def penalty_weight(self) -> float:
        return 1.0

    @property
    def threshold(self) -> float:
        return math.sqrt(2.0 * self.hparams.lam0 / self.beta)

    def _copy(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        u = self._u.get(name)
        if u is None or u.shape != weight.shape or u.device != weight.device:
            u = self._u[name] = hard_threshold(weight.detach(), self.threshold)
        return u

    def _member_weights(self, model: nn.Module) -> list[tuple[str, torch.Tensor]]:
        """Every member conv's weight (an attention's in_proj_weight), once (U is kept per conv)."""
        return list({p.name: p.weight for unit in self.units(model) for p in unit.convs}.items())

    def penalty(self, model: nn.Module) -> torch.Tensor:
        hp = self.hparams

        def term(unit: Unit) -> torch.Tensor:
            split = sum((w - unit._rows(p, self._copy(p.name, p.weight))).square().sum()
                        for p, w in unit.weights())
            return hp.lam * unit_weighted_group_lasso(unit, hp.eps) + 0.5 * self.beta * split

        return self.layer_sum(model, term)

    @torch.no_grad()
    def add_penalty_grad(self, model: nn.Module, weight: float) -> None:
        # d/dW: lam * sqrt(|g|) * W_g / sqrt(||W_g||^2 + eps) + beta * (W - U)
        hp = self.hparams
        for unit in self.units(model):
            members = unit.weights()
            size = sum(w[0].numel() for _, w in members)
            sq = None
            for _, w in members:
                norm = torch.linalg.vector_norm(w.flatten(1), dim=1).square_()
                sq = norm if sq is None else sq.add_(norm)
            coef = torch.rsqrt(sq.add_(hp.eps)).mul_(hp.lam * math.sqrt(size)).add_(self.beta)
            for part, w in members:
                grad = unit.grad_rows(part)
                u = unit._rows(part, self._copy(part.name, part.weight))
                grad.addcmul_(w, coef.view(-1, *([1] * (w.dim() - 1))), value=weight).add_(u, alpha=-weight * self.beta)

    @torch.no_grad()
    def importance(self, model: nn.Module, state: MethodState) -> dict[str, torch.Tensor]:
        """Its filter groups' l2 norms (the weighted group lasso's groups), each unit over its mean."""
        units = {unit.name: unit for unit in self.units(model)}
        return {layer: filter_norms(units[layer], lambda rows: rows.norm(dim=1)).float() for layer in state.layers}

    @torch.no_grad()
    def after_step(self, model: nn.Module, state: MethodState) -> None:
        t = self.threshold
        for name, weight in self._member_weights(model):
            torch.hardshrink(weight, t, out=self._copy(name, weight))

    @torch.no_grad()
    def on_epoch_end(self, model: nn.Module, state: MethodState) -> None:
        for name, weight in self._member_weights(model):
            self._w[name] = weight.detach().clone()
            weight.copy_(self._copy(name, weight))
        for unit in self.units(model):
            empty = None
            for part, _ in unit.weights():
                rows = unit._rows(part, self._u[part.name]).flatten(1).abs().amax(1) == 0
                empty = rows if empty is None else empty & rows
            state.remove(unit.name, empty)

    @torch.no_grad()
    def on_epoch_start(self, model: nn.Module, state: MethodState) -> None:
        if state.epoch > 1 and (state.epoch - 1) % self.hparams.beta_every == 0:
            self.beta *= self.hparams.beta_growth
        restored = {}
        for name, weight in self._member_weights(model):
            w = self._w.pop(name, None)
            if w is not None:
                weight.copy_(w)
                restored[name] = weight
        for unit in self.units(model):   # removed groups stay zero
            alive = state.alive(unit.name)
            for part, w in unit.weights():
                if part.name in restored:
                    w.mul_(alive.to(w.dtype).view(-1, *([1] * (w.dim() - 1))))


def hard_threshold(weight: torch.Tensor, threshold: float) -> torch.Tensor:
    """``weight`` with every entry of magnitude <= ``threshold`` set to zero (the l0 proximal step)."""
    return torch.hardshrink(weight, threshold)


def weighted_group_lasso(weight: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """sum over filters f of sqrt(|g|) * sqrt(||W[f]||^2 + eps), |g| = C * kh * kw, vectorised."""
    size = weight[0].numel()
    return math.sqrt(size) * torch.sqrt(weight.square().flatten(1).sum(1) + eps).sum()


def unit_weighted_group_lasso(unit: Unit, eps: float = 1e-8) -> torch.Tensor:
    """:func:`weighted_group_lasso` over a unit's groups: a group is every member conv's filter at that channel,
    |g| the number of their weights."""
    members = unit.weights()
    if len(members) == 1:
        return weighted_group_lasso(members[0][1], eps)
    size = sum(w[0].numel() for _, w in members)
    sq = sum(w.square().flatten(1).sum(1) for _, w in members)
    return math.sqrt(size) * torch.sqrt(sq + eps).sum()
