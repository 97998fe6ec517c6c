"""`bench report`: the analysis on crafted numbers, then a report built from a real sweep's MLflow store."""
from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bench import names as N
from bench import report as R
from bench.data import DEBIAN_FASHION_MNIST

from helpers import bench, write_faulty_plugin

HAVE_FASHION = DEBIAN_FASHION_MNIST.is_dir()
DATASET = ["--limit-train", "1000", "--limit-test", "300"] if HAVE_FASHION else ["--dataset", "synthetic"]
EXPERIMENT = "report-check"


# -- analysis on crafted numbers ---------------------------------------------------------------------------

def test_pareto_front_keeps_exactly_the_non_dominated_points():
    points = pd.DataFrame({
        "name": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "sparsity": [0.1, 0.2, 0.5, 0.4, 0.9, 0.9, 0.2, 0.0],
        "accuracy": [0.90, 0.95, 0.80, 0.70, 0.50, 0.40, 0.95, 0.96],
    })
    # a is beaten by b (sparser and more accurate), d by c, f by e; b and g are equal, so neither beats the other
    front = R.pareto_front(points, "sparsity", "accuracy")
    assert list(front["name"]) == ["h", "b", "g", "c", "e"]
    # minimising x instead (FLOPs): the fewest FLOPs for the accuracy
    flops = points.rename(columns={"sparsity": "flops"})
    front = R.pareto_front(flops, "flops", "accuracy", maximize_x=False)
    assert list(front["name"]) == ["h"]
    assert R.pareto_front(points.iloc[:0], "sparsity", "accuracy").empty


def crafted_results() -> R.Results:
    """Baseline 90 %; method a reaches 30 % sparsity within 0.5 point and 60 % within 1 point at its final
    epochs, and 70 % within 1 point at an earlier epoch of a trial that ends lower."""
    def trial(name, method, seed, rows):
        return [{"sweep": "s", "trial": name, "run_id": name, "status": "FINISHED", "method": method, "axis": "lam",
                 "value": 0.1, "setting": "lam 0.1", "seed": seed, "epoch": e, "test_accuracy": acc,
                 "total_sparsity": sp} for e, (acc, sp) in enumerate(rows, start=1)]
    epochs = pd.DataFrame(trial("none-s0", "none", 0, [(0.88, 0.0), (0.905, 0.0)])
                          + trial("none-s1", "none", 1, [(0.87, 0.0), (0.895, 0.0)])
                          + trial("a1", "a", 0, [(0.85, 0.1), (0.898, 0.3)])
                          + trial("a2", "a", 1, [(0.86, 0.2), (0.893, 0.6)])
                          + trial("a3", "a", 2, [(0.8915, 0.7), (0.85, 0.8)])
                          + trial("b1", "b", 0, [(0.70, 0.5), (0.75, 0.9)]))
    trials = epochs.sort_values("epoch").groupby("run_id").tail(1).reset_index(drop=True)
    trials["error"] = None
    return R.Results("x", "sqlite:///x.db", [], trials, epochs, ["conv1"], {"conv1": 20})


def test_best_sparsity_within_half_and_one_point_of_the_baseline():
    results = crafted_results()
    assert R.baseline_accuracy(results) == pytest.approx(0.90)
    assert R.best_within(results, 0.90, 0.5)["a"]["sparsity"] == 0.3
    assert R.best_within(results, 0.90, 1.0)["a"]["sparsity"] == 0.6
    any_epoch = R.best_within(results, 0.90, 1.0, any_epoch=True)["a"]
    assert (any_epoch["sparsity"], any_epoch["trial"], any_epoch["epoch"]) == (0.7, "a3", 1)
    assert "b" not in R.best_within(results, 0.90, 1.0)
    table, note = R.best_table(results)
    row = table.set_index("method").loc["b"]
    assert row["final epoch, within 1 pt"] == "none within"
    assert table.set_index("method").loc["a", "final epoch, within 0.5 pt"] == "30.0 % at 89.80 % (a1)"
    assert "90.00 %" in note
    # the filters figure shows a's sparsest model within 1 point, and b's most accurate sparse one
    assert R.best_sparse_trial(results, "a", 0.90)["trial"] == "a2"
    assert R.best_sparse_trial(results, "b", 0.90)["trial"] == "b1"


def comparison_results(preset: str | None = "mnist-lenet") -> R.Results:
    """Final epochs of five settings of three methods and a baseline (l1l2 lam 0.5 has two seeds)."""
    def row(method, value, seed, acc, sp, c1, c2):
        name = f"{method}-{value}-s{seed}"
        return {"sweep": "s", "trial": name, "run_id": name, "status": "FINISHED", "method": method,
                "axis": "lam", "value": value, "setting": f"lam {value:g}", "seed": seed, "epoch": 10,
                "test_accuracy": acc, "total_sparsity": sp, "flops": 1e6 * (c1 + c2), "filters_alive/conv1": c1,
                "filters_alive/conv2": c2,
                "error": None}
    trials = pd.DataFrame([row("none", float("nan"), 0, 0.90, 0.0, 20, 50),
                           row("l1", 0.5, 0, 0.85, 0.55, 9, 22), row("l1", 1.0, 0, 0.80, 0.85, 3, 8),
                           row("l1l2", 0.5, 0, 0.88, 0.6, 8, 20), row("l1l2", 0.5, 1, 0.86, 0.7, 6, 15),
                           row("l1l2", 2.0, 0, 0.75, 0.9, 2, 5), row("l2", 0.5, 0, 0.89, 0.3, 14, 35)])
    sweeps = [{"name": "s", "run_id": "p", "status": "FINISHED", "params": {"methods": "none,l1,l1l2,l2"},
               "tags": {}, "config": {"preset": preset}}]
    return R.Results("x", "sqlite:///x.db", sweeps, trials, trials, ["conv1", "conv2"], {"conv1": 20, "conv2": 50})


def test_most_accurate_method_at_50_and_80_percent_sparsity():
    table, verdicts = R.at_sparsity(comparison_results())
    table = table.set_index("method")
    # >= 50 %: l1 lam 0.5 (85 %) against l1l2 lam 0.5 (seed mean 87 % at 65 %); >= 80 %: l1 lam 1 (80 %) wins
    assert table.loc["l1l2", "at >= 50% sparsity"] == "87.00 % (lam 0.5, 65.0 %)"
    assert table.loc["l1", "at >= 80% sparsity"] == "80.00 % (lam 1, 85.0 %)"
    assert table.loc["l2", "at >= 50% sparsity"] == "not reached (max 30.0 %)"
    assert verdicts == ["At 50% filter sparsity or more, **`l1l2`** keeps the highest test accuracy: 87.00 %.",
                        "At 80% filter sparsity or more, **`l1`** keeps the highest test accuracy: 80.00 %."]


def test_quoted_paper_numbers_sit_beside_the_runs_own():
    table, text = R.quoted_table(comparison_results("mnist-lenet"))
    rows = table.set_index("quoted: method")
    assert "copied from Berthelier et al. 2020" in text and "Table I" in text
    # the paper's l1 row (lam 0.5, 1.2 % error, 4/5 filters) beside this run's l1 at lam 0.5
    assert rows.loc["l1", ["quoted: lambda", "quoted: error %", "quoted: filters"]].tolist() == ["0.5", "1.2", "4/5"]
    assert rows.loc["l1", "this run: setting"] == "lam 0.5 (same lambda)"
    assert rows.loc["l1", ["this run: error %", "this run: filters", "this run: total sparsity %"]].tolist() == [
        "15.00", "9/22", "55.0"]
    assert rows.loc["l1/l2", "this run: filters"] == "7/18"          # mean of the two seeds, 7/17.5 rounded
    assert rows.loc["GAL", "this run: setting"] == "not implemented here"
    assert rows.loc["NISP", "this run: setting"] == "not run"
    assert R.quoted_table(comparison_results(None)) is None


def test_markdown_table_escapes_cells():
    table = R.markdown_table(pd.DataFrame({"a": ["x|y", None], "b": [1, float("nan")]}))
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1.0 |", "| - | - |"]


# -- a report from a real sweep ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real sweep: a baseline, a pruning method, a method that removes nothing, a method that fails."""
    cwd = tmp_path_factory.mktemp("report")
    plugin = write_faulty_plugin(cwd)
    proc = bench(cwd, "run", "--methods", "none,l1l2,l2,faulty", "--plugin", str(plugin), "--lambdas", "l1l2=0.5",
                 "--lambdas", "l2=0.001", "--zeroing", "l2=none", "--seeds", "0,1", "--epochs", "2",
                 "--experiment", EXPERIMENT, "--device", "cpu", *DATASET)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # the faulty trials failed
    (cwd / "out" / "sub").mkdir(parents=True)   # files the report did not write: never attached
    (cwd / "out" / "secret.txt").write_text("not for the tracking server")
    (cwd / "out" / "sub" / "other.txt").write_text("nor this")
    out = bench(cwd, "report", "--plugin", str(plugin), "--out", str(cwd / "out"))
    assert out.returncode == 0, out.stdout + out.stderr
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    return cwd, out, client, runs


@pytest.mark.slow
def test_report_files_and_every_method_in_tables_and_figures(store):
    cwd, out, client, runs = store
    folder = cwd / "out"
    for name in ["index.html", "report.md", "results.csv", *R.FIGURES]:
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    md = (folder / "report.md").read_text()
    layer_rows = [line for line in md.splitlines() if line.startswith("| none |") or line.startswith("| l1l2 |")
                  or line.startswith("| l2 |")]
    for method in ("none", "l1l2", "l2"):
        assert sum(line.startswith(f"| {method} | ") for line in layer_rows) >= 2, method  # both seeds
    assert "| faulty-s0 | FAILED |" in md and "faulty method fails on purpose" in md
    assert "| faulty | - | 0 (post-hoc" not in md  # the plugin's description comes from its class
    assert "raises at the end of epoch fail_at" in md
    # figures: every finished method has its own series
    results = R.read_store(f"sqlite:///{cwd / 'mlflow.db'}", EXPERIMENT)
    fig = R.fig_tradeoff(results, "total_sparsity", "sparsity", True)
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == ["l1l2", "l2", "none"]
    titles = sorted(ax.get_title() for ax in R.fig_trajectories(results).axes if ax.get_visible())
    assert titles == ["l1l2", "l2", "none"]


@pytest.mark.slow
def test_report_numbers_match_the_mlflow_metrics(store):
    cwd, out, client, runs = store
    rows = list(csv.DictReader((cwd / "out" / "results.csv").open()))
    trials = [r for r in runs if r.data.tags.get("bench.kind") == "trial"]
    finished = [r for r in trials if r.info.status == "FINISHED"]
    assert len(finished) == 6 and len(rows) == 6 * 2  # one row per trial and epoch (the failed ones logged none)
    md = (cwd / "out" / "report.md").read_text()
    for run in finished:
        m = run.data.metrics
        last = next(r for r in rows if r["run_id"] == run.info.run_id and r["epoch"] == "2")
        for key in ("test_accuracy", "total_sparsity", "params", "flops", "filters_alive/conv1", "compact_params",
                    "speedup_b64"):
            assert float(last[key]) == pytest.approx(m[key], rel=1e-12), key
        history = client.get_metric_history(run.info.run_id, "test_accuracy")
        first = next(r for r in rows if r["run_id"] == run.info.run_id and r["epoch"] == "1")
        assert float(first["test_accuracy"]) == next(h.value for h in history if h.step == 1)
        line = next(line for line in md.splitlines() if line.endswith(f"| {run.info.run_name} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[3] == f"{100 * (1 - m['test_accuracy']):.2f}"
        assert cells[4] == f"{int(m['filters_alive/conv1'])}/20 ({100 * (1 - m['filters_alive/conv1'] / 20):.1f} %)"
        assert cells[6] == f"{100 * m['total_sparsity']:.1f}" and cells[7] == f"{int(m['params']):,}"


@pytest.mark.slow
def test_report_says_what_is_missing_and_is_self_contained(store):
    cwd, out, client, runs = store
    md = (cwd / "out" / "report.md").read_text()
    assert "`l2` removed no filter in any of its 2 finished trial(s)" in md
    assert "2 trial(s) FAILED: faulty-s0, faulty-s1" in md
    page = (cwd / "out" / "index.html").read_text()
    assert page.count("<img") == len(R.FIGURES) and page.count('src="data:image/png;base64,') == len(R.FIGURES)
    references = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]+)""", page, flags=re.I)
    assert all(ref.startswith("data:") for ref in references), [r[:40] for r in references if not
                                                                 r.startswith("data:")]
    assert not re.search(r"url\(|@import|<link|<script|<iframe", page, flags=re.I)
    # attached to the sweep's parent run
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "sweep")
    attached = {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "report")}
    assert attached == {"index.html", "report.md", "results.csv", *R.FIGURES}   # only what it wrote


@pytest.mark.slow
def test_report_on_an_unknown_experiment_or_an_empty_store_is_a_clear_error(store, tmp_path, capsys, monkeypatch):
    from bench.cli import main

    def report(cwd, *argv):   # in this process: the error paths need no subprocess of their own
        monkeypatch.chdir(cwd)
        code = main(["report", *argv])
        return code, capsys.readouterr().err

    cwd, out, client, runs = store
    here = tmp_path / "here"   # --out . writes into the current folder and attaches only its own files
    here.mkdir()
    (here / "secret.txt").write_text("not for the tracking server")
    code, err = report(here, "--tracking-uri", f"sqlite:///{cwd / 'mlflow.db'}", "--out", ".")
    assert code == 0 and (here / "index.html").is_file()
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "sweep")
    assert "secret.txt" not in {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "report")}
    code, err = report(cwd, "--experiment", "nope")
    assert code == 2 and "no experiment 'nope'" in err and EXPERIMENT in err
    code, err = report(tmp_path)
    assert code == 2 and "no tracking database at" in err
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment("empty")
    code, err = report(tmp_path)
    assert code == 2 and "holds no sweep" in err
    code, err = report(tmp_path, "--experiment", "empty")
    assert code == 2 and "has no trial runs yet" in err
    assert not (tmp_path / "reports").exists()


def test_the_report_module_imports_neither_torch_nor_ray():
    code = "import sys, bench.report; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_with_a_validation_split_the_report_chooses_on_validation_accuracy():
    results = comparison_results()
    assert results.selection == N.TEST_ACCURACY and "Choices are made on test accuracy" in results.choice_note()
    base = R.baseline_accuracy(results, results.selection)
    assert "l1" not in {m for m, hit in R.best_within(results, base, 1.0).items() if hit["sparsity"] > 0.8}
    # l1 lam 1 (test 80 %) looks as good as the baseline on the held-out examples: chosen, its test accuracy shown
    results.trials["val_accuracy"] = [0.90, 0.80, 0.895, 0.85, 0.84, 0.70, 0.88]
    assert results.selection == N.VAL_ACCURACY
    base = R.baseline_accuracy(results, results.selection)
    hit = R.best_within(results, base, 1.0)["l1"]
    assert hit["sparsity"] == 0.85 and hit["accuracy"] == 0.80
    table, note = R.best_table(results)
    assert "validation accuracy" in note and "85.0 % at 80.00 %" in table.set_index("method").loc["l1"].iloc[2]
