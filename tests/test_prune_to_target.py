"""``--protocol prune-to-target``: the global ranking and its exact target (bench/pruning.py), the criteria's
scores against hand computations (methods/criteria.py), paired seeds, the protocol's settings."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench import names as N
from bench.config import ConfigError
from bench.config_layers import build_sweep
from bench.data import make_synthetic
from bench.models import build_model
from bench.metrics import removed_fractions as measure
from bench.pruning import PruningError, normalise, order, plan
from bench.structure import derive
from bench.trainer import train
from methods import get_method
from state_standin import State

SHAPE = (1, 28, 28)


def _lenet():
    torch.manual_seed(0)
    model = build_model("lenet5", SHAPE, 10)
    return model, derive(model, SHAPE)


def _removed(structure, removal):
    out = {u.name: torch.zeros(u.size, dtype=torch.bool) for u in structure.units}
    for name, idx in removal.items():
        out[name][idx] = True
    return out


def test_normalisers_give_the_hand_computed_values():
    s = torch.tensor([1.0, 2.0, 3.0])
    assert normalise(s, "mean").tolist() == pytest.approx([0.5, 1.0, 1.5])
    assert normalise(s, "sum").tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6])
    # LAMP: each score over the sum of the scores not below it
    assert normalise(torch.tensor([3.0, 1.0, 2.0]), "lamp").tolist() == pytest.approx([3 / 3, 1 / 6, 2 / 5])
    assert normalise(s, "none").tolist() == [1.0, 2.0, 3.0]
    assert normalise(torch.zeros(3), "mean").tolist() == [0.0, 0.0, 0.0]   # a unit of zero groups goes first


def test_the_plan_is_the_shortest_prefix_of_the_global_order_that_meets_the_flops_target():
    model, structure = _lenet()
    scores = {"conv1": torch.arange(20, dtype=torch.float32) + 1, "conv2": torch.arange(50, dtype=torch.float32) + 1}
    removal, achieved = plan(structure, scores, "none", N.FLOPS_REDUCTION, 0.5, max_layer_ratio=0.9)
    # by hand: ascending raw scores, ties in unit order (conv1's i before conv2's i), 18 of conv1 at most
    expected = sorted([(i + 1, 0, i, "conv1") for i in range(20)] + [(i + 1, 1, i, "conv2") for i in range(50)])
    sequence, taken = [], {"conv1": 0, "conv2": 0}
    for _, _, i, name in expected:
        if taken[name] < {"conv1": 18, "conv2": 45}[name]:
            taken[name] += 1
            sequence.append((name, i))
    k = sum(len(v) for v in removal.values())
    prefix = {}
    for name, i in sequence[:k]:
        prefix.setdefault(name, []).append(i)
    assert removal == {n: sorted(v) for n, v in prefix.items()}
    assert achieved == measure(structure, _removed(structure, removal))[N.FLOPS_REDUCTION] >= 0.5
    shorter = {n: list(v) for n, v in prefix.items()}
    shorter[sequence[k - 1][0]].remove(sequence[k - 1][1])   # one group fewer misses the target
    assert measure(structure, _removed(structure, shorter))[N.FLOPS_REDUCTION] < 0.5


@pytest.mark.parametrize("metric,target", [(N.TOTAL_SPARSITY, 0.4), (N.PARAMS_REDUCTION, 0.6)])
def test_the_plan_lands_on_sparsity_and_parameter_targets_within_one_group(metric, target):
    model, structure = _lenet()
    torch.manual_seed(3)
    scores = {u.name: torch.rand(u.size) for u in structure.units}
    removal, achieved = plan(structure, scores, "mean", metric, target)
    assert achieved >= target
    sequence = order(structure, scores, "mean", 0.9)
    k = sum(len(v) for v in removal.values())
    assert measure(structure, _removed(structure, {}))[metric] == 0.0
    before = {}
    for name, i in sequence[:k - 1]:
        before.setdefault(name, []).append(i)
    assert measure(structure, _removed(structure, before))[metric] < target


def test_the_layer_bound_caps_each_unit_and_an_unreachable_target_is_an_error():
    model, structure = _lenet()
    # conv1's groups score lowest: without a bound it would lose all but one; with 0.5 it loses 10
    scores = {"conv1": torch.full((20,), 0.001), "conv2": torch.linspace(1, 2, 50)}
    removal, _ = plan(structure, scores, "none", N.FLOPS_REDUCTION, 0.6, max_layer_ratio=0.5)
    assert len(removal["conv1"]) == 10 and len(removal.get("conv2", [])) > 0
    removal, _ = plan(structure, scores, "none", N.FLOPS_REDUCTION, 0.9, max_layer_ratio=0.99)
    assert len(removal["conv1"]) == 19   # never the last group
    with pytest.raises(PruningError, match="max-layer-ratio 0.2"):
        plan(structure, scores, "none", N.FLOPS_REDUCTION, 0.9, max_layer_ratio=0.2)


def test_mean_normalisation_ranks_layers_of_different_scales_together():
    model, structure = _lenet()
    torch.manual_seed(0)
    base = {u.name: torch.rand(u.size) + 0.5 for u in structure.units}
    scaled = {"conv1": base["conv1"] * 100, "conv2": base["conv2"]}   # conv1's norms 100x larger (fewer inputs)
    raw, _ = plan(structure, scaled, "none", N.TOTAL_SPARSITY, 0.3)
    fair, _ = plan(structure, scaled, "mean", N.TOTAL_SPARSITY, 0.3)
    assert "conv1" not in raw                                     # raw: conv1 is never reached
    assert fair == plan(structure, base, "mean", N.TOTAL_SPARSITY, 0.3)[0]   # the scale no longer matters
    assert len(fair.get("conv1", [])) > 0


def _batch(n=8):
    data = make_synthetic(SHAPE, n_train=n, n_test=4)
    return torch.as_tensor(data.train_x, dtype=torch.float32) / 255.0, torch.as_tensor(data.train_y).long()


def _scores(name, model, batch, **options):
    method = get_method(name)(**options)
    state = State(model, SHAPE, batch, method=method, seed=5)
    return method.importance(model, state)


def test_magnitude_l1_is_the_mean_of_the_group_layers_l1_norms():
    model, _ = _lenet()
    got = _scores("magnitude-l1", model, _batch())
    w1, w2, fc1 = model.conv1.weight.detach(), model.conv2.weight.detach(), model.fc1.weight.detach()
    conv1 = (w1.abs().flatten(1).sum(1) + w2.abs().sum(dim=(0, 2, 3))) / 2      # its filters, conv2's inputs
    conv2 = (w2.abs().flatten(1).sum(1) + fc1.abs().sum(0).view(50, 16).sum(1)) / 2   # fc1's 16 features each
    assert torch.allclose(got["conv1"], conv1, rtol=1e-5) and torch.allclose(got["conv2"], conv2, rtol=1e-5)
    first = _scores("magnitude-l1", model, _batch(), reduction="first")   # Li et al.: the filter alone
    assert torch.allclose(first["conv1"], w1.abs().flatten(1).sum(1), rtol=1e-5)


def test_taylor_and_hessian_read_the_batch_gradients():
    model, _ = _lenet()
    x, y = _batch()
    model.eval()
    loss = F.cross_entropy(model(x), y)
    g1, g2 = torch.autograd.grad(loss, [model.conv1.weight, model.conv2.weight])
    w1, w2 = model.conv1.weight.detach(), model.conv2.weight.detach()
    taylor = _scores("taylor", model, (x, y), samples=8, chunk=8)
    want = ((w1 * g1).abs().flatten(1).sum(1) + (w2 * g2).abs().sum(dim=(0, 2, 3))) / 2
    assert torch.allclose(taylor["conv1"], want, rtol=1e-4)
    # hessian: w^2 times the mean squared per-example gradient (OBD's diagonal, the empirical Fisher)
    fisher1, fisher2 = torch.zeros_like(w1), torch.zeros_like(w2)
    for i in range(len(y)):
        a, b = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), [model.conv1.weight,
                                                                                    model.conv2.weight])
        fisher1 += a.square() / len(y)
        fisher2 += b.square() / len(y)
    hessian = _scores("hessian", model, (x, y), samples=8, chunk=8)
    want = ((w1.square() * fisher1).flatten(1).sum(1) + (w2.square() * fisher2).sum(dim=(0, 2, 3))) / 2
    assert torch.allclose(hessian["conv1"], want, rtol=1e-4)
    assert all(p.grad is None for p in model.parameters())


def test_random_scores_follow_the_trial_seed_and_leave_the_global_generator_alone():
    model, _ = _lenet()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = _scores("random", model, _batch())
    assert torch.equal(torch.get_rng_state(), before)
    b = _scores("random", model, _batch())
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bn_scale_refuses_a_model_without_batchnorm_before_training():
    from methods import MethodError
    with pytest.raises(MethodError, match="BatchNorm"):
        get_method("bn-scale")().check_model(build_model("lenet5", SHAPE, 10))


def _trial(method, **settings):
    return build_sweep({"methods": [method], "epochs": 3, "sparse_epochs": 2, "dataset": "synthetic",
                        "device": "cpu", "batch_size": 32, "protocol": "prune-to-target",
                        "target_flops_reduction": (0.5,), **settings}).trials()[0]


def test_two_methods_with_one_seed_see_the_same_batches():
    """NISP draws its samples at the pruning step: from the method's own generator, so the data order of the
    epochs after it is the one every method of that seed gets (the generator that orders the data ends in the
    same state)."""
    data = make_synthetic(SHAPE, n_train=128, n_test=64)
    states = {}
    for method, options in (("nisp", {"nisp": {"samples": 32}}), ("magnitude-l1", {})):
        snaps = {}
        train(_trial(method, options=options), data, keep=lambda e, s: snaps.__setitem__(e, s))
        states[method] = snaps[2]["rng"]
    assert torch.equal(states["nisp"]["generator"], states["magnitude-l1"]["generator"])
    assert not torch.equal(states["nisp"]["draws"], states["magnitude-l1"]["draws"])   # nisp drew, the other not


def test_a_trial_prunes_once_to_its_target_and_fine_tunes_with_the_masks_frozen():
    data = make_synthetic(SHAPE, n_train=128, n_test=64)
    rows = {}
    train(_trial("l1l2"), data, report=lambda e, m: rows.__setitem__(e, dict(m)))
    assert rows[1][N.FLOPS_REDUCTION] == 0.0 and rows[2][N.FLOPS_REDUCTION] >= 0.5
    assert rows[3][N.FLOPS_REDUCTION] == rows[2][N.FLOPS_REDUCTION]
    assert "accuracy_after_pruning" in rows[2] and "accuracy_after_pruning" not in rows[3]


@pytest.mark.parametrize("settings,message", [
    ({"max_probes": 3}, "--max-probes belongs to the regularize protocol"),
    ({"target_tolerance": 0.05}, "--target-tolerance belongs"),
    ({"zeroing": {"*": "none"}}, "--zeroing does not apply"),
    ({"target_flops_reduction": ()}, "prunes to a target"),
    ({"sparse_epochs": 3}, "--sparse-epochs 3 leaves no epoch to fine-tune"),
])
def test_settings_that_do_not_apply_to_the_protocol_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        _trial("l1l2", **settings)


def test_a_criterion_needs_the_protocol_and_the_protocols_settings_need_it_too():
    with pytest.raises(ConfigError, match="run it with --protocol prune-to-target"):
        build_sweep({"methods": ["taylor"], "dataset": "synthetic"})
    with pytest.raises(ConfigError, match="--sparse-epochs applies to --protocol prune-to-target"):
        build_sweep({"methods": ["l1l2"], "dataset": "synthetic", "sparse_epochs": 2})


def test_one_trial_per_method_target_seed_and_the_regularize_keys_unchanged():
    sweep = build_sweep({"methods": ["l1l2", "nisp", "random"], "seeds": (0, 1), "dataset": "synthetic",
                         "protocol": "prune-to-target", "target_flops_reduction": (0.5, 0.75), "epochs": 4,
                         "lambdas": {"l1l2": (0.1, 1.0)}})
    names = [t.name for t in sweep.trials()]
    assert len(names) == len(set(names)) == (2 + 1 + 1) * 2 * 2
    assert "l1l2-lam0.1-flops0.5-s0" in names and "nisp-flops0.75-s1" in names and "random-flops0.5-s1" in names
    assert all(t.zeroing == "none" for t in sweep.trials())
    # the keys of the regularize protocol's trials are those computed before the protocol existed
    old = build_sweep({"methods": ["l1l2", "nisp"], "dataset": "synthetic", "epochs": 3}).trials()
    assert [t.key for t in old][:4] == ["2a6e82e5b1c6e4fa", "79f055d958a12d9b", "9f957c0140207fef", "54a033e920b91ff6"]
    assert math.isclose(sweep.trials()[0].train.prune_epoch, 2)


@pytest.mark.parametrize("name", ["group-norm", "growing-reg"])
def test_torch_prunings_regularizers_on_bound_groups_match_autograd_and_the_hand_formula(name):
    """On LeNet's Torch-Pruning groups (conv1's channels reach conv2's input channels, conv2's reach fc1's 16
    features each): the closed-form gradient equals autograd's, and conv1's gradient is lam * c_i * w1[i] with
    group-norm's c_i = 16^((s_max - s_i) / (s_max - s_min)), s_i the root of the mean of the two layers' sums."""
    from helpers import assert_closed_form_equals_autograd

    model, structure = _lenet()
    model = model.double()
    structure = derive(model, SHAPE)
    method = get_method(name)()
    method.bind(structure.units)
    assert_closed_form_equals_autograd(method, model)
    for p in model.parameters():
        p.grad = None
    method.add_penalty_grad(model, 0.5)
    w1, w2 = model.conv1.weight.detach(), model.conv2.weight.detach()
    s = ((w1.square().flatten(1).sum(1) + w2.square().sum(dim=(0, 2, 3))) / 2).sqrt()
    c = 16.0 ** ((s.max() - s) / (s.max() - s.min())) if name == "group-norm" else torch.ones(20, dtype=s.dtype)
    torch.testing.assert_close(model.conv1.weight.grad, 0.5 * c.view(-1, 1, 1, 1) * w1)
    scores = method.importance(model, State(model, SHAPE, method=method))
    torch.testing.assert_close(scores["conv1"], s.float())


def test_growing_regs_weak_groups_are_pushed_harder_each_epoch():
    model, structure = _lenet()
    method = get_method("growing-reg")(lam=1e-4, delta=1e-4)
    method.bind(structure.units)
    state = State(model, SHAPE, method=method)
    with torch.no_grad():
        model.conv1.weight[3].mul_(0.01)            # the weakest group of conv1
    method.penalty(model)                           # coefficients start at 1
    assert torch.equal(method.growth["conv1"], torch.ones(20))
    method.on_epoch_end(model, state)
    c = method.growth["conv1"]
    assert c[3] == pytest.approx(2.0) and c.argmax() == 3 and c.min() == 1.0   # the strongest did not grow
    again = get_method("growing-reg")(lam=1e-4, delta=1e-4)
    again.load_state_dict(method.state_dict())
    assert torch.equal(again.growth["conv1"], c)


@pytest.mark.slow
def test_bench_run_prunes_to_the_target_adds_scratch_controls_and_the_report_compares_them(tmp_path):
    """The protocol through `bench run` (real Ray, real sqlite store): one trial per method, target and seed,
    each on its target within one group, a scratch control per trial at its widths, the report's table."""
    import json

    from mlflow.tracking import MlflowClient

    from helpers import bench

    proc = bench(tmp_path, "run", "--protocol", "prune-to-target", "--methods", "none,l1l2,random",
                 "--target-flops-reduction", "0.5", "--seeds", "0,1", "--epochs", "2", "--sparse-epochs", "1",
                 "--dataset", "synthetic", "--limit-train", "64", "--limit-test", "32", "--controls", "scratch",
                 "--latency-time", "0", "--system-metrics-interval", "0", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = [r for r in client.search_runs([client.get_experiment_by_name("lenet5-synthetic").experiment_id])
            if r.data.tags.get("bench.kind") == "trial"]
    assert all(r.info.status == "FINISHED" for r in runs) and len(runs) == 2 + 4 + 4
    pruned = {r.info.run_name: r for r in runs if r.data.params.get("target") and not r.data.params.get("control")}
    assert sorted(pruned) == ["l1l2-lam0.5-flops0.5-s0", "l1l2-lam0.5-flops0.5-s1", "random-flops0.5-s0",
                              "random-flops0.5-s1"]
    model, structure = _lenet()
    for name, run in pruned.items():
        assert run.data.params["target_kind"] == "flops" and float(run.data.params["target"]) == 0.5
        kept = json.loads(open(client.download_artifacts(run.info.run_id, "kept_groups.json")).read())
        removed = {u: torch.ones(s, dtype=torch.bool) for u, s in (("conv1", 20), ("conv2", 50))}
        for unit, idx in kept.items():
            removed[unit][idx] = False
        achieved = measure(structure, removed)[N.FLOPS_REDUCTION]
        assert achieved == pytest.approx(run.data.metrics["flops_reduction"]) and achieved >= 0.5
        # one group fewer misses the target: giving any one removed group of the last unit back drops below it
        assert any(measure(structure, {**removed, u: removed[u].clone().index_fill_(0, torch.tensor([i]), False)})
                   [N.FLOPS_REDUCTION] < 0.5 for u in removed for i in removed[u].nonzero().flatten().tolist())
        control = next(r for r in runs if r.data.params.get("control_of") == name)
        for unit, idx in kept.items():   # the scratch control has its source's widths
            assert int(control.data.metrics[f"filters_alive/{unit}"]) == len(idx)
    proc = bench(tmp_path, "report")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (tmp_path / "reports" / "lenet5-synthetic" / "report.md").read_text()
    assert "## Accuracy at equal target: flops 0.5 removed" in report
    assert "| scratch (widths of l1l2) | 2 |" in report and "| random | 2 |" in report
    assert "| dense (none) | 2 |" in report and "## Stability of the kept groups across seeds" in report
    assert "## Highest sparsity within" not in report   # the regularize protocol's sections are left out


def test_a_scratch_control_starts_at_its_widths_from_the_seeds_weights_at_the_narrow_layers_scale():
    from bench.config import TrialConfig
    from bench.trainer import _Loop

    data = make_synthetic(SHAPE, n_train=64, n_test=32)
    source = _trial("l1l2")
    control = TrialConfig("none", {}, "none", 0, source.train, None,
                          {"kind": "scratch", "of": source.name, "method": "l1l2", "target": ["flops", 0.5],
                           "widths": {"conv1": 5, "conv2": 10}})
    dense = _Loop(source, data).model   # every trial of seed 0 starts from these weights
    loop = _Loop(control, data)
    model = loop.model
    assert [int(loop.masks.alive(u).sum()) for u in ("conv1", "conv2")] == [5, 10]
    assert not model.conv1.weight[5:].any() and torch.equal(model.conv1.weight[:5], dense.conv1.weight[:5])
    # conv2 reads 5 of 20 channels: x2; fc1 reads 10 of 50 channels' features: x sqrt(5)
    torch.testing.assert_close(model.conv2.weight[:10, :5], 2.0 * dense.conv2.weight[:10, :5])
    torch.testing.assert_close(model.fc1.weight, math.sqrt(5.0) * dense.fc1.weight * (model.fc1.weight != 0))
