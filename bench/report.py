"""The trade-off report: which method removes the most filters for the least accuracy, and where.

``bench report`` reads what the sweeps of one experiment recorded in MLflow and writes, in
``reports/<experiment>/`` (or ``--out``):

- ``index.html``: self-contained (figures embedded as data URIs, styles inline; opens offline);
- ``report.md``: the same tables, with the figures beside it as PNG files;
- ``results.csv``: one row per trial and epoch, every metric the trial logged (the compact model's
  measured parameters, FLOPs and latency on its last epoch's row);
- the figures as PNG: accuracy against filter sparsity and against FLOPs (final epochs, seed spread,
  Pareto fronts), trajectories over epochs in that plane, task loss and penalty over epochs (Berthelier
  et al. Fig. 4), the learned first-layer filters (Fig. 5).

It also attaches the files it wrote (nothing else the folder holds) to each reported sweep's MLflow parent
run (artifact path ``report/``).

Which run stands for a trial: a trial (one method, swept value and seed; MLflow tag ``bench.trial_key``)
may have several runs when it was retried or resumed. Its earliest FINISHED run stands for it; a trial
with no finished run is listed with its last attempt's status and error.

This module reads runs through ``tracking.py`` and draws with pandas and seaborn; it never imports torch
or ray. Method descriptions (paper, formula) come from the registry, handed in by the caller.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import names as N
from .presets import paper_table
from .tracking import Store

TOLERANCES = (0.5, 1.0)  # accuracy points below the baseline for the "best sparsity within" table
TARGETS = (0.5, 0.8)     # total filter sparsities at which the report names the most accurate method
ID_COLUMNS = ["sweep", "trial", "run_id", "status", "method", "axis", "value", "setting", "seed", "epoch"]


class ReportError(RuntimeError):
    """The report cannot be built (unknown experiment, empty store, nothing to report)."""


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str = "not registered here (a plugin? pass it with --plugin)"
    paper: str = "-"
    formula: str = "-"


# -- reading the store -------------------------------------------------------------------------------------

@dataclass
class Results:
    """What the report is built from: one row per trial (``trials``) and per trial and epoch (``epochs``)."""

    experiment: str
    uri: str
    sweeps: list[dict[str, Any]]       # parent runs: run_id, name, status, params, tags, config
    trials: pd.DataFrame               # one row per trial: ids, status, error, final metrics
    epochs: pd.DataFrame               # one row per trial and epoch (results.csv)
    layers: list[str]                  # convs of the prunable units, model order
    layer_sizes: dict[str, int]        # filters per layer before any removal
    filters: dict[str, np.ndarray] = field(default_factory=dict)  # run_id -> first conv's weights
    targets: list[dict[str, Any]] = field(default_factory=list)    # target searches' records (targets.json)

    @property
    def finished(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == "FINISHED"]

    @property
    def finished_epochs(self) -> pd.DataFrame:
        """The epoch rows of the finished trials."""
        return self.epochs[self.epochs["run_id"].isin(self.finished["run_id"])]

    @property
    def selection(self) -> str:
        """The accuracy the report's choices are made on: the validation accuracy when every finished trial held
        a validation split out (``--val-split``), else the test accuracy."""
        f = self.finished
        return N.VAL_ACCURACY if len(f) and N.VAL_ACCURACY in f and f[N.VAL_ACCURACY].notna().all() \
            else N.TEST_ACCURACY

    def choice_note(self) -> str:
        return ("Choices are made on validation accuracy (the examples --val-split held out of training); the "
                "accuracy shown is test accuracy." if self.selection == N.VAL_ACCURACY else
                "Choices are made on test accuracy: no validation split was held out (run with --val-split F to "
                "choose without looking at the test set).")

    @property
    def finished_methods(self) -> list[str]:
        """Methods with at least one finished trial, in report order."""
        return [m for m in self.methods if (self.finished["method"] == m).any()]

    @property
    def methods(self) -> list[str]:
        """Methods in report order: the baseline ``none`` first, then as the sweeps listed them."""
        order: list[str] = []
        for sweep in self.sweeps:
            order += [m for m in str(sweep["params"].get("methods", "")).split(",") if m]
        order += list(self.trials["method"])
        seen = sorted(set(order), key=order.index)
        return sorted(seen, key=lambda m: (m != "none", seen.index(m)))


def choose_experiment(uri: str, experiment: str | None) -> str:
    """The experiment to report: the one named, or the store's only experiment with sweeps."""
    known = [e for e in Store(uri).experiment_names() if e != "Default"]
    if experiment is not None:
        if Store(uri).experiment_id_of(experiment) is None:
            listing = ", ".join(sorted(known)) or "none: run `bench run` first"
            raise ReportError(f"no experiment {experiment!r} in {uri}; experiments there: {listing}")
        return experiment
    with_sweeps = [e for e in known if Store(uri).sweep_runs(Store(uri).experiment_id_of(e))]
    if not with_sweeps:
        raise ReportError(f"the store {uri} holds no sweep: run `bench run` first (or pass the --tracking-uri "
                          "the sweeps used)")
    if len(with_sweeps) > 1:
        raise ReportError(f"the store {uri} holds several experiments; pick one with --experiment: "
                          f"{', '.join(sorted(with_sweeps))}")
    return with_sweeps[0]


def read_store(uri: str, experiment: str, sweep: str | None = None, with_filters: bool = True) -> Results:
    """Read every trial of ``experiment`` (of the sweep named ``sweep`` only, when given) from the store."""
    experiment_id = Store(uri).experiment_id_of(experiment)
    if experiment_id is None:
        raise ReportError(f"no experiment {experiment!r} in {uri}")
    parents = Store(uri).sweep_runs(experiment_id)
    if sweep is not None:
        parents = [p for p in parents if p.name == sweep]
        if not parents:
            raise ReportError(f"no sweep {sweep!r} in experiment {experiment!r}")
    parent_ids = {p.run_id for p in parents}
    runs = [r for r in Store(uri).trial_runs(experiment_id) if r.tags.get("mlflow.parentRunId") in parent_ids]
    if not runs:
        raise ReportError(f"experiment {experiment!r} in {uri} has no trial runs yet")
    sweeps = [{"run_id": p.run_id, "name": p.name, "status": p.status, "params": p.params, "tags": p.tags,
               "config": Store(uri).read_json_artifact(p.run_id, N.SWEEP_CONFIG) or {}} for p in parents]
    sweep_names = {p.run_id: p.name for p in parents}

    chosen = _one_run_per_trial(runs)
    trial_rows, epoch_rows = [], []
    for run in chosen:
        ids = _identity(run, sweep_names)
        # MLflow's system metrics (system/...) are sampled on their own steps, not epochs: not the trial's results
        history = Store(uri).metric_histories(run.run_id, sorted(k for k in run.metrics if not k.startswith("system/")))
        steps = sorted({step for values in history.values() for step, _ in values})
        for step in steps:
            row = dict(ids, epoch=step)
            for key, values in history.items():
                found = [v for s, v in values if s == step]
                if found:
                    row[key] = found[-1]
            epoch_rows.append(row)
        final = {k: v[-1][1] for k, v in history.items() if v}
        trial_rows.append({**ids, "epoch": max(steps) if steps else 0, "error": run.tags.get(N.ERROR_TAG),
                           "epochs_planned": _int(run.params.get("epochs")), **final})
    trials = pd.DataFrame(trial_rows)
    epochs = pd.DataFrame(epoch_rows)
    if epochs.empty:
        epochs = pd.DataFrame(columns=ID_COLUMNS)
    layers, sizes = _layers(epochs)
    epochs = epochs[_column_order(epochs.columns, layers)]
    results = Results(experiment, uri, sweeps, trials, epochs, layers, sizes)
    results.targets = [{**r, "sweep": p.name} for p in parents
                       for r in (Store(uri).read_json_artifact(p.run_id, N.TARGETS_ARTIFACT) or [])]
    if with_filters:
        results.filters = _first_filters(uri, results.finished["run_id"])
    return results


def _one_run_per_trial(runs) -> list:
    """The earliest FINISHED run of each trial key, else its latest attempt (runs come oldest first)."""
    by_key: dict[str, list] = {}
    for run in runs:
        by_key.setdefault(run.tags.get(N.TRIAL_KEY_TAG, run.run_id), []).append(run)
    chosen = []
    for attempts in by_key.values():
        finished = [r for r in attempts if r.status == "FINISHED"]
        chosen.append(finished[0] if finished else attempts[-1])
    return chosen


def _identity(run, sweep_names: Mapping[str, str]) -> dict[str, Any]:
    p = run.params
    axis = p.get("sweep_axis")
    value = _float(p.get(axis)) if axis else math.nan
    label = {"lam": "lam", "ratio": "p"}.get(axis or "", axis or "")
    setting = f"{label} {value:g}" if axis else "-"
    return {"sweep": sweep_names.get(run.tags.get("mlflow.parentRunId"), ""), "trial": run.name,
            "run_id": run.run_id, "status": run.status, "method": p.get("method", "?"), "axis": axis or "",
            "value": value, "setting": setting, "seed": _int(p.get("seed"))}


def _layers(epochs: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
    """Eligible layers (in logged order) and their full filter counts, from alive counts and sparsities."""
    prefix = N.FILTERS_ALIVE.format("")
    layers = [c[len(prefix):] for c in epochs.columns if c.startswith(prefix)]
    sizes = {}
    for layer in layers:
        alive = epochs[N.FILTERS_ALIVE.format(layer)]
        sparsity = epochs.get(N.SPARSITY.format(layer), pd.Series(np.nan, index=epochs.index))
        ok = sparsity < 1
        total = (alive[ok] / (1 - sparsity[ok])).round()
        sizes[layer] = int(total.max()) if len(total.dropna()) else int(alive.max())
    order = _natural_order(layers)
    return order, sizes


def _column_order(columns: Iterable[str], layers: Sequence[str]) -> list[str]:
    """results.csv's columns: identifiers, the trade-off, per-layer counts, losses, then the rest; the
    compact model's measurements last."""
    first = [*ID_COLUMNS, N.TEST_ACCURACY, "train_accuracy", N.TOTAL_SPARSITY, N.PARAMS, N.FLOPS,
             *(N.FILTERS_ALIVE.format(layer) for layer in layers), *(N.SPARSITY.format(layer) for layer in layers),
             N.TRAIN_LOSS, N.PENALTY, "epoch_time_s"]
    columns = list(columns)
    rest = sorted(c for c in columns if c not in first and c not in N.COMPACT_METRICS)
    return [c for c in first if c in columns] + rest + [c for c in N.COMPACT_METRICS if c in columns]


def _natural_order(layers: Sequence[str]) -> list[str]:
    """conv2 before conv10; ``features.0`` before ``features.3``."""
    return sorted(layers, key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)])


def _first_filters(uri: str, run_ids: Iterable[str]) -> dict[str, np.ndarray]:
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for run_id in run_ids:
            path = Store(uri).download_artifact(run_id, N.FIRST_FILTERS, Path(folder) / run_id)
            if path is not None:
                out[run_id] = np.load(path)
    return out


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _int(text: Any) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


# -- analysis ----------------------------------------------------------------------------------------------

def pareto_front(points: pd.DataFrame, x: str, y: str, maximize_x: bool = True) -> pd.DataFrame:
    """The non-dominated rows of ``points``: no other row is at least as good on both ``x`` and ``y``
    (``y`` is maximized; ``x`` maximized, or minimized with ``maximize_x=False``) and better on one.
    Returned sorted by ``x``, the order a front is drawn in."""
    if points.empty:
        return points
    sign = 1.0 if maximize_x else -1.0
    xs = sign * points[x].to_numpy(dtype=float)
    ys = points[y].to_numpy(dtype=float)
    keep = []
    for i in range(len(points)):
        dominated = ((xs >= xs[i]) & (ys >= ys[i]) & ((xs > xs[i]) | (ys > ys[i]))).any()
        keep.append(not dominated)
    return points[np.array(keep)].sort_values(x)


def settings(final: pd.DataFrame) -> pd.DataFrame:
    """Final-epoch points averaged over seeds: one row per method and swept value, each metric's mean under
    its own name and its spread under ``<name>_sd`` (0 with one seed)."""
    if final.empty:
        return final
    metrics = [N.TEST_ACCURACY, N.TOTAL_SPARSITY, N.FLOPS] + [N.VAL_ACCURACY] * (N.VAL_ACCURACY in final)
    group = final.groupby(["method", "setting", "value"], dropna=False)
    out = group.agg(**{m: (m, "mean") for m in metrics}, **{f"{m}_sd": (m, "std") for m in metrics},
                    seeds=("seed", "count")).reset_index()
    return out.fillna({f"{m}_sd": 0.0 for m in metrics})


def baseline_accuracy(results: Results, column: str = N.TEST_ACCURACY) -> float | None:
    """Mean final accuracy (``column``: test, or validation) of the finished ``none`` trials, None without any."""
    base = results.finished[results.finished["method"] == "none"]
    return float(base[column].mean()) if len(base) else None


def best_within(results: Results, baseline: float, points: float, any_epoch: bool = False) -> dict[str, dict]:
    """For each method, its highest total sparsity with accuracy >= baseline - ``points`` accuracy points
    (``baseline`` and the choice on ``results.selection``, the test accuracy reported): over final epochs, or
    over every epoch of every trial (any epoch's model can be kept)."""
    if any_epoch:
        rows = results.finished_epochs
    else:
        rows = results.finished
    chosen = results.selection
    rows = rows.dropna(subset=[chosen, N.TOTAL_SPARSITY])
    ok = rows[rows[chosen] >= baseline - points / 100 - 1e-12]
    out = {}
    for method, group in ok.groupby("method"):
        best = group.sort_values([N.TOTAL_SPARSITY, chosen], ascending=False).iloc[0]
        out[method] = {"sparsity": float(best[N.TOTAL_SPARSITY]), "accuracy": float(best[N.TEST_ACCURACY]),
                       "trial": best["trial"], "epoch": int(best["epoch"])}
    return out


def best_sparse_trial(results: Results, method: str, baseline: float | None) -> pd.Series | None:
    """The trial shown for ``method`` in the filters figure: the sparsest within 1 point of the baseline,
    else the most accurate one that removed filters, else the most accurate one."""
    rows = results.finished[results.finished["method"] == method]
    if rows.empty:
        return None
    chosen = results.selection   # baseline is on the same accuracy
    if baseline is not None:
        ok = rows[rows[chosen] >= baseline - 0.01]
        ok = ok[ok[N.TOTAL_SPARSITY] > 0]
        if len(ok):
            return ok.sort_values([N.TOTAL_SPARSITY, chosen], ascending=False).iloc[0]
    sparse = rows[rows[N.TOTAL_SPARSITY] > 0]
    return (sparse if len(sparse) else rows).sort_values(chosen, ascending=False).iloc[0]


# -- tables ------------------------------------------------------------------------------------------------

def layer_table(results: Results) -> pd.DataFrame:
    """Per-layer filters left, like Berthelier et al.'s Tables I-III: one row per finished trial."""
    rows = []
    order = {m: i for i, m in enumerate(results.methods)}
    final = results.finished.sort_values(["method", "value", "seed"], key=lambda c: c.map(order) if c.name ==
                                         "method" else c)
    for _, t in final.iterrows():
        row = {"method": t["method"], "setting": t["setting"], "seed": t["seed"],
               "error %": _pct(1 - t[N.TEST_ACCURACY])}
        for layer in results.layers:
            alive = t.get(N.FILTERS_ALIVE.format(layer))
            size = results.layer_sizes[layer]
            row[layer] = "-" if _missing(alive) else f"{int(alive)}/{size} ({_pct(1 - alive / size, 1)} %)"
        row["total sparsity %"] = _pct(t[N.TOTAL_SPARSITY], 1)
        row["params"] = _count(t.get(N.PARAMS))
        row["FLOPs"] = _count(t.get(N.FLOPS))
        row["compact params"] = _count(t.get("compact_params"))
        row["speed-up b1"] = _times(t.get("speedup_b1"))
        row["speed-up b64"] = _times(t.get("speedup_b64"))
        row["trial"] = t["trial"]
        rows.append(row)
    return pd.DataFrame(rows)


def best_table(results: Results) -> tuple[pd.DataFrame, str]:
    """Highest sparsity within 0.5 and 1 accuracy points of the baseline, per method; and a note."""
    baseline = baseline_accuracy(results, results.selection)
    if baseline is None:
        return pd.DataFrame(), ("No finished `none` trial in this experiment, so there is no baseline to "
                                "measure accuracy drops against: add one with `bench run --methods none ...`.")
    columns = {}
    for points in TOLERANCES:
        columns[f"final epoch, within {points:g} pt"] = best_within(results, baseline, points)
        columns[f"any epoch, within {points:g} pt"] = best_within(results, baseline, points, any_epoch=True)
    rows = []
    for method in results.methods:
        if method == "none":
            continue
        row = {"method": method}
        if not (results.finished["method"] == method).any():
            rows.append({**row, **{title: "no finished trial" for title in columns}})
            continue
        for title, found in columns.items():
            hit = found.get(method)
            row[title] = (f"{_pct(hit['sparsity'], 1)} % at {_pct(hit['accuracy'])} % ({hit['trial']}"
                          f"{'' if title.startswith('final') else ', epoch ' + str(hit['epoch'])})"
                          if hit else "none within")
        rows.append(row)
    which = "validation" if results.selection == N.VAL_ACCURACY else "test"
    note = (f"Baseline: `none`, mean final {which} accuracy {_pct(baseline)} % over "
            f"{int((results.finished['method'] == 'none').sum())} trial(s). A cell gives the highest total filter "
            f"sparsity reached with {which} accuracy at most that many points below it, and that trial's test "
            f"accuracy. {results.choice_note()}")
    return pd.DataFrame(rows), note


def at_sparsity(results: Results, targets: Sequence[float] = TARGETS) -> tuple[pd.DataFrame, list[str]]:
    """Per method, its most accurate setting (final epoch, mean over seeds) with total filter sparsity of at
    least each target; and one sentence per target naming the winner."""
    points = settings(results.finished)
    rows, verdicts = [], []
    best: dict[float, tuple[float, str, float]] = {}
    for method in results.finished_methods:
        if method == "none":
            continue
        row = {"method": method}
        mine = points[points["method"] == method]
        for target in targets:
            ok = mine[mine[N.TOTAL_SPARSITY] >= target - 1e-9]
            title = f"at >= {target:.0%} sparsity"
            if ok.empty:
                reached = mine[N.TOTAL_SPARSITY].max() if len(mine) else float("nan")
                row[title] = f"not reached (max {_pct(reached, 1)} %)"
                continue
            hit = ok.sort_values([results.selection, N.TOTAL_SPARSITY], ascending=False).iloc[0]
            row[title] = f"{_pct(hit[N.TEST_ACCURACY])} % ({hit['setting']}, {_pct(hit[N.TOTAL_SPARSITY], 1)} %)"
            if target not in best or hit[results.selection] > best[target][2]:
                best[target] = (float(hit[N.TEST_ACCURACY]), method, float(hit[results.selection]))
        rows.append(row)
    for target in targets:
        if target in best:
            acc, method, _ = best[target]
            verdicts.append(f"At {target:.0%} filter sparsity or more, **`{method}`** keeps the highest test "
                            f"accuracy: {_pct(acc)} %.")
        else:
            verdicts.append(f"No method reached {target:.0%} filter sparsity.")
    return pd.DataFrame(rows), verdicts


ALPHA = 0.05   # the significance level of the equal-sparsity comparison


def compare(a: Sequence[float], b: Sequence[float]) -> tuple[bool, str]:
    """Whether sample ``a``'s mean is above ``b``'s beyond seed noise: Welch's t-test, one-sided at ALPHA (the
    difference of means over its standard error, Welch-Satterthwaite degrees of freedom). With fewer than two
    seeds on a side there is no noise estimate: never beyond noise. Zero variance on both sides: beyond noise
    only when the means differ."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return False, f"n = {len(a)} and {len(b)}: too few seeds to tell noise"
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        return bool(a.mean() > b.mean()), "no spread over seeds on either side"
    import warnings
    with warnings.catch_warnings():   # nearly equal samples: scipy warns of precision, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        t, p = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    return bool(p < ALPHA), f"Welch's t = {t:.2f}, one-sided p = {p:.3f}"


def equal_sparsity(results: Results) -> tuple[pd.DataFrame, list[str]]:
    """The target searches' answer: rows methods, columns targets, cells mean +- sd of the test accuracy over
    the seeds that reached the target (n, mean achieved value); one sentence per target naming the best method
    where its lead over the runner-up is beyond seed noise (:func:`compare`), else a tie."""
    records = pd.DataFrame(results.targets)
    columns = sorted({(r["kind"], r["target"]) for r in results.targets})
    rows, verdicts = [], []
    base = results.finished[results.finished["method"] == "none"][N.TEST_ACCURACY].dropna()
    if len(base):
        rows.append({"method": "none (no pruning)", **{_target_title(k, t): _mean_sd(base) for k, t in columns}})
    reached = records[records["status"] == "reached"]
    for method in [m for m in results.methods if m in set(records["method"])]:
        row = {"method": method}
        for kind, target in columns:
            mine = records[(records["method"] == method) & (records["kind"] == kind) & (records["target"] == target)]
            ok = mine[mine["status"] == "reached"]
            cell = (f"{_mean_sd(ok['test_accuracy'])} (n = {len(ok)}, achieved {_pct(ok['achieved'].mean(), 1)} %)"
                    if len(ok) else "not reached")
            missed = int((mine["status"] == "unreachable").sum())
            if missed:
                closest = mine[mine["status"] == "unreachable"]["achieved"].dropna()
                cell += f"; {missed} seed(s) unreachable" + (f" (closest {_pct(closest.mean(), 1)} %)"
                                                             if len(closest) else "")
            unfinished = int((mine["status"] == "unfinished").sum())
            if unfinished:   # an interrupted sweep: its search had probes left
                cell += f"; {unfinished} seed(s) unfinished (the sweep was interrupted: resume it)"
            row[_target_title(kind, target)] = cell
        rows.append(row)
    for kind, target in columns:
        at = reached[(reached["kind"] == kind) & (reached["target"] == target)]
        means = at.groupby("method")["test_accuracy"].mean().sort_values(ascending=False)
        where = f"At {target:.0%} {_KIND_WORDS[kind]}"
        if len(means) == 0:
            verdicts.append(f"{where}, no method reached the target.")
            continue
        if len(means) == 1:
            verdicts.append(f"{where}, only `{means.index[0]}` reached the target.")
            continue
        first, second = means.index[0], means.index[1]
        beyond, test = compare(at[at["method"] == first]["test_accuracy"], at[at["method"] == second]["test_accuracy"])
        if beyond:
            verdicts.append(f"{where}, **`{first}`** keeps the most accuracy, beyond seed noise over `{second}` "
                            f"({_pct(means.iloc[0])} % against {_pct(means.iloc[1])} %; {test}).")
        else:
            verdicts.append(f"{where}, tie within noise between `{first}` and `{second}` ({_pct(means.iloc[0])} % "
                            f"against {_pct(means.iloc[1])} %; {test}).")
    return pd.DataFrame(rows), verdicts


_KIND_WORDS = {"sparsity": "of filters removed", "flops": "of FLOPs removed", "params": "of parameters removed"}


def _target_title(kind: str, target: float) -> str:
    return f"{kind} {target:.0%}"


def _mean_sd(values: Any) -> str:
    v = pd.Series(values, dtype=float).dropna()
    return f"{_pct(v.mean())} +- {_pct(v.std(ddof=1)) if len(v) > 1 else '0.00'} %"


def fig_equal_sparsity(results: Results):
    """Test accuracy against each target, mean over the seeds that reached it with one standard deviation."""
    plt, sns = _plt()
    records = pd.DataFrame(results.targets)
    reached = records[records["status"] == "reached"]
    if reached.empty:
        return None
    kinds = sorted(set(reached["kind"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False)
    colors = palette(results.methods)
    for ax, kind in zip(axes[0], kinds):
        mine = reached[reached["kind"] == kind]
        for i, (method, group) in enumerate(mine.groupby("method", sort=False)):
            stats = group.groupby("target")["test_accuracy"].agg(["mean", "std", "count"]).reset_index()
            offset = (i - len(set(mine["method"])) / 2) * 0.004
            ax.errorbar(100 * (stats["target"] + offset), 100 * stats["mean"], yerr=100 * stats["std"].fillna(0),
                        marker="o", capsize=3, label=method, color=colors.get(method))
        ticks = sorted(set(100 * mine["target"]))
        ax.set_xticks(ticks)
        ax.set_xlim(ticks[0] - 5, ticks[-1] + 5)
        ax.set_xlabel(f"target: % {_KIND_WORDS[kind]}")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def quoted_table(results: Results) -> tuple[pd.DataFrame, str] | None:
    """The paper's published numbers for the preset the sweeps came from, each row beside this experiment's
    closest trial setting (same method and lambda when it ran, else the same method nearest in sparsity)."""
    presets = [s["config"].get("preset") for s in results.sweeps if isinstance(s.get("config"), Mapping)]
    found = next((paper_table(p) for p in presets if paper_table(p) is not None), None)
    if found is None:
        return None
    table, note = found
    final = results.finished
    alive_cols = [N.FILTERS_ALIVE.format(layer) for layer in results.layers]
    means = (final.groupby(["method", "setting", "value"], dropna=False)
             [[N.TEST_ACCURACY, N.TOTAL_SPARSITY, *[c for c in alive_cols if c in final]]].mean().reset_index())
    rows = []
    for q in table.rows:
        row = {"quoted: method": q.label, "quoted: lambda": "-" if q.lam is None else f"{q.lam:g}",
               "quoted: error %": f"{q.error:.1f}", "quoted: filters": "/".join(map(str, q.filters)),
               "quoted: total sparsity %": f"{q.sparsity:.1f}"}
        mine = means[means["method"] == q.method] if q.method else means.iloc[0:0]
        match = mine.iloc[0:0]
        if q.lam is not None and len(mine):
            match = mine[np.isclose(mine["value"].astype(float), q.lam)]
        how = "same lambda"
        if match.empty and len(mine):
            match = mine.iloc[(mine[N.TOTAL_SPARSITY] * 100 - q.sparsity).abs().argsort()[:1]]
            how = "nearest sparsity" if q.method != "none" else "baseline"
        if match.empty:
            row.update({"this run: setting": "not run" if q.method else "not implemented here",
                        "this run: error %": "-", "this run: filters": "-", "this run: total sparsity %": "-"})
        else:
            m = match.iloc[0]
            filters = "/".join(_count(m[c]) for c in alive_cols if c in m)
            setting = m["setting"] if m["setting"] != "-" else m["method"]
            row.update({"this run: setting": f"{setting} ({how})",
                        "this run: error %": _pct(1 - m[N.TEST_ACCURACY]),
                        "this run: filters": filters, "this run: total sparsity %": _pct(m[N.TOTAL_SPARSITY], 1)})
        rows.append(row)
    text = (f"Numbers in the `quoted:` columns are copied from {table.source}, {table.title}; they are the "
            f"paper's, not measured here. {table.note} {note}".strip())
    return pd.DataFrame(rows), text


def problem_table(results: Results) -> pd.DataFrame:
    """Trials that did not finish (failed, killed, still running), with their errors."""
    rows = []
    for _, t in results.trials[results.trials["status"] != "FINISHED"].iterrows():
        error = t.get("error")
        last = "" if _missing(error) else [line for line in str(error).strip().splitlines() if line.strip()][-1]
        rows.append({"trial": t["trial"], "status": t["status"], "epochs done": int(t["epoch"]),
                     "error": last[:300], "sweep": t["sweep"], "run_id": t["run_id"]})
    return pd.DataFrame(rows)


def notes(results: Results) -> list[str]:
    """Plain statements about what the experiment holds: methods that never removed a filter, failures."""
    out = []
    finished = results.finished
    for method in results.methods:
        rows = finished[finished["method"] == method]
        if method != "none" and len(rows) and (rows[N.TOTAL_SPARSITY] <= 0).all():
            out.append(f"`{method}` removed no filter in any of its {len(rows)} finished trial(s): its points sit "
                       "at 0 % sparsity (raise its lambda or change its zeroing rule).")
        if not len(rows):
            out.append(f"`{method}` has no finished trial: it is missing from the figures.")
    problems = results.trials[results.trials["status"] != "FINISHED"]
    for status, group in problems.groupby("status"):
        out.append(f"{len(group)} trial(s) {status}: {', '.join(group['trial'])} (see 'Trials that did not "
                   "finish').")
    return out


def method_table(results: Results, registry: Mapping[str, MethodInfo]) -> pd.DataFrame:
    rows = []
    for method in results.methods:
        info = registry.get(method, MethodInfo(method))
        rows.append({"method": method, "paper": info.paper, "penalty": info.formula,
                     "description": info.description})
    return pd.DataFrame(rows)


def config_table(results: Results) -> pd.DataFrame:
    rows = []
    for sweep in results.sweeps:
        p, tags = sweep["params"], sweep["tags"]

        def prov(key: str, missing: str = "?") -> str:
            return tags.get(N.PROVENANCE_PREFIX + key, missing)

        trials = results.trials[results.trials["sweep"] == sweep["name"]]
        counts = trials["status"].value_counts().to_dict()
        rows.append({"sweep": sweep["name"], "status": sweep["status"],
                     "trials": ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
                     "model": p.get("model", "-"), "dataset": p.get("dataset", "-"), "epochs": p.get("epochs", "-"),
                     "batch": p.get("batch_size", "-"), "lr": p.get("lr", "-"), "seeds": p.get("seeds", "-"),
                     "bench": f"{prov('version')} ({tags.get(N.GIT_COMMIT_TAG, prov('git_commit', 'no git'))[:10]})",
                     **{k: prov(k) for k in ("torch", "torchvision", "ray", "mlflow", "python", "host")}})
    return pd.DataFrame(rows)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pct(value: Any, digits: int = 2) -> str:
    return "-" if _missing(value) else f"{100 * float(value):.{digits}f}"


def _count(value: Any) -> str:
    return "-" if _missing(value) else f"{int(round(float(value))):,}"


def _times(value: Any) -> str:
    return "-" if _missing(value) else f"{float(value):.2f}x"


# -- figures -----------------------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def palette(methods: Sequence[str]) -> dict[str, Any]:
    """One colour per method, the same in every figure (the baseline in grey)."""
    _, sns = _plt()
    colours = sns.color_palette("colorblind", max(1, len(methods)))
    out = {m: colours[i] for i, m in enumerate(m for m in methods if m != "none")}
    out["none"] = (0.35, 0.35, 0.35)
    return out


def fig_tradeoff(results: Results, x: str, xlabel: str, maximize_x: bool):
    """Test accuracy against ``x`` at the final epoch: trials, seed means with spread, Pareto fronts."""
    plt, sns = _plt()
    colours = palette(results.methods)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    final = results.finished
    scale = 100.0 if x == N.TOTAL_SPARSITY else 1e-6
    points = settings(final)
    for method in results.methods:
        rows = final[final["method"] == method]
        if rows.empty:
            continue
        colour = colours[method]
        ax.scatter(rows[x] * scale, rows[N.TEST_ACCURACY] * 100, color=colour, alpha=0.35, s=18, linewidths=0)
        means = points[points["method"] == method]
        ax.errorbar(means[x] * scale, means[N.TEST_ACCURACY] * 100, xerr=means[f"{x}_sd"] * scale,
                    yerr=means[f"{N.TEST_ACCURACY}_sd"] * 100, fmt="o", color=colour, capsize=3, label=method, ms=6)
        front = pareto_front(means, x, N.TEST_ACCURACY, maximize_x)
        if len(front) > 1:
            ax.plot(front[x] * scale, front[N.TEST_ACCURACY] * 100, "-", color=colour, alpha=0.8, lw=1.5)
    baseline = baseline_accuracy(results)
    if baseline is not None:
        ax.axhline(baseline * 100, color="grey", ls="--", lw=1)
        ax.axhspan((baseline - 0.01) * 100, baseline * 100, color="grey", alpha=0.08, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("final epoch: trials (faint), seed means with spread, Pareto fronts (lines); "
                 "dashed: baseline, band: 1 point below", fontsize=9)
    if not maximize_x:
        ax.invert_xaxis()
    ax.legend(title="method", fontsize=9, loc="best")
    fig.tight_layout()
    return fig


def fig_trajectories(results: Results):
    """Each trial's path over epochs in the (sparsity, accuracy) plane, one panel per method."""
    plt, sns = _plt()
    methods = results.finished_methods
    colours = palette(results.methods)
    cols = min(3, max(1, len(methods)))
    rows = math.ceil(len(methods) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False, sharex=True, sharey=True)
    data = results.finished_epochs
    for ax, method in zip(axes.flat, methods):
        part = data[data["method"] == method].sort_values("epoch")
        for _, trial in part.groupby("run_id"):
            ax.plot(trial[N.TOTAL_SPARSITY] * 100, trial[N.TEST_ACCURACY] * 100, "-o", ms=2.5, lw=1,
                    color=colours[method], alpha=0.7)
            last = trial.iloc[-1]
            ax.plot(last[N.TOTAL_SPARSITY] * 100, last[N.TEST_ACCURACY] * 100, "o", ms=6, color=colours[method])
            if last["setting"] != "-":
                ax.annotate(last["setting"], (last[N.TOTAL_SPARSITY] * 100, last[N.TEST_ACCURACY] * 100),
                            fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(method)
        ax.set_xlabel("total filter sparsity (%)")
        ax.set_ylabel("test accuracy (%)")
    for ax in list(axes.flat)[len(methods):]:
        ax.set_visible(False)
    fig.suptitle("every epoch of every trial (large dot: last epoch): any epoch's model can be kept", fontsize=10)
    fig.tight_layout()
    return fig


def fig_losses(results: Results):
    """Task loss and penalty over epochs, one column per method (Berthelier et al. Fig. 4)."""
    plt, sns = _plt()
    methods = results.finished_methods
    colours = palette(results.methods)
    fig, axes = plt.subplots(2, max(1, len(methods)), figsize=(3.4 * max(1, len(methods)), 5.6), squeeze=False,
                             sharex=True)
    data = results.finished_epochs
    for j, method in enumerate(methods):
        part = data[data["method"] == method]
        for (setting, seed), trial in part.sort_values("epoch").groupby(["setting", "seed"]):
            style = "-" if seed == part["seed"].min() else "--"
            label = f"{setting} s{seed}" if setting != "-" else f"s{seed}"
            for i, metric in enumerate((N.TRAIN_LOSS, N.PENALTY)):
                if metric in trial and trial[metric].notna().any() and (i == 0 or trial[metric].abs().sum() > 0):
                    axes[i, j].plot(trial["epoch"], trial[metric], style, color=colours[method], lw=1.2,
                                    alpha=0.9, label=label)
        axes[0, j].set_title(method)
        axes[0, j].legend(fontsize=7)
        axes[1, j].set_xlabel("epoch")
        axes[1, j].xaxis.get_major_locator().set_params(integer=True)
        if not part.get(N.PENALTY, pd.Series([0.0])).fillna(0).any():
            axes[1, j].text(0.5, 0.5, "no penalty", ha="center", va="center", transform=axes[1, j].transAxes,
                            color="grey")
    axes[0, 0].set_ylabel("task loss (train)")
    axes[1, 0].set_ylabel("penalty (without lambda)")
    fig.tight_layout()
    return fig


def fig_filters(results: Results):
    """The learned first-layer filters of the baseline and of each method's best sparse model (Fig. 5);
    removed filters are drawn as empty, red-framed squares."""
    plt, sns = _plt()
    baseline = baseline_accuracy(results, results.selection)
    shown = []
    for method in results.methods:
        trial = best_sparse_trial(results, method, baseline)
        if trial is not None and trial["run_id"] in results.filters:
            shown.append((method, trial))
    if not shown:
        return None
    width = max(results.filters[t["run_id"]].shape[0] for _, t in shown)
    per_row = min(width, 20)
    lines = [math.ceil(results.filters[t["run_id"]].shape[0] / per_row) for _, t in shown]
    fig = plt.figure(figsize=(0.55 * per_row + 2.6, 0.62 * sum(lines) + 0.45 * len(shown)))
    grid = fig.add_gridspec(sum(lines) + len(shown), per_row, hspace=0.15, wspace=0.08)
    row = 0
    for (method, trial), n_lines in zip(shown, lines):
        w = results.filters[trial["run_id"]]
        title = fig.add_subplot(grid[row, :])
        title.axis("off")
        title.text(0, 0.2, f"{method}: {trial['trial']}  test accuracy {_pct(trial[N.TEST_ACCURACY])} %, "
                   f"total sparsity {_pct(trial[N.TOTAL_SPARSITY], 1)} %", fontsize=9)
        row += 1
        for k in range(w.shape[0]):
            ax = fig.add_subplot(grid[row + k // per_row, k % per_row])
            ax.set_xticks([])
            ax.set_yticks([])
            kernel = w[k]
            if not np.abs(kernel).max() > 0:  # removed: an empty square the size of the others
                ax.imshow(np.full(kernel.shape[1:], np.nan), cmap="gray")
                ax.set_facecolor((1.0, 0.93, 0.93))
                for spine in ax.spines.values():
                    spine.set_edgecolor((0.85, 0.3, 0.3))
                continue
            if kernel.shape[0] == 3:
                img = kernel.transpose(1, 2, 0)
                img = (img - img.min()) / (img.max() - img.min() + 1e-12)
                ax.imshow(img)
            else:
                ax.imshow(kernel.mean(0), cmap="gray")
        row += n_lines
    return fig


# -- writing -----------------------------------------------------------------------------------------------

FIGURES = {
    "accuracy_vs_sparsity.png": ("Test accuracy against filter sparsity",
                                 "Final epoch of every finished trial (faint dots), the mean over seeds of each "
                                 "method and value with one standard deviation both ways, and each method's "
                                 "Pareto front over those means."),
    "accuracy_vs_flops.png": ("Test accuracy against FLOPs",
                              "The same points against the structural forward FLOPs per example of the network "
                              "with removed filters deleted (equal to FlopCounterMode on the compact model)."),
    "trajectories.png": ("Trajectories over epochs",
                         "Every epoch of every trial in the sparsity / accuracy plane: removed filters stay "
                         "removed, so a trial moves right; any epoch's model can be kept."),
    "losses.png": ("Task loss and penalty over epochs",
                   "Training cross-entropy and the method's penalty (without lambda) at the end of each epoch "
                   "(Berthelier et al. Fig. 4); dashed: the second seed."),
    "filters.png": ("Learned first-layer filters",
                    "The baseline's and each method's best sparse model (the sparsest within 1 point of the "
                    "baseline, else the most accurate sparse one); red frames: removed filters "
                    "(Berthelier et al. Fig. 5)."),
}


def build_report(results: Results, out: str | Path, registry: Mapping[str, MethodInfo],
                 attach: bool = True) -> Path:
    """Write the report folder; returns the path of ``index.html``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results.epochs.to_csv(out / "results.csv", index=False)
    figures: dict[str, bytes] = {}
    plt, _ = _plt()
    for name, make in (("accuracy_vs_sparsity.png", lambda: fig_tradeoff(results, N.TOTAL_SPARSITY,
                                                                          "total filter sparsity (%)", True)),
                       ("accuracy_vs_flops.png", lambda: fig_tradeoff(results, N.FLOPS,
                                                                       "forward MFLOPs per example", False)),
                       ("trajectories.png", lambda: fig_trajectories(results)),
                       ("losses.png", lambda: fig_losses(results)),
                       ("filters.png", lambda: fig_filters(results)),
                       ("accuracy_at_targets.png", lambda: fig_equal_sparsity(results) if results.targets else None)):
        if results.finished.empty:
            break
        fig = make()
        if fig is None:
            continue
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        figures[name] = buffer.getvalue()
        (out / name).write_bytes(figures[name])
    sections = _sections(results, registry, figures)
    (out / "report.md").write_text(_markdown(results, sections))
    (out / "index.html").write_text(_html(results, sections, figures))
    if attach:   # the files written here, never anything else the folder holds
        written = [out / name for name in ("index.html", "report.md", "results.csv", *figures)]
        for sweep in results.sweeps:
            Store(results.uri).attach_files(sweep["run_id"], written, N.REPORT_FOLDER)
    return out / "index.html"


@dataclass
class Section:
    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figure: str | None = None
    code: str | None = None


def _sections(results: Results, registry: Mapping[str, MethodInfo], figures: Mapping[str, bytes]) -> list[Section]:
    finished = results.finished
    counts = results.trials["status"].value_counts().to_dict()
    summary = (f"{len(results.trials)} trial(s) of {len(results.methods)} method(s) in {len(results.sweeps)} "
               f"sweep(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".")
    out = [Section("Summary", summary + ("\n\n" + "\n".join(f"- {n}" for n in notes(results))
                                         if notes(results) else ""))]
    best, note = best_table(results)
    out.append(Section("Highest sparsity within 0.5 and 1 accuracy points of the baseline", note,
                       best if len(best) else None))
    if len(finished):
        targets, verdicts = at_sparsity(results)
        out.append(Section("Most accurate method at " + " and ".join(f"{t:.0%}" for t in TARGETS)
                           + " filter sparsity",
                           " ".join(verdicts) + " A cell gives a method's most accurate setting (final epoch, "
                           "mean over seeds) among those at or above the target sparsity. " + results.choice_note(),
                           targets if len(targets) else None))
    if results.targets:
        table, verdicts = equal_sparsity(results)
        out.insert(1, Section("Accuracy at equal sparsity", " ".join(verdicts) + (
            " Each method's strength was searched per seed for each target (`bench run --target-sparsity`); a "
            "cell is the final test accuracy, mean +- sd over the seeds that reached the target within its "
            "tolerance, with n and the mean value achieved. The best method is named only where its lead over "
            f"the runner-up is beyond seed noise: Welch's t-test, one-sided at {ALPHA}, on the seeds' accuracies."),
            table, figure="accuracy_at_targets.png" if "accuracy_at_targets.png" in figures else None))
    quoted = quoted_table(results)
    if quoted is not None:
        out.append(Section("Published numbers (quoted) beside this run", quoted[1], quoted[0]))
    for name, (title, caption) in FIGURES.items():
        if name in figures:
            out.append(Section(title, caption, figure=name))
    if finished.empty:
        out.append(Section("Figures", "No trial finished, so there is nothing to plot yet."))
    out.append(Section("Filters left per layer",
                       "One row per finished trial, laid out like Berthelier et al.'s Tables I-III: filters "
                       "left / filters in the layer (layer sparsity), total filter sparsity, structural "
                       "parameters and FLOPs of the network with removed filters deleted, and the compact "
                       "model's measured parameters and CPU speed-up over the dense model at batch 1 and 64.",
                       layer_table(results) if len(finished) else None))
    problems = problem_table(results)
    out.append(Section("Trials that did not finish",
                       "Every trial finished." if problems.empty else
                       "Failed, killed or still running trials, with the last line of their error; the full "
                       "traceback is the run's `bench.error` tag in MLflow.", problems if len(problems) else None))
    out.append(Section("Methods", "From the method registry (loss = task loss + lambda * penalty).",
                       method_table(results, registry)))
    configs = {s["name"]: s["config"] for s in results.sweeps}
    out.append(Section("Configuration and versions", f"Store: `{results.uri}`, experiment "
                       f"`{results.experiment}`.", config_table(results),
                       code=json.dumps(configs, indent=2, sort_keys=True, default=str)))
    return out


def _markdown(results: Results, sections: Sequence[Section]) -> str:
    lines = [f"# Trade-off report: {results.experiment}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        if s.figure:
            lines += [f"![{s.title}]({s.figure})", ""]
        if s.table is not None:
            lines += [markdown_table(s.table), ""]
        if s.code:
            lines += ["<details><summary>sweep configurations</summary>", "", "```json", s.code, "```", "",
                      "</details>", ""]
    return "\n".join(lines)


def markdown_table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        text = "-" if _missing(v) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")
    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; } pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.8em; }
code { background: #f2f2f2; padding: 0 0.2em; }
"""


def _inline(text: str) -> str:
    """Escape, then the little markdown the texts use: `code`, **bold**, and '- ' bullet lines."""
    out, bullets = [], []
    for line in text.split("\n"):
        esc = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(line))
        esc = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", esc)
        if line.startswith("- "):
            bullets.append(f"<li>{esc[2:]}</li>")
            continue
        if bullets:
            out.append("<ul>" + "".join(bullets) + "</ul>")
            bullets = []
        if esc.strip():
            out.append(f"<p>{esc}</p>")
    if bullets:
        out.append("<ul>" + "".join(bullets) + "</ul>")
    return "\n".join(out)


def _html(results: Results, sections: Sequence[Section], figures: Mapping[str, bytes]) -> str:
    """The self-contained page: figures as data URIs, no link to any other file."""
    from .version import __version__

    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>Trade-off report: {html.escape(results.experiment)}</title>", f"<style>{_CSS}</style>",
             "</head><body>", f"<h1>Trade-off report: {html.escape(results.experiment)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(_inline(s.text))
        if s.figure:
            data = base64.b64encode(figures[s.figure])
            parts.append(f"<img alt=\"{html.escape(s.title)}\" src=\"data:image/png;base64,{data.decode()}\">")
        if s.table is not None:
            parts.append(s.table.to_html(index=False, escape=True, na_rep="-", border=0))
        if s.code:
            parts.append(f"<details><summary>sweep configurations</summary><pre>{html.escape(s.code)}</pre>"
                         "</details>")
    parts.append(f"<p><small>bench {__version__}</small></p></body></html>")
    return "\n".join(parts)

