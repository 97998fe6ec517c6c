"""A target search through `bench run` end to end (real Ray, real sqlite MLflow store), and its resume."""
from __future__ import annotations

import json
import signal
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient

from helpers import bench, read_until, start_bench

pytestmark = pytest.mark.slow


def _targets(client: MlflowClient, experiment: str) -> tuple[list[dict], list]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    sweep = next(r for r in runs if r.data.tags.get("bench.kind") == "sweep")
    path = client.download_artifacts(sweep.info.run_id, "targets.json")
    with open(path) as f:
        return json.load(f), runs


def test_l1l2_and_nisp_reach_half_sparsity_on_every_seed_and_the_report_compares_them(tmp_path):
    """l1l2 needs lambda near 100-500 for 50 % on this data, far past its default grid (0.05-1)."""
    proc = bench(tmp_path, "run", "--methods", "l1l2,nisp", "--target-sparsity", "0.5", "--dataset", "synthetic",
                 "--epochs", "3", "--seeds", "0,1", "--max-probes", "10", "--device", "cpu",
                 "--latency-time", "0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    records, runs = _targets(client, "lenet5-synthetic")
    assert len(records) == 4 and {(r["method"], r["seed"]) for r in records} == {
        ("l1l2", 0), ("l1l2", 1), ("nisp", 0), ("nisp", 1)}
    for r in records:
        assert r["status"] == "reached" and abs(r["achieved"] - 0.5) <= 0.02, r
        assert set(r) >= {"method", "seed", "target", "kind", "value", "achieved", "test_accuracy", "probes",
                          "status", "run_id"}
        run = client.get_run(r["run_id"])   # the record points at the probe's own run
        assert float(run.data.params[run.data.params["sweep_axis"]]) == pytest.approx(r["value"])
        assert run.data.metrics["total_sparsity"] == pytest.approx(r["achieved"])
    assert max(r["value"] for r in records if r["method"] == "l1l2") > 10   # found past the grid
    proc = bench(tmp_path, "report")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (tmp_path / "reports" / "lenet5-synthetic" / "report.md").read_text()
    assert "## Accuracy at equal sparsity" in report and "| sparsity 50% |" in report


def test_an_interrupted_target_search_resumes_from_its_probes_without_repeating_one(tmp_path):
    argv = ["--methods", "l1l2", "--target-sparsity", "0.5", "--dataset", "synthetic", "--epochs", "2",
            "--limit-train", "256", "--limit-test", "128", "--max-probes", "6", "--max-concurrent", "1",
            "--device", "cpu", "--latency-time", "0", "--name", "search"]
    proc = start_bench(tmp_path, "run", *argv)
    lines = read_until(proc, lambda lines: sum("done   l1l2" in x for x in lines) >= 2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, "".join(lines)[-3000:] + out[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lenet5-synthetic").experiment_id
    finished_before = {r.data.tags["bench.trial_key"] for r in client.search_runs([experiment])
                       if r.data.tags.get("bench.kind") == "trial" and r.info.status == "FINISHED"}
    assert len(finished_before) >= 2

    proc = bench(tmp_path, "resume", "search")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{len(finished_before)} probes finished; the searches continue from those probes" in proc.stdout
    records, runs = _targets(client, "lenet5-synthetic")
    finished = Counter(r.data.tags["bench.trial_key"] for r in runs
                       if r.data.tags.get("bench.kind") == "trial" and r.info.status == "FINISHED")
    assert max(finished.values()) == 1, finished          # no probe ran twice
    assert finished_before < set(finished)                # the search went on past the recorded probes
    ran = {r.data.tags["bench.trial_key"] for r in runs if r.data.tags.get("bench.kind") == "trial"
           and r.info.status in ("FINISHED", "FAILED")}   # a probe that diverged failed, and counts
    (record,) = records
    assert record["status"] in ("reached", "unreachable") and record["probes"] == len(ran)
