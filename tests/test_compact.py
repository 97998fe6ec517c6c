"""Compact models: removed filters physically deleted, outputs equal to the masked model's, exact counts,
reloadable exports."""
from __future__ import annotations

import pytest
import torch

from bench import compact as C
from bench import metrics as M
from bench.models import build_model, get_model_spec, list_models
from bench.structure import derive as describe
from bench.zeroing import FilterMasks


def shape_of(name: str) -> tuple[int, int, int]:
    """A registered model's input shape (C, H, W)."""
    return get_model_spec(name).default_input


def trained_looking(name: str, seed: int = 0):
    """A model with random weights, BN statistics that are not the defaults, and random filters removed in
    every conv layer through the masks (as training leaves them)."""
    torch.manual_seed(seed)
    shape = shape_of(name)
    model = build_model(name, shape, 10)
    structure = describe(model, shape)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # moves BN running statistics away from 0 / 1
            model(torch.randn(16, *shape))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    masks = FilterMasks(structure)
    g = torch.Generator().manual_seed(seed)
    for layer in structure.eligible:
        n = masks.mask(layer).numel()
        k = int(torch.randint(1, n, (1,), generator=g))  # between 1 and n - 1 filters go
        masks.remove(layer, torch.randperm(n, generator=g)[:k])
    return model.eval(), structure, masks


@pytest.mark.parametrize("name", list_models())
def test_compact_outputs_equal_masked_outputs_and_counts_match(name):
    model, structure, masks = trained_looking(name)
    shape = shape_of(name)
    small = C.compact(model, structure).eval()
    alive = M.alive_filters(structure)
    assert all(0 < alive[layer] < masks.mask(layer).numel() for layer in structure.eligible)
    x = torch.randn(8, *shape)
    with torch.no_grad():
        diff = (small(x) - model(x)).abs().max().item()
    assert diff < 1e-5
    modules = dict(small.named_modules())
    assert {layer: modules[layer].out_channels for layer in structure.eligible} == alive
    assert small.widths == C.conv_widths(small)
    assert C.count_params(small) == M.structural_params(structure, alive)
    # FlopCounterMode on the compact model measures exactly the structural count (it counts conv and linear
    # multiply-adds only; BN, pooling, ReLU and bias additions are left out by both)
    assert C.measured_flops(small, shape) == M.structural_flops(structure, alive)
    assert C.measured_flops(small, shape) < C.measured_flops(model, shape)
    # the original is untouched
    assert C.conv_widths(model) == build_model(name, shape, 10).widths


def test_compact_of_a_model_without_removed_filters_is_the_same_network():
    model = build_model("lenet5", (1, 28, 28), 10).eval()
    small = C.compact(model, describe(model, (1, 28, 28)))
    x = torch.randn(4, 1, 28, 28)
    assert C.conv_widths(small) == (20, 50)
    assert torch.equal(small(x), model(x))


def test_compact_keeps_exactly_the_alive_filters_in_order():
    model = build_model("lenet5", (1, 28, 28), 10)
    structure = describe(model, (1, 28, 28))
    masks = FilterMasks(structure)
    masks.remove("conv1", [0, 5])
    masks.remove("conv2", list(range(1, 50)))  # only filter 0 of conv2 is left
    small = C.compact(model, structure)
    keep1 = [i for i in range(20) if i not in (0, 5)]
    assert torch.equal(small.conv1.weight, model.conv1.weight[keep1])
    assert torch.equal(small.conv2.weight, model.conv2.weight[[0]][:, keep1])
    assert torch.equal(small.fc1.weight, model.fc1.weight[:, :16])  # conv2's filter 0 is features 0..15
    assert small.fc1.in_features == 16 and small.conv2.in_channels == 18


@pytest.mark.parametrize("name", list_models())
def test_saved_compact_model_reloads_with_the_same_outputs(tmp_path, name):
    model, structure, _ = trained_looking(name, seed=1)
    shape = shape_of(name)
    small = C.compact(model, structure).eval()
    path = C.save_compact(tmp_path / "m.pt", small, name, shape, 10, {"conv1": 3})
    again, info = C.load_compact(path)
    assert info["model"] == name and info["widths"] == C.conv_widths(small) and info["removed"] == {"conv1": 3}
    x = torch.randn(5, *shape)
    with torch.no_grad():
        assert torch.equal(again(x), small(x))


def test_resnet_prunes_only_block_internal_convs_and_keeps_the_residual_stream():
    model, structure, masks = trained_looking("resnet20", seed=3)
    assert structure.eligible == tuple(f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3))
    # the second conv of each block reads the first conv's filters; the stem and second convs write into the
    # residual streams, which are coupled (and padded by option-A shortcuts): not pruned
    assert [f.layer for f in structure.feeds["layer2.1.conv1"]] == ["layer2.1.conv2"]
    assert "conv1" in structure.skipped and "layer2.1.conv2" not in structure.by_name
    small = C.compact(model, structure)
    assert small.layer3[2].conv2.out_channels == 64 and small.conv1.out_channels == 16
    assert small.layer1[0].conv2.in_channels == masks.alive("layer1.0.conv1").sum()
    # the dense model has 269,722 parameters (He et al.: 0.27M); removals shrink only block-internal convs
    assert C.count_params(build_model("resnet20", (3, 32, 32), 10)) == 269_722
    assert C.count_params(build_model("resnet56", (3, 32, 32), 10)) == 853_018


def test_exported_program_loads_with_plain_torch(tmp_path):
    model, structure, _ = trained_looking("lenet5", seed=2)
    small = C.compact(model, structure).eval()
    path = C.export_program(small, (1, 28, 28), tmp_path / "m.pt2")
    loaded = torch.export.load(str(path)).module()
    for batch in (1, 64):
        x = torch.randn(batch, 1, 28, 28)
        with torch.no_grad():
            assert (loaded(x) - small(x)).abs().max().item() < 1e-6


def test_load_compact_refuses_other_files(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="not a compact model written by bench"):
        C.load_compact(bad)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt: not a readable compact model"):
        C.load_compact(tmp_path / "junk.pt")


def test_measure_reports_compact_counts_and_latencies():
    model, structure, masks = trained_looking("lenet5")
    masks.remove("conv1", list(range(19)))
    masks.remove("conv2", list(range(45)))
    small, m = C.measure(model, structure, (1, 28, 28), min_run_time=0.05)
    assert set(m) == {"compact_params", "compact_flops", "compact_macs", "latency_ms_b1", "latency_ms_b64",
                      "dense_latency_ms_b1", "dense_latency_ms_b64", "speedup_b1", "speedup_b64"}
    assert m["compact_params"] == M.structural_params(structure, M.alive_filters(structure))
    assert m["compact_flops"] == M.structural_flops(structure, M.alive_filters(structure))
    alive = M.alive_filters(structure)
    assert alive["conv1"] == 1 and alive["conv2"] <= 5
    assert C.conv_widths(small) == (alive["conv1"], alive["conv2"]) and next(small.parameters()).device.type == "cpu"
    for b in (1, 64):  # speed itself is measured in benchmarks, not asserted here
        assert m[f"latency_ms_b{b}"] > 0 and m[f"dense_latency_ms_b{b}"] > 0
        assert m[f"speedup_b{b}"] == pytest.approx(m[f"dense_latency_ms_b{b}"] / m[f"latency_ms_b{b}"])
    # --latency-time 0: the counts, no timing
    again, counts = C.measure(model, structure, (1, 28, 28), min_run_time=0)
    assert counts == {k: m[k] for k in ("compact_params", "compact_flops", "compact_macs")}
    assert C.conv_widths(again) == C.conv_widths(small)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none; run it on a GPU machine)")
def test_measure_on_a_gpu_trial_times_both_models_there_too():
    model, structure, masks = trained_looking("lenet5")
    masks.remove("conv1", list(range(19)))
    small, m = C.measure(model.cuda(), structure, (1, 28, 28), min_run_time=0.05, device="cuda")
    for b in (1, 64):
        assert m[f"gpu_latency_ms_b{b}"] > 0 and m[f"gpu_dense_latency_ms_b{b}"] > 0
        assert m[f"gpu_speedup_b{b}"] == pytest.approx(m[f"gpu_dense_latency_ms_b{b}"] / m[f"gpu_latency_ms_b{b}"])
    assert next(small.parameters()).device.type == "cpu"   # the compact model itself stays on the CPU


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_the_logged_macs_are_torch_prunings_count_of_the_same_channels_pruned_by_torch_pruning(name):
    """compact_macs (the report's MACs column) equals tp.utils.count_ops_and_params on the model Torch-Pruning
    itself prunes to the same channels: the number its tables (and most papers) quote."""
    import copy

    import torch_pruning as tp

    model, structure, masks = trained_looking(name)
    shape = shape_of(name)
    logged = C.measure(model, structure, shape, min_run_time=0)[1]["compact_macs"]
    theirs = copy.deepcopy(model)
    example = torch.zeros(1, *shape)
    graph = tp.DependencyGraph().build_dependency(theirs, example_inputs=example)
    modules = dict(theirs.named_modules())
    for layer in structure.eligible:
        removed = (~masks.alive(layer)).nonzero().flatten().tolist()
        graph.get_pruning_group(modules[layer], tp.prune_conv_out_channels, idxs=removed).prune()
    macs, params = tp.utils.count_ops_and_params(theirs.eval(), example)
    assert logged == macs and params == C.count_params(C.compact(model, structure))
    dense_macs, _ = tp.utils.count_ops_and_params(build_model(name, shape, 10).eval(), example)
    assert logged < dense_macs


def test_a_compact_program_is_timed_against_the_dense_model(tmp_path):
    """bench report --latency times models bench cannot rebuild from their export program (which may refuse
    eval(); the wrapper takes it); paired() alternates the order and gives medians and the ratio's range."""
    from bench.latency import _Program, paired

    model, structure, masks = trained_looking("lenet5")
    program = torch.export.load(str(C.export_program(C.compact(model, structure).eval(), (1, 28, 28),
                                                     tmp_path / "m.pt2"))).module()
    got = paired(model, _Program(program), (1, 28, 28), batch=2, rounds=3, min_run_time=0.01)
    assert got["low"] <= got["ratio"] <= got["high"] and got["a_ms"] > 0 and got["b_ms"] > 0


def test_an_option_b_resnets_pruned_residual_streams_compact_and_rebuild_from_widths():
    """resnet20b with --prune-coupled: each stage's stream (stem or shortcut conv and every block's second conv)
    is one unit; random groups of every unit removed, the compact model and the model rebuilt from its widths
    give the masked model's outputs, and its parameter count is the structural one."""
    shape = (3, 32, 32)
    torch.manual_seed(0)
    model = build_model("resnet20b", shape, 10)
    structure = describe(model, shape, prune_coupled=True)
    streams = [u for u in structure.units if u.coupled]
    assert [len(u.convs) for u in streams] == [4, 4, 4] and not structure.skipped
    masks = FilterMasks(structure)
    g = torch.Generator().manual_seed(1)
    for unit in structure.units:
        masks.remove(unit.name, torch.randperm(unit.size, generator=g)[:unit.size // 3])
    model.eval()
    small = C.compact(model, structure).eval()
    rebuilt = build_model("resnet20b", shape, 10, widths=C.conv_widths(small)).eval()
    rebuilt.load_state_dict(small.state_dict())
    x = torch.randn(4, *shape)
    with torch.no_grad():
        want = model(x)
        assert (small(x) - want).abs().max() < 1e-5 and (rebuilt(x) - want).abs().max() < 1e-5
    assert C.conv_widths(small)[:2] == (11, 11)   # the stem's stream lost a third, as did layer1.0.conv1
    assert C.count_params(small) == M.structural_params(structure, M.alive_filters(structure))
