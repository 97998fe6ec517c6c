"""Groups of coupled channels on models of any topology: derivation, counts, compaction, the check, the norms.

Representative torchvision models at small inputs (the way timm's tests run over its registry) plus the user
modules of tests/nets.py; the heavy ones are in the slow run."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from bench import metrics as M
from bench.models import build_model
from bench.structure import StructureError, compact, counts, derive, measured_flops, removed_groups
from bench.zeroing import FilterMasks, parse_zeroing
from methods import get_method
from methods.groups import kernel_norms

from helpers import assert_closed_form_equals_autograd

NETS = str(Path(__file__).with_name("nets.py"))
SHAPE = (3, 32, 32)

REPRESENTATIVE = [
    "torchvision:resnet18",
    "torchvision:mobilenet_v2",
    "torchvision:squeezenet1_1",
    f"{NETS}:MyNet",
    pytest.param("torchvision:vgg11_bn", marks=pytest.mark.slow),
    pytest.param("torchvision:densenet121", marks=pytest.mark.slow),
]


def remove_at_random(structure, seed=0):
    """Between 0 and size - 1 groups of every unit removed through the masks, as training leaves them."""
    masks = FilterMasks(structure)
    g = torch.Generator().manual_seed(seed)
    for unit in structure.units:
        k = int(torch.randint(0, unit.size, (1,), generator=g))
        masks.remove(unit.name, torch.randperm(unit.size, generator=g)[:k])
    return masks


def randomise_batchnorms(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _with_coupling():
    """Every model alone, and with --prune-coupled where it has residual streams to couple (a plain chain or
    concatenations, as vgg11_bn and densenet121, give the same structure both ways)."""
    for source in REPRESENTATIVE:
        values, marks = (source.values[0], source.marks) if hasattr(source, "values") else (source, ())
        for coupled in (False, True) if not any(n in values for n in ("vgg11_bn", "densenet121")) else (False,):
            yield pytest.param(source if isinstance(source, str) else values, coupled, marks=marks,
                               id=f"{values}-{'coupled' if coupled else 'single'}")


@pytest.mark.parametrize("source, coupled", _with_coupling())
def test_compact_model_equals_the_masked_one_and_counts_are_exact(source, coupled):
    torch.manual_seed(0)
    model = build_model(source, SHAPE, 10).eval()
    randomise_batchnorms(model)
    structure = derive(model, SHAPE, prune_coupled=coupled, check=True)
    assert structure.units, structure.skipped
    dense_params, dense_flops = M.filter_metrics(structure)[M.PARAMS], M.filter_metrics(structure)[M.FLOPS]
    assert dense_params == sum(p.numel() for p in model.parameters())
    assert dense_flops == measured_flops(model, SHAPE)
    remove_at_random(structure)
    small = compact(model, structure).eval()
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        want, got = model(x), small(x)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
    metrics = M.filter_metrics(structure)
    assert metrics[M.PARAMS] == sum(p.numel() for p in small.parameters()) < dense_params
    assert metrics[M.FLOPS] == measured_flops(small, SHAPE) < dense_flops
    # every conv of a unit lost exactly its unit's removed groups
    modules = dict(small.named_modules())
    for unit in structure.units:
        kept = unit.size - int(removed_groups(unit).sum())
        for part in unit.convs:
            if part.offset == 0 and part.module.out_channels == unit.size:
                assert modules[part.name].out_channels == kept


def test_residual_streams_are_coupled_units_and_left_alone_unless_asked():
    model = build_model("torchvision:resnet18", SHAPE, 10)
    plain = derive(model, SHAPE)
    assert plain.eligible == tuple(f"layer{s}.{b}.conv1" for s in (1, 2, 3, 4) for b in (0, 1))
    assert "coupled" in plain.skipped["layer2.0.conv2"] and "--prune-coupled" in plain.skipped["layer2.0.conv2"]
    coupled = derive(model, SHAPE, prune_coupled=True)
    stream = coupled.by_name["layer2.0.conv2"]
    assert [p.name for p in stream.convs] == ["layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2"]
    assert stream.filters == 3 and stream.coupled
    assert {p.name for p in stream.norms} == {"layer2.0.bn2", "layer2.0.downsample.1", "layer2.1.bn2"}
    # the first conv writes into layer1's stream: the stem is a member of it
    assert [p.name for p in coupled.by_name["conv1"].convs] == ["conv1", "layer1.0.conv2", "layer1.1.conv2"]


def test_a_depthwise_conv_is_part_of_the_group_of_the_filter_that_feeds_it():
    structure = derive(build_model(f"{NETS}:MyNet", SHAPE, 10), SHAPE)
    unit = structure.by_name["expand.0"]
    assert [p.name for p in unit.convs] == ["expand.0", "depthwise.0"] and unit.filters == 1
    assert [p.name for p in unit.norms] == ["expand.1", "depthwise.1"]
    assert [f.layer for f in structure.feeds["expand.0"]] == ["project.0"]
    assert structure.filters() == {"body.0": 16, "expand.0": 48, "depthwise.0": 48, "project.0": 32}


def test_a_coupled_group_is_scored_by_the_mean_of_its_filters_and_can_be_removed():
    """Stream of MyNet (stem.0 and body.3 write into it), 16 groups; body.0 is a plain unit of 16 filters.
    Every filter has l1 norm 2 except group 5 of the stream, whose two filters have l1 norms 0.01 and 0.03: its
    pseudo-norm (eq. 2, /16 filters) is mean(0.01, 0.03) / 16 = 0.00125. N sums to about 10 (stream and body.0:
    16 x 2/16 each; expand: 48 x (2/48 + 2/48 for its depthwise channel); project: 32 x 2/32), so group 5's share
    is 0.000125 and the next smallest (a project filter, 0.0625 / 10) is 0.00625: cumulative:0.001 removes group
    5 alone. A plain sum would score it 0.0025, still the smallest here, but a 3-member stream would then need
    three times smaller filters than a single conv's to rank alike."""
    torch.manual_seed(0)
    model = build_model(f"{NETS}:MyNet", SHAPE, 10).eval()
    randomise_batchnorms(model)
    structure = derive(model, SHAPE, prune_coupled=True, check=True)
    stream = structure.by_name["stem.0"]
    assert [p.name for p in stream.convs] == ["stem.0", "body.3"]
    with torch.no_grad():
        for unit in structure.units:
            for part, w in unit.weights():
                w.copy_(torch.sign(torch.randn_like(w)) * 2.0 / w[0].numel())
        for conv, total in ((model.stem[0], 0.01), (model.body[3], 0.03)):
            conv.weight[5].fill_(total / conv.weight[5].numel())
    norms = kernel_norms(stream, "filters")
    assert norms[5].item() == pytest.approx((0.01 / 16 + 0.03 / 16) / 2)
    assert norms[0].item() == pytest.approx(2.0 / 16)
    masks = FilterMasks(structure)
    parse_zeroing("cumulative:0.001").on_epoch_end(masks)
    assert masks.alive("stem.0").tolist() == [i != 5 for i in range(16)]
    assert all(masks.alive(u).all() for u in masks.layers if u != "stem.0")
    small = compact(model, structure).eval()
    assert small.stem[0].out_channels == small.body[3].out_channels == 15
    assert small.body[0].in_channels == small.expand[0].in_channels == 15
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize("name, op", [("PadNet", "ConstantPadNd"), ("Shuffle", "Sub")])
def test_a_group_the_compact_model_does_not_reproduce_is_unprunable_and_names_the_operation(name, op):
    model = build_model(f"{NETS}:{name}", SHAPE, 10)
    structure = derive(model, SHAPE, prune_coupled=True, check=True)
    assert "a" not in structure.by_name
    assert "changes the outputs of the compact model" in structure.skipped["a"] and op in structure.skipped["a"]
    assert derive(model, SHAPE, prune_coupled=True, check=False).by_name.get("a") is not None


def test_layers_the_compact_model_cannot_rebuild_are_refused_by_name():
    model = nn.Sequential(OrderedDict([("a", nn.Conv2d(3, 8, 3)), ("norm", nn.GroupNorm(2, 8)),
                                       ("b", nn.Conv2d(8, 4, 3)), ("pool", nn.AdaptiveAvgPool2d(1)),
                                       ("flatten", nn.Flatten())]))
    assert derive(model, SHAPE).skipped["a"] == "touches GroupNorm norm (not rebuilt by the compact model)"


def test_a_layernorm_over_a_units_channels_is_rebuilt_with_the_full_widths_statistics():
    """A LayerNorm over a conv's channels (channels last, as ConvNeXt's): its scale and shift are zeroed with the
    group, and the compact model's PaddedLayerNorm normalises the kept channels as the masked LayerNorm did over
    all of them, the removed ones zeros."""
    torch.manual_seed(0)
    model = build_model(f"{NETS}:ChannelNorm", SHAPE, 10).eval()
    structure = derive(model, SHAPE, check=True)
    unit = structure.by_name["a"]
    assert [p.name for p in unit.norms] == ["norm"]
    FilterMasks(structure).remove("a", [1, 4, 6])
    assert float(model.norm.weight[4].detach()) == 0 == float(model.norm.bias[4].detach())
    small = compact(model, structure).eval()
    assert small.norm.full == 8 and small.norm.weight.shape == (5,) and small.a.out_channels == 5
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max().item() < 1e-5


def test_the_logits_layer_and_excluded_layers_are_never_pruned():
    structure = derive(build_model("torchvision:squeezenet1_1", SHAPE, 10), SHAPE)
    assert structure.skipped["classifier.1"] == "produces the logits"
    excluded = derive(build_model("torchvision:squeezenet1_1", SHAPE, 10), SHAPE, exclude=["features.3.*"])
    assert {"features.3.squeeze", "features.3.expand1x1"} <= set(excluded.skipped)
    assert not any(u.startswith("features.3.") for u in excluded.eligible)
    assert "features.4.squeeze" in excluded.eligible


def test_an_untraceable_model_names_the_module_that_stopped_it():
    with pytest.raises(StructureError, match=r"in module 'fc' \(Linear\)"):
        derive(build_model(f"{NETS}:Broken", SHAPE, 10), SHAPE)


def test_a_model_whose_only_conv_makes_the_logits_has_nothing_to_prune():
    model = nn.Sequential(OrderedDict([("conv", nn.Conv2d(3, 10, 1)), ("pool", nn.AdaptiveAvgPool2d(1)),
                                       ("flatten", nn.Flatten())]))
    structure = derive(model, SHAPE)
    assert structure.units == () and structure.skipped == {"conv": "produces the logits"}
    assert counts(structure, {}) == (40, measured_flops(model, SHAPE))


@pytest.mark.parametrize("name", [n for n in ("l1", "l2", "l1l2", "ssl", "l0sgl", "hgsr", "slimming")])
def test_closed_form_gradients_equal_autograd_on_coupled_and_depthwise_groups(name):
    """The group math of every closed-form method, on MyNet with its residual stream pruned as one group and a
    depthwise conv in the expansion's group."""
    torch.manual_seed(2)
    model = build_model(f"{NETS}:MyNet", SHAPE, 10).double()
    randomise_batchnorms(model)
    structure = derive(model, SHAPE, prune_coupled=True)
    method = get_method(name)()
    method.bind(structure.units)
    with torch.no_grad():
        model.body[3].weight[2].zero_()      # half of a coupled group at zero
        model.expand[0].weight[4].zero_()
    assert_closed_form_equals_autograd(method, model)


def test_group_penalties_by_hand():
    """SSL's filter group is all weights of a group; l0sgl's |g| counts them all."""
    model = build_model(f"{NETS}:MyNet", SHAPE, 10)
    structure = derive(model, SHAPE, prune_coupled=True)
    stream = structure.by_name["stem.0"]
    with torch.no_grad():
        model.stem[0].weight.fill_(0.0)
        model.body[3].weight.fill_(0.0)
        model.stem[0].weight[:, 0, 0, 0] = 3.0     # each group: one weight 3 (stem), one weight 4 (body.3)
        model.body[3].weight[:, 0, 0, 0] = 4.0
    ssl = get_method("ssl")(groups="filter", eps=0.0)
    ssl.bind([stream])
    assert ssl.penalty(model).item() == pytest.approx(16 * 5.0)
    l0 = get_method("l0sgl")(lam=1.0, eps=0.0, beta=1.0, lam0=0.0)
    l0.bind([stream])
    size = 3 * 9 + 16 * 9                          # stem filter 3x3x3, body.3 filter 16x3x3
    assert l0.penalty(model).item() == pytest.approx(16 * size ** 0.5 * 5.0)
