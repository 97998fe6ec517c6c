"""SSL group lasso and the NISP-style baseline against hand-computed values and crafted cases."""
from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from bench import names as N
from bench.config_layers import build_sweep
from bench.data import make_synthetic
from bench.trainer import train
from methods import MethodError, get_method
from methods.nisp import filter_importance, inf_fs
from methods.ssl import group_lasso


def conv_with(weight) -> nn.Sequential:
    w = torch.tensor(weight, dtype=torch.float32)
    conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), bias=False)
    with torch.no_grad():
        conv.weight.copy_(w)
    return nn.Sequential(conv)


def test_ssl_penalty_by_hand():
    # filters: [3, 4] (norm 5) and [0, 0]; channels: [3, 0] (norm 3) and [4, 0] (norm 4)
    model = conv_with([[[[3.0]], [[4.0]]], [[[0.0]], [[0.0]]]])
    zero_group = math.sqrt(1e-8)
    assert get_method("ssl")().penalty(model).item() == pytest.approx(5 + zero_group + 3 + 4, rel=1e-6)
    assert get_method("ssl")(channel_weight=0.5).penalty(model).item() == pytest.approx(5 + zero_group + 3.5)
    assert get_method("ssl")(groups="filter").penalty(model).item() == pytest.approx(5 + zero_group)
    assert get_method("ssl")(groups="channel").penalty(model).item() == pytest.approx(7.0)


def test_ssl_shape_groups_by_hand():
    # W (2 filters, 1 channel, 1x2): shape groups are the columns [W[0,0,0,j], W[1,0,0,j]]
    model = conv_with([[[[3.0, 1.0]]], [[[4.0, 0.0]]]])
    assert get_method("ssl")(groups="shape", eps=0.0).penalty(model).item() == pytest.approx(5.0 + 1.0)


def test_ssl_penalty_sums_over_layers():
    model = nn.Sequential(OrderedDict([("a", nn.Conv2d(1, 2, 1, bias=False)), ("b", nn.Conv2d(2, 3, 1, bias=False))]))
    expected = group_lasso(model.a.weight) + group_lasso(model.b.weight)
    assert get_method("ssl")().penalty(model).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("channel_weight", [1.0, 0.3])
def test_ssl_gradient_is_sum_of_normalised_groups(channel_weight):
    torch.manual_seed(0)
    w = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    group_lasso(w, "filter+channel", channel_weight, eps=0.0).backward()
    wd = w.detach()
    filter_norms = wd.flatten(1).norm(dim=1).view(3, 1, 1, 1)
    channel_norms = wd.transpose(0, 1).flatten(1).norm(dim=1).view(1, 2, 1, 1)
    expected = wd / filter_norms + channel_weight * wd / channel_norms
    assert torch.allclose(w.grad, expected, atol=1e-12)


def test_ssl_keeps_the_square_root():
    # without the root the penalty would be 25 + 9 + 16 = 50 for the crafted model, not 12
    model = conv_with([[[[3.0]], [[4.0]]], [[[0.0]], [[0.0]]]])
    assert get_method("ssl")(eps=0.0).penalty(model).item() == pytest.approx(12.0)


def test_inf_fs_duplicate_independent_and_dead_units():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(400, generator=g)
    responses = torch.stack([
        base,                                   # 0: a unit ...
        base.clone(),                           # 1: ... and its exact duplicate
        torch.randn(400, generator=g),          # 2: an independent unit of the same variance
        torch.full((400,), 3.0),                # 3: dead (constant)
        0.5 * torch.randn(400, generator=g),    # 4: independent, smaller variance
    ], dim=1)
    s = inf_fs(responses, alpha=0.5)
    assert torch.isfinite(s).all()
    assert s[3] == 0.0 and int(s.argmin()) == 3
    assert s[2] > s[0] and s[2] > s[1]
    assert s[0] == pytest.approx(s[1].item())
    assert (s[[0, 1, 2, 4]] > 0).all()


def test_inf_fs_degenerate_inputs_have_no_nan():
    assert inf_fs(torch.ones(10, 4)).tolist() == [0.0] * 4
    one_live = inf_fs(torch.cat([torch.randn(10, 1), torch.zeros(10, 2)], dim=1))
    assert torch.isfinite(one_live).all() and one_live[0] > 0 and one_live[1:].eq(0).all()
    ties = inf_fs(torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 2.0, 0.0], [1.0, 0.0, 0.0]]))
    assert torch.isfinite(ties).all()


def test_importance_propagation_by_hand():
    """a (1->2, 1x1) -> b (2->2, 1x1) -> max-pool 2 -> flatten -> fc1 (2->3) -> ReLU -> classifier (3->4).

    FRL scores s = [1, 2, 3] (fc1's outputs). Through |fc1|: [1*1 + 2*2 + 0*3, 0*1 + 1*2 + 3*3] = [5, 11]:
    conv b's filter scores (the pool spreads each score over its 4 positions; the sum over positions is
    back to 5 and 11). Each of the 4 positions of conv a's output gets |W_b|^T [5, 11] / 4 =
    [1*5 + 0.5*11, 1*5 + 2*11] / 4 = [10.5, 27] / 4, so conv a's filter scores are [10.5, 27]. Signs,
    biases and BatchNorm play no part.
    """
    model = nn.Sequential(OrderedDict([
        ("a", nn.Conv2d(1, 2, 1)), ("bn", nn.BatchNorm2d(2)), ("b", nn.Conv2d(2, 2, 1)), ("pool", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(2, 3)), ("relu", nn.ReLU()), ("fc2", nn.Linear(3, 4)),
    ]))
    with torch.no_grad():
        model.a.weight.copy_(torch.tensor([2.0, -3.0]).view(2, 1, 1, 1))
        model.b.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]).view(2, 2, 1, 1))
        model.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [-2.0, 1.0], [0.0, 3.0]]))
        model.bn.weight.fill_(7.0)
    scores = filter_importance(model, (1, 2, 2), torch.tensor([1.0, 2.0, 3.0]))
    assert scores["b"].tolist() == pytest.approx([5.0, 11.0])
    assert scores["a"].tolist() == pytest.approx([10.5, 27.0])


def test_nisp_ratio_is_validated_and_needs_a_pretraining_epoch():
    for bad in (0.0, 1.0, -0.2, 1.2):
        with pytest.raises(MethodError, match="ratio"):
            get_method("nisp")(ratio=bad)
    with pytest.raises(ValueError, match="at least one pre-training epoch"):
        build_sweep({"methods": ["nisp"], "epochs": 3, "options": {"nisp": {"finetune_epochs": 3}}})
    assert get_method("nisp")().finetune_epochs(10) == 5 and get_method("nisp")().finetune_epochs(1) == 1


@pytest.mark.parametrize("ratio,expected", [(0.5, (10, 25)), (0.25, (15, 38)), (0.9, (2, 5))])
def test_nisp_removes_floor_p_filters_per_layer_and_records_both_accuracies(ratio, expected):
    data = make_synthetic((1, 28, 28), n_train=256, n_test=128)
    cfg = build_sweep({"methods": ["nisp"], "ratios": [ratio], "epochs": 3, "dataset": "synthetic", "device": "cpu",
                       "options": {"nisp": {"samples": 300}}}).trials()[0]
    rows = []
    train(cfg, data, lambda epoch, m: rows.append(m))
    # 3 epochs: fine-tuning takes max(1, 3 // 2) = 1, so pre-training is epochs 1-2 and pruning ends epoch 2
    assert rows[0]["filters_alive/conv1"] == 20 and "accuracy_after_pruning" not in rows[0]
    pruned = rows[1]
    assert (pruned["filters_alive/conv1"], pruned["filters_alive/conv2"]) == expected
    assert pruned["accuracy_after_pruning"] == pruned[N.TEST_ACCURACY]
    assert 0.0 <= pruned["accuracy_before_pruning"] <= 1.0
    assert (rows[2]["filters_alive/conv1"], rows[2]["filters_alive/conv2"]) == expected  # frozen while fine-tuning


def test_nisp_propagates_through_residual_additions_and_in_place_activations():
    """a (2 -> 3, 1x1) -> ReLU6(inplace) -> y = h + b(h) -> global max pool -> fc (3 -> 2), at 1x1 inputs.
    The final response layer is fc's input, the pooled y, scored s. By hand, with |W| and no biases: b's
    filters score s; a's score s + |W_b|^T s (the identity path and the path through b). The ReLU6 must not clamp (the surrogate's activations are the
    identity) and the max pool becomes an average pool."""
    from methods.nisp import filter_importance

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 3, 1)
            self.act = nn.ReLU6(inplace=True)
            self.b = nn.Conv2d(3, 3, 1)
            self.pool = nn.AdaptiveMaxPool2d(1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            h = self.act(self.a(x))
            return self.fc(torch.flatten(self.pool(h + self.b(h)), 1))

    torch.manual_seed(0)
    model = Residual()
    with torch.no_grad():
        model.a.weight.mul_(50.0)      # activations far above 6 at the surrogate's input of ones
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = torch.tensor([0.3, 0.7, 0.2], dtype=torch.float64)
    scores = filter_importance(model, (2, 1, 1), s.float())
    wb = model.b.weight.detach().abs().double().flatten(1)
    torch.testing.assert_close(scores["b"].double(), s, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(scores["a"].double(), s + wb.T @ s, rtol=1e-5, atol=1e-7)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())   # weights restored
    assert all(p.grad is None for p in model.parameters()) and "forward" not in vars(model.act)
