"""A stand-in for the trainer's state over real filter masks, for testing a method's hooks on crafted models.

It implements ``methods.base.MethodState``: CI's mypy run checks this file (``as_method_state``), so a change to
the protocol that the stand-in does not follow fails there, as it would for the trainer's ``TrialState``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.structure import derive as describe
from bench.zeroing import FilterMasks
from methods.base import Method, MethodState


class State:
    """The trainer's state for hooks: real masks on ``model``, a fixed ``batch`` for draws and evaluation."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int],
                 batch: tuple[torch.Tensor, torch.Tensor] | None = None, epoch: int = 1, epochs: int = 10,
                 method: Method | None = None, seed: int = 0, structure=None) -> None:
        self.masks = FilterMasks(structure if structure is not None else describe(model, input_shape))
        if method is not None:   # as the trainer does: the method works on the structure's units
            method.bind(self.masks.structure.units)
        self.input_shape = tuple(input_shape)
        self.epoch, self.epochs = epoch, epochs
        self.seed = seed
        self.batch = batch
        self.logged: dict[str, float] = {}
        self.model = model

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.masks.layers)

    def remove(self, layer: str, filters: Sequence[int] | torch.Tensor) -> list[int]:
        return self.masks.remove(layer, filters)

    def alive(self, layer: str) -> torch.Tensor:
        return self.masks.alive(layer)

    def filter_parameters(self, layer: str) -> Sequence[torch.Tensor]:
        return self.masks.parameters(layer)

    def draw_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch is None:
            raise RuntimeError("this stand-in was built without a batch")
        return self.batch

    def evaluate(self) -> float:
        x, y = self.draw_batch(len(self.batch[1]) if self.batch is not None else 0)
        with torch.no_grad():
            return float((self.model(x).argmax(1) == y).float().mean())

    def log(self, **values: float) -> None:
        self.logged.update(values)


def as_method_state(state: State) -> MethodState:
    """Statically, a State is a MethodState (mypy checks this assignment)."""
    return state
