"""Linear channels and attention heads as units: the MLP hidden channels of ViT and ConvNeXt and ViT's heads
(torchvision's classes in small configurations, tests/nets.py), what is refused and why, the counts and the
compact model, every method on them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import names as N
from bench.config import ConfigError
from bench.config_layers import build_sweep
from bench.data import make_synthetic
from bench.models import build_model
from bench.session import prepare
from bench.console import describe_structure
from bench.layers import HeadAttention
from bench.metrics import alive_filters
from bench.structure import compact, counts, derive, measured_flops, removed_groups, width
from bench.trainer import train
from methods import get_method, list_methods

from helpers import trained_methods
from state_standin import State
from test_structure import remove_at_random

NETS = str(Path(__file__).with_name("nets.py"))
SHAPE = (3, 32, 32)
MODELS = {"tiny_vit": [f"encoder.layers.encoder_layer_{i}.{u}" for i in (0, 1) for u in ("self_attention", "mlp.0")],
          # each stage's residual stream (its stem or downsampling conv, LayerNorms, layer scale), then its MLP
          "tiny_convnext": [f"features.{s}.{i}" for s, i in ((0, 0), (1, "0.block.3"), (2, 1), (3, "0.block.3"),
                                                             (4, 1), (5, "0.block.3"), (6, 1), (7, "0.block.3"))],
          # the MLPs only: its shifted-window attention is not rebuilt, nor the streams that feed it
          "tiny_swin": [f"features.{s}.{b}.mlp.0" for s in (1, 3, 5, 7) for b in (0, 1)]}


@pytest.mark.parametrize("name", MODELS)
def test_mlp_channels_and_layernorm_streams_are_units_counted_exactly_and_compacted_to_the_masked_outputs(name):
    """A unit per MLP: its first linear layer's rows (weight and bias), the next one's input columns; a unit of
    heads per ViT attention (each head its query, key and value rows, its out_proj columns); ConvNeXt's residual
    streams with --prune-coupled (LayerNorms over them rebuilt as PaddedLayerNorm, the layer scale sliced), ViT's
    refused by name (attention); the classifier is not a unit. Random removals in every unit: the compact model
    gives the masked outputs, with num_heads and head_dim consistent; parameters and FLOPs counted from the
    structure equal the compact model's, measured by FlopCounterMode."""
    torch.manual_seed(0)
    model = build_model(f"{NETS}:{name}", SHAPE, 10).eval()
    structure = derive(model, SHAPE, prune_coupled=True, check=True)
    assert list(structure.eligible) == MODELS[name]
    mlps = [u for u in structure.units if ".mlp." in u.name or ".block." in u.name]
    assert all(len(u.convs) == 1 and not u.norms and u.name not in structure.tensors for u in mlps)
    if name == "tiny_swin":   # its attention's heads refused in one line, its streams naming it
        assert structure.skipped["features.1.0.attn"] == ("attention heads not rebuilt by the compact model: "
                                                          "ShiftedWindowAttention is not torch's nn.MultiheadAttention")
        assert structure.skipped["features.6.reduction"].startswith("touches ShiftedWindowAttention features.7.1.attn")
    elif name == "tiny_vit":   # its residual stream feeds attention, which the compact model does not rebuild
        assert structure.skipped["conv_proj"].startswith("touches MultiheadAttention encoder.layers.encoder_layer_1")
        attention = structure.by_name["encoder.layers.encoder_layer_0.self_attention"]
        assert (attention.size, attention.per, attention.filters) == (4, 16, 1)
        assert [(p.offset, p.prefix) for p in attention.convs] == [(0, "in_proj_"), (64, "in_proj_"), (128, "in_proj_")]
        (feed,) = structure.feeds[attention.name]
        assert feed.layer == attention.name + ".out_proj" and feed.index[1].tolist() == list(range(16, 32))
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
    alive = alive_filters(structure, removed)   # what each epoch records per layer: heads of an attention
    for unit in structure.units:
        kept = unit.size - int(removed[unit.name].sum())
        assert alive[unit.name] == kept and structure.filters()[unit.name] == unit.size
        if unit.per > 1:
            m = layers[unit.name]
            assert (m.num_heads, m.head_dim, m.out_proj.in_features) == (kept, 16, kept * 16)
            assert kept == unit.size or isinstance(m, HeadAttention) and m.q_weight.shape == (kept * 16, 64)
        else:
            assert width(layers[unit.name]) == kept


def test_attention_flops_are_counted_where_torchs_fused_kernels_hide_them():
    """On a CPU, MultiheadAttention runs fused kernels FlopCounterMode does not count; the structure counts each
    attention's input projection (2 * 3E * E per token), both attention products (2 * T * T * E each) and its
    out_proj (2 * E * E per token) by hand: tiny_vit's two layers (E = 64, T = 16 patches + the class token)."""
    model = build_model(f"{NETS}:tiny_vit", SHAPE, 10).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fused:
        model(torch.zeros(1, *SHAPE))
    e, t = 64, 17
    assert measured_flops(model, SHAPE) - fused.get_total_flops() == 2 * (2 * 3 * e * e * t + 4 * t * t * e
                                                                          + 2 * e * e * t)
    structure = derive(model, SHAPE)
    one = torch.tensor([False, True, False, False])
    dense, pruned = counts(structure, {}), counts(structure, {"encoder.layers.encoder_layer_0.self_attention": one})
    assert dense[1] - pruned[1] == 2 * 3 * 16 * e * t + 4 * t * t * 16 + 2 * e * 16 * t
    assert dense[0] - pruned[0] == 3 * 16 * (e + 1) + e * 16


def test_attention_the_compact_model_cannot_rebuild_is_refused_in_one_line_and_the_rest_prunes():
    """A user's attention (one qkv linear layer reshaped into heads, not a MultiheadAttention): its heads are
    refused in one line naming the module and why (Torch-Pruning does not trace into it), the stream that feeds it
    names it; the MLP is still a unit."""
    model = build_model(f"{NETS}:UserViT", SHAPE, 10).eval()
    structure = derive(model, SHAPE, check=True)
    assert structure.eligible == ("mlp.0",)
    assert describe_structure(structure) == [
        "kept   embed: touches UserAttention attn (not rebuilt by the compact model)",
        "kept   attn: attention heads not rebuilt by the compact model: UserAttention is not torch's "
        "nn.MultiheadAttention"]
    # a target only the refused heads could reach: one error before any training
    sweep = build_sweep({"model": f"{NETS}:UserViT", "methods": ["taylor"], "dataset": "synthetic", "epochs": 2,
                         "sparse_epochs": 1, "image_size": 32, "protocol": "prune-to-target",
                         "target_flops_reduction": (0.9,), "limit_train": 64, "limit_test": 32})
    with pytest.raises(ConfigError, match=r"^--target-flops-reduction 0.9 cannot be reached: at most 25.4% \(flops\)"):
        prepare(sweep, write=lambda line: None)


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


REFUSED = {**{(name, "nisp"): "has attention" for name in ("tiny_vit", "tiny_swin")},
           **{(name, method): "no BatchNorm" for name in MODELS for method in ("bn-scale", "slimming")}}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", [m for m in trained_methods(list_methods(), heavy=True) if m != "none"] + ["bn-scale"])
def test_every_method_prunes_mlp_channels_and_heads_to_a_flops_target_or_is_refused_before_training(name, method):
    """Prune-to-target 30 % fewer FLOPs on the MLP channels (and ViT's heads): reached within one group; the
    methods that cannot work on these units are refused before any training, saying why."""
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


def test_a_criterion_scores_a_head_by_the_mean_of_its_channels_group_scores():
    """Torch-Pruning's criteria score a head through a group over the attention's channels (query, key and value
    rows of each channel, its out_proj column): magnitude-l1 gives channel c the mean of those four l1 norms and a
    head the mean over its 16 channels, computed here by hand."""
    torch.manual_seed(0)
    model = build_model(f"{NETS}:tiny_vit", SHAPE, 10).eval()
    method = get_method("magnitude-l1")()
    method.bind(derive(model, SHAPE).units)
    layer = "encoder.layers.encoder_layer_1.self_attention"
    got = method.importance(model, State(model, SHAPE, method=method))[layer]
    attention = model.get_submodule(layer)
    w, out = attention.in_proj_weight.detach().abs(), attention.out_proj.weight.detach().abs()
    channel = (w[:64].sum(1) + w[64:128].sum(1) + w[128:].sum(1) + out.sum(0)) / 4
    torch.testing.assert_close(got, channel.view(4, 16).mean(1))


def test_a_compact_vits_measurements_export_and_first_filters(tmp_path):
    """What a finished trial saves of a ViT whose heads were pruned: its MACs as Torch-Pruning counts a
    MultiheadAttention (the kept heads' width in place of the embedding's: one head of 16 fewer in 17 tokens is
    80,257 fewer, by hand), the exported program giving the compact outputs, and the first filters (the MLP's rows as
    1x1 kernels: the first unit is an attention)."""
    from bench import compact as C

    torch.manual_seed(0)
    model = build_model(f"{NETS}:tiny_vit", SHAPE, 10).eval()
    structure = derive(model, SHAPE)
    dense = C.measure(model, structure, SHAPE, min_run_time=0)[1]["compact_macs"]
    assert dense == C.torch_pruning_macs(model, SHAPE)   # every head kept: Torch-Pruning's own count
    with torch.no_grad():
        for rows in structure.by_name["encoder.layers.encoder_layer_0.self_attention"].parameters():
            rows[1] = 0
    small, got = C.measure(model, structure, SHAPE, min_run_time=0)
    t, e, d = 17, 64, 16
    assert dense - got["compact_macs"] == t * d + 3 * t * e * d + 3 * t * d + (2 * t * t * d + t * t) + t * e * d
    program = torch.export.load(C.export_program(small, SHAPE, tmp_path / "vit.pt2")).module()
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x), rtol=1e-4, atol=1e-5)
    first = C.save_first_filters(tmp_path / "first.npy", model, structure)
    assert first is not None and np.load(first).shape == (128, 64, 1, 1)


def test_exclude_layers_leaves_an_attentions_heads_out():
    """--exclude-layers (fnmatch on unit names) holds for a unit of heads as for a conv."""
    model = build_model(f"{NETS}:tiny_vit", SHAPE, 10).eval()
    structure = derive(model, SHAPE, exclude=["*layer_0.self_attention"])
    assert structure.skipped["encoder.layers.encoder_layer_0.self_attention"] == "excluded by --exclude-layers"
    assert "encoder.layers.encoder_layer_1.self_attention" in structure.eligible
