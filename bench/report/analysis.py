"""Analysis and tables: Pareto fronts, the baseline, best sparsity within a tolerance, accuracy at a sparsity, the
equal-sparsity comparison and its noise test, the per-layer, method and settings tables."""
from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .. import names as N
from ..presets import paper_table
from .load import TARGETS, TOLERANCES, MethodInfo, Results


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


def dense_test(results: Results) -> float | None:
    """The dense reference's test accuracy: the mean over the finished ``none`` trials."""
    return baseline_accuracy(results, N.TEST_ACCURACY)


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
    noise = {b: training_noise(results, b) for b in (1, 64)}
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
        row["params reduction %"] = _pct(t.get(N.PARAMS_REDUCTION), 1)
        row["FLOPs/example"] = _count(t.get(N.FLOPS))
        row["FLOPs reduction %"] = _pct(t.get(N.FLOPS_REDUCTION), 1)
        row["MACs/example (Torch-Pruning)"] = _count(t.get("compact_macs"))
        row["compact params"] = _count(t.get("compact_params"))
        for b in (1, 64):
            row[f"speed-up b{b} (during training)"] = _marked(t.get(f"speedup_b{b}"), noise.get(b))
        row["trial"] = t["trial"]
        rows.append(row)
    return pd.DataFrame(rows)


def training_noise(results: Results, batch: int) -> float | None:
    """How far the dense model's latency, the same network in every trial, strays against itself over the
    trials' in-training measurements: the largest ratio between two of them (None with fewer than two)."""
    dense = results.finished.get(f"dense_latency_ms_b{batch}")
    dense = dense.dropna() if dense is not None else pd.Series(dtype=float)
    return float(dense.max() / dense.min()) if len(dense) > 1 and dense.min() > 0 else None


def _marked(speedup: Any, noise: float | None) -> str:
    """A speed-up (or slow-down), marked when the dense model's own spread reaches it: within [1/noise, noise]."""
    if _missing(speedup):
        return "-"
    within = noise is not None and 1 / noise <= float(speedup) <= noise
    return _times(speedup) + (" (within noise)" if within else "")


def latency_table(results: Results) -> tuple[pd.DataFrame, str] | None:
    """``bench report --latency``'s measurements: per trial and batch, the dense and compact medians and the
    median speed-up with its range over rounds, marked within noise where that range overlaps the dense model's
    range against itself."""
    records = [r for r in results.latency if r.get("trial") is not None]
    if not records:
        return None
    noise = {(r["model"], r["batch"]): r for r in results.latency if r.get("trial") is None}
    rows = []
    for r in records:
        floor = noise.get((r["model"], r["batch"]))
        within = floor is not None and not (r["speedup_low"] > floor["noise_high"]
                                            or r["speedup_high"] < floor["noise_low"])
        rows.append({"trial": r["trial"], "batch": r["batch"], "dense ms": f"{r['dense_ms']:.3f}",
                     "compact ms": f"{r['compact_ms']:.3f}",
                     "speed-up (median, range)": f"{r['speedup']:.2f}x ({r['speedup_low']:.2f}-{r['speedup_high']:.2f})"
                     + (" within noise" if within else ""),
                     "dense against itself": f"{floor['noise_low']:.2f}-{floor['noise_high']:.2f}" if floor else "-"})
    note = ("Timed after the sweep by `bench report --latency` (bench/latency.py), one model at a time with nothing "
            "else training: each trial's compact model against the dense model, dense first and compact first in "
            "alternate rounds; a cell is the median speed-up over the rounds with its range. The dense model timed "
            "against a copy of itself the same way gives the noise range: a speed-up whose range overlaps it is "
            "marked within noise (only one whose every round lies beyond it is a measured change).")
    return pd.DataFrame(rows), note


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
    n_base = int((results.finished["method"] == "none").sum())
    rows = [{"method": "none (dense reference)",
             **{title: f"0.0 % at {_pct(dense_test(results))} % (mean of {n_base})" for title in columns}}]
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


def front_at(points: pd.DataFrame, target: float, y: str) -> dict[str, Any] | None:
    """A method's Pareto front over ``points`` (total sparsity and ``y`` both maximized) read at total sparsity
    ``target``: linear between the two front points around it; where the front starts above the target, its
    first point (that setting reaches the target and more); None where the front ends below it. Returns the
    value of ``y`` there, of the test accuracy along the same points, and the rows used (one or two)."""
    front = pareto_front(points.dropna(subset=[N.TOTAL_SPARSITY, y]), N.TOTAL_SPARSITY, y)
    if front.empty or float(front[N.TOTAL_SPARSITY].max()) < target - 1e-9:
        return None
    xs = front[N.TOTAL_SPARSITY].to_numpy(float)
    hi = int(np.nonzero(xs >= target - 1e-9)[0][0])
    if hi == 0 or abs(xs[hi] - target) <= 1e-9:
        row = front.iloc[hi]
        return {"value": float(row[y]), "test": float(row[N.TEST_ACCURACY]), "used": [row]}
    lo_row, hi_row = front.iloc[hi - 1], front.iloc[hi]
    w = (target - xs[hi - 1]) / (xs[hi] - xs[hi - 1])
    return {"value": float(lo_row[y] + w * (hi_row[y] - lo_row[y])),
            "test": float(lo_row[N.TEST_ACCURACY] + w * (hi_row[N.TEST_ACCURACY] - lo_row[N.TEST_ACCURACY])),
            "used": [lo_row, hi_row]}


def _used(hit: Mapping[str, Any]) -> str:
    points = [f"{r['setting']} at {_pct(r[N.TOTAL_SPARSITY], 1)} %" for r in hit["used"]]
    return f"between {points[0]} and {points[1]}" if len(points) == 2 else points[0]


def at_sparsity(results: Results, targets: Sequence[float] = TARGETS) -> tuple[pd.DataFrame, list[str]]:
    """Per method, its Pareto front (final epochs, mean over seeds) read at each target sparsity
    (:func:`front_at`), with the points used; and one sentence per target. The method with the highest front is
    named only where its lead is beyond seed noise: each seed's own front read at the target, Welch's test
    (:func:`compare`) between the two highest; with a single seed on either side the sentence says there is no
    noise estimate, and a last sentence gives the command that would measure one."""
    chosen = results.selection
    points = settings(results.finished)
    methods = [m for m in results.finished_methods if m != "none"]
    rows: list[dict[str, Any]] = []
    verdicts, lonely = [], False
    if "none" in results.finished_methods:
        n_base = int((results.finished["method"] == "none").sum())
        rows.append({"method": "none (dense reference)", **{f"at {t:.0%} sparsity": f"{_pct(dense_test(results))} % "
                                                            f"(0.0 %, mean of {n_base})" for t in targets}})
    fronts: dict[float, dict[str, dict]] = {t: {} for t in targets}
    for method in methods:
        row = {"method": method}
        mine = points[points["method"] == method]
        for target in targets:
            title = f"at {target:.0%} sparsity"
            hit = front_at(mine, target, chosen)
            if hit is None:
                reached = mine[N.TOTAL_SPARSITY].max() if len(mine) else float("nan")
                row[title] = f"not reached (max {_pct(reached, 1)} %)"
                continue
            fronts[target][method] = hit
            row[title] = f"{_pct(hit['test'])} % ({_used(hit)})"
        rows.append(row)
    for target in targets:
        where = f"At {target:.0%} filter sparsity"
        found = sorted(fronts[target].items(), key=lambda item: -item[1]["value"])
        if not found:
            verdicts.append(f"{where}, no method's front reaches the target.")
            continue
        if len(found) == 1:
            verdicts.append(f"{where}, only `{found[0][0]}`'s front reaches the target "
                            f"({_pct(found[0][1]['test'])} %).")
            continue
        (first, a), (second, b) = found[0], found[1]
        per_seed = [_per_seed(results, m, target, chosen) for m in (first, second)]
        values = f"{_pct(a['test'])} % against {_pct(b['test'])} %"
        if min(len(v) for v in per_seed) < 2:
            lonely = True
            verdicts.append(f"{where}, the fronts give `{first}` {_pct(a['test'])} % and `{second}` "
                            f"{_pct(b['test'])} %, from one seed: there is no noise estimate, so neither is named "
                            "the better.")
            continue
        beyond, test = compare(*per_seed)
        if beyond:
            verdicts.append(f"{where}, **`{first}`** keeps the most accuracy, beyond seed noise over `{second}` "
                            f"({values}; each seed's front at the target, {test}).")
        else:
            verdicts.append(f"{where}, tie within noise between `{first}` and `{second}` ({values}; each seed's "
                            f"front at the target, {test}).")
    if lonely:
        verdicts.append(f"`{_search_command(results, targets)}` measures each method at these sparsities over "
                        "three seeds and tests the differences.")
    return pd.DataFrame(rows), verdicts


def _per_seed(results: Results, method: str, target: float, chosen: str) -> list[float]:
    """Each seed's own front (its final epochs) read at ``target``: the test accuracies there."""
    rows = results.finished[results.finished["method"] == method]
    out = []
    for _, group in rows.groupby("seed"):
        hit = front_at(group, target, chosen)
        if hit is not None:
            out.append(hit["test"])
    return out


def _search_command(results: Results, targets: Sequence[float]) -> str:
    """The `bench run` that gives these methods a noise estimate at ``targets``: a target search over 3 seeds,
    on the sweeps' model, dataset and epochs."""
    params = results.sweeps[0]["params"] if results.sweeps else {}
    methods = ",".join(["none"] * ("none" not in results.methods) + list(results.methods))
    parts = ["bench run"] + [f"--{k} {params[k]}" for k in ("model", "dataset", "epochs") if params.get(k)]
    return " ".join(parts + [f"--methods {methods}", "--seeds 0,1,2",
                             f"--target-sparsity {','.join(f'{t:g}' for t in targets)}"])


ALPHA = 0.05   # the significance level of the equal-sparsity comparison


def compare(a: Sequence[float], b: Sequence[float]) -> tuple[bool, str]:
    """Whether sample ``a``'s mean is above ``b``'s beyond seed noise: Welch's t-test, one-sided at ALPHA (the
    difference of means over its standard error, Welch-Satterthwaite degrees of freedom). With fewer than two
    seeds on a side there is no noise estimate: never beyond noise. Zero variance on both sides: beyond noise
    only when the means differ."""

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return False, f"n = {len(a)} and {len(b)}: too few seeds to tell noise"
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        return bool(a.mean() > b.mean()), "no spread over seeds on either side"
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
