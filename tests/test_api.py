"""The Python API (bench/api.py, importable from `bench`): a sweep run in-process, its trials as DataFrames, a
compact model exported; `import bench` and reading results import neither torch nor Ray."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import empty_store

pytestmark = pytest.mark.slow


def _python(cwd, code: str) -> dict:
    """Run ``code`` in a fresh interpreter in ``cwd``; it prints one JSON object, returned here."""
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_run_load_results_load_targets_and_export_from_python(tmp_path):
    """A target search run in-process: NISP at 50 % filter sparsity removes floor(0.5 F) filters of each LeNet
    conv in one probe (a ratio method starts at the target), so the exported model has exactly 10 and 25 filters,
    the recorded widths; the search's record says so; and reading it back imports neither torch nor Ray."""
    empty_store(tmp_path)   # bench.run's default store (tests/helpers.py)
    ran = _python(tmp_path, """
import json, bench
s = bench.run(methods=["none", "nisp"], target_sparsity=[0.5], dataset="synthetic", epochs=2,
              limit_train=256, limit_test=128, latency_time=0, device="cpu", name="api", quiet=True)
nisp = s.trials[s.trials["method"] == "nisp"]
done = bench.export(nisp["run_id"].iloc[0], "m.pt")
print(json.dumps({"code": s.exit_code, "ok": s.ok, "sweep": s.sweep, "experiment": s.experiment,
                  "rows": len(s.trials), "widths": done["widths"], "model": done["model"],
                  "run_id": nisp["run_id"].iloc[0],
                  "alive": [int(nisp[f"filters_alive/{c}"].iloc[0]) for c in ("conv1", "conv2")]}))
""")
    assert {k: ran[k] for k in ("code", "ok", "sweep", "experiment", "rows", "model")} == {
        "code": 0, "ok": True, "sweep": "api", "experiment": "lenet5-synthetic", "rows": 2, "model": "lenet5"}
    assert ran["widths"] == [10, 25] and ran["alive"] == [10, 25]   # LeNet's 20 and 50 filters, halved
    assert (tmp_path / "m.pt").is_file()
    # in a fresh session: one row per trial, the swept value under its own name, settings and final metrics,
    # the search's record; neither torch nor Ray imported
    read = _python(tmp_path, """
import json, sys, bench
df = bench.load_results("lenet5-synthetic")
epochs = bench.load_results("lenet5-synthetic", per_epoch=True)
targets = bench.load_targets("lenet5-synthetic")
print(json.dumps({"columns": sorted(df.columns), "rows": len(df), "epoch_rows": len(epochs),
                  "ratio": sorted(df["ratio"].dropna().tolist()), "methods": sorted(df["method"]),
                  "seeds": sorted(df["seed"].tolist()), "epochs": sorted(set(df["epochs"].tolist())),
                  "targets": targets[["method", "seed", "kind", "target", "status", "value", "achieved", "probes",
                                      "run_id"]].to_dict("records"),
                  "imported": sorted({"torch", "ray"} & set(sys.modules))}))
""")
    assert read["rows"] == 2 and read["epoch_rows"] == 4 and read["imported"] == []
    assert {"method", "seed", "ratio", "test_accuracy", "total_sparsity", "flops", "params", "model",
            "dataset", "zeroing", "status", "run_id"} <= set(read["columns"])
    assert read["ratio"] == [0.5] and read["methods"] == ["nisp", "none"]
    assert read["seeds"] == [0, 0] and read["epochs"] == [2]
    assert read["targets"] == [{"method": "nisp", "seed": 0, "kind": "sparsity", "target": 0.5, "status": "reached",
                                "value": 0.5, "achieved": 0.5, "probes": 1, "run_id": ran["run_id"]}]


def test_bad_settings_raise_the_message_bench_run_prints():
    import bench
    from bench.config import ConfigError
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        bench.run(methods=["nope"], dataset="synthetic")


def test_reading_a_store_that_does_not_exist_creates_nothing(tmp_path, monkeypatch):
    import bench
    from bench.tracking import TrackingError
    monkeypatch.chdir(tmp_path)
    new = tmp_path / "new"
    new.mkdir()
    for read in (bench.load_results, bench.load_targets):
        with pytest.raises(TrackingError, match=f"no tracking database at {new / 'none.db'}"):
            read("nope", tracking_uri=f"sqlite:///{new / 'none.db'}")
    with pytest.raises(TrackingError, match="no tracking database at"):
        bench.export("0123", tmp_path / "m.pt", tracking_uri=f"sqlite:///{new / 'none.db'}")
    assert list(new.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["new"]
