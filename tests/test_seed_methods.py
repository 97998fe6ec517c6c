"""The other seed methods (l0sgl, hgsr, slimming) against hand-computed values and crafted cases."""
from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from bench import names as N
from bench.cli import main
from bench.config_layers import build_sweep
from bench.data import make_synthetic
from bench.models import build_model
from bench.trainer import train
from methods import MethodError, get_method
from methods.hgsr import hierarchical_penalty, select_by_loss
from methods.slimming import global_percentile_cut
from state_standin import State


def assert_close(tensor: torch.Tensor, expected) -> None:
    torch.testing.assert_close(tensor.detach(), torch.tensor(expected, dtype=tensor.dtype))


def one_conv(weight, bias=None, head=False) -> nn.Sequential:
    w = torch.tensor(weight, dtype=torch.float32)
    conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(w)
        if bias is not None:
            conv.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    # with a head after it for the hooks' masks: the layer that produces the logits is never pruned
    return nn.Sequential(OrderedDict([("a", conv)] + [("head", nn.Conv2d(w.shape[0], 1, 1))] * head))


# -- l0sgl ---------------------------------------------------------------------------------------------------

# two filters of 2x1x1 (|g| = 2): [3, 4] (norm 5) and [0.0005, -0.001] (all below the threshold 0.01)
L0_WEIGHT = [[[[3.0]], [[4.0]]], [[[0.0005]], [[-0.001]]]]
L0_OPTS = dict(lam=0.1, lam0=1e-4, beta=2.0, eps=0.0)  # threshold sqrt(2 * 1e-4 / 2) = 0.01


def test_l0sgl_penalty_by_hand():
    method = get_method("l0sgl")(**L0_OPTS)
    assert method.threshold == pytest.approx(0.01)
    small = math.sqrt(0.0005 ** 2 + 0.001 ** 2)
    # lam * sqrt(|g|) * (5 + |small filter|) + beta / 2 * ||W - U||^2, U = W without the small filter
    expected = 0.1 * math.sqrt(2) * (5 + small) + 0.5 * 2.0 * (0.0005 ** 2 + 0.001 ** 2)
    assert method.penalty(one_conv(L0_WEIGHT)).item() == pytest.approx(expected, rel=1e-6)
    assert method.penalty_weight == 1.0


def test_l0sgl_hard_threshold_step_and_evaluation_on_u():
    weight = [[[[0.5]], [[0.009]]], [[[0.0005]], [[-0.001]]], [[[-0.02]], [[0.01]]]]
    model = one_conv(weight, bias=[0.1, 0.2, 0.3], head=True)
    method = get_method("l0sgl")(**L0_OPTS)
    state = State(model, (2, 1, 1), method=method)
    method.after_step(model, state)
    # entries with |w| <= 0.01 are zero in U; the weights themselves are untouched by the step
    u = method._u["a"].flatten(1)
    assert_close(u, [[0.5, 0.0], [0.0, 0.0], [-0.02, 0.0]])
    assert_close(model.a.weight.flatten(1), [[0.5, 0.009], [0.0005, -0.001], [-0.02, 0.01]])
    # end of epoch: the network holds U, and the filter whose U is all zero is removed (bias too)
    method.on_epoch_end(model, state)
    assert_close(model.a.weight.flatten(1), [[0.5, 0.0], [0.0, 0.0], [-0.02, 0.0]])
    assert state.alive("a").tolist() == [True, False, True]
    assert model.a.bias.tolist() == pytest.approx([0.1, 0.0, 0.3])
    # next epoch: W comes back (small entries included), the removed filter stays zero
    state.epoch = 2
    method.on_epoch_start(model, state)
    assert_close(model.a.weight.flatten(1), [[0.5, 0.009], [0.0, 0.0], [-0.02, 0.01]])


def test_l0sgl_beta_grows_every_beta_every_epochs():
    method = get_method("l0sgl")(lam0=1e-4, beta=2.0, beta_growth=1.25, beta_every=2)
    model = one_conv(L0_WEIGHT, head=True)
    state = State(model, (2, 1, 1), method=method)
    seen = []
    for epoch in range(1, 6):
        state.epoch = epoch
        method.on_epoch_start(model, state)
        seen.append(method.beta)
    assert seen == pytest.approx([2.0, 2.0, 2.5, 2.5, 3.125])
    assert method.threshold == pytest.approx(math.sqrt(2e-4 / 3.125))


# -- hgsr ----------------------------------------------------------------------------------------------------

def test_hgsr_penalty_by_hand():
    # W[o, i] kernels of 1x2: a[0,0] = |1|+|-3| = 4, a[0,1] = 0, a[1,0] = 1, a[1,1] = 4
    w = torch.tensor([[[[1.0, -3.0]], [[0.0, 0.0]]], [[[0.0, 1.0]], [[2.0, 2.0]]]])
    # input channel 0: (sqrt 4 + sqrt 1)^2 = 9; channel 1: (sqrt 0 + sqrt 4)^2 = 4; sum|W| = 9
    assert hierarchical_penalty(w, lam2=0.5, eps=0.0).item() == pytest.approx(0.5 * 13 + 0.5 * 9)
    assert hierarchical_penalty(w, lam2=1.0, eps=0.0).item() == pytest.approx(13.0)
    model = one_conv(w.tolist())
    assert get_method("hgsr")(lam2=0.25, eps=0.0).penalty(model).item() == pytest.approx(0.25 * 13 + 0.75 * 9)


def test_hgsr_selection_takes_the_longest_prefix_within_tolerance():
    inf = float("inf")
    increases = {"a": torch.tensor([0.0, 0.5, inf], dtype=torch.float64),
                 "b": torch.tensor([0.01, 0.2], dtype=torch.float64)}
    calls = []

    def additive(chosen):
        calls.append({k: v.tolist() for k, v in chosen.items()})
        return sum(float(increases[layer][idx].sum()) for layer, idx in chosen.items())

    picked = select_by_loss(increases, additive, tolerance=0.25)
    # order a0 (0.0), b0 (0.01), b1 (0.2), a1 (0.5): b1 is b's last alive filter, so the order stops before it
    assert {k: v.tolist() for k, v in picked.items()} == {"a": [0], "b": [0]}
    picked = select_by_loss(increases, additive, tolerance=0.005)
    assert {k: v.tolist() for k, v in picked.items()} == {"a": [0], "b": []}
    # joint effects count, not the sum of individual ones: a0 and b0 together cost 1.0
    interacting = lambda chosen: 1.0 if len(chosen["a"]) and len(chosen["b"]) else 0.0  # noqa: E731
    picked = select_by_loss(increases, interacting, tolerance=0.25)
    assert {k: v.tolist() for k, v in picked.items()} == {"a": [0], "b": []}


def test_hgsr_prune_removes_the_harmless_filter_by_its_loss_increase():
    # features f0 = x0, f1 = x1, f2 = nothing (zero filter); class 0 iff x0 > x1, read by fc = 5 * (f0 - f1)
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 1)
    fc = nn.Linear(3, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]).view(3, 2, 1, 1))
        conv.bias.zero_()
        fc.weight.copy_(torch.tensor([[5.0, -5.0, 1.0], [-5.0, 5.0, -1.0]]))
        fc.bias.zero_()
    model = nn.Sequential(OrderedDict([("a", conv), ("flatten", nn.Flatten()), ("fc", fc)]))
    x = torch.rand(200, 2, 1, 1)
    y = (x[:, 1, 0, 0] > x[:, 0, 0, 0]).long()
    state = State(model, (2, 1, 1), batch=(x, y), epoch=8, epochs=10)   # 10 epochs: prune at the end of 8
    method = get_method("hgsr")(tolerance=0.01, samples=200)
    method.on_epoch_end(model, state)
    assert state.alive("a").tolist() == [True, True, False]
    assert method.pruned and method.penalty(model).item() == 0.0   # fine-tuning is plain training
    assert state.logged["accuracy_before_pruning"] == state.logged["accuracy_after_pruning"] == 1.0
    assert conv.weight.flatten(1).tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]  # restored after measuring


@pytest.mark.parametrize("name", ["lenet5", "lenet5-bn"])
def test_hgsr_loss_increases_by_prefix_cache_equal_one_forward_per_filter(name):
    from methods.hgsr import loss_increases, sequential_loss_increases, zeroed

    torch.manual_seed(0)
    model = build_model(name, (1, 28, 28), 10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.bias.uniform_(-0.3, 0.3)
    state = State(model, (1, 28, 28))
    state.remove("conv2", [3, 7])                      # removed filters are skipped (inf)
    x, y = torch.randn(50, 1, 28, 28), torch.randint(0, 10, (50,))
    groups = {layer: state.filter_parameters(layer) for layer in state.layers}
    alive = {layer: state.alive(layer) for layer in state.layers}

    def loss_without(removal):
        with zeroed(groups, removal), torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(x), y))

    base = loss_without({})
    slow = loss_increases(groups, alive, loss_without, base)
    fast = sequential_loss_increases(model, alive, x, y, base, max_batch=200)   # 4 filters per batch
    for layer in ("conv1", "conv2"):
        torch.testing.assert_close(fast[layer], slow[layer], rtol=0, atol=1e-5)
    assert math.isinf(fast["conv2"][3]) and math.isinf(fast["conv2"][7]) and fast["conv1"].isfinite().all()


def test_hgsr_budget_split():
    hgsr = get_method("hgsr")()
    assert hgsr.finetune_epochs(10) == 2 and hgsr.prune_epoch(10) == 8 and hgsr.finetune_epochs(2) == 1
    with pytest.raises(ValueError, match="pre-training epoch"):
        build_sweep({"methods": ["hgsr"], "epochs": 2, "options": {"hgsr": {"finetune_epochs": 2}}})


# -- slimming ------------------------------------------------------------------------------------------------

def test_slimming_penalty_is_the_l1_of_bn_scales():
    model = build_model("lenet5-bn", (1, 28, 28), 10)
    with torch.no_grad():
        model.bn1.weight.copy_(torch.linspace(-1.0, 1.0, 20))
        model.bn2.weight.fill_(0.5)
    expected = float(torch.linspace(-1.0, 1.0, 20).abs().sum()) + 50 * 0.5
    assert get_method("slimming")().penalty(model).item() == pytest.approx(expected, rel=1e-6)


def test_slimming_global_percentile_cut():
    gammas = {"a": torch.tensor([0.5, -0.1, 0.3]), "b": torch.tensor([0.05, 2.0])}
    alive = {"a": torch.ones(3, dtype=torch.bool), "b": torch.ones(2, dtype=torch.bool)}
    cut = global_percentile_cut(gammas, alive, 0.5)   # floor(0.5 * 5) = 2 smallest |gamma|: b0, a1
    assert {k: v.tolist() for k, v in cut.items()} == {"a": [1], "b": [0]}
    alive["a"][1] = False                              # 4 alive: 2 smallest among them: b0, a2
    cut = global_percentile_cut(gammas, alive, 0.5)
    assert {k: v.tolist() for k, v in cut.items()} == {"a": [2], "b": [0]}


def test_slimming_refuses_a_model_without_batchnorm_before_any_work(capsys):
    with pytest.raises(MethodError, match="no BatchNorm after conv.*conv1, conv2"):
        get_method("slimming")().check_model(build_model("lenet5", (1, 28, 28), 10))
    assert main(["run", "--methods", "slimming", "--dataset", "synthetic", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "slimming" in err and "lenet5-bn" in err and "Traceback" not in err


def test_slimming_trains_cuts_globally_and_fine_tunes_without_penalty():
    data = make_synthetic((1, 28, 28), n_train=256, n_test=128)
    cfg = build_sweep({"methods": ["slimming"], "ratios": [0.5], "epochs": 4, "model": "lenet5-bn",
                       "dataset": "synthetic", "device": "cpu", "options": {"slimming": {"lam": 1e-3}}}).trials()[0]
    rows = []
    train(cfg, data, lambda epoch, m: rows.append(m))
    # 4 epochs: 2 of fine-tuning, the cut at the end of epoch 2 removes floor(0.5 * 70) = 35 channels
    assert rows[0][N.PENALTY] > 0 and rows[0]["filters_alive/conv1"] + rows[0]["filters_alive/conv2"] == 70
    cut = rows[1]
    assert cut["filters_alive/conv1"] + cut["filters_alive/conv2"] == 35 and "accuracy_after_pruning" in cut
    assert rows[1][N.PENALTY] == 0.0 and rows[3][N.PENALTY] == 0.0
    assert rows[3]["filters_alive/conv2"] == cut["filters_alive/conv2"]


def test_hgsr_loss_increases_by_hooks_equal_one_forward_per_group_on_coupled_groups():
    """Any model: a residual stream pruned as one group and an expansion with its depthwise channel."""
    from pathlib import Path

    from bench.structure import derive
    from methods.hgsr import hooked_loss_increases, loss_increases, zeroed

    torch.manual_seed(0)
    model = build_model(f"{Path(__file__).with_name('nets.py')}:MyNet", (3, 16, 16), 10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.bias.uniform_(-0.3, 0.3)
    structure = derive(model, (3, 16, 16), prune_coupled=True)
    state = State(model, (3, 16, 16))
    state.masks = __import__("bench.zeroing", fromlist=["FilterMasks"]).FilterMasks(structure)
    state.remove("expand.0", [3, 7])
    x, y = torch.randn(20, 3, 16, 16), torch.randint(0, 10, (20,))
    groups = {layer: state.filter_parameters(layer) for layer in state.layers}
    alive = {layer: state.alive(layer) for layer in state.layers}

    def loss_without(removal):
        with zeroed(groups, removal):
            return float(nn.functional.cross_entropy(model(x), y).detach())

    base = loss_without({})
    slow = loss_increases(groups, alive, loss_without, base)
    fast = hooked_loss_increases(model, structure.units, alive, x, y, base, max_batch=100)   # 5 groups a pass
    assert set(slow) == set(fast) == {"stem.0", "body.0", "expand.0", "project.0"}
    for layer in slow:
        torch.testing.assert_close(fast[layer], slow[layer], rtol=1e-4, atol=1e-5)
    assert torch.isinf(fast["expand.0"][[3, 7]]).all()
