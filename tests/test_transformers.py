"""Linear channels as units: the MLP hidden channels of ViT and ConvNeXt (torchvision's classes in small
configurations, tests/nets.py), what is refused and why, the counts and the compact model, every method on them."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench import names as N
from bench.config import ConfigError
from bench.config_layers import build_sweep
from bench.data import make_synthetic
from bench.models import build_model
from bench.session import prepare
from bench.structure import compact, counts, derive, measured_flops, removed_groups, width
from bench.trainer import train
from methods import list_methods

from helpers import trained_methods
from test_structure import remove_at_random

NETS = str(Path(__file__).with_name("nets.py"))
SHAPE = (3, 32, 32)
MODELS = {"tiny_vit": [f"encoder.layers.encoder_layer_{i}.mlp.0" for i in (0, 1)],
          # each stage's residual stream (its stem or downsampling conv, LayerNorms, layer scale), then its MLP
          "tiny_convnext": [f"features.{s}.{i}" for s, i in ((0, 0), (1, "0.block.3"), (2, 1), (3, "0.block.3"),
                                                             (4, 1), (5, "0.block.3"), (6, 1), (7, "0.block.3"))]}


@pytest.mark.parametrize("name", MODELS)
def test_mlp_channels_and_layernorm_streams_are_units_counted_exactly_and_compacted_to_the_masked_outputs(name):
    """A unit per MLP: its first linear layer's rows (weight and bias), the next one's input columns; ConvNeXt's
    residual streams with --prune-coupled (LayerNorms over them rebuilt as PaddedLayerNorm, the layer scale
    sliced), ViT's refused by name (attention); the classifier is not a unit. Random removals in every unit: the
    compact model gives the masked outputs; parameters and FLOPs counted from the structure equal the compact
    model's, measured by FlopCounterMode."""
    torch.manual_seed(0)
    model = build_model(f"{NETS}:{name}", SHAPE, 10).eval()
    structure = derive(model, SHAPE, prune_coupled=True, check=True)
    assert list(structure.eligible) == MODELS[name]
    mlps = [u for u in structure.units if ".mlp." in u.name or ".block." in u.name]
    assert all(len(u.convs) == 1 and not u.norms and u.name not in structure.tensors for u in mlps)
    if name == "tiny_vit":   # its residual stream feeds attention, which the compact model does not rebuild
        assert structure.skipped["conv_proj"].startswith("touches MultiheadAttention encoder.layers.encoder_layer_1")
    else:   # a stream: the downsampling conv, every block's output linear and depthwise conv, the LayerNorms
        stream = structure.by_name["features.2.1"]
        assert [p.name for p in stream.convs] == ["features.2.1", "features.3.0.block.0", "features.3.0.block.5"]
        assert [p.name for p in stream.norms] == ["features.3.0.block.2", "features.4.0"]
        assert [t.name for t in structure.tensors["features.2.1"]] == ["features.3.0.layer_scale"]
    assert not {"heads.head", "classifier.2"} & {*structure.eligible, *structure.skipped}   # a classifier: no unit
    dense = counts(structure, {})
    assert dense == (sum(p.numel() for p in model.parameters()), measured_flops(model, SHAPE))
    remove_at_random(structure)
    removed = {u.name: removed_groups(u) for u in structure.units}
    small = compact(model, structure).eval()
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        want, got = model(x), small(x)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
    params, flops = counts(structure, removed)
    assert params == sum(p.numel() for p in small.parameters()) < dense[0]
    assert flops == measured_flops(small, SHAPE) < dense[1]
    layers = dict(small.named_modules())
    for unit in structure.units:
        assert width(layers[unit.name]) == unit.size - int(removed[unit.name].sum())


def test_a_classifiers_linear_layers_are_not_units():
    """Linear layers that run once per example (after pooling or a flatten) are a classifier, as before: LeNet-5's
    units are its two convs, its fully connected layers are not pruned."""
    structure = derive(build_model("lenet5", (1, 28, 28), 10), (1, 28, 28))
    assert structure.eligible == ("conv1", "conv2")


def _one_group_flops(structure):
    """The most FLOPs the removal of one group saves in any unit (how far past a target a prune may land)."""
    dense = counts(structure, {})[1]
    out = 0
    for unit in structure.units:
        one = torch.zeros(unit.size, dtype=torch.bool)
        one[0] = True
        out = max(out, dense - counts(structure, {unit.name: one})[1])
    return out / dense


REFUSED = {("tiny_vit", "nisp"): "has attention", ("tiny_vit", "bn-scale"): "no BatchNorm",
           ("tiny_vit", "slimming"): "no BatchNorm", ("tiny_convnext", "bn-scale"): "no BatchNorm",
           ("tiny_convnext", "slimming"): "no BatchNorm"}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", [m for m in trained_methods(list_methods(), heavy=True) if m != "none"] + ["bn-scale"])
def test_every_method_prunes_mlp_channels_to_a_flops_target_or_is_refused_before_training(name, method):
    """Prune-to-target 30 % fewer FLOPs on the MLP channels: reached within one group, removed channels zero;
    the methods that cannot work on these units are refused before any training, saying why."""
    settings = {"model": f"{NETS}:{name}", "methods": [method], "dataset": "synthetic", "epochs": 2,
                "sparse_epochs": 1, "device": "cpu", "image_size": 32, "batch_size": 32, "prune_coupled": True,
                "protocol": "prune-to-target", "target_flops_reduction": (0.3,), "limit_train": 64,
                "limit_test": 32, **({"options": {method: {"samples": 16}}} if method in ("hgsr", "nisp") else {})}
    sweep = build_sweep(settings)
    if (name, method) in REFUSED:
        with pytest.raises(ConfigError, match=f"method '{method}' cannot run on model .*{REFUSED[name, method]}"):
            prepare(sweep, write=lambda line: None)
        return
    trials, data = prepare(sweep, write=lambda line: None)
    rows, kept = {}, {}
    train(trials[0], make_synthetic(SHAPE, n_train=64, n_test=32), report=lambda e, m: rows.__setitem__(e, dict(m)),
          finish=lambda model, structure: kept.update(model=model, structure=structure) or {})
    reached = rows[2][N.FLOPS_REDUCTION]
    assert 0.3 <= reached <= 0.3 + _one_group_flops(kept["structure"]) + 1e-9
    assert all(torch.isfinite(torch.tensor(v)) for v in rows[2].values() if isinstance(v, float))


@pytest.mark.parametrize("name", MODELS)
def test_hgsrs_own_selection_zeroes_linear_and_layernorm_channels_on_their_axis(name):
    """HGSR's pruning step measures each group's loss increase with forward hooks that zero its channels: a linear
    layer's and a LayerNorm's on the last axis (tokens or pixels first), a LayerNorm2d's on axis 1, so its own
    selection runs on ViT's MLP channels and ConvNeXt's streams."""
    settings = {"model": f"{NETS}:{name}", "methods": ["hgsr"], "dataset": "synthetic", "epochs": 2,
                "device": "cpu", "image_size": 32, "batch_size": 32, "options": {"hgsr": {"samples": 16}},
                "prune_coupled": True}
    trial = build_sweep(settings).trials()[0]
    rows = {}
    train(trial, make_synthetic(SHAPE, n_train=64, n_test=32), report=lambda e, m: rows.__setitem__(e, dict(m)))
    assert 0 < rows[2][N.TOTAL_SPARSITY] < 1
