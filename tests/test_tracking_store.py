"""The sqlite store under concurrency: drivers started together in an empty folder all get one whole store."""
from __future__ import annotations

import multiprocessing

import pytest

pytestmark = pytest.mark.slow


def _first_use(uri: str) -> tuple[str, str, str]:
    from bench.tracking import Store
    experiment_id = Store(uri).prepare_experiment("together")
    run_id, name = Store(uri).start_sweep_run(experiment_id, "sweep-1", {"trials": 1}, {"methods": ["l1l2"]}, "key",
                                   unique=True)
    return experiment_id, run_id, name


def test_drivers_creating_the_same_store_at_once_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_first_use, [uri] * 4)
    assert len({experiment for experiment, _, _ in results}) == 1 and len({run for _, run, _ in results}) == 4
    # default names of sweeps started in the same second stay apart
    assert sorted(name for _, _, name in results) == ["sweep-1", "sweep-1-2", "sweep-1-3", "sweep-1-4"]
    from bench.tracking import Store, check_sqlite_store
    check_sqlite_store(tmp_path / "mlflow.db")   # whole: every MLflow table is there
    assert sorted(r.config["name"] for r in Store(uri).find_sweeps(results[0][0])) == sorted(n for _, _, n in results)
