"""The kernel pseudo-norm vector N of Berthelier et al. 2020 (eqs. 2-4), shared by l1, l2 and l1l2.

``n[l][f] = sum(|W[l][f]|) / F_l`` (``norm_scale="filters"``, eq. 2) or the plain l1 norm of the filter
(``norm_scale="none"``, what the paper used for VGG11). N is the concatenation over units of their groups'
pseudo-norms; a group of coupled channels is scored by the mean over its filters (``methods/groups.py``), so on a
model without coupled channels N is exactly the paper's vector.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .base import eligible_convs
from .groups import Unit, kernel_norms, single_units

NORM_SCALES = ("filters", "none")


def layer_kernel_norms(weight: torch.Tensor, norm_scale: str = "filters") -> torch.Tensor:
    """Per-filter pseudo-norms of one conv weight of shape (F, C, kh, kw): a vector of length F."""
    norms = weight.abs().flatten(1).sum(dim=1)
    if norm_scale == "filters":
        norms = norms / weight.shape[0]
    elif norm_scale != "none":
        raise ValueError(f"norm_scale must be one of {NORM_SCALES}, got {norm_scale!r}")
    return norms


def kernel_norm_vector(model: nn.Module, norm_scale: str = "filters", units: Sequence[Unit] | None = None
                       ) -> torch.Tensor:
    """N: the per-group pseudo-norms of every unit, concatenated in model order (``units``: the model's units
    when the caller already has them; else one unit per eligible conv)."""
    units = single_units(model, eligible_convs(model)) if units is None else units
    if not units:
        raise ValueError(f"{type(model).__name__} has no eligible Conv2d layer to regularize")
    return norms_of(units, norm_scale)


def norms_of(units: Sequence[Unit], norm_scale: str = "filters") -> torch.Tensor:
    """The pseudo-norms of the groups of ``units``, concatenated in their order."""
    return torch.cat([kernel_norms(unit, norm_scale) for unit in units])


@torch.no_grad()
def add_kernel_norm_grad(units: Sequence[Unit], norm_scale: str,
                         dpenalty_dn: Callable[[torch.Tensor], torch.Tensor], weight: float) -> None:
    """Add ``weight * dP/dW`` to each member conv's weight gradient for a penalty P(N) of the pseudo-norms:
    ``dP/dW[k][g] = dP/dN[g] * sign(W[k][g]) / F_k / filters`` (``/ F_k`` with eq. 2's scaling only, ``/ filters``
    for coupled groups only). ``dpenalty_dn`` maps N to dP/dN. One pass over each weight (sign and a fused
    multiply-add)."""
    coef = dpenalty_dn(norms_of(units, norm_scale)).mul_(weight)
    start = 0
    for unit in units:
        part_coef = coef[start:start + unit.size]
        start += unit.size
        if unit.filters > 1:
            part_coef = part_coef / unit.filters
        for part, w in unit.weights():
            c = part_coef / part.layer_groups if norm_scale == "filters" else part_coef
            grad = unit.grad_rows(part)
            grad.addcmul_(torch.sign(w), c.view(-1, *([1] * (w.dim() - 1))))
