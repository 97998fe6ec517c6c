"""MLflow's and Ray's conventions, unit by unit: the dataset digest, the sweep's summary metrics, the UI's
landing address, the local Ray's size, the searcher's snapshot (a real sqlite store where one is needed)."""
from __future__ import annotations

import numpy as np
import pytest

from bench import names as N
from bench.config import ConfigError, SweepConfig, TrainSettings, TrialConfig
from bench.data import Dataset, dataset_record
from bench.sources import ArrayItems, StreamData


def _arrays(value: int = 0) -> Dataset:
    x = np.zeros((4, 1, 2, 2), np.uint8)
    x[0, 0, 0, 0] = value
    return Dataset("tiny", x, np.arange(4), x[:2].copy(), np.arange(2), 4, (0.5,), (0.25,), source="/data/tiny")


def test_the_dataset_digest_follows_the_content_and_the_record_has_the_splits():
    a, b = dataset_record(_arrays(0), "tiny"), dataset_record(_arrays(7), "tiny")
    assert a["digest"] != b["digest"] and a["digest"] == dataset_record(_arrays(0), "tiny")["digest"]
    assert {k: a[k] for k in ("name", "source", "train", "test")} == {"name": "tiny", "source": "/data/tiny",
                                                                      "train": 4, "test": 2}
    assert "val" not in a
    items = ArrayItems(np.zeros((3, 1, 2, 2), np.uint8), np.arange(3))
    stream = StreamData("tiny", items, items, 3, (1, 2, 2), source="/data/tiny")
    assert dataset_record(stream, "tiny")["digest"] != a["digest"] and dataset_record(stream, "tiny")["train"] == 3


def test_the_dataset_input_is_mlflows_entity_with_the_digest_and_the_splits():
    import json

    from bench.tracking import dataset_input
    given = dataset_input({"name": "tiny", "digest": "abc123", "source": "/data/tiny", "train": 4, "test": 2})
    assert given.dataset.digest == "abc123" and given.dataset.source_type == "local"
    assert json.loads(given.dataset.source) == {"uri": "/data/tiny"}
    assert json.loads(given.dataset.profile) == {"train": 4, "test": 2}
    assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", "training")]
    generated = dataset_input({"name": "synthetic", "digest": "d", "source": "generated (seed 0)", "train": 1,
                               "test": 1})
    assert generated.dataset.source_type == "code"


def _outcome(method: str, status: str, acc: float | None = None, seed: int = 0):
    from bench.sweep import TrialOutcome
    train = TrainSettings(dataset="synthetic", epochs=1)
    trial = TrialConfig(method=method, seed=seed, train=train, options={"lam": 0.1}, zeroing="none")
    return TrialOutcome(f"{method}-s{seed}", status, {N.TEST_ACCURACY: acc} if acc is not None else {}, trial=trial)


def test_the_sweep_summary_counts_trials_per_method_and_averages_accuracy_at_each_target():
    from bench.recording import summary_metrics
    outcomes = [_outcome("l1l2", "FINISHED", 0.9), _outcome("l1l2", "FINISHED", 0.8, seed=1),
                _outcome("l1l2", "FAILED"), _outcome("ssl", "DIVERGED"), _outcome("ssl", "FINISHED", 0.7)]
    records = [{"method": "l1l2", "seed": 0, "kind": "sparsity", "target": 0.5, "status": "reached",
                "test_accuracy": 0.9, "achieved": 0.51},
               {"method": "l1l2", "seed": 1, "kind": "sparsity", "target": 0.5, "status": "reached",
                "test_accuracy": 0.8, "achieved": 0.49},
               {"method": "ssl", "seed": 0, "kind": "sparsity", "target": 0.5, "status": "unreachable",
                "test_accuracy": 0.7, "achieved": 0.3}]
    got = summary_metrics(outcomes, records)
    assert got["l1l2/trials_finished"] == 2 and got["l1l2/trials_failed"] == 1 and got["ssl/trials_diverged"] == 1
    assert got["l1l2/best_test_accuracy"] == 0.9 and got["ssl/best_test_accuracy"] == 0.7
    assert got["l1l2/sparsity_0.5/test_accuracy"] == pytest.approx(0.85)
    assert got["l1l2/sparsity_0.5/achieved"] == pytest.approx(0.50)
    assert got["l1l2/sparsity_0.5/seeds_reached"] == 2
    assert not any(k.startswith("ssl/sparsity") for k in got)   # unreachable: no mean to give


def test_the_ui_address_opens_the_latest_sweeps_training_runs(tmp_path):
    from bench.tracking import Store, TrackingError
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert Store(uri).runs_page() == "/"   # no store yet
    first = Store(uri).prepare_experiment("first")
    second = Store(uri).prepare_experiment("second")
    assert Store(uri).runs_page() == "/"   # no sweep yet
    Store(uri).start_sweep_run(second, "s", {}, {}, "k")
    Store(uri).start_sweep_run(first, "s", {}, {}, "k")
    assert Store(uri).runs_page() == f"/#/experiments/{first}/runs?workflowType=machine_learning"
    assert Store(uri).runs_page("second") == f"/#/experiments/{second}/runs?workflowType=machine_learning"
    with pytest.raises(TrackingError, match="no experiment 'third'.*first, second"):
        Store(uri).runs_page("third")


def test_ray_cpus_sizes_the_local_ray_and_is_refused_with_a_cluster():
    from bench.sweep import ClusterError, check_local_resources
    with pytest.raises(ClusterError, match="--cpus-per-trial 2 does not fit the local Ray's --ray-cpus 1"):
        check_local_resources(2, 0, ray_cpus=1)
    check_local_resources(1, 0, ray_cpus=1)
    with pytest.raises(ConfigError, match="--ray-cpus sizes a local Ray"):
        SweepConfig(methods=("l1l2",), ray_cpus=2, ray_address="127.0.0.1:6379")
    with pytest.raises(ConfigError, match="ray cpus"):
        SweepConfig(methods=("l1l2",), ray_cpus=0)


def test_the_target_searcher_snapshot_restores_its_searches(tmp_path):
    from bench.sweep import TargetSearcher
    sweep = SweepConfig(methods=("none", "l1l2"), target_sparsity=(0.5,), train=TrainSettings(dataset="synthetic"))
    searcher = TargetSearcher(sweep, [], sweep.searches())
    first = searcher.suggest("t1")
    searcher.save(str(tmp_path / "searcher.pkl"))
    again = TargetSearcher(sweep, [], sweep.searches())
    again.restore(str(tmp_path / "searcher.pkl"))
    assert list(again.asked) == ["t1"] and again.asked["t1"][1] == searcher.asked["t1"][1]
    assert again.suggest("t2") == searcher.suggest("t2") and first is not None
