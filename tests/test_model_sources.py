"""--model sources (registered, torchvision:, timm:, FILE.py:CALLABLE, MODULE:CALLABLE, @register_model) and
--init-from, with the errors a user meets before any trial starts."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from bench import models as BM
from bench.config import ConfigError
from bench.config_layers import build_sweep
from bench.data import make_synthetic
from bench.models import ModelError, build_model, get_model_spec
from bench.session import prepare
from bench.trainer import build_trial_model, train
from bench.weights import WeightsError, load_initial_weights

NETS = str(Path(__file__).with_name("nets.py"))


def test_torchvision_models_get_the_dataset_classes_and_input_channels():
    model = build_model("torchvision:resnet18", (1, 28, 28), 7)
    assert model.fc.out_features == 7 and model.conv1.in_channels == 1
    assert model.bench_notes == ["torchvision:resnet18: first conv conv1 rebuilt for 1 input channel (it expects 3; "
                                 "fresh weights)"]
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    assert not hasattr(build_model("torchvision:resnet18", (3, 32, 32), 10), "bench_notes")


def test_an_unknown_torchvision_name_lists_close_matches():
    with pytest.raises(ModelError, match="no classification model 'resnet19'; close matches: .*resnet18"):
        get_model_spec("torchvision:resnet19")


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed here")
def test_timm_without_timm_names_the_extra():
    with pytest.raises(ModelError, match=r"optional extra 'timm': pip install -e '\.\[timm\]'"):
        get_model_spec("timm:resnet18")


def test_user_files_and_modules_get_the_arguments_they_accept():
    model = build_model(f"{NETS}:MyNet", (1, 32, 32), 4)
    assert model.head.out_features == 4 and model.stem[0].in_channels == 1
    broken = build_model(f"{NETS}:Broken", (3, 32, 32), 5)   # takes num_classes only
    assert broken.fc.out_features == 5
    assert build_model("torchvision.models:resnet18", (3, 32, 32), 3).fc.out_features == 3


def test_a_file_without_the_callable_names_the_file_the_callable_and_its_modules():
    with pytest.raises(ModelError, match=r"nets\.py has no callable 'NoSuchNet'; its nn.Module classes: .*MyNet"):
        get_model_spec(f"{NETS}:NoSuchNet")
    with pytest.raises(ModelError, match="no such file"):
        get_model_spec("missing_file.py:Net")
    with pytest.raises(ModelError, match="cannot import module 'no_such_module'"):
        get_model_spec("no_such_module:Net")
    with pytest.raises(ConfigError, match="unknown model 'lenet'.*did you mean lenet5.*torchvision:NAME"):
        build_sweep({"model": "lenet", "methods": ["none"]})


def test_register_model_from_a_plugin_file(tmp_path):
    plugin = tmp_path / "zoo.py"
    plugin.write_text(
        "from torch import nn\n"
        "from bench.models import register_model\n\n"
        "@register_model('tiny', input_shape=(1, 16, 16))\n"
        "class Tiny(nn.Sequential):\n"
        "    '''one conv and a classifier'''\n"
        "    def __init__(self, num_classes=10, in_channels=1):\n"
        "        super().__init__(nn.Conv2d(in_channels, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(6, num_classes))\n")
    try:
        sweep = build_sweep({"model": "tiny", "methods": ["l1l2"], "plugins": [str(plugin)], "dataset": "synthetic"})
        assert BM.default_input("tiny") == (1, 16, 16) and get_model_spec("tiny").description == "one conv and a classifier"
        assert not BM.rebuildable("tiny")
        trials, data = prepare(sweep, write=lambda line: None)
        assert data.input_shape == (1, 16, 16)
    finally:
        BM.MODELS.pop("tiny", None)


def test_a_trial_key_holds_the_digest_of_a_model_file_not_its_path(tmp_path):
    text = Path(NETS).read_text()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "net.py").write_text(text)
    (tmp_path / "b" / "net.py").write_text(text)
    key = lambda folder: build_sweep({"model": f"{tmp_path / folder / 'net.py'}:MyNet",  # noqa: E731
                                      "methods": ["none"]}).trials()[0].key
    assert key("a") == key("b")
    (tmp_path / "b" / "net.py").write_text(text + "\n# edited\n")
    assert key("a") != key("b")
    assert BM.model_key(f"{tmp_path / 'a' / 'net.py'}:MyNet").startswith("file-sha256:")


def test_nothing_to_prune_and_an_untraceable_model_are_errors_before_any_trial(tmp_path):
    (tmp_path / "m.py").write_text(
        "from torch import nn\n"
        "def logits_only(num_classes=10):\n"
        "    return nn.Sequential(nn.Conv2d(3, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())\n")
    sweep = build_sweep({"model": f"{tmp_path / 'm.py'}:logits_only", "methods": ["l1l2"], "dataset": "synthetic"})
    with pytest.raises(ConfigError, match="nothing in .*logits_only can be pruned: 0 produces the logits"):
        prepare(sweep, write=lambda line: None)
    sweep = build_sweep({"model": f"{NETS}:Broken", "methods": ["l1l2"], "dataset": "synthetic"})
    with pytest.raises(ConfigError, match=r"in module 'fc' \(Linear\)"):
        prepare(sweep, write=lambda line: None)


def test_methods_that_cannot_work_on_a_model_refuse_it_before_training():
    sweep = build_sweep({"model": "torchvision:squeezenet1_1", "methods": ["nisp"], "dataset": "synthetic",
                         "image_size": 32})
    with pytest.raises(ConfigError, match="method 'nisp' cannot run on model .*no linear classifier"):
        prepare(sweep, write=lambda line: None)
    sweep = build_sweep({"model": "lenet5", "methods": ["slimming"], "dataset": "synthetic"})
    with pytest.raises(ConfigError, match="method 'slimming' cannot run .*no BatchNorm"):
        prepare(sweep, write=lambda line: None)


# -- --init-from -------------------------------------------------------------------------------------------

def trained_lenet(tmp_path, data):
    cfg = build_sweep({"methods": ["none"], "epochs": 2, "dataset": "synthetic", "device": "cpu",
                       "lr": 0.05}).trials()[0]
    kept = {}
    last = train(cfg, data, finish=lambda model, structure: kept.update(model=model) or {})
    path = tmp_path / "lenet.pt"
    torch.save(kept["model"].state_dict(), path)
    return path, last["test_accuracy"]


def test_init_from_starts_every_trial_from_the_trained_weights(tmp_path):
    data = make_synthetic((1, 28, 28), n_train=512, n_test=256)
    path, accuracy = trained_lenet(tmp_path, data)
    assert accuracy > 0.25   # well above chance (10 classes)
    cfg = build_sweep({"methods": ["none"], "epochs": 1, "dataset": "synthetic", "device": "cpu",
                       "init_from": str(path), "lr": 1e-4}).trials()[0]
    first = train(cfg, data)
    assert abs(first["test_accuracy"] - accuracy) < 0.05
    # the key holds the file's digest: the same weights elsewhere give the same trial
    copy = tmp_path / "elsewhere.pt"
    copy.write_bytes(path.read_bytes())
    again = build_sweep({"methods": ["none"], "epochs": 1, "dataset": "synthetic", "device": "cpu",
                         "init_from": str(copy), "lr": 1e-4}).trials()[0]
    assert again.key == cfg.key


def test_a_mismatching_weights_file_is_an_error_naming_the_keys(tmp_path):
    torch.save(build_model("lenet5-bn", (1, 28, 28), 10).state_dict(), tmp_path / "bn.pt")
    sweep = build_sweep({"methods": ["none"], "dataset": "synthetic", "init_from": str(tmp_path / "bn.pt")})
    with pytest.raises(ConfigError, match=r"does not fit the model: unexpected bn1\.weight, bn1\.bias"):
        prepare(sweep, write=lambda line: None)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="junk.pt: not a readable torch file"):
        load_initial_weights(build_model("lenet5", (1, 28, 28), 10), tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="--init-from .*nope.pt: no such file"):
        build_sweep({"methods": ["none"], "init_from": str(tmp_path / "nope.pt")})


def test_a_classifier_of_another_class_count_is_reinitialised_with_a_notice_or_refused(tmp_path):
    source = build_model("lenet5", (1, 28, 28), 5)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "five.pt")
    model = build_model("lenet5", (1, 28, 28), 10)
    notes = load_initial_weights(model, tmp_path / "five.pt", num_classes=10)
    assert notes == [f"--init-from {tmp_path / 'five.pt'}: classifier fc2.weight, fc2.bias has 5 classes in the "
                     "file, 10 here: re-initialised"]
    assert torch.equal(model.conv1.weight, source.conv1.weight) and torch.equal(model.fc1.weight, source.fc1.weight)
    with pytest.raises(WeightsError, match="shape mismatch fc2.weight .*--strict-head"):
        load_initial_weights(build_model("lenet5", (1, 28, 28), 10), tmp_path / "five.pt", 10, strict_head=True)
    cfg = build_sweep({"methods": ["none"], "dataset": "synthetic", "init_from": str(tmp_path / "five.pt")}).trials()[0]
    seen = []
    build_trial_model(cfg, (1, 28, 28), 10, notes=seen.append)
    assert seen and "re-initialised" in seen[0]


def _prepare(model: str, image_size: int | None = None):
    settings = {"model": model, "methods": ["l1l2"], "dataset": "synthetic", "epochs": 1, "device": "cpu"}
    return prepare(build_sweep({**settings, **({"image_size": image_size} if image_size else {})}),
                   write=lambda line: None)


def test_a_model_returning_logits_and_more_trains_on_its_first_field():
    """torchvision's GoogLeNet returns (logits, aux2, aux1) in train mode, a users' model (logits, features):
    bench trains and measures on the logits; the pre-flight training step passes for both."""
    model = build_model(f"{NETS}:WithFeatures", (3, 16, 16), 5)
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
    data = make_synthetic((3, 16, 16), n_train=64, n_test=32)
    trial = build_sweep({"model": f"{NETS}:WithFeatures", "methods": ["l1l2"], "lambdas": [0.1], "epochs": 1,
                         "dataset": "synthetic", "device": "cpu", "batch_size": 32}).trials()[0]
    assert 0 <= train(trial, data)["test_accuracy"] <= 1
    trials, _ = _prepare("torchvision:googlenet", image_size=64)
    assert len(trials) == 3
    googlenet = build_model("torchvision:googlenet", (3, 64, 64), 10).train()
    assert type(googlenet.forward(torch.zeros(2, 3, 64, 64))).__name__ == "GoogLeNetOutputs"   # its own forward
    assert googlenet(torch.zeros(2, 3, 64, 64)).shape == (2, 10)                               # what bench sees


@pytest.mark.parametrize("model,message", [
    ("FeaturesOnly", "forward returns dict with keys features, not a tensor of logits"),
    ("NotANumber", "output holds NaN or infinite values"),
])
def test_models_whose_outputs_are_not_logits_are_refused_naming_why(model, message):
    with pytest.raises(ConfigError, match=message):
        _prepare(f"{NETS}:{model}")


def test_a_model_the_dependency_graph_cannot_trace_is_refused_saying_what_to_do():
    with pytest.raises(ConfigError, match=r"cannot trace the channel dependencies of ShuffleNetV2 \(ZeroDivisionError"
                                          r".*a channel shuffle.*Replace that operation"):
        _prepare("torchvision:shufflenet_v2_x0_5", image_size=32)
