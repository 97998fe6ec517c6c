"""Per-epoch measurements: alive filters, sparsity, structural parameters and FLOPs, accuracy.

Structural counts are those of the network with removed filters physically deleted: a removed filter
takes with it its bias, its BatchNorm channel and the matching input channel of the next layer (for a
linear layer after a flatten, the H*W input features of that channel).

FLOPs follow torch's ``FlopCounterMode`` convention, so they equal what it measures on the compact
model: 2 per multiply-accumulate of convolutions and linear layers, for one input example, forward
pass. Bias additions, BatchNorm, pooling and activations are not counted.

Parameters count every trainable parameter of the compact network (conv and linear weights and biases,
BatchNorm weight and bias); BatchNorm running statistics are buffers, not parameters.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from methods.base import eval_mode

from .names import FILTERS_ALIVE, FLOPS, FLOPS_REDUCTION, PARAMS, PARAMS_REDUCTION, SPARSITY, TOTAL_SPARSITY
from .structure import Structure, counts, removed_groups


def alive_filters(structure: Structure, removed: dict[str, torch.Tensor] | None = None) -> dict[str, int]:
    """Alive filters (output channels) of every conv of a prunable unit, by conv name, model order."""
    removed = {u.name: removed_groups(u) for u in structure.units} if removed is None else removed
    out: dict[str, int] = {}
    for unit in structure.units:
        alive = unit.size - int(removed[unit.name].sum())
        for part in unit.layers:
            out[part.name] = out.get(part.name, 0) + alive
    return out


def filter_metrics(structure: Structure) -> dict[str, float]:
    """Alive filters and sparsity per conv, total filter sparsity, structural params and FLOPs."""
    removed = {u.name: removed_groups(u) for u in structure.units}
    alive = alive_filters(structure, removed)
    total = structure.filters()
    out: dict[str, float] = {}
    for name in alive:
        out[FILTERS_ALIVE.format(name)] = alive[name]
        out[SPARSITY.format(name)] = 1.0 - alive[name] / total[name]
    out[TOTAL_SPARSITY] = 1.0 - sum(alive.values()) / sum(total.values()) if total else 0.0
    out[PARAMS], out[FLOPS] = counts(structure, removed)
    dense_params, dense_flops = counts(structure, {})
    out[PARAMS_REDUCTION] = 1.0 - out[PARAMS] / dense_params if dense_params else 0.0
    out[FLOPS_REDUCTION] = 1.0 - out[FLOPS] / dense_flops if dense_flops else 0.0
    return out


def removed_fractions(structure: Structure, removed: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The fractions removed when ``removed`` (a boolean vector per unit; a unit left out loses nothing) are gone:
    ``total_sparsity``, ``flops_reduction`` and ``params_reduction``, as :func:`filter_metrics` counts them."""
    removed = {u.name: removed.get(u.name, torch.zeros(u.size, dtype=torch.bool)) for u in structure.units}
    alive = alive_filters(structure, removed)
    total = structure.filters()
    params, flops = counts(structure, removed)
    dense_params, dense_flops = counts(structure, {})
    return {TOTAL_SPARSITY: 1.0 - sum(alive.values()) / sum(total.values()) if total else 0.0,
            FLOPS_REDUCTION: 1.0 - flops / dense_flops if dense_flops else 0.0,
            PARAMS_REDUCTION: 1.0 - params / dense_params if dense_params else 0.0}


def reachable(structure: Structure, max_layer_ratio: float | None = None) -> dict[str, float]:
    """The most of each target kind a trial can remove: every unit keeps one group (the last alive group of a
    layer is never removed), and with ``max_layer_ratio`` (prune-to-target's bound) gives at most
    ``floor(max_layer_ratio * size)`` groups. Keys: ``total_sparsity``, ``flops_reduction``, ``params_reduction``."""
    def most(size: int) -> int:
        return size - 1 if max_layer_ratio is None else min(math.floor(max_layer_ratio * size), size - 1)

    return removed_fractions(structure, {u.name: torch.arange(u.size) < most(u.size) for u in structure.units})


def _first_removed(structure: Structure, alive: Mapping[str, int]) -> dict[str, torch.Tensor]:
    return {u.name: torch.arange(u.size) >= alive.get(u.name, u.size) for u in structure.units}


def structural_params(structure: Structure, alive: Mapping[str, int]) -> int:
    """Trainable parameters of the network whose units keep ``alive[unit]`` groups (which ones does not matter)."""
    return counts(structure, _first_removed(structure, alive))[0]


def structural_flops(structure: Structure, alive: Mapping[str, int]) -> int:
    """Forward FLOPs per example of the network whose units keep ``alive[unit]`` groups."""
    return counts(structure, _first_removed(structure, alive))[1]


@torch.no_grad()
def accuracy(model: nn.Module, batches) -> float:
    """Top-1 accuracy over an iterable of (inputs, labels) batches, in eval mode."""
    correct = None  # accumulated on the device: one host sync at the end, not one per batch
    seen = 0
    with eval_mode(model):
        for x, y in batches:
            hits = (model(x).argmax(1) == y).sum()
            correct = hits if correct is None else correct + hits
            seen += y.numel()
    return float(correct) / seen if seen else 0.0
