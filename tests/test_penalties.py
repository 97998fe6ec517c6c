"""Penalties of the l1/l2 family against values computed by hand, and the registry's behaviour."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import methods
from methods import MethodError, get_method, list_methods, register_method
from methods.base import Method
from methods.kernel_norms import kernel_norm_vector


def crafted_model() -> nn.Module:
    """Two convs with hand-set weights (biases are not part of any penalty).

    conv a: 2 filters of 1x1x2: [1, -2] (l1 = 3) and [0.5, 0.5] (l1 = 1)          -> F = 2
    conv b: 3 filters of 2x1x1: [3, 0] (l1 = 3), [-1, 1] (l1 = 2), [0, 0] (l1 = 0) -> F = 3
    """
    model = nn.Sequential()
    model.add_module("a", nn.Conv2d(1, 2, (1, 2)))
    model.add_module("b", nn.Conv2d(2, 3, 1))
    with torch.no_grad():
        model.a.weight.copy_(torch.tensor([[[[1.0, -2.0]]], [[[0.5, 0.5]]]]))
        model.b.weight.copy_(torch.tensor([[3.0, 0.0], [-1.0, 1.0], [0.0, 0.0]]).view(3, 2, 1, 1))
    return model


# N with norm_scale="filters": [3/2, 1/2, 3/3, 2/3, 0/3]
N_FILTERS = [1.5, 0.5, 1.0, 2 / 3, 0.0]
N_PLAIN = [3.0, 1.0, 3.0, 2.0, 0.0]


def test_kernel_norm_vector_matches_eq2():
    assert kernel_norm_vector(crafted_model()).tolist() == pytest.approx(N_FILTERS)
    assert kernel_norm_vector(crafted_model(), "none").tolist() == pytest.approx(N_PLAIN)


@pytest.mark.parametrize("norm_scale,n", [("filters", N_FILTERS), ("none", N_PLAIN)])
def test_family_penalties_against_hand_values(norm_scale, n):
    model = crafted_model()
    l1 = sum(n)
    l2 = math.sqrt(sum(v * v for v in n) + 1e-12)
    expected = {"l1": l1, "l2": l2, "l1l2": l1 / l2}
    for name, value in expected.items():
        penalty = get_method(name)(norm_scale=norm_scale).penalty(model)
        assert penalty.dim() == 0
        assert penalty.item() == pytest.approx(value, rel=1e-6), name


def test_hand_values_written_out():
    # l1/l2 with the paper's eq. 2 scaling: (11/3) / sqrt(71/18)
    model = crafted_model()
    assert get_method("l1l2")().penalty(model).item() == pytest.approx((11 / 3) / math.sqrt(71 / 18), rel=1e-6)
    assert get_method("l2")(norm_scale="none").penalty(model).item() == pytest.approx(math.sqrt(23), rel=1e-6)
    assert get_method("none")().penalty(model).item() == 0.0


def test_l1l2_gradient_matches_closed_form():
    # d/dw of sum(N)/||N||: (1/||N|| - sum(N) n_k/||N||^3) * sign(w) / F
    model = crafted_model()
    get_method("l1l2")().penalty(model).backward()
    n = torch.tensor(N_FILTERS, dtype=torch.float64)
    s, q = n.sum(), n.norm()
    dn = 1 / q - s * n / q**3
    expected_a = (dn[:2] / 2).view(2, 1, 1, 1) * torch.sign(model.a.weight.detach().double())
    assert torch.allclose(model.a.weight.grad.double(), expected_a, atol=1e-6)


@pytest.mark.parametrize("name", ["l1l2", "l2", "l1"])
def test_gradient_finite_when_all_but_one_filter_or_everything_is_zero(name):
    model = crafted_model()
    with torch.no_grad():
        model.a.weight.zero_()
        model.b.weight[1:].zero_()
    get_method(name)().penalty(model).backward()
    assert all(torch.isfinite(p.grad).all() for p in (model.a.weight, model.b.weight))
    model.zero_grad()
    with torch.no_grad():
        model.b.weight.zero_()
    value = get_method(name)().penalty(model)
    value.backward()
    assert math.isfinite(value.item())
    assert all(torch.isfinite(p.grad).all() for p in (model.a.weight, model.b.weight))


def test_penalty_on_any_module_with_nested_convs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.ModuleList([nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), nn.Conv2d(4, 2, 1)])
            self.head = nn.Linear(8, 2)

    net = Net()
    expected = sum(m.weight.abs().sum().item() / m.out_channels for m in (net.body[0][0], net.body[1]))
    assert get_method("l1")().penalty(net).item() == pytest.approx(expected, rel=1e-6)


def test_model_exclusions_are_not_regularized():
    model = crafted_model()
    model.sparsity_exclude = ("b",)
    assert get_method("l1")().penalty(model).item() == pytest.approx(2.0)  # only conv a: 1.5 + 0.5


def test_registry_lists_and_builds_defaults():
    assert {"none", "l1", "l2", "l1l2"} <= set(list_methods())
    assert list_methods() == sorted(list_methods())
    m = get_method("l1l2")()
    assert m.hparams.lam == 0.5 and m.hparams.norm_scale == "filters" and m.hparams.eps == 1e-12
    assert m.default_zeroing == "cumulative:0.01" and m.sweep_axis == "lam"


def test_unknown_method_lists_valid_names():
    with pytest.raises(MethodError) as err:
        get_method("l3")
    for name in list_methods():
        assert name in str(err.value)


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        @register_method
        class Again(Method):  # noqa: F811
            name = "l1"


@pytest.mark.parametrize("options,message", [
    ({"lam": -0.1}, "'lam' must be >= 0"),
    ({"lam": float("nan")}, "finite"),
    ({"norm_scale": "layer"}, "must be one of"),
    ({"gamma": 1.0}, "unknown option"),
    ({"lam": "abc"}, "option 'lam': expected a number, got 'abc'"),
])
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(MethodError, match=message):
        get_method("l1l2")(**options)


def test_options_from_strings():
    m = get_method("l1l2")(lam="0.25", norm_scale="none")
    assert m.hparams.lam == 0.25 and m.hparams.norm_scale == "none"
    assert methods.get_method("l1l2").Hparams.from_options({"lam": 1}).lam == 1.0
