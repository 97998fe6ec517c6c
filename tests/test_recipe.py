"""The training recipe: schedules and warm-up by hand, optimizers, label smoothing, batched augmentation."""
from __future__ import annotations

import math

import pytest
import torch

from bench import names as N
from bench.config import ConfigError
from bench.config_layers import build_sweep
from bench.data import load_dataset, make_synthetic
from bench.recipe import Augment, RecipeError, parse_schedule, rate
from bench.trainer import train
from helpers import write_cifar10


def rates(spec, epochs, base=0.1, warmup=0):
    schedule = parse_schedule(spec, epochs)
    return [rate(base, e, schedule, warmup) for e in range(1, epochs + 1)]


def test_schedules_by_hand():
    assert rates("constant", 3) == [0.1, 0.1, 0.1]
    assert rates("step:1,2", 3) == pytest.approx([0.1, 0.01, 0.001])
    assert rates("step:2:0.5", 4) == pytest.approx([0.1, 0.1, 0.05, 0.05])
    assert rates("cosine", 4) == pytest.approx([0.1 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)])
    cycle = rates("onecycle", 11, base=1.0)   # t = 0, 0.1, ..., 1: up to t = 0.3, then down
    assert cycle[0] == pytest.approx(1 / 25) and cycle[3] == pytest.approx(1.0) and cycle[-1] == pytest.approx(1e-4)
    assert cycle[:4] == sorted(cycle[:4]) and cycle[3:] == sorted(cycle[3:], reverse=True)
    # warm-up: epochs 1 and 2 at 1/3 and 2/3 of the scheduled rate
    assert rates("step:3", 4, base=0.3, warmup=2) == pytest.approx([0.1, 0.2, 0.3, 0.03])


@pytest.mark.parametrize("settings, message", [
    ({"schedule": "linear"}, "unknown schedule 'linear'; valid schedules: constant, cosine, step:E1,E2"),
    ({"schedule": "step:5", "epochs": 5}, "milestone 5 is not before the last epoch \\(5\\)"),
    ({"schedule": "step:3,2", "epochs": 5}, "milestones must be increasing"),
    ({"schedule": "step:a"}, "cannot parse schedule 'step:a'"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, adamw, got 'lbfgs'"),
    ({"warmup_epochs": 3, "epochs": 3}, "--warmup-epochs 3 leaves no epoch"),
    ({"nesterov": True, "optimizer": "adamw"}, "--nesterov needs the sgd optimizer"),
    ({"augment": "autoaugment"}, "augment must be one of"),
    ({"label_smoothing": 1.0}, "label smoothing must be in \\[0, 1\\), got 1.0"),
])
def test_bad_recipes_are_clear_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        build_sweep({"methods": ["none"], **settings})


def test_crop_flip_is_a_shifted_crop_of_the_zero_padded_image_then_maybe_flipped():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.int64).view(2, 3, 6, 6).to(torch.uint8)
    x = x.repeat(16, 1, 1, 1)
    out = Augment("crop-flip", torch.Generator().manual_seed(0))(x)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flips = 0
    for i in range(len(x)):
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(2) if f else c)(padded[i, :, dy:dy + 6, dx:dx + 6]))]
        assert matches, i
        flips += matches[0][2]
    assert 0 < flips < len(x)   # some flipped, some not
    again = Augment("crop-flip", torch.Generator().manual_seed(0))(x)
    assert torch.equal(out, again) and out.dtype == torch.uint8
    generator = torch.Generator().manual_seed(0)
    assert Augment("none", generator)(x) is x and torch.equal(generator.get_state(),
                                                              torch.Generator().manual_seed(0).get_state())
    with pytest.raises(RecipeError, match="unknown augmentation"):
        Augment("mixup", generator)


def test_a_cifar_resnet_trains_with_crop_flip_and_a_step_schedule(tmp_path):
    """The recipe of `bench run --dataset cifar10 --model resnet20 --augment crop-flip --schedule step:1,2
    --lr 0.1 --epochs 3` on CIFAR-format files: the lr metric reads 0.1, 0.01, 0.001."""
    write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=16)
    data = load_dataset("cifar10", data_dir=tmp_path, download=False)
    cfg = build_sweep({"methods": ["l1l2"], "lambdas": [0.2], "model": "resnet20", "dataset": "cifar10",
                       "augment": "crop-flip", "schedule": "step:1,2", "lr": 0.1, "epochs": 3, "batch_size": 32,
                       "device": "cpu"}).trials()[0]
    rows = []
    train(cfg, data, lambda epoch, m: rows.append(m))
    assert [r[N.LR] for r in rows] == pytest.approx([0.1, 0.01, 0.001])
    assert all(math.isfinite(r[N.TRAIN_LOSS]) for r in rows)


def test_augmentation_optimizer_and_smoothing_change_training_and_the_defaults_do_not():
    data = make_synthetic((1, 28, 28), n_train=128, n_test=64)

    def last(**settings):
        cfg = build_sweep({"methods": ["none"], "epochs": 1, "dataset": "synthetic", "device": "cpu",
                           **settings}).trials()[0]
        return train(cfg, data)

    base = last()
    assert last(optimizer="sgd", schedule="constant", augment="none", label_smoothing=0.0)[N.TRAIN_LOSS] == \
        base[N.TRAIN_LOSS]
    for changed in ({"augment": "flip"}, {"optimizer": "adamw"}, {"label_smoothing": 0.1}, {"nesterov": True}):
        assert last(**changed)[N.TRAIN_LOSS] != base[N.TRAIN_LOSS], changed
    keys = {build_sweep({"methods": ["none"], **s}).trials()[0].key for s in
            ({}, {"augment": "flip"}, {"schedule": "cosine"}, {"optimizer": "adamw"}, {"warmup_epochs": 1})}
    assert len(keys) == 5
