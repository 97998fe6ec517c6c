"""Zeroing rules on crafted tensors; removed filters stay exactly zero; the last filter is kept."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.structure import derive as describe
from bench.zeroing import (Cumulative, FilterMasks, NoZeroing, Threshold, ZeroingSpecError, cumulative_selection,
                           parse_zeroing)


def _bools(*values):
    return torch.tensor(values, dtype=torch.bool)


def test_cumulative_selection_global():
    # total 10: shares 0.01 .02 | .03 .035 .005; ascending cumsum .005 .015 .035 .065 -> first three go
    norms = [torch.tensor([0.1, 5.0, 0.2]), torch.tensor([0.3, 4.0, 0.05, 0.35])]
    alive = [torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)]
    a, b = cumulative_selection(norms, alive, t=0.05)
    assert a.tolist() == [True, False, True]
    assert b.tolist() == [False, False, True, False]


def test_cumulative_selection_per_layer():
    # layer 1 total 5.3: .0189, .0377 -> cumsum .0566 > .05, only filter 0; layer 2 total 4.7: .0106, .0638
    norms = [torch.tensor([0.1, 5.0, 0.2]), torch.tensor([0.3, 4.0, 0.05, 0.35])]
    alive = [torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)]
    a, b = cumulative_selection(norms, alive, t=0.05, scope="layer")
    assert a.tolist() == [True, False, False]
    assert b.tolist() == [False, False, True, False]


def test_cumulative_ignores_removed_filters_when_normalising():
    # alive: 1, 2, 7 (total 10); the dead 90 must not dilute the shares: 0.1 -> removed, 0.2 -> cumsum .3 kept
    norms = [torch.tensor([1.0, 2.0, 90.0, 7.0])]
    a, = cumulative_selection(norms, [_bools(True, True, False, True)], t=0.15)
    assert a.tolist() == [True, False, False, False]


def test_cumulative_with_all_zero_norms_removes_nothing():
    a, = cumulative_selection([torch.zeros(3)], [torch.ones(3, dtype=torch.bool)], t=0.5)
    assert not a.any()


def two_conv_bn() -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 3, 3, padding=1)), ("bn1", nn.BatchNorm2d(3)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(3, 4, 3, padding=1)), ("bn2", nn.BatchNorm2d(4)), ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(4, 2)),
    ]))


def set_filter_norms(conv: nn.Conv2d, l1_norms):
    with torch.no_grad():
        for f, v in enumerate(l1_norms):
            conv.weight[f].fill_(v / conv.weight[f].numel())


def test_cumulative_rule_on_a_model_removes_weights_bias_and_bn_channel():
    model = two_conv_bn()
    structure = describe(model, (1, 6, 6))
    # N (eq. 2): conv1 [0.3, 30, 30]/3 = [.1, 10, 10]; conv2 [40, 0.4, 40, 40]/4 = [10, .1, 10, 10]; total 50.2
    set_filter_norms(model.conv1, [0.3, 30, 30])
    set_filter_norms(model.conv2, [40, 0.4, 40, 40])
    masks = FilterMasks(structure)
    Cumulative(0.01).on_epoch_end(masks)
    assert masks.alive("conv1").tolist() == [False, True, True]
    assert masks.alive("conv2").tolist() == [True, False, True, True]
    for conv, bn, f in ((model.conv1, model.bn1, 0), (model.conv2, model.bn2, 1)):
        assert conv.weight[f].abs().sum() == 0 and conv.bias[f] == 0
        assert bn.weight[f] == 0 and bn.bias[f] == 0
    assert model.conv1.weight[1].abs().sum() > 0 and model.bn1.weight[1] != 0


def test_last_filter_of_a_layer_is_kept():
    model = two_conv_bn()
    masks = FilterMasks(describe(model, (1, 6, 6)))
    # conv1 is negligible next to conv2 (global rule): all three fall under t, the strongest stays
    set_filter_norms(model.conv1, [0.001, 0.003, 0.002])
    set_filter_norms(model.conv2, [40, 40, 40, 40])
    Cumulative(0.01).on_epoch_end(masks)
    assert masks.alive("conv1").tolist() == [False, True, False]
    assert masks.remove("conv1", [1]) == []  # a direct request cannot empty the layer either
    assert masks.alive("conv1").sum() == 1


def test_removed_filter_stays_zero_through_20_sgd_steps_with_momentum():
    torch.manual_seed(0)
    model = two_conv_bn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    masks = FilterMasks(describe(model, (1, 6, 6)), optimizer)
    x, y = torch.randn(16, 1, 6, 6), torch.randint(0, 2, (16,))

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        masks.mask_grads()
        optimizer.step()
        masks.apply()

    for _ in range(5):  # build up momentum in every filter first
        step()
    assert optimizer.state[model.conv1.weight]["momentum_buffer"][1].abs().sum() > 0
    masks.remove("conv1", [1])
    masks.remove("conv2", [0, 3])
    for _ in range(20):
        step()
    for conv, bn, filters in ((model.conv1, model.bn1, [1]), (model.conv2, model.bn2, [0, 3])):
        for f in filters:
            assert torch.count_nonzero(conv.weight[f]) == 0
            assert conv.bias[f].item() == 0.0 and bn.weight[f].item() == 0.0 and bn.bias[f].item() == 0.0
            assert torch.count_nonzero(optimizer.state[conv.weight]["momentum_buffer"][f]) == 0
    assert torch.count_nonzero(model.conv1.weight[0]) > 0  # alive filters still train


@pytest.mark.parametrize("sync_free", [False, True])
def test_threshold_zeroes_small_weights_and_removes_empty_filters(sync_free):
    model = two_conv_bn()
    masks = FilterMasks(describe(model, (1, 6, 6)))
    rule = Threshold(1e-3, sync_free=sync_free)
    rule.prepare(masks)
    with torch.no_grad():
        model.conv1.weight.fill_(0.5)
        model.conv1.weight[0].fill_(1e-4)          # every weight small: filter removed
        model.conv1.weight[2, 0, 0, 0] = -5e-4     # one small weight: zeroed, filter kept
    rule.after_step(masks)
    masks.apply()  # as the trainer does after the rule
    assert masks.alive("conv1").tolist() == [False, True, True]
    assert model.conv1.weight[2, 0, 0, 0].item() == 0.0 and model.conv1.weight[2, 0, 0, 1].item() == 0.5
    assert model.conv1.bias[0].item() == 0.0 and model.bn1.weight[0].item() == 0.0


@pytest.mark.parametrize("sync_free", [False, True])
def test_threshold_keeps_the_strongest_filter_when_all_are_small(sync_free):
    model = two_conv_bn()
    masks = FilterMasks(describe(model, (1, 6, 6)))
    with torch.no_grad():
        model.conv1.weight.fill_(1e-5)
        model.conv1.weight[2].fill_(2e-5)
    rule = Threshold(1e-3, sync_free=sync_free)
    rule.prepare(masks)   # as the trainer does
    rule.after_step(masks)
    masks.apply()
    assert masks.alive("conv1").tolist() == [False, False, True]
    assert torch.count_nonzero(model.conv1.weight[2]) == model.conv1.weight[2].numel()
    assert torch.count_nonzero(model.conv1.weight[:2]) == 0 and model.bn1.weight[:2].abs().sum() == 0


@pytest.mark.parametrize("spec,expected", [
    ("none", NoZeroing()), ("cumulative:0.01", Cumulative(0.01)), ("cumulative:0.05:layer", Cumulative(0.05, "layer")),
    ("threshold:1e-4", Threshold(1e-4)), ("CUMULATIVE:0.02:global", Cumulative(0.02)),
])
def test_parse_zeroing(spec, expected):
    assert parse_zeroing(spec) == expected


@pytest.mark.parametrize("spec", ["", "cumulative", "cumulative:1.5", "cumulative:0", "cumulative:0.1:model",
                                  "threshold", "threshold:-1", "threshold:x", "l1", "none:3"])
def test_bad_zeroing_specs(spec):
    with pytest.raises(ZeroingSpecError):
        parse_zeroing(spec)


def test_cumulative_rule_follows_the_methods_norm_scale():
    """Layer a: 50 filters of l1 100; layer b: 2 filters of l1 20 and 100.

    norm_scale none: b[0]'s share is 20 / (5000 + 120) = 0.0039 <= 0.01, removed.
    norm_scale filters (eq. 2): (20/2) / (5000/50 + 120/2) = 10 / 160 = 0.0625, kept.
    """
    from methods import get_method

    def fresh():
        model = nn.Sequential(OrderedDict([("a", nn.Conv2d(1, 50, 1)), ("b", nn.Conv2d(50, 2, 1)),
                                           ("head", nn.Conv2d(2, 1, 1))]))   # the logits layer is never pruned
        set_filter_norms(model.a, [100.0] * 50)
        set_filter_norms(model.b, [20.0, 100.0])
        return FilterMasks(describe(model, (1, 2, 2)))

    for scale, expected in (("none", [False, True]), ("filters", [True, True])):
        method = get_method("l1l2")(norm_scale=scale)
        assert method.kernel_norm_scale == scale
        masks = fresh()
        parse_zeroing("cumulative:0.01", method.kernel_norm_scale).on_epoch_end(masks)
        assert masks.alive("b").tolist() == expected, scale
        assert masks.alive("a").all()
    assert get_method("ssl")().kernel_norm_scale == "filters"


def test_threshold_paths_agree_on_random_weights_and_at_eps_itself():
    results = []
    for sync_free in (False, True):
        torch.manual_seed(0)
        model = two_conv_bn()
        masks = FilterMasks(describe(model, (1, 6, 6)))
        eps = torch.tensor(1e-3, dtype=torch.float32)
        with torch.no_grad():
            model.conv2.weight.uniform_(-3e-3, 3e-3)
            model.conv2.weight[0].uniform_(-9e-4, 9e-4)          # every weight small: removed
            w = model.conv2.weight.view(-1)
            w[-1], w[-2] = eps, torch.nextafter(eps, torch.zeros(()))   # |w| = eps stays, just below goes
        rule = Threshold(1e-3, sync_free=sync_free)
        rule.prepare(masks)
        rule.after_step(masks)
        masks.apply()
        assert model.conv2.weight.view(-1)[-1] == eps and model.conv2.weight.view(-1)[-2] == 0
        results.append((model.conv2.weight.clone(), masks.alive("conv2").clone()))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert not results[0][1][0] and results[0][1][1:].all()
