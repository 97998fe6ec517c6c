"""Numbers of short seeded trials on the built-in models, pinned while the foundations move (settings,
structure, groups): the filters left and the FLOPs per epoch exactly, accuracy and loss to within what another
CPU's floating-point order could move them. Computed on the code before bench/settings.py existed."""
from __future__ import annotations

import pytest

from bench import names as N
from bench.config import build_sweep
from bench.data import make_synthetic
from conftest import train_keeping

CASES = {
    # (model, method, settings): per epoch (test accuracy, train loss, filters alive, FLOPs)
    ("lenet5", "l1l2", (("lambdas", (1.0,)),)): [
        (0.5234, 2.17257, {"conv1": 19, "conv2": 50}, 4397200),
        (1.0, 1.18067, {"conv1": 18, "conv2": 50}, 4208400),
        (1.0, 0.09113, {"conv1": 17, "conv2": 50}, 4019600)],
    ("lenet5", "nisp", (("ratios", (0.5,)),)): [
        (0.5234, 2.17146, {"conv1": 20, "conv2": 50}, 4586000),
        (0.8672, 1.15868, {"conv1": 10, "conv2": 25}, 1498000),
        (1.0, 0.52306, {"conv1": 10, "conv2": 25}, 1498000)],
    ("resnet20", "l1l2", (("lambdas", (1.0,)), ("zeroing", "cumulative:0.3"))): [
        (0.0781, 2.30122, 197, 61674752),
        (0.25, 1.49925, 115, 48403712),
        (0.5547, 1.36043, 72, 35722496)],
}


@pytest.mark.parametrize("model,method,settings", list(CASES))
def test_short_seeded_trials_give_the_pinned_numbers(model, method, settings):
    shape = (1, 28, 28) if model.startswith("lenet") else (3, 32, 32)
    data = make_synthetic(shape, n_train=256, n_test=128)
    cfg = build_sweep({"methods": [method], "epochs": 3, "dataset": "synthetic", "device": "cpu", "model": model,
                       "batch_size": 32, **dict(settings)}).trials()[0]
    rows, _, _ = train_keeping(cfg, data)
    for row, (accuracy, loss, alive, flops) in zip(rows, CASES[(model, method, settings)], strict=True):
        got = N.filters_by_layer(row)
        assert (got if isinstance(alive, dict) else sum(got.values())) == alive
        assert row[N.FLOPS] == flops
        assert row[N.TEST_ACCURACY] == pytest.approx(accuracy, abs=0.02)
        assert row[N.TRAIN_LOSS] == pytest.approx(loss, rel=0.02)
