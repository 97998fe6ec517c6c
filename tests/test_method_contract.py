"""The contract every registered method meets. Registering a method enrols it here: no test edits."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from bench import names as N
from bench.config_layers import build_sweep
from bench.data import make_synthetic
from bench.models import build_model
from bench.zeroing import parse_zeroing
from methods import MethodError, get_method, list_methods
from methods.base import Method

from helpers import assert_closed_form_equals_autograd, train_checking_removed_stay_zero

DATA = make_synthetic((1, 28, 28), n_train=256, n_test=128)


def model_for(name: str) -> str:
    """Caffe LeNet, or its BatchNorm variant (same layer names) for a method that refuses the plain one."""
    try:
        get_method(name)().check_model(build_model("lenet5", (1, 28, 28), 10))
        return "lenet5"
    except MethodError:
        get_method(name)().check_model(build_model("lenet5-bn", (1, 28, 28), 10))
        return "lenet5-bn"


@pytest.mark.parametrize("name", list_methods())
def test_builds_with_defaults_and_describes_itself(name):
    cls = get_method(name)
    assert issubclass(cls, Method) and cls.name == name
    for attr in ("description", "paper", "formula"):
        assert getattr(cls, attr), f"{name} has no {attr}"
    method = cls()
    parse_zeroing(cls.default_zeroing)
    if cls.sweep_axis is not None:
        assert cls.default_grid, f"{name} has no default grid"
        for value in cls.default_grid:
            cls(**{cls.sweep_axis: value})
    for f in dataclasses.fields(cls.Hparams):
        assert f.metadata.get("help"), f"{name}.{f.name} has no help text"
    assert method.swept_value() == (None if cls.sweep_axis is None else getattr(method.hparams, cls.sweep_axis))


@pytest.mark.parametrize("name", list_methods())
def test_penalty_is_a_differentiable_scalar(name):
    method = get_method(name)()
    model = build_model(model_for(name), (1, 28, 28), 10)
    value = method.penalty(model)
    assert isinstance(value, torch.Tensor) and value.dim() == 0 and torch.isfinite(value)
    if method.has_penalty:
        value.backward()
        # the gradient reaches conv1's filters: their weights, or the BN scale that follows (slimming)
        grads = [p.grad for p in (model.conv1.weight, getattr(model, "bn1", model.conv1).weight) if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", list_methods())
def test_validates_its_options(name):
    cls = get_method(name)
    with pytest.raises(MethodError, match="unknown option"):
        cls(no_such_option=1)
    if cls.sweep_axis == "lam":
        with pytest.raises(MethodError):
            cls(lam=-1.0)
    if cls.sweep_axis == "ratio":
        for bad in (0.0, 1.0, 1.5):
            with pytest.raises(MethodError):
                cls(ratio=bad)


@pytest.mark.parametrize("name", list_methods())
def test_trains_two_epochs_keeps_removed_filters_zero_and_reports_the_same_keys(name):
    cls = get_method(name)
    grid = {"lambdas": [max(cls.default_grid)]} if cls.sweep_axis == "lam" else {}
    if "regularize" not in cls.protocols:   # a criterion: pruned at the end of epoch 1, fine-tuned in epoch 2
        grid = {"protocol": "prune-to-target", "target_flops_reduction": (0.5,), "sparse_epochs": 1}
    cfg = build_sweep({"methods": [name], "epochs": 2, "dataset": "synthetic", "device": "cpu",
                       "model": model_for(name), **grid}).trials()[0]
    rows, _ = train_checking_removed_stay_zero(cfg, DATA)   # removed after epoch 1: exactly zero at the end
    assert len(rows) == 2
    base_keys = {N.TEST_ACCURACY, N.TRAIN_LOSS, N.PENALTY, N.TOTAL_SPARSITY, N.PARAMS, N.FLOPS,
                 "filters_alive/conv1", "filters_alive/conv2", "sparsity/conv1", "sparsity/conv2"}
    assert base_keys <= set(rows[0]) and base_keys <= set(rows[1])
    # the same keys in both epochs, but for the records of the one epoch a pruning step happened in (hgsr's
    # selection also records the task loss it started from)
    once = {"accuracy_before_pruning", "accuracy_after_pruning", "selection_loss_before", N.PRUNE_STEP_TARGET,
            N.PRUNE_STEP_ACHIEVED}
    assert set(rows[0]) - once == set(rows[1]) - once, set(rows[0]) ^ set(rows[1])
    assert not (set(rows[1]) & once)   # a trial prunes at most once here, at the end of epoch 1
    for layer in ("conv1", "conv2"):
        assert rows[1][f"filters_alive/{layer}"] <= rows[0][f"filters_alive/{layer}"]
        assert rows[1][f"filters_alive/{layer}"] >= 1


@pytest.mark.parametrize("name", [n for n in list_methods() if get_method(n).closed_form_grad])
def test_closed_form_gradient_equals_autograd_of_the_penalty(name):
    cls = get_method(name)
    model = build_model(model_for(name), (1, 28, 28), 10).double()
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(-1.0, 1.0)
        model.conv1.weight[3].zero_()        # a zero filter: the subgradient at 0 must agree too
        model.conv2.weight[:5].zero_()
    assert_closed_form_equals_autograd(cls(), model)


@pytest.mark.parametrize("name", list_methods())
def test_importance_gives_one_finite_score_per_group_of_every_unit(name):
    from state_standin import State

    method = get_method(name)()
    model = build_model(model_for(name), (1, 28, 28), 10)
    x, y = DATA.train_x[:16], DATA.train_y[:16]
    batch = (torch.as_tensor(x, dtype=torch.float32) / 255.0, torch.as_tensor(y, dtype=torch.long))
    state = State(model, (1, 28, 28), batch, method=method)
    method.check_model(model)
    scores = method.importance(model, state)
    assert set(scores) == set(state.layers)
    for unit in state.masks.structure.units:
        assert scores[unit.name].shape == (unit.size,) and torch.isfinite(scores[unit.name]).all(), (name, unit.name)
    assert all(p.grad is None for p in model.parameters())   # a criterion's gradients are not left behind
