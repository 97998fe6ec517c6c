"""The trainer on synthetic data: metric keys, learning, reproducibility, zeroing, divergence."""
from __future__ import annotations

import math

import pytest
import torch

from bench import names as N
from bench.config import TrainSettings, TrialConfig
from bench.config_layers import build_sweep
from bench.data import make_synthetic
from bench.trainer import TrialDiverged, train
from helpers import train_checking_removed_stay_zero, train_keeping

DATA = make_synthetic((1, 28, 28), n_train=512, n_test=256)


def trial(method="l1l2", lam=0.5, epochs=2, zeroing=None, seed=0, **train_kw) -> TrialConfig:
    sweep = build_sweep({"methods": [method], "lambdas": [lam], "epochs": epochs, "dataset": "synthetic",
                         "device": "cpu", "seeds": [seed], **({"zeroing": {"*": zeroing}} if zeroing else {}),
                         **train_kw})
    return sweep.trials()[0]


def run(cfg: TrialConfig) -> list[dict]:
    rows: list[dict] = []
    train(cfg, DATA, lambda epoch, m: rows.append({"epoch": epoch, **m}))
    return rows


def test_reports_every_epoch_with_the_documented_metrics():
    rows = run(trial(epochs=3))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key in (N.TEST_ACCURACY, N.TRAIN_LOSS, N.PENALTY, N.TOTAL_SPARSITY, N.PARAMS, N.FLOPS,
                "filters_alive/conv1", "filters_alive/conv2", "sparsity/conv1", "sparsity/conv2"):
        assert all(key in r and math.isfinite(r[key]) for r in rows), key
    for r in rows:  # the epoch's time and its parts
        parts = r["steps_time_s"] + r["method_hook_time_s"]
        assert 0 < r["steps_time_s"] <= parts <= r["epoch_time_s"] and r["zeroing_metrics_time_s"] >= 0


def test_learns_the_synthetic_task():
    rows = run(trial(method="none", epochs=3))
    assert rows[-1][N.TEST_ACCURACY] > 0.5  # 10 classes: chance is 0.1
    assert rows[-1][N.TRAIN_LOSS] < rows[0][N.TRAIN_LOSS]
    assert rows[-1][N.PENALTY] == 0.0 and rows[-1][N.TOTAL_SPARSITY] == 0.0


def test_same_config_and_seed_give_identical_metrics_on_cpu():
    a, b = run(trial(seed=3)), run(trial(seed=3))
    strip = [{k: v for k, v in r.items() if not k.endswith("_time_s")} for r in a]
    assert strip == [{k: v for k, v in r.items() if not k.endswith("_time_s")} for r in b]
    c = run(trial(seed=4))
    assert c[-1][N.TRAIN_LOSS] != a[-1][N.TRAIN_LOSS]


def lenet_flops(c1: int, c2: int) -> int:
    """Forward FLOPs of Caffe LeNet on 28x28 inputs with c1 and c2 filters, by hand (2 per multiply-add):
    conv1 24x24 positions x 25 weights; conv2 8x8 positions x c1*25 weights; fc1 500 x c2*16; fc2 10 x 500."""
    return 2 * (c1 * 25 * 24 * 24 + c2 * c1 * 25 * 8 * 8 + 500 * c2 * 16 + 10 * 500)


def test_removed_filters_never_come_back_and_counts_follow():
    rows, checked = train_checking_removed_stay_zero(trial(lam=10.0, epochs=4), DATA)
    assert checked > 0   # groups removed in epochs 1-3 were found exactly zero after epoch 4
    for layer in ("conv1", "conv2"):
        alive = [r[f"filters_alive/{layer}"] for r in rows]
        assert all(b <= a for a, b in zip(alive, alive[1:])), alive
        assert alive[-1] >= 1
    assert rows[-1][N.TOTAL_SPARSITY] > 0.2  # a strong l1/l2 penalty removes many filters
    for r in rows:   # FLOPs follow the alive filters every epoch, exactly
        assert r[N.FLOPS] == lenet_flops(r["filters_alive/conv1"], r["filters_alive/conv2"])
    assert rows[-1][N.FLOPS] < lenet_flops(20, 50)
    assert rows[-1][N.PENALTY] < rows[0][N.PENALTY]  # the penalty is being minimised


def test_penalty_metric_is_the_method_value_at_epoch_end():
    rows, model, _ = train_keeping(trial(lam=0.0, epochs=1, zeroing="none"), DATA)
    # l1/l2 of the kernel pseudo-norms of the final weights (eq. 2 and 5), by hand
    norms = torch.cat([w.detach().abs().flatten(1).sum(1) / w.shape[0]
                       for w in (model.conv1.weight, model.conv2.weight)]).double()
    expected = float(norms.sum() / torch.sqrt((norms ** 2).sum() + 1e-12))
    assert rows[0][N.PENALTY] == pytest.approx(expected, rel=1e-5)
    assert rows[0][N.TOTAL_SPARSITY] == 0.0


def test_threshold_rule_runs_after_every_step(registered_probe):
    rows = run(trial(method="stepprobe", epochs=2, zeroing="threshold:0.01"))
    probe = registered_probe.last
    # every step, right after the rule and the masks: no conv weight is left in (0, 0.01)
    assert probe.steps == 2 * len(DATA.train_x) // 64
    assert probe.small_weights_seen == 0
    assert probe.zeros_at_last_step > 1000   # and it did zero weights (there is no penalty to do it)
    assert len(rows) == 2


def test_threshold_rule_removes_filters_left_all_zero():
    rows = run(trial(method="l1", lam=0.5, epochs=2, zeroing="threshold:0.05"))
    assert rows[-1][N.TOTAL_SPARSITY] > 0


def test_a_nan_penalty_is_a_divergence_even_with_a_finite_gradient(registry_snapshot):
    from methods import register_method
    from methods.base import Method

    @register_method
    class NanPenalty(Method):
        name = "nanpenalty"
        description = "a penalty whose value is NaN and whose closed-form gradient is zero"
        closed_form_grad = True

        def penalty(self, model):
            return torch.tensor(float("nan"))

        def add_penalty_grad(self, model, weight):
            pass

    with pytest.raises(TrialDiverged, match="penalty is nan at epoch 1 of nanpenalty-lam0.5-s0"):
        run(trial(method="nanpenalty", lam=0.5, epochs=1))


@pytest.fixture
def registered_probe(registry_snapshot):
    """A method registered for one test: after every step it counts conv weights with 0 < |w| < 0.01."""
    from methods import register_method
    from methods.base import PostHocMethod

    @register_method
    class StepProbe(PostHocMethod):
        name = "stepprobe"
        description = "counts weights the threshold rule should have zeroed"
        last = None

        def after_step(self, model, state):
            type(self).last = self
            self.steps = getattr(self, "steps", 0) + 1
            weights = [state.filter_parameters(layer)[0] for layer in state.layers]
            small = sum(int(((w.abs() > 0) & (w.abs() < 0.01)).sum()) for w in weights)
            self.small_weights_seen = getattr(self, "small_weights_seen", 0) + small
            self.zeros_at_last_step = sum(int((w == 0).sum()) for w in weights)

    return StepProbe


def test_divergence_is_an_error():
    with pytest.raises(TrialDiverged, match="training loss is nan"):
        run(trial(method="none", lr=1e6, epochs=1))


def test_trial_config_round_trips_through_a_dict():
    cfg = trial(seed=5)
    again = TrialConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.key == cfg.key and again.name == "l1l2-lam0.5-s5"
    assert isinstance(again.train, TrainSettings)


def test_a_trials_payload_carries_its_name_and_key_and_is_not_validated_again(monkeypatch):
    """Validated once on the driver: a worker's TrialConfig.from_dict(payload) re-runs no settings check and
    recomputes no key (a folder's fingerprint would read every image), and a sweep expands its trials once."""
    import bench.data

    sweep = build_sweep({"methods": ["l1l2"], "lambdas": [0.5, 1.0], "seeds": [0, 1], "dataset": "synthetic",
                         "epochs": 1, "device": "cpu"})
    first = sweep.trials()
    assert [t is u for t, u in zip(first, sweep.trials())] == [True] * 4   # the same objects: expanded once
    payload = first[1].payload()
    assert payload["name"] == "l1l2-lam0.5-s1" and payload["key"] == first[1].key
    monkeypatch.setattr(TrainSettings, "__post_init__", lambda self: pytest.fail("validated again"))
    monkeypatch.setattr(bench.data, "data_key", lambda name: pytest.fail("key computed again"))
    again = TrialConfig.from_dict(payload)
    assert (again.name, again.key) == (payload["name"], payload["key"]) and again.train == first[1].train


@pytest.mark.parametrize("method,options", [("l1l2", {"lambdas": [1.0], "zeroing": {"*": "cumulative:0.3"}}),
                                            ("slimming", {"ratios": [0.5]})])
def test_resnet20_trains_and_removes_only_block_internal_filters(method, options):
    import torch

    from bench.compact import compact
    from bench.models import build_model
    from bench.structure import derive as describe

    data = make_synthetic((3, 32, 32), n_train=128, n_test=64)
    cfg = build_sweep({"methods": [method], "epochs": 2, "dataset": "synthetic", "device": "cpu",
                       "model": "resnet20", "batch_size": 32, **options}).trials()[0]
    rows, model, structure = train_keeping(cfg, data)
    last = rows[-1]
    blocks = [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)]
    assert {k.split("/", 1)[1] for k in last if k.startswith("filters_alive/")} == set(blocks)
    assert sum(last[f"filters_alive/{b}"] for b in blocks) < 16 * 3 + 32 * 3 + 64 * 3
    model = model.eval()
    small = compact(model, structure).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max().item() < 1e-4
    assert small.conv1.out_channels == 16 and small.layer3[2].conv2.out_channels == 64
    assert last[N.PARAMS] < sum(p.numel() for p in build_model("resnet20", (3, 32, 32), 10).parameters())
    assert describe(small, (3, 32, 32)).eligible == tuple(blocks)


def test_bf16_autocast_and_channels_last_train_and_leave_the_key_of_default_trials_alone():
    base = trial(epochs=1)
    fast = trial(epochs=1, precision="bf16", channels_last=True)
    assert base.key != fast.key
    # the key of a trial at the defaults is what it was before these settings existed
    d = base.to_dict()
    for later in ("precision", "channels_last"):
        d["train"].pop(later)
    assert TrialConfig.from_dict(d).key == base.key
    rows = run(fast)
    assert 0.0 <= rows[0][N.TEST_ACCURACY] <= 1.0 and math.isfinite(rows[0][N.TRAIN_LOSS])
    assert rows[0]["filters_alive/conv1"] <= 20
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, got .fp16."):
        TrainSettings(precision="fp16")


def test_trial_keys_are_those_of_earlier_sweeps():
    """A trial's key finds its runs again on resume: these keys were computed before the settings were declared
    in bench/settings.py, and must not move (a changed key would rerun every finished trial of a sweep)."""
    sweep = build_sweep({"methods": ["l1l2", "nisp", "none"], "dataset": "synthetic", "epochs": 3, "seeds": [0, 1]})
    assert sweep.key == "dc4ce08dd79650ab"
    assert [t.key for t in sweep.trials()][:4] == ["2a6e82e5b1c6e4fa", "e7c319619c39eec1", "79f055d958a12d9b",
                                                   "6e87609aba106b6f"]
    assert [t.key for t in sweep.trials()][-1] == "a5d0d55b628d8024"
    other = build_sweep({"methods": ["l1"], "dataset": "fashion-mnist", "precision": "bf16", "data_dir": "/x"})
    assert other.key == "7e7a190d050bbb9c"
    assert [t.key for t in other.trials()] == ["75fd325acd1befae", "121a42ab6c0bb8bb", "2f332ecd1e1dd572"]
