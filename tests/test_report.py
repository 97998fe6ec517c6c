"""`bench report`: the analysis on crafted numbers, then a report built from a real sweep's MLflow store."""
from __future__ import annotations

import csv
import json
import math
import re
import tempfile
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

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
    assert table.iloc[0].tolist() == ["none (dense reference)", *["0.0 % at 90.00 % (mean of 2)"] * 4]
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


def test_each_methods_front_is_read_at_50_and_80_percent_sparsity():
    table, verdicts = R.at_sparsity(comparison_results())
    table = table.set_index("method")
    # seed means: l1 (55 %, 85 %), (85 %, 80 %); l1l2 lam 0.5 (65 %, 87 %), lam 2 (90 %, 75 %); l2 (30 %, 89 %)
    # 50 %: both fronts start above it (their first points); 80 %: linear between the points around it
    assert table.loc["l1", "at 50% sparsity"] == "85.00 % (lam 0.5 at 55.0 %)"
    assert table.loc["l1l2", "at 50% sparsity"] == "87.00 % (lam 0.5 at 65.0 %)"
    assert table.loc["l1", "at 80% sparsity"] == "80.83 % (between lam 0.5 at 55.0 % and lam 1 at 85.0 %)"  # .85 - 5/6 * .05
    assert table.loc["l1l2", "at 80% sparsity"] == "79.80 % (between lam 0.5 at 65.0 % and lam 2 at 90.0 %)"  # .87 - .6 * .12
    assert table.loc["l2", "at 50% sparsity"] == "not reached (max 30.0 %)"
    assert table.loc["none (dense reference)", "at 80% sparsity"] == "90.00 % (0.0 %, mean of 1)"
    # l1 ran one seed: no method is named, and the command that would measure the noise is given
    assert verdicts[0] == ("At 50% filter sparsity, the fronts give `l1l2` 87.00 % and `l1` 85.00 %, from one seed: "
                           "there is no noise estimate, so neither is named the better.")
    assert verdicts[1].startswith("At 80% filter sparsity, the fronts give `l1` 80.83 % and `l1l2` 79.80 %")
    assert "**" not in " ".join(verdicts)
    assert verdicts[2] == ("`bench run --methods none,l1,l1l2,l2 --seeds 0,1,2 --target-sparsity 0.5,0.8` measures "
                           "each method at these sparsities over three seeds and tests the differences.")


def _front_results(seeds: dict[str, list[list[tuple[float, float, float]]]]) -> R.Results:
    """Final epochs: per method, per seed, (lam, sparsity, accuracy) points."""
    rows = [{"sweep": "s", "trial": f"{m}-{lam}-s{seed}", "run_id": f"{m}-{lam}-s{seed}", "status": "FINISHED",
             "method": m, "axis": "lam", "value": lam, "setting": f"lam {lam:g}", "seed": seed, "epoch": 5,
             "test_accuracy": acc, "total_sparsity": sp, "flops": 1e6 * (1 - sp), "error": None}
            for m, per_seed in seeds.items() for seed, points in enumerate(per_seed) for lam, sp, acc in points]
    trials = pd.DataFrame(rows)
    sweeps = [{"name": "s", "run_id": "p", "status": "FINISHED", "tags": {}, "config": {},
               "params": {"model": "lenet5", "dataset": "fashion-mnist", "epochs": 5}}]
    return R.Results("x", "sqlite:///x.db", sweeps, trials, trials, ["conv1"], {"conv1": 20})


def test_a_point_just_under_the_target_counts_through_the_front_where_the_old_rule_picked_the_other_method():
    """The README's main job once named l1 at 50 %: l1l2's 47 % point fell under the cut and its 81 % point was
    used. Read on the fronts, l1l2 is above l1 at 50 %; with one seed, neither is named."""
    one = _front_results({"l1l2": [[(0.5, 0.47, 0.90), (1.0, 0.81, 0.885)]],
                          "l1": [[(0.5, 0.52, 0.889), (1.0, 0.80, 0.86)]]})
    table, verdicts = R.at_sparsity(one, targets=(0.5,))
    cell = table.set_index("method").loc["l1l2", "at 50% sparsity"]
    assert cell == "89.87 % (between lam 0.5 at 47.0 % and lam 1 at 81.0 %)"   # .90 - 3/34 * .015
    assert verdicts[0].startswith("At 50% filter sparsity, the fronts give `l1l2` 89.87 % and `l1` 88.90 %")
    assert "no noise estimate" in verdicts[0] and "--model lenet5 --dataset fashion-mnist --epochs 5" in verdicts[1]
    # three seeds each, l1l2's lead far beyond their spread: named, with the test
    three = _front_results({"l1l2": [[(0.5, 0.47, 0.90 + d), (1.0, 0.81, 0.885 + d)] for d in (0, .002, -.002)],
                            "l1": [[(0.5, 0.52, 0.85 + d), (1.0, 0.80, 0.84 + d)] for d in (0, .002, -.002)]})
    _, verdicts = R.at_sparsity(three, targets=(0.5,))
    assert verdicts[0].startswith("At 50% filter sparsity, **`l1l2`** keeps the most accuracy, beyond seed noise "
                                  "over `l1` (89.87 % against 85.00 %; each seed's front at the target, Welch's t")
    assert len(verdicts) == 1
    # l1's lead inside the noise: a tie
    close = _front_results({"l1l2": [[(0.5, 0.5, 0.88 + d)] for d in (0, .01, -.01)],
                            "l1": [[(0.5, 0.5, 0.881 + d)] for d in (0, .01, -.01)]})
    _, verdicts = R.at_sparsity(close, targets=(0.5,))
    assert verdicts[0].startswith("At 50% filter sparsity, tie within noise between `l1` and `l1l2`")


def _epoch_rows(methods: dict[str, list[float]], seeds=(0,), baseline: bool = True) -> R.Results:
    """Three epochs of every (method, lam, seed); loss and penalty falling, accuracy and sparsity rising."""
    rows = []
    for method, lams in [*([("none", [float("nan")])] if baseline else []), *methods.items()]:
        for lam in lams:
            for seed in seeds:
                name, k = f"{method}-{lam}-s{seed}", 0.0 if method == "none" else lam
                for e in (1, 2, 3):
                    rows.append({"sweep": "s", "trial": name, "run_id": name, "status": "FINISHED", "method": method,
                                 "axis": "lam", "value": lam, "setting": "-" if method == "none" else f"lam {lam:g}",
                                 "seed": seed, "epoch": e, "test_accuracy": 0.8 + 0.01 * e - 0.01 * k + 0.004 * seed,
                                 "total_sparsity": 0.0 if method == "none" else 0.1 * e * lam,
                                 "flops": 1e6, "train_loss": 1.0 / e + k, "penalty": 10.0 / e * k, "error": None})
    epochs = pd.DataFrame(rows)
    trials = epochs[epochs["epoch"] == 3].reset_index(drop=True)
    return R.Results("x", "sqlite:///x.db", [], trials, epochs, ["conv1"], {"conv1": 20})


def test_losses_draw_every_strength_and_seed_as_its_own_line_in_the_legend():
    import matplotlib.pyplot as plt

    results = _epoch_rows({"l1": [0.5, 1.0, 2.0], "l2": [0.5, 1.0, 2.0], "l1l2": [0.5, 1.0, 2.0]}, baseline=False)
    fig = R.fig_losses(results)
    loss_axes = [ax for ax in fig.axes if ax.get_title() in ("l1", "l2", "l1l2")]
    lines = [line for ax in loss_axes for line in ax.get_lines()]
    assert len(lines) == 9 and len({(line.get_color(), line.get_linestyle()) for line in lines}) == 9
    for ax in loss_axes:   # within a method: three shades, darker for a stronger setting, each in the legend
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["lam 0.5 s0", "lam 1 s0", "lam 2 s0"]
        brightness = [sum(line.get_color()[:3]) for line in ax.get_lines()]
        assert brightness == sorted(brightness, reverse=True) and len(set(brightness)) == 3
    plt.close(fig)
    two = R.fig_losses(_epoch_rows({"l1": [0.5]}, seeds=(0, 1), baseline=False))
    assert {line.get_linestyle() for line in two.axes[0].get_lines()} == {"-", "--"}
    assert "line style: the seed" in " ".join(two.bench_notes)
    plt.close(two)


def test_captions_say_only_what_is_drawn():
    """No baseline, one seed: no caption speaks of a baseline, a band or a second seed; with them, they do."""
    bare = _epoch_rows({"l1": [0.5, 1.0]}, baseline=False)
    out = Path(tempfile.mkdtemp())
    R.build_report(bare, out, {}, attach=False)
    md = (out / "report.md").read_text()
    captions = [line for line in md.splitlines() if line and not line.startswith(("|", "#", "!", "-", "<", "`"))]
    figure_text = " ".join(c for c in captions if "Final epoch of every" in c or "Training cross-entropy" in c)
    for word in ("baseline (", "dashed", "band", "shaded", "second seed", "line style"):
        assert word not in figure_text.lower(), word
    assert "there is no spread to show" in figure_text
    both = _epoch_rows({"l1": [0.5, 1.0]}, seeds=(0, 1))
    R.build_report(both, out, {}, attach=False)
    md = (out / "report.md").read_text()
    assert "Dashed grey: the baseline (`none`), mean over its 2 seeds; shaded: one standard deviation" in md
    assert "line style: the seed" in md and "n beside a mean" in md
    assert (out / "accuracy_vs_sparsity.svg").is_file() and (out / "losses.svg").is_file()


def test_the_equal_target_figure_spans_the_informative_points_and_marks_a_collapsed_one_at_its_edge():
    import matplotlib.pyplot as plt

    results = _epoch_rows({}, seeds=(0, 1, 2))   # the baseline: 83.0, 83.4 and 83.8 % over three seeds
    records = [{"method": m, "seed": s, "kind": "sparsity", "target": 0.5, "status": "reached", "achieved": 0.5,
                "test_accuracy": acc, "value": 1.0, "probes": 2, "run_id": f"{m}{s}"}
               for m, accs in (("l1l2", (0.85, 0.86, 0.855)), ("l1", (0.82, 0.83, 0.825)), ("l2", (0.37, 0.36, 0.38)))
               for s, acc in enumerate(accs)]
    results.targets = records
    fig = R.fig_equal_sparsity(results)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert 80 < low < 82.5 and 85.5 < high < 88   # l1's 82.5 % to l1l2's 85.5 %, not down to l2's 37 %
    edge = [line for line in ax.get_lines() if line.get_marker() == "v"]
    assert len(edge) == 1 and edge[0].get_ydata()[0] < 82.5 and edge[0].get_ydata()[0] > low
    assert any(t.get_text() == "37.0 %" for t in ax.texts) and any(t.get_text() == "n=3" for t in ax.texts)
    assert any(p.get_alpha() == 0.15 for p in ax.patches)   # the baseline's band of its seeds' spread
    notes = " ".join(fig.bench_notes)
    assert "`l2` at 37.0 % sits below the axis" in notes and "mean over its 3 seeds" in notes
    plt.close(fig)
    assert R.informative_range([37, 82, 85, 87, 90])[:2] == (82, 90)
    assert R.informative_range([60, 66, 72, 80, 90])[:2] == (60, 90)   # a spread, not a collapse
    assert R.informative_range([34, 37, 79.5, 82.5, 85.5])[:2] == (79.5, 85.5)   # a method collapsed at two targets


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
    for name in ["index.html", "report.md", "results.csv", *R.FIGURES, *map(R.vector, R.FIGURES)]:
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    assert (folder / "losses.svg").read_text().lstrip().startswith("<?xml") and "<svg" in (folder / "losses.svg").read_text()
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
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == [
        "baseline (none, mean)", "l1l2", "l2", "none"]
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
    assert attached == {"index.html", "report.md", "results.csv", *R.FIGURES, *map(R.vector, R.FIGURES)}


@pytest.mark.slow
def test_report_latency_times_every_finished_trial_after_the_sweep_and_marks_what_is_within_noise(
        store, tmp_path, capsys, monkeypatch):
    """`bench report --latency` (shortened: 2 rounds, batch 1): one record per finished trial and the dense
    model against itself; recorded on the sweep's run and read back; the report's table marks speed-ups."""
    from bench import latency
    from bench.cli import main

    cwd, out, client, runs = store
    monkeypatch.setattr(latency, "ROUNDS", 2)
    monkeypatch.setattr(latency, "BATCHES", (1,))
    monkeypatch.setattr(latency, "MIN_RUN_TIME", 0.01)
    monkeypatch.chdir(cwd)
    assert main(["report", "--latency", "--no-attach", "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert "latency: 6 finished trial(s), batches 1, 2 rounds each" in printed
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "sweep")
    saved = json.loads(Path(client.download_artifacts(parent.info.run_id, "latency.json", str(tmp_path))).read_text())
    trials = [r for r in saved if r["trial"] is not None]
    noise = [r for r in saved if r["trial"] is None]
    assert len(trials) == 6 and len(noise) == 1 and 0 < noise[0]["noise_low"] <= noise[0]["noise_high"]
    for r in trials:
        assert r["speedup_low"] <= r["speedup"] <= r["speedup_high"] and r["dense_ms"] > 0 and r["compact_ms"] > 0
    results = R.read_store(f"sqlite:///{cwd / 'mlflow.db'}", EXPERIMENT)
    assert len(results.latency) == 7   # read back from the store
    table, note = R.latency_table(results)
    none = table[table["trial"].str.startswith("none")]["speed-up (median, range)"]
    assert len(none) == 2 and all("x (" in cell for cell in none)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Latency after the sweep" in md and "alternate rounds" in md


def test_a_speed_up_inside_the_dense_models_own_range_is_marked_within_noise():
    results = comparison_results()
    results.latency = [{"trial": None, "model": "lenet5", "batch": 1, "noise_low": 0.93, "noise_high": 1.08,
                        "dense_ms": 1.0},
                       {"trial": "l1-0.5-s0", "model": "lenet5", "batch": 1, "dense_ms": 1.0, "compact_ms": 0.87,
                        "speedup": 1.15, "speedup_low": 1.07, "speedup_high": 1.2},
                       {"trial": "l1-1.0-s0", "model": "lenet5", "batch": 1, "dense_ms": 1.0, "compact_ms": 0.5,
                        "speedup": 2.0, "speedup_low": 1.9, "speedup_high": 2.1}]
    table, _ = R.latency_table(results)
    cells = table.set_index("trial")["speed-up (median, range)"]
    # 1.15x, but one round (1.07x) inside the dense model's own range (up to 1.08x): not a measured change
    assert cells["l1-0.5-s0"] == "1.15x (1.07-1.20) within noise" and cells["l1-1.0-s0"] == "2.00x (1.90-2.10)"
    # the in-training columns: the dense model measured 1.0 to 1.3 ms over the trials: up to 1.30x is noise
    results.trials["dense_latency_ms_b1"] = [1.0, 1.1, 1.3, 1.2, 1.0, 1.1, 1.2]
    results.trials["speedup_b1"] = [1.0, 1.25, 3.0, 1.1, 1.2, 2.0, 0.5]
    layers = R.layer_table(results).set_index("trial")["speed-up b1 (during training)"]
    assert layers["l1-1.0-s0"] == "3.00x" and layers["l1-0.5-s0"] == "1.25x (within noise)"
    assert layers["l2-0.5-s0"] == "0.50x"   # a slow-down beyond the spread is not noise either


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
    victim = tmp_path / "victim.txt"   # a link planted where the report writes: replaced, never written through
    victim.write_text("keep")
    (here / "index.html").symlink_to(victim)
    (here / "report.md").symlink_to(victim)
    code, err = report(here, "--tracking-uri", f"sqlite:///{cwd / 'mlflow.db'}", "--out", ".")
    assert code == 0 and (here / "index.html").is_file() and not (here / "index.html").is_symlink()
    assert victim.read_text() == "keep" and not (here / "report.md").is_symlink()
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


def test_the_report_replaces_planted_links_and_escapes_html_from_names(tmp_path):
    """Links at the report's file names (to files outside the folder) are replaced by the report's files, the
    files they pointed to keep their content; an experiment name holding HTML is text in report.md, not markup."""
    results = _epoch_rows({"l1": [0.5, 1.0]})
    results.experiment = "<img src=x onerror=alert(1)> & co"
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep")
    for name in ("index.html", "report.md", "results.csv", "losses.png", "losses.svg"):
        (out / name).symlink_to(victim)
    R.build_report(results, out, {}, attach=False)
    assert victim.read_text() == "keep"
    for name in ("index.html", "report.md", "results.csv", "losses.png", "losses.svg"):
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []   # no temporary file left
    md = (out / "report.md").read_text()
    assert md.startswith("# Trade-off report: &lt;img src=x onerror=alert(1)&gt; &amp; co\n")
    assert "<img" not in re.sub(r"`[^`]*`", "", md)   # in a `code span` it shows as text
    assert "&lt;img" in (out / "index.html").read_text()


def test_files_are_renamed_into_place_with_the_umasks_mode_and_a_failed_write_leaves_nothing(tmp_path):
    import os
    import stat

    from bench import files
    target, victim = tmp_path / "f.txt", tmp_path / "victim"
    victim.write_text("keep")
    target.symlink_to(victim)
    files.write_text(target, "new")
    assert target.read_text() == "new" and not target.is_symlink() and victim.read_text() == "keep"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    with pytest.raises(ZeroDivisionError):
        files.write_with(tmp_path / "g.txt", lambda path: path.write_text("half") and 1 / 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "victim"]


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


def test_paired_test_interval_and_holm_against_hand_values():
    from bench.report.equal import holm, jaccard, mean_ci, paired

    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641 on 2 df: two-sided p = 0.07418
    r = paired({0: 0.91, 1: 0.92, 2: 0.93}, {0: 0.90, 1: 0.90, 2: 0.90})
    assert r["n"] == 3 and r["diff"] == pytest.approx(0.02)
    assert r["p"] == pytest.approx(0.074180, abs=1e-5)
    half = 4.302653 * 0.01 / 3 ** 0.5   # t(0.975, 2) * sd / sqrt(n)
    assert (r["lo"], r["hi"]) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert math.isnan(paired({0: 0.9}, {0: 0.8})["p"])                                  # one seed: no test
    assert math.isnan(paired({0: 0.9, 1: 0.8}, {0: 0.8, 1: 0.7})["p"])                   # no spread: no test
    assert paired({0: 0.9, 1: 0.8, 5: 0.1}, {0: 0.8, 1: 0.75})["n"] == 2                  # only shared seeds
    # Holm: p (0.01, 0.04, 0.03) of m = 3: 0.01 * 3 = 0.03, then max(0.03, 0.03 * 2) = 0.06, max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, math.nan]) == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06),
                                                  pytest.approx(math.nan, nan_ok=True)]
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-6)
    assert jaccard([1, 2, 3], [2, 3, 4]) == 0.5 and jaccard([], []) == 1.0


def _protocol_results(acc: dict[str, list[float]], scratch: dict[str, list[float]], kept=None) -> R.Results:
    rows = []
    for method, values in acc.items():
        for seed, a in enumerate(values):
            rows.append({"sweep": "s", "trial": f"{method}-flops0.5-s{seed}", "run_id": f"{method}{seed}",
                         "status": "FINISHED", "method": method, "seed": seed, "target": "flops 0.5",
                         "control": None, "test_accuracy": a, "flops_reduction": 0.51, "total_sparsity": 0.3})
    for method, values in scratch.items():
        for seed, a in enumerate(values):
            rows.append({"sweep": "s", "trial": f"scratch-{method}-s{seed}", "run_id": f"sc{method}{seed}",
                         "status": "FINISHED", "method": "none", "seed": seed, "target": "flops 0.5",
                         "control": f"scratch of {method}", "test_accuracy": a, "flops_reduction": 0.51,
                         "total_sparsity": 0.3})
    trials = pd.DataFrame(rows)
    sweeps = [{"run_id": "p", "name": "s", "status": "FINISHED", "params": {"protocol": "prune-to-target",
                                                                             "methods": ",".join(acc)},
               "tags": {}, "config": {}}]
    results = R.Results("x", "sqlite:///x.db", sweeps, trials, trials, ["conv1"], {"conv1": 20})
    results.kept = kept or {}
    return results


def test_the_equal_target_table_names_only_differences_beyond_holm_corrected_seed_noise():
    from bench.report.equal import equal_target, stability

    results = _protocol_results({"l1l2": [0.95, 0.96, 0.97, 0.955], "taylor": [0.951, 0.958, 0.971, 0.953],
                                 "random": [0.90, 0.905, 0.91, 0.899]},
                                {"l1l2": [0.93, 0.935, 0.95, 0.93]})
    [(label, table, text)] = equal_target(results)
    assert label == "flops 0.5" and list(table["method"]) == ["l1l2", "taylor", "random", "scratch (widths of l1l2)"]
    best = table.set_index("method")
    assert best.loc["l1l2", "vs best"] == "(best)"
    assert "better" in best.loc["l1l2", "vs random"] and "better" in best.loc["l1l2", "vs scratch"]
    assert "no difference shown" in best.loc["taylor", "vs best"]   # a tie within noise is not named
    assert "l1l2 is better than random" in text[0] and "l1l2 is better than scratch of l1l2" in text[0]
    assert "than taylor" not in text[0] and "taylor is better than l1l2" not in text[0]
    assert "4 paired comparisons" in text[0]   # taylor-l1l2, l1l2-random (random's vs best too), l1l2-scratch,
    # taylor-random
    assert best.loc["l1l2", "accuracy % [95% CI]"].startswith("95.88 [")
    one_seed = _protocol_results({"l1l2": [0.95], "random": [0.90]}, {})
    assert "no paired test and no verdict" in equal_target(one_seed)[0][2][0]
    kept = {"l1l20": {"conv1": [0, 1, 2], "conv2": [0]}, "l1l21": {"conv1": [1, 2, 3], "conv2": [0]}}
    table = stability(_protocol_results({"l1l2": [0.9, 0.9]}, {}, kept))
    # conv1: |{1,2}| / |{0,1,2,3}| = 0.5; conv2: 1; overall: 3 shared of 5 groups = 0.6
    assert table.iloc[0][["conv1", "conv2", "overall"]].tolist() == [0.5, 1.0, 0.6]


def test_the_detectable_difference_is_the_paired_t_tests_80_percent_power_point():
    """The noncentral t's answer against a hand value, the normal approximation it nears and a simulation of the
    test itself; the seeds a size needs; Holm's family makes it larger."""
    from bench.report.equal import detectable, seeds_needed

    # n = 10, sd 1, two-sided 0.05: dz = 0.996 (a simulation of 200,000 studies at that size rejects 80.0 %)
    assert detectable(1.0, 10) == pytest.approx(0.99600, abs=2e-5)
    # many seeds: (z_0.975 + z_0.8) sd / sqrt(n) = 0.2802 at n = 100, which the t's slightly exceeds
    assert 0.2802 < detectable(1.0, 100) < 0.2802 * 1.02
    assert detectable(2.0, 10) == pytest.approx(2 * detectable(1.0, 10))           # in the differences' units
    assert detectable(1.0, 3, family=30) > detectable(1.0, 3) > detectable(1.0, 5)   # Holm's strictest step
    assert math.isnan(detectable(1.0, 1)) and detectable(0.0, 5) == 0.0
    assert seeds_needed(1.0, 1.0) == 10 and detectable(1.0, 9) > 1.0                 # 0.996 <= 1 first at 10
    rng = np.random.default_rng(0)
    size = detectable(1.0, 4, family=3)
    x = rng.normal(size, 1.0, size=(40000, 4))
    t = x.mean(1) / (x.std(1, ddof=1) / 2)
    assert (np.abs(t) > stats.t.ppf(1 - 0.05 / 3 / 2, 3)).mean() == pytest.approx(0.80, abs=0.01)


def test_a_no_difference_verdict_says_what_difference_it_could_have_seen():
    from bench.report.equal import detectable, equal_target, paired

    acc = {"l1l2": [0.95, 0.96, 0.97], "random": [0.951, 0.958, 0.973]}
    results = _protocol_results(acc, {})
    [(_, table, text)] = equal_target(results)
    r = paired(dict(enumerate(acc["l1l2"])), dict(enumerate(acc["random"])))
    size = detectable(r["sd"], 3, family=1) * 100
    assert "no difference is beyond seed noise; a difference of " f"{size:.2f} points would have been seen 80%" in text[0]
    assert f"detectable {size:.2f}" in table.set_index("method").loc["l1l2", "vs random"]
    results.detect = 1.0
    [(_, table, text)] = equal_target(results)
    needed = next(n for n in range(2, 1000) if detectable(r["sd"], n) <= 0.01)
    assert f"to see 1 point, {needed} seeds" in text[0]
    assert f"{needed} seeds for the asked size" in table.set_index("method").loc["l1l2", "vs random"]


def test_a_primary_method_is_compared_with_every_other_method_and_its_own_control_in_one_family():
    from bench.report.equal import equal_target, holm, paired

    acc = {"l1l2": [0.95, 0.96, 0.97, 0.955], "taylor": [0.94, 0.958, 0.962, 0.951], "random": [0.90, 0.905, 0.91, 0.899]}
    scratch = {"l1l2": [0.93, 0.935, 0.95, 0.93], "taylor": [0.92, 0.93, 0.94, 0.93]}
    results = _protocol_results(acc, scratch)
    results.primary = "l1l2"
    [(_, table, text)] = equal_target(results)
    rows = table.set_index("method")
    assert "vs best" not in table and "vs random" not in table and rows.loc["l1l2", "vs l1l2"] == "(primary)"
    seeds = {m: dict(enumerate(v)) for m, v in acc.items()}
    # the family: l1l2 against taylor, random and its scratch control (M + 1 = 3), Holm over those three only
    tests = [paired(seeds["l1l2"], seeds["taylor"]), paired(seeds["l1l2"], seeds["random"]),
             paired(seeds["l1l2"], dict(enumerate(scratch["l1l2"])))]
    adjusted = holm([t["p"] for t in tests])
    assert "of the 3 paired comparisons this table makes (the primary method, l1l2, against each other" in text[0]
    # a row reads that method minus the primary
    assert rows.loc["taylor", "vs l1l2"].startswith(f"{-tests[0]['diff'] * 100:.2f} [") \
        and f"p={adjusted[0]:.3g}" in rows.loc["taylor", "vs l1l2"]
    assert f"p={adjusted[2]:.3g}" in rows.loc["l1l2", "vs scratch"] and rows.loc["taylor", "vs scratch"] == "-"


def test_the_primary_method_comes_from_the_sweep_or_the_report_and_must_have_trials():
    from bench.report.load import ReportError, choose_primary

    results = _protocol_results({"l1l2": [0.9, 0.91], "taylor": [0.9, 0.92]}, {})
    choose_primary(results, None)
    assert results.primary is None
    results.sweeps[0]["config"] = {"primary": "taylor"}   # bench run --primary taylor
    choose_primary(results, None)
    assert results.primary == "taylor"
    choose_primary(results, "l1l2")   # bench report --primary wins
    assert results.primary == "l1l2"
    with pytest.raises(ReportError, match=r"--primary ssl: no trial of that method in experiment 'x' \(its methods: "
                                          r"l1l2, taylor\)"):
        choose_primary(results, "ssl")


def test_the_forest_plot_draws_each_comparisons_seeds_mean_and_interval_around_zero():
    from bench.report.equal import fig_forest, paired

    acc = {"l1l2": [0.95, 0.96, 0.97], "taylor": [0.94, 0.958, 0.962], "random": [0.90, 0.905, 0.91]}
    results = _protocol_results(acc, {})
    results.primary = "l1l2"
    fig = fig_forest(results)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["l1l2 - random", "l1l2 - taylor"]   # drawn bottom up, in the table's order
    dots = [c for c in ax.collections if len(c.get_offsets()) == 3]
    r = paired(dict(enumerate(acc["l1l2"])), dict(enumerate(acc["taylor"])))
    drawn = sorted(x for c in dots for x, y in c.get_offsets() if y > 0.5)   # the upper row: l1l2 - taylor
    assert drawn == pytest.approx(sorted(100 * d for d in r["diffs"]))
    assert any(list(line.get_xdata()) == [0.0, 0.0] for line in ax.get_lines())   # zero marked
    assert fig_forest(_protocol_results({"l1l2": [0.9], "random": [0.8]}, {})) is None   # one seed: nothing to draw


def test_scratch_b_rows_state_their_epochs_and_the_cap_and_get_a_column_of_their_own():
    from bench.report.equal import equal_target

    results = _protocol_results({"l1l2": [0.95, 0.96, 0.97]}, {"l1l2": [0.93, 0.935, 0.95]})
    extra = [{"sweep": "s", "trial": f"scratch-b-l1l2-s{seed}", "run_id": f"sb{seed}", "status": "FINISHED",
              "method": "none", "seed": seed, "target": "flops 0.5", "control": "scratch-b of l1l2",
              "test_accuracy": a, "flops_reduction": 0.51, "total_sparsity": 0.3, "epochs": epochs,
              "control_capped": capped} for seed, a, epochs, capped in ((0, 0.96, 8, "True"), (1, 0.975, 8, "True"),
                                                                        (2, 0.975, 7, "False"))]
    results.trials = pd.concat([results.trials, pd.DataFrame(extra)], ignore_index=True)
    [(label, table, text)] = equal_target(results)
    assert list(table["method"]) == ["l1l2", "scratch (widths of l1l2)",
                                     "scratch-B (widths of l1l2, 7-8 epochs; the cap bit on 2 of 3 seeds)"]
    row = table.set_index("method").loc["l1l2"]
    assert "pts" in row["vs scratch"] and "pts" in row["vs scratch-B"] and row["vs scratch-B"].startswith("-1.00 [") and "p=" in row["vs scratch-B"]
    plain = equal_target(_protocol_results({"l1l2": [0.95, 0.96]}, {"l1l2": [0.93, 0.935]}))[0][1]
    assert "vs scratch-B" not in plain.columns and "vs scratch" in plain.columns


def test_torch_prunings_published_numbers_sit_beside_the_runs_own_at_the_presets_target():
    from bench.report.equal import field_quoted

    results = _protocol_results({"magnitude-l1": [0.90, 0.92], "slimming": [0.91, 0.91]}, {})
    dense = pd.DataFrame([{"sweep": "s", "trial": f"none-s{s}", "run_id": f"none{s}", "status": "FINISHED",
                           "method": "none", "seed": s, "target": None, "control": None, "test_accuracy": 0.95,
                           "compact_macs": 100.0} for s in (0, 1)])
    results.trials = pd.concat([results.trials.assign(compact_macs=[48.0, 50.0, 47.0, 49.0]), dense],
                               ignore_index=True)
    results.sweeps[0]["config"] = {"preset": "cifar10-resnet56b-2x"}
    table, note = field_quoted(results)
    rows = table.set_index("quoted: method")
    assert rows.loc["Group-L1", "quoted: pruned %"] == "92.93" and rows.loc["Group-L1", "quoted: change"] == "-0.60"
    assert rows.loc["Group-L1", "this run: accuracy % [95% CI]"].startswith("91.00 [")
    assert rows.loc["Group-L1", "this run: change"] == "-4.00"
    assert rows.loc["Group-L1", "this run: speed-up"] == f"{(100 / 48 + 100 / 50) / 2:.2f}x"
    assert rows.loc["Group-GReg", "this run: method"] == "growing-reg (not run)"
    assert "Torch-Pruning" in note and "from scratch" in note


def test_the_equal_target_figure_draws_every_method_scratch_and_marks_a_collapsed_one():
    from bench.report.equal import fig_equal_target

    results = _protocol_results({"l1l2": [0.95, 0.96, 0.97], "taylor": [0.94, 0.95, 0.955],
                                 "random": [0.10, 0.11, 0.10]}, {"l1l2": [0.93, 0.935, 0.95]})
    fig = fig_equal_target(results)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["l1l2", "taylor", "random", "scratch (l1l2)"]
    low, high = ax.get_ylim()
    assert low > 80 and high < 100   # random's collapse does not squeeze the others
    assert fig.bench_notes == ["random at flops 0.5 (10.3 %) is drawn at the lower edge."]
