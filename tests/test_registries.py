"""Every registered model, dataset and preset, the way timm's tests run over its registry: registering one
enrols it here, with no test edit (methods enrol in test_method_contract.py the same way)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from bench.compact import compact
from bench.config_layers import build_sweep
from bench.data import DataError, get_dataset_spec, list_datasets, load_dataset, make_synthetic
from bench.models import build_model, get_model_spec, list_models
from bench.structure import derive as describe
from bench.presets import PRESETS, preset_settings
from bench.trainer import train
from helpers import (CRITERION, SAME_PATH, protocol_settings, train_keeping, trained_methods, write_cifar10,
                     write_mnist)
from methods import MethodError, get_method, list_methods
from state_standin import State

# hgsr measures one loss per alive filter; on the deeper models a few samples keep that to seconds
FEW_SAMPLES = {"hgsr": {"samples": 8}, "nisp": {"samples": 16}}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_its_sweep(name):
    settings = preset_settings(name)
    sweep = build_sweep(settings)
    trials = sweep.trials()
    assert sweep.experiment_name == name and sweep.preset == name
    assert {t.method for t in trials} == set(settings["methods"])
    assert all(t.train.model == settings["model"] and t.train.dataset == settings["dataset"] for t in trials)
    for method, values in {**settings.get("lambdas", {}), **settings.get("ratios", {})}.items():
        assert sorted(t.swept_value for t in trials if t.method == method) == sorted(values)
    assert len({t.key for t in trials}) == len(trials)   # every trial is its own
    # the preset's model takes the preset's data, and every method of it accepts the model
    shape = get_model_spec(settings["model"]).default_input
    model = build_model(settings["model"], shape, 10)
    for method in settings["methods"]:
        get_method(method)().check_model(model)


# small files in the built-in sets' real formats, so that their loaders run here (Fashion-MNIST: Debian's files
# where installed; a dataset with nothing here must name the folders it searched)
WRITERS = {"mnist": lambda folder: write_mnist(folder), "cifar10": lambda folder: write_cifar10(
    folder / "cifar-10-batches-py", per_batch=8)}


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_loads_as_uint8_or_names_where_it_looked(name, tmp_path):
    if name in WRITERS:
        WRITERS[name](tmp_path)
    try:
        ds = load_dataset(name, data_dir=tmp_path, limit_train=40, limit_test=20, download=False,
                          input_shape=(1, 28, 28))
    except DataError as err:   # no files here and no download: the error names the folder searched
        assert name not in WRITERS and str(tmp_path) in str(err)
        return
    assert ds.train_x.dtype == np.uint8 and ds.test_x.dtype == np.uint8
    assert ds.train_x.ndim == 4 and ds.train_x.shape[1:] == ds.test_x.shape[1:]
    assert 0 < len(ds.train_x) <= 40 and 0 < len(ds.test_x) <= 20 and len(ds.train_y) == len(ds.train_x)
    assert int(ds.train_y.max()) < ds.num_classes and len(ds.mean) == len(ds.std) == ds.train_x.shape[1]
    assert get_dataset_spec(name).description


def _accepts(method: str, model) -> bool:
    try:
        get_method(method)().check_model(model)
        return True
    except MethodError as err:   # a refusal says why, before any training
        assert str(err)
        return False


# hgsr measures one loss per filter: on resnet56 (2 000 filters) that repeats resnet20's topology at 3x its cost;
# the criteria's and group regularizers' representatives repeat resnet20's and lenet's on resnet56 and vgg11
SAME_COST = {("hgsr", "resnet56"), (CRITERION, "resnet56"), ("group-norm", "resnet56"), (CRITERION, "vgg11"),
             ("group-norm", "vgg11")}


def _model_params():
    """Every registered model; those with many filters (hgsr measures one loss per filter) in the slow run."""
    out = []
    for name in list_models():
        shape = get_model_spec(name).default_input
        model = build_model(name, shape, 10)
        eligible = describe(model, shape).eligible
        filters = sum(m.out_channels for n, m in model.named_modules() if n in eligible)
        out.append(pytest.param(name, marks=[pytest.mark.slow] if filters > 500 else []))
    return out


@pytest.mark.parametrize("name", _model_params())
def test_every_model_trains_under_every_method_that_accepts_it_and_compacts_exactly(name):
    shape = get_model_spec(name).default_input
    data = make_synthetic(shape, n_train=16, n_test=8)
    probe = build_model(name, shape, 10)
    structure = describe(probe, shape)
    assert structure.eligible, f"{name} has no eligible conv layer"
    methods = [m for m in trained_methods(list_methods(), heavy=True) if _accepts(m, probe)
               and (m, name) not in SAME_COST]
    if name.endswith("b") and name[:-1] in list_models():
        # an option-B ResNet's block-internal convs are its option-A twin's, which every method trains on above;
        # its residual streams are test_compact.py's option-B case: a representative few here
        methods = [m for m in methods if m in ("none", "l1l2", "group-norm", CRITERION)]
    assert "none" in methods and "l1l2" in methods
    for method in methods:
        diff, _ = _train_and_compact(name, shape, method, data, FEW_SAMPLES, examples=4)
        assert diff < 1e-4, method


def _train_and_compact(source, shape, method, data, options, examples, **settings):
    """Two epochs of ``method`` at its strongest default value (``options[method]``, if any, for its options) on
    ``source``; the largest difference between the trained model's outputs and its compact model's on
    ``examples`` random inputs, and the largest output."""
    cls = get_method(method)
    grid = {"lambdas": [max(cls.default_grid)]} if cls.sweep_axis == "lam" else protocol_settings(method)
    cfg = build_sweep({"methods": [method], "epochs": 2, "batch_size": 16, "dataset": "synthetic", "device": "cpu",
                       "model": source, "options": {method: options[method]} if method in options else {},
                       **grid, **settings}).trials()[0]
    rows, model, structure = train_keeping(cfg, data)
    assert len(rows) == 2 and all(np.isfinite(r["train_loss"]) for r in rows), method
    model = model.eval()
    small = compact(model, structure).eval()
    x = torch.randn(examples, *shape)
    with torch.no_grad():
        want = model(x)
        return (small(x) - want).abs().max().item(), want.abs().max().item()


NETS = str(__import__("pathlib").Path(__file__).with_name("nets.py"))
SLOW = pytest.mark.slow
REPRESENTATIVE = [   # (source, input side): small inputs, as small as each model's downsampling allows
    (f"{NETS}:MyNet", 16),
    pytest.param("torchvision:resnet18", 16, marks=SLOW),
    pytest.param("torchvision:mobilenet_v2", 16, marks=SLOW),
    pytest.param("torchvision:squeezenet1_1", 32, marks=SLOW),
]
# 120 units through concatenations: every method but hgsr, whose one loss per group is the cost the rest of
# this matrix exercises on the others (and the criteria's and group regularizers' representatives, whose
# Torch-Pruning groups the smaller models of the matrix exercise) (a plain chain like torchvision's vgg11_bn adds nothing the built-in vgg11
# does not cover, at 130 M parameters)
HEAVY = [pytest.param("torchvision:densenet121", 32, marks=SLOW)]
TINY = {"hgsr": {"samples": 2}, "nisp": {"samples": 16}}


def _matrix():
    for source in REPRESENTATIVE:
        for coupled in (False, True) if "squeezenet" not in str(source) else (False,):   # no residual streams
            values, marks = (source.values, source.marks) if hasattr(source, "values") else (source, ())
            yield pytest.param(*values, coupled, (), marks=marks, id=f"{values[0].rsplit('/', 1)[-1]}-"
                               f"{'coupled' if coupled else 'single'}")
    for source in HEAVY:
        criteria = tuple(m for m in list_methods() if "regularize" not in get_method(m).protocols)
        yield pytest.param(*source.values, False, ("hgsr", "group-norm", *criteria), marks=source.marks,
                           id=source.values[0])


# the only refusals a method may give on these models, with the reason it must name
MAY_REFUSE = {"slimming": "BatchNorm", "bn-scale": "BatchNorm", "nisp": "linear classifier|final response"}


@pytest.mark.parametrize("source, side, coupled, skip", _matrix())
def test_every_method_runs_on_models_of_any_topology_or_refuses_them_before_training(source, side, coupled, skip):
    """torchvision classes and a user module with a residual add and a depthwise conv: every registered method
    trains on each (its coupled streams pruned as groups or left alone) and the trained model compacts to the same
    outputs, every criterion scores each group of the model (the representative criterion trains); or a method
    refuses the model, only where it may (MAY_REFUSE), naming the reason, and the trainer refuses it the same way
    before its first epoch."""
    shape = (3, side, side)
    data = make_synthetic(shape, n_train=16, n_test=8)
    probe = build_model(source, shape, 10)
    structure = describe(probe, shape, prune_coupled=coupled)
    ran, refused, scored = [], [], []
    for method in [m for m in list_methods() if m not in skip and m not in SAME_PATH]:
        try:
            m = get_method(method)()
            m.bind(structure.units)
            m.check_model(probe)
        except MethodError as err:
            assert method in MAY_REFUSE and re.search(MAY_REFUSE[method], str(err)), (method, str(err))
            cls = get_method(method)
            grid = {"lambdas": [max(cls.default_grid)]} if cls.sweep_axis == "lam" else protocol_settings(method)
            cfg = build_sweep({"methods": [method], "epochs": 2, "batch_size": 16, "dataset": "synthetic",
                               "device": "cpu", "model": source, "prune_coupled": coupled, **grid}).trials()[0]
            epochs: list[int] = []
            with pytest.raises(MethodError, match=re.escape(str(err))):
                train(cfg, data, lambda epoch, metrics: epochs.append(epoch))
            assert epochs == []   # refused before the first epoch
            refused.append(method)
            continue
        if method != CRITERION and "regularize" not in get_method(method).protocols:
            # the criteria share their trial's path with the representative, which trains below: each scores
            # every group of every unit of this model, finite
            batch = (torch.as_tensor(data.train_x[:8], dtype=torch.float32) / 255.0,
                     torch.as_tensor(data.train_y[:8], dtype=torch.long))
            scores = m.importance(probe, State(probe, shape, batch, method=m, structure=structure))
            for unit in structure.units:
                assert scores[unit.name].shape == (unit.size,), (method, unit.name)
                assert torch.isfinite(scores[unit.name]).all(), (method, unit.name)
            scored.append(method)
            continue
        diff, largest = _train_and_compact(source, shape, method, data, TINY, examples=2, prune_coupled=coupled)
        assert diff <= 1e-4 * max(1.0, largest), method
        ran.append(method)
    required = {"none", "l1", "l2", "l1l2", "ssl", "l0sgl", "hgsr", "nisp", "slimming", CRITERION}
    if "squeezenet" in source:   # no BatchNorm, and its classifier is a conv: no final response layer
        required -= {"nisp", "slimming"}
    assert required - set(skip) <= set(ran)
    assert len(ran) + len(refused) + len(scored) == len([m for m in list_methods() if m not in skip and m not in SAME_PATH])
