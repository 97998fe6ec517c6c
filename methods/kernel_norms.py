"""The kernel pseudo-norm vector N of Berthelier et al. 2020 (eqs. 2-4), shared by l1, l2 and l1l2.

``n[l][f] = sum(|W[l][f]|) / F_l`` (``norm_scale="filters"``, eq. 2) or the plain l1 norm of the filter
(``norm_scale="none"``, what the paper used for VGG11). N is the concatenation over eligible layers.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .base import eligible_convs, grad_of

NORM_SCALES = ("filters", "none")


def layer_kernel_norms(weight: torch.Tensor, norm_scale: str = "filters") -> torch.Tensor:
    """Per-filter pseudo-norms of one conv weight of shape (F, C, kh, kw): a vector of length F."""
    norms = weight.abs().flatten(1).sum(dim=1)
    if norm_scale == "filters":
        norms = norms / weight.shape[0]
    elif norm_scale != "none":
        raise ValueError(f"norm_scale must be one of {NORM_SCALES}, got {norm_scale!r}")
    return norms


def kernel_norm_vector(model: nn.Module, norm_scale: str = "filters",
                       convs: list[tuple[str, nn.Conv2d]] | None = None) -> torch.Tensor:
    """N: the per-filter pseudo-norms of every eligible conv layer, concatenated in model order (``convs``:
    the model's eligible convs when the caller already has them)."""
    convs = eligible_convs(model) if convs is None else convs
    if not convs:
        raise ValueError(f"{type(model).__name__} has no eligible Conv2d layer to regularize")
    return norms_of(convs, norm_scale)


def norms_of(convs: list[tuple[str, nn.Conv2d]], norm_scale: str = "filters") -> torch.Tensor:
    """The pseudo-norms of the filters of ``convs``, concatenated in their order."""
    return torch.cat([layer_kernel_norms(m.weight, norm_scale) for _, m in convs])


@torch.no_grad()
def add_kernel_norm_grad(convs: list[tuple[str, nn.Conv2d]], norm_scale: str,
                         dpenalty_dn: Callable[[torch.Tensor], torch.Tensor], weight: float) -> None:
    """Add ``weight * dP/dW`` to each conv's weight gradient for a penalty P(N) of the kernel pseudo-norms:
    ``dP/dW[l][f] = dP/dN[l][f] * sign(W[l][f]) / F_l`` (``/ F_l`` with eq. 2's scaling only). ``dpenalty_dn``
    maps N to dP/dN. One pass over each weight (sign and a fused multiply-add)."""
    coef = dpenalty_dn(norms_of(convs, norm_scale)).mul_(weight)
    start = 0
    for _, conv in convs:
        w = conv.weight
        part = coef[start:start + w.shape[0]]
        start += w.shape[0]
        if norm_scale == "filters":
            part = part / w.shape[0]
        grad_of(w).addcmul_(torch.sign(w), part.view(-1, 1, 1, 1))
