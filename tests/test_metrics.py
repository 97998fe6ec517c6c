"""Structural parameters and FLOPs with removed filters deleted, against hand counts and FlopCounterMode."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import metrics as M
from bench import names as N
from bench.models import build_model
from bench.structure import derive as describe
from bench.zeroing import FilterMasks


def measured_flops(model, input_shape) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops()


def test_lenet_dense_counts_by_hand():
    model = build_model("lenet5", (1, 28, 28), 10)
    s = describe(model, (1, 28, 28))
    m = M.filter_metrics(s)
    # conv1 20@5x5 on 1 channel, conv2 50@5x5 on 20, fc1 800 -> 500, fc2 500 -> 10
    assert m[N.PARAMS] == (20 * 25 + 20) + (50 * 20 * 25 + 50) + (800 * 500 + 500) + (500 * 10 + 10) == 431080
    # conv1 out 24x24, conv2 out 8x8; 2 FLOPs per multiply-accumulate
    assert m[N.FLOPS] == 2 * (20 * 25 * 576 + 50 * 20 * 25 * 64 + 800 * 500 + 500 * 10)
    assert m[N.PARAMS] == sum(p.numel() for p in model.parameters())
    assert m[N.FLOPS] == measured_flops(model, (1, 28, 28))
    assert m[N.TOTAL_SPARSITY] == 0.0 and m["filters_alive/conv1"] == 20 and m["filters_alive/conv2"] == 50


def test_lenet_with_removed_filters_by_hand():
    model = build_model("lenet5", (1, 28, 28), 10)
    s = describe(model, (1, 28, 28))
    masks = FilterMasks(s)
    masks.remove("conv1", [0, 3, 7])      # 17 left
    masks.remove("conv2", [1, 2])         # 48 left
    m = M.filter_metrics(s)
    assert m["filters_alive/conv1"] == 17 and m["filters_alive/conv2"] == 48
    assert m["sparsity/conv1"] == pytest.approx(3 / 20) and m["sparsity/conv2"] == pytest.approx(2 / 50)
    assert m[N.TOTAL_SPARSITY] == pytest.approx(5 / 70)
    # a removed conv1 filter also deletes conv2's input channel; a removed conv2 filter deletes 4x4 fc1 inputs
    params = (17 * 25 + 17) + (48 * 17 * 25 + 48) + (48 * 16 * 500 + 500) + (500 * 10 + 10)
    flops = 2 * (17 * 25 * 576 + 48 * 17 * 25 * 64 + 48 * 16 * 500 + 500 * 10)
    assert m[N.PARAMS] == params == 410400
    assert m[N.FLOPS] == flops == 3878800
    # the same network built narrow has exactly these counts
    narrow = build_model("lenet5", (1, 28, 28), 10, widths=(17, 48))
    assert sum(p.numel() for p in narrow.parameters()) == params
    assert measured_flops(narrow, (1, 28, 28)) == flops


def test_vgg11_counts_agree_with_a_narrow_vgg11():
    model = build_model("vgg11", (3, 32, 32), 10)
    s = describe(model, (3, 32, 32))
    dense = M.filter_metrics(s)
    assert dense[N.PARAMS] == sum(p.numel() for p in model.parameters())
    assert dense[N.FLOPS] == measured_flops(model, (3, 32, 32))
    masks = FilterMasks(s)
    removed = {"conv1": 10, "conv2": 1, "conv4": 100, "conv8": 511}
    g = torch.Generator().manual_seed(0)
    for layer, k in removed.items():
        masks.remove(layer, torch.randperm(masks.mask(layer).numel(), generator=g)[:k])
    m = M.filter_metrics(s)
    widths = [w - removed.get(f"conv{i + 1}", 0) for i, w in enumerate(model.widths)]
    narrow = build_model("vgg11", (3, 32, 32), 10, widths=widths)
    assert m[N.PARAMS] == sum(p.numel() for p in narrow.parameters())
    assert m[N.FLOPS] == measured_flops(narrow, (3, 32, 32))
    assert m["filters_alive/conv8"] == 1
    assert m[N.TOTAL_SPARSITY] == pytest.approx(sum(removed.values()) / sum(model.widths))


def test_filter_with_zero_weights_but_live_bias_counts_as_alive():
    model = build_model("lenet5", (1, 28, 28), 10)
    s = describe(model, (1, 28, 28))
    with torch.no_grad():
        model.conv1.weight[4].zero_()
    assert M.alive_filters(s)["conv1"] == 20
    with torch.no_grad():
        model.conv1.bias[4] = 0.0
    assert M.alive_filters(s)["conv1"] == 19


def test_lenet_structure_on_cifar_shaped_inputs():
    model = build_model("lenet5", (3, 32, 32), 10)
    m = M.filter_metrics(describe(model, (3, 32, 32)))
    assert m[N.PARAMS] == sum(p.numel() for p in model.parameters())
    assert model.fc1.in_features == 50 * 5 * 5
    assert m[N.FLOPS] == measured_flops(model, (3, 32, 32))


def test_progress_lines_list_every_layer_of_a_small_model_and_only_the_thinned_ones_of_a_large_one():
    from bench import names as N

    small = {"filters_alive/conv1": 5, "sparsity/conv1": 0.75, "filters_alive/conv2": 50, "sparsity/conv2": 0.0}
    assert N.filters_line(small) == "conv1 5 conv2 50" and N.filters_line(small, "=") == "conv1=5 conv2=50"
    large = {}
    for i in range(20):
        large[f"filters_alive/l{i}"] = 8 if i in (2, 4, 6, 8, 10, 12, 14) else 10
        large[f"sparsity/l{i}"] = 0.2 if i in (2, 4, 6, 8, 10, 12, 14) else 0.0
    assert N.filters_line(large, "=") == "186 in 20 layers; thinned: l2=8 l4=8 l6=8 l8=8 l10=8 and 2 more"
    assert N.filters_line({k: (10 if k.startswith("filters") else 0.0) for k in large}) == "200 in 20 layers, none removed"
