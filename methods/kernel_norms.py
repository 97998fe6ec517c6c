"""The kernel pseudo-norm vector N of Berthelier et al. 2020 (eqs. 2-4), shared by l1, l2 and l1l2.

``n[l][f] = sum(|W[l][f]|) / F_l`` (``norm_scale="filters"``, eq. 2) or the plain l1 norm of the filter
(``norm_scale="none"``, what the paper used for VGG11). N is the concatenation over eligible layers.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import eligible_convs

NORM_SCALES = ("filters", "none")


def layer_kernel_norms(weight: torch.Tensor, norm_scale: str = "filters") -> torch.Tensor:
    """Per-filter pseudo-norms of one conv weight of shape (F, C, kh, kw): a vector of length F."""
    norms = weight.abs().flatten(1).sum(dim=1)
    if norm_scale == "filters":
        norms = norms / weight.shape[0]
    elif norm_scale != "none":
        raise ValueError(f"norm_scale must be one of {NORM_SCALES}, got {norm_scale!r}")
    return norms


def kernel_norm_vector(model: nn.Module, norm_scale: str = "filters") -> torch.Tensor:
    """N: the per-filter pseudo-norms of every eligible conv layer, concatenated in model order."""
    convs = eligible_convs(model)
    if not convs:
        raise ValueError(f"{type(model).__name__} has no eligible Conv2d layer to regularize")
    return torch.cat([layer_kernel_norms(m.weight, norm_scale) for _, m in convs])
