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

from typing import Mapping

import torch
from torch import nn

from methods.base import eval_mode

from .models import LayerInfo, Structure
from .names import FILTERS_ALIVE, FLOPS, PARAMS, SPARSITY, TOTAL_SPARSITY


@torch.no_grad()
def removed_filters(info: LayerInfo) -> torch.Tensor:
    """Boolean vector over a conv's filters: True where the filter is removed (all its values zero)."""
    conv = info.module
    zero = conv.weight.flatten(1).abs().amax(1) == 0
    if conv.bias is not None:
        zero &= conv.bias == 0
    if info.bn is not None and info.bn.affine:
        zero &= (info.bn.weight == 0) & (info.bn.bias == 0)
    return zero


def alive_filters(structure: Structure) -> dict[str, int]:
    """Alive filters of every eligible conv layer, by layer name."""
    return {name: int((~removed_filters(structure.by_name[name])).sum()) for name in structure.eligible}


def widths_of(info: LayerInfo, alive: Mapping[str, int]) -> tuple[int, int]:
    """(inputs, outputs) of a conv or linear layer after physical removal: input channels (or features) and
    filters (or units)."""
    m = info.module
    cin = m.in_channels if info.kind == "conv" else m.in_features
    cout = m.out_channels if info.kind == "conv" else m.out_features
    if info.source is not None:
        cin = alive[info.source] * info.per_channel
    if info.kind == "conv" and info.name in alive:
        cout = alive[info.name]
    return cin, cout


def _layer_counts(structure: Structure, alive: Mapping[str, int]):
    """(params, FLOPs) of every conv and linear layer after physical removal of removed filters."""
    for info in structure.layers:
        cin, cout = widths_of(info, alive)
        m = info.module
        if info.kind == "conv":
            kh, kw = m.kernel_size
            macs_per_position = cout * (cin // m.groups) * kh * kw
            params = macs_per_position + (cout if m.bias is not None else 0)
            if info.bn is not None and info.bn.affine:
                params += 2 * cout
            yield params, 2 * macs_per_position * info.out_hw
        else:
            yield cout * cin + (cout if m.bias is not None else 0), 2 * cout * cin


def structural_params(structure: Structure, alive: Mapping[str, int]) -> int:
    """Trainable parameters of the network with removed filters deleted."""
    return sum(params for params, _ in _layer_counts(structure, alive))


def structural_flops(structure: Structure, alive: Mapping[str, int]) -> int:
    """Forward FLOPs for one example of the network with removed filters deleted (FlopCounterMode's count)."""
    return sum(flops for _, flops in _layer_counts(structure, alive))


def all_filters(structure: Structure) -> dict[str, int]:
    return {name: structure.by_name[name].module.out_channels for name in structure.eligible}


def filter_metrics(structure: Structure) -> dict[str, float]:
    """Alive filters and sparsity per layer, total filter sparsity, structural params and FLOPs."""
    alive = alive_filters(structure)
    total = all_filters(structure)
    out: dict[str, float] = {}
    for name in structure.eligible:
        out[FILTERS_ALIVE.format(name)] = alive[name]
        out[SPARSITY.format(name)] = 1.0 - alive[name] / total[name]
    out[TOTAL_SPARSITY] = 1.0 - sum(alive.values()) / sum(total.values())
    out[PARAMS] = structural_params(structure, alive)
    out[FLOPS] = structural_flops(structure, alive)
    return out


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
