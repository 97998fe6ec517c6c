"""``none``: the true baseline. No penalty and, by default, no zeroing."""
from __future__ import annotations

from dataclasses import dataclass

from .registry import register_method
from .base import HparamsBase, PostHocMethod


@register_method
class NoPenalty(PostHocMethod):
    name = "none"
    description = "baseline: task loss only, no penalty, no zeroing"
    paper = "-"
    formula = "0"
    default_zeroing = "none"
    reference = True   # under --protocol prune-to-target: the dense model of each seed, never pruned

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        pass

