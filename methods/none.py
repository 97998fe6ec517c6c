"""``none``: the true baseline. No penalty and, by default, no zeroing."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import register_method
from .base import HparamsBase, Method


@register_method
class NoPenalty(Method):
    name = "none"
    description = "baseline: task loss only, no penalty, no zeroing"
    paper = "-"
    formula = "0"
    default_zeroing = "none"
    sweep_axis = None

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        pass

    @property
    def has_penalty(self) -> bool:
        return False

    def penalty(self, model: nn.Module) -> torch.Tensor:
        param = next(model.parameters(), None)
        return torch.zeros((), device=param.device if param is not None else None)
