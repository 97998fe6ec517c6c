"""The prune-to-target protocol's tables: accuracy at equal targets with paired verdicts, and the stability of
the kept groups across seeds.

Trials of one seed start from the same weights and see the same batches whatever their method (the method's own
draws have their own generator: bench/trainer.py), so two methods are compared on their per-seed differences:
a paired t-test over the seeds both finished (``scipy.stats.ttest_rel``), with a 95 % confidence interval on
the mean difference (Student's t), and the p-values of every comparison one table makes Holm-corrected together
(:func:`holm`). A table compares every method with the best one (the highest mean), with ``random`` and with
its own scratch control (the same widths trained from the seed's initialisation); a difference is named only
where its corrected p-value is below :data:`ALPHA`. No torch here: the report never imports it.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..presets import field_table
from .load import Results
from .figures import _plt, informative_range, palette

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.8   # a comparison's detectable difference: the one it finds this often
TEST = "test_accuracy"   # what the tables show and test; the best method is chosen on ``results.selection``


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and the two ends of its Student-t confidence interval (nan ends with fewer than two values)."""

    x = np.asarray(values, dtype=float)
    m = float(x.mean()) if len(x) else math.nan
    if len(x) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, Any]:
    """``a`` against ``b`` on the seeds both have: n, the mean difference a - b with its 95 % interval, and the
    two-sided p-value of the paired t-test, the standard deviation and the per-seed differences (nan with fewer than two seeds, or when every seed differs by the
    same amount: no spread to test)."""

    seeds = sorted(set(a) & set(b))
    d = np.asarray([a[s] - b[s] for s in seeds], dtype=float)
    mean, lo, hi = mean_ci(d)
    p = math.nan
    if len(d) >= 2 and d.std(ddof=1) > 1e-9:   # below: the same difference on every seed (rounding aside)
        p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    sd = float(d.std(ddof=1)) if len(d) >= 2 else math.nan
    return {"n": len(seeds), "diff": mean, "lo": lo, "hi": hi, "p": p, "sd": sd, "diffs": d.tolist()}


def detectable(sd: float, n: int, family: int = 1, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean difference that a two-sided paired t-test over ``n`` seeds, whose differences have
    standard deviation ``sd``, finds with probability ``power`` at level ``alpha / family``: Holm's first and
    strictest step over a family of ``family`` comparisons, so the size holds for any comparison of the family.
    The power is the noncentral t's: P(|T| > t_crit) with T ~ t(n - 1, delta sqrt(n) / sd). nan below 2 seeds."""
    if n < 2 or math.isnan(sd):
        return math.nan
    if sd <= 0:
        return 0.0
    df, level = n - 1, alpha / max(1, family)
    crit = float(stats.t.ppf(1 - level / 2, df))

    def short(nc: float) -> float:   # the far tail vanishes for a large nc (scipy may give nan there)
        upper, lower = stats.nct.sf(crit, df, nc), stats.nct.cdf(-crit, df, nc)
        return float(np.nan_to_num(upper, nan=1.0) + np.nan_to_num(lower, nan=0.0)) - power
    high = crit + 10.0
    while short(high) < 0:
        high *= 2
    return float(optimize.brentq(short, 0.0, high, xtol=1e-10)) * sd / math.sqrt(n)


def seeds_needed(sd: float, size: float, family: int = 1, limit: int = 1000) -> int | None:
    """The fewest seeds at which :func:`detectable` is at most ``size`` with this ``sd`` (None: more than
    ``limit``). :func:`detectable` falls as seeds are added, so the count is bisected."""
    if math.isnan(sd) or detectable(sd, limit, family) > size:
        return None
    low, high = 1, limit   # detectable(low) > size (or low < 2), detectable(high) <= size
    while high - low > 1:
        mid = (low + high) // 2
        if mid >= 2 and detectable(sd, mid, family) <= size:
            high = mid
        else:
            low = mid
    return high


def powered(comparisons: Sequence[dict], adjusted: Sequence[float], detect: float | None = None) -> None:
    """Each tested comparison gains ``detectable`` (in accuracy units, at Holm's first step over the tested
    family) and, with ``detect`` (points), ``needed``: the seeds it would take to detect that many points."""
    family = sum(not math.isnan(p) for p in adjusted)
    for r, p in zip(comparisons, adjusted):
        if not math.isnan(p):
            r["detectable"] = detectable(r["sd"], r["n"], family)
            if detect is not None:
                r["needed"] = seeds_needed(r["sd"], detect / 100.0, family)


def power_sentence(comparisons: Sequence[dict], detect: float | None = None) -> str:
    """What the tested comparisons could have seen: the range of their detectable differences, in points."""
    sizes = sorted(r["detectable"] * 100 for r in comparisons if "detectable" in r)
    if not sizes:
        return ""
    said = (f"a difference of {sizes[0]:.2f} points would have been seen {POWER:.0%} of the time" if len(sizes) == 1
            else f"the differences these comparisons would have seen {POWER:.0%} of the time run from "
                 f"{sizes[0]:.2f} to {sizes[-1]:.2f} points (median {float(np.median(sizes)):.2f})")
    if detect is not None:
        needed = [r.get("needed") for r in comparisons if "detectable" in r]
        known = sorted(n for n in needed if n is not None)
        span = f"{known[0]}" if known and known[0] == known[-1] else f"{known[0]} to {known[-1]}" if known else ""
        said += (f"; to see {detect:g} point{'s' * (detect != 1)}, {span} seeds" if known else "") + \
            (f" ({len(needed) - len(known)} comparison(s) would need more than 1000)"
             if len(known) < len(needed) else "")
    return said


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``pvalues`` (nan entries are left out of the family and stay nan):
    the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j))."""
    index = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(index, key=lambda i: pvalues[i])
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def _seeds(rows: pd.DataFrame, column: str) -> dict[int, float]:
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[column]) if not pd.isna(v)}


def _fmt_ci(mean: float, lo: float, hi: float, scale: float = 100.0) -> str:
    if math.isnan(mean):
        return "-"

    def f(x: float) -> str:
        text = f"{x * scale:.2f}"
        return "0.00" if text == "-0.00" else text   # a zero difference is not negative
    return f(mean) if math.isnan(lo) else f"{f(mean)} [{f(lo)}, {f(hi)}]"


def equal_target(results: Results) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """One table per target: (target label, table, verdict sentences)."""
    rows = results.protocol
    if rows.empty:
        return []
    return [_table(_panel(results, *key)) for key in panels(rows)]


def _panel(results: Results, sweep: str, target: str, variant: str | None) -> dict[str, Any]:
    """One target's comparisons: every method's seeds, its controls', the paired tests made (one Holm family)
    and which cell of the table shows each. With a primary method (``--primary``), the primary against every
    other method and its own controls; else every method against the best, ``random`` and its controls."""
    rows, acc = results.protocol, results.selection
    kind = target.split()[0]
    dense = rows[(rows["sweep"] == sweep) & rows["target"].isna()]   # one dense reference for every protocol
    here = _of(rows[(rows["sweep"] == sweep) & (rows["target"] == target)], variant)
    label = target + (f", {variant}" if variant else "") + ("" if rows["sweep"].nunique() == 1 else f", sweep {sweep}")
    methods = [m for m in results.methods if ((here["method"] == m) & here["control"].isna()).any()]
    by_method = {m: _seeds(here[(here["method"] == m) & here["control"].isna()], TEST) for m in methods}
    # the controls by kind: scratch (Scratch-E, the same epochs) and scratch-b (the same compute)
    controls = {k: {c.split(" of ", 1)[1]: _seeds(here[here["control"] == c], TEST)
                    for c in here["control"].dropna().unique() if c.split(" of ", 1)[0] == k}
                for k in CONTROL_COLUMNS}
    chosen = {m: _seeds(here[(here["method"] == m) & here["control"].isna()], acc) for m in methods}
    means = {m: float(np.mean(list(v.values()))) for m, v in chosen.items() if v}
    best = max(means, key=lambda m: means[m]) if means else None   # chosen on validation when held out
    primary = results.primary if results.primary in methods else None
    wanted: list[tuple[str, str, str]] = []            # (row, column, the other side)
    for m in methods:
        if primary is not None:
            if m != primary:
                wanted.append((m, f"vs {primary}", primary))
        else:
            if best is not None and m != best:
                wanted.append((m, "vs best", best))
            if "random" in by_method and m != "random":
                wanted.append((m, "vs random", "random"))
        for control, column in CONTROL_COLUMNS.items():
            if m in controls[control] and primary in (None, m):
                wanted.append((m, column, f"{control} of {m}"))
    sides = {**by_method, **{f"{c} of {m}": v for c, mine in controls.items() for m, v in mine.items()}}
    comparisons: list[tuple[str, str, dict]] = []   # each unordered pair once: one family for Holm
    for a, _, b in wanted:
        if not any({a, b} == {x, y} for x, y, _ in comparisons):
            # said from the primary's side, so that its forest plot reads primary minus other
            a, b = (b, a) if b == primary else (a, b)
            comparisons.append((a, b, paired(sides[a], sides[b])))
    adjusted = holm([c[2]["p"] for c in comparisons])
    powered([c[2] for c in comparisons], adjusted, results.detect)
    return dict(label=label, kind=kind, here=here, dense=dense, methods=methods, by_method=by_method,
                controls=controls, best=best, primary=primary, wanted=wanted, comparisons=comparisons,
                adjusted=adjusted, acc=acc, target=target, detect=results.detect)


def _table(panel: Mapping[str, Any]) -> tuple[str, pd.DataFrame, list[str]]:
    label, kind, here, dense = panel["label"], panel["kind"], panel["here"], panel["dense"]
    methods, by_method, controls = panel["methods"], panel["by_method"], panel["controls"]
    best, primary, comparisons, adjusted = panel["best"], panel["primary"], panel["comparisons"], panel["adjusted"]
    metric = {"flops": "flops_reduction", "sparsity": "total_sparsity", "params": "params_reduction"}[kind]
    tests = {(a, b): (r, p) for (a, b, r), p in zip(comparisons, adjusted)}
    cells: dict[tuple[str, str], str] = {}
    for a, column, b in panel["wanted"]:
        r, p = tests[(a, b)] if (a, b) in tests else _flipped(*tests[(b, a)])
        cells[(a, column)] = _cell(r, p)
    verdicts = [_verdict(a, b, r, p) for (a, b, r), p in zip(comparisons, adjusted) if not math.isnan(p)
                and p < ALPHA]
    against = [f"vs {primary}"] if primary else ["vs best", "vs random"]
    mark = {f"vs {primary}": "(primary)", "vs best": "(best)"}
    table_rows = []
    for m in methods:
        mean, lo, hi = mean_ci(list(by_method[m].values()))
        achieved = here[(here["method"] == m) & here["control"].isna()][metric]
        mine = {c: mark[c] if (m == primary and c == f"vs {primary}") or (m == best and c == "vs best")
                else cells.get((m, c), "-") for c in against}
        table_rows.append({"method": m, "seeds": len(by_method[m]), "accuracy % [95% CI]": _fmt_ci(mean, lo, hi),
                           f"{kind} removed %": f"{achieved.mean() * 100:.2f}", **mine,
                           **{column: cells.get((m, column), "-") for column in CONTROL_COLUMNS.values()}})
    blank = dict.fromkeys(against + list(CONTROL_COLUMNS.values()), "")
    for control, mine in controls.items():
        for m, seeds in mine.items():
            mean, lo, hi = mean_ci(list(seeds.values()))
            runs = here[here["control"] == f"{control} of {m}"]
            table_rows.append({"method": _control_label(control, m, runs), "seeds": len(seeds),
                               "accuracy % [95% CI]": _fmt_ci(mean, lo, hi),
                               f"{kind} removed %": f"{runs[metric].mean() * 100:.2f}", **blank})
    if len(dense):
        mean, lo, hi = mean_ci(list(_seeds(dense, TEST).values()))
        table_rows.append({"method": "dense (none)", "seeds": len(dense), "accuracy % [95% CI]":
                           _fmt_ci(mean, lo, hi), f"{kind} removed %": "0.00", **blank})
    n_seeds = max((len(v) for v in by_method.values()), default=0)
    if n_seeds < 2:
        text = [f"At {label}: one seed per method, so no paired test and no verdict (run --seeds 0,1,2)."]
    else:
        tested = sum(not math.isnan(p) for p in adjusted)
        power = power_sentence([c[2] for c in comparisons], panel["detect"])
        named = ("; ".join(verdicts) + "." if verdicts else "no difference is beyond seed noise") if tested else \
            "none could be tested (the same difference on every seed)."
        if tested:
            named = (named.rstrip(".") + ("; " + power if power else "") + ".")
        on = " validation" if panel["acc"] != TEST else ""
        design = f"the primary method, {primary}, against each other method and its own controls" if primary else ""
        text = [f"At {label}: the highest mean{on} accuracy is {best}'s; of the {len(comparisons)} paired "
                f"comparisons this table makes{' (' + design + ')' if design else ''}, after Holm's correction at "
                f"{ALPHA:g}: {named}"]
    table = pd.DataFrame(table_rows)
    # a control column only where that control ran (vs scratch kept as the one column it always was)
    table = table.drop(columns=[c for k, c in CONTROL_COLUMNS.items() if k != "scratch" and not controls[k]])
    return label, table, text


CONTROL_COLUMNS = {"scratch": "vs scratch", "scratch-b": "vs scratch-B"}   # a control's kind -> its column


def panels(rows: pd.DataFrame) -> list[tuple[str, str, str | None]]:
    """The (sweep, target, variant) each table and figure panel is of: a variant (a protocol and fine-tuning)
    where a sweep compared several (``--protocol a,b``, ``--finetune standard,rewind``), else None."""
    out = []
    for sweep in dict.fromkeys(rows["sweep"]):
        mine = rows[rows["sweep"] == sweep]
        for target in sorted(mine["target"].dropna().unique(), key=lambda t: (t.split()[0], float(t.split()[1]))):
            at = mine[mine["target"] == target]
            variants = list(dict.fromkeys(at["variant"].fillna(""))) if "variant" in at else [""]
            out += [(sweep, target, v if len(variants) > 1 else None) for v in variants]
    return out


def _of(rows: pd.DataFrame, variant: str | None) -> pd.DataFrame:
    return rows if variant is None else rows[rows["variant"].fillna("") == variant]


def _control_label(kind: str, method: str, runs: pd.DataFrame) -> str:
    """A control's row: ``scratch (widths of l1l2)``; Scratch-B's states its epochs (their range over the seeds)
    and whether the cap on its factor bit."""
    if kind != "scratch-b":
        return f"{kind} (widths of {method})"
    epochs = sorted({int(e) for e in runs.get("epochs", pd.Series(dtype=float)).dropna()})
    span = (f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}") if epochs else "?"
    capped = runs.get("control_capped", pd.Series(dtype=object)).astype(str).str.lower().eq("true").sum()
    return (f"scratch-B (widths of {method}, {span} epochs" + (f"; the cap bit on {capped} of {len(runs)} seeds"
                                                              if capped else "") + ")")


def _word(r: Mapping[str, float], p: float) -> str:
    if math.isnan(p):
        return "no test: " + ("one seed" if r["n"] < 2 else "the same difference on every seed")
    return ("better" if r["diff"] > 0 else "worse") if p < ALPHA else "no difference shown"


def _cell(r: Mapping[str, Any], p: float) -> str:
    head = f"{_fmt_ci(r['diff'], r['lo'], r['hi'])} pts"
    if math.isnan(p):
        return f"{head}, n={r['n']} ({_word(r, p)})"
    power = f"; detectable {r['detectable'] * 100:.2f}" if "detectable" in r else ""
    if "needed" in r:
        power += (f", {r['needed']} seeds for the asked size" if r["needed"] is not None
                  else ", over 1000 seeds for the asked size")
    return f"{head}, p={p:.3g} ({_word(r, p)}{power})"


def _flipped(r: Mapping[str, Any], p: float) -> tuple[dict[str, Any], float]:
    """The same comparison read from the other side."""
    return {**r, "diff": -r["diff"], "lo": -r["hi"], "hi": -r["lo"], "diffs": [-d for d in r.get("diffs", [])]}, p


def _verdict(a: str, b: str, r: Mapping[str, float], p: float) -> str:
    if r["diff"] < 0:   # said from the better side
        (a, b), (r, p) = (b, a), _flipped(r, p)
    return (f"{a} is better than {b} by {r['diff'] * 100:.2f} points (95 % CI [{r['lo'] * 100:.2f}, "
            f"{r['hi'] * 100:.2f}], Holm-adjusted p={p:.3g}, {r['n']} paired seeds)")


def jaccard(a: Sequence[Any], b: Sequence[Any]) -> float:
    """|A and B| / |A or B| (1 for two empty sets)."""
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def stability(results: Results) -> pd.DataFrame | None:
    """Per method and target, the mean Jaccard overlap of the kept groups over every pair of seeds: overall
    (every unit's groups as one set) and per unit."""
    rows = results.protocol
    if rows.empty:
        return None
    rows = rows[rows["control"].isna() & rows["target"].notna() & rows["run_id"].isin(list(results.kept))]
    out = []
    rows = rows.assign(variant=rows["variant"].fillna("") if "variant" in rows else "")
    for (sweep, method, target, variant), group in rows.groupby(["sweep", "method", "target", "variant"], sort=False):
        kept = [results.kept[r] for r in group["run_id"]]
        if len(kept) < 2:
            continue
        units = list(kept[0])
        pairs = list(itertools.combinations(range(len(kept)), 2))
        row = {"sweep": sweep, "method": method, "target": target + (f", {variant}" if rows["variant"].nunique() > 1
                                                                     else ""), "seeds": len(kept),
               "overall": np.mean([jaccard([(u, i) for u in units for i in kept[a][u]],
                                           [(u, i) for u in units for i in kept[b][u]]) for a, b in pairs])}
        for u in units:
            row[u] = np.mean([jaccard(kept[a][u], kept[b][u]) for a, b in pairs])
        out.append(row)
    if not out:
        return None
    table = pd.DataFrame(out)
    order = {m: i for i, m in enumerate(results.methods)}
    table = table.sort_values(["sweep", "target", "method"], key=lambda c: c.map(order) if c.name == "method" else c)
    if table["sweep"].nunique() == 1:
        table = table.drop(columns="sweep")
    return table.round(3)


def field_quoted(results: Results) -> tuple[pd.DataFrame, str] | None:
    """A pruning benchmark's published numbers (the preset's ``field`` table) beside this run's at its target:
    each quoted row with the mean accuracy [95 % CI] of the method that computes its criterion, the dense
    reference's, the difference and the speed-up in Torch-Pruning's MACs (``compact_macs``)."""

    presets = [s["config"].get("preset") for s in results.sweeps if isinstance(s.get("config"), Mapping)]
    table = next((field_table(p) for p in presets if field_table(p) is not None), None)
    rows = results.protocol
    if table is None or rows.empty:
        return None
    acc = TEST   # the quoted tables give test accuracy
    pruned = rows[rows["target"].notna() & rows["control"].isna()]
    dense = rows[rows["target"].isna()]
    dense_acc = float(dense[acc].mean()) if len(dense) else math.nan
    dense_macs = float(dense["compact_macs"].mean()) if len(dense) and "compact_macs" in dense else math.nan
    out = []
    for q in table.rows:
        mine = pruned[pruned["method"] == q.method] if q.method else pruned.iloc[0:0]
        row: dict[str, Any] = {"quoted: method": q.label, "quoted: base %": f"{q.base:.2f}", "quoted: pruned %": f"{q.pruned:.2f}",
               "quoted: change": f"{q.pruned - q.base:+.2f}", "quoted: speed-up": f"{q.speedup:.2f}x",
               "this run: method": q.method or "not implemented here"}
        if q.method and mine.empty:
            row["this run: method"] = f"{q.method} (not run)"
        if len(mine):
            mean, lo, hi = mean_ci(list(mine[acc]))
            speed = dense_macs / mine["compact_macs"] if "compact_macs" in mine else pd.Series([math.nan])
            row.update({"this run: accuracy % [95% CI]": _fmt_ci(mean, lo, hi),
                        "this run: dense %": f"{dense_acc * 100:.2f}" if not math.isnan(dense_acc) else "-",
                        "this run: change": f"{(mean - dense_acc) * 100:+.2f}" if not math.isnan(dense_acc) else "-",
                        "this run: speed-up": f"{speed.mean():.2f}x" if speed.notna().any() else "-",
                        "this run: seeds": len(mine)})
        out.append(row)
    note = (f"Quoted from {table.source}: {table.title}. {table.note} A quoted row is matched with this run's "
            "method computing the same criterion; the run's cells are means over its seeds with 95 % intervals, "
            "the change against its own dense reference (`none`).")
    return pd.DataFrame(out), note


def fig_equal_target(results: Results, tables: list[tuple[str, pd.DataFrame, list[str]]] | None = None):
    """One panel per target: every method's seeds as dots and its mean with the 95 % interval (Student's t), the
    scratch controls as hollow markers and the dense reference in black; the y-axis spans the informative means
    (a method collapsed far below the others is drawn at the lower edge with its value)."""

    rows = results.protocol
    if rows.empty:
        return None
    plt, _ = _plt()
    acc = TEST
    keys = panels(rows)
    fig, axes = plt.subplots(1, len(keys), figsize=(max(5.0, 0.55 * rows["method"].nunique() + 2.5) * len(keys),
                                                    4.2), squeeze=False)
    colors = palette(results.methods)
    notes = []
    for ax, (sweep, target, variant) in zip(axes[0], keys):
        at = rows[(rows["sweep"] == sweep) & (rows["target"] == target)]
        here = pd.concat([_of(at, variant), rows[(rows["sweep"] == sweep) & rows["target"].isna()]])
        series = []   # (label, colour, hollow, values in %)
        for m in results.methods:
            mine = here[(here["method"] == m) & here["control"].isna() & here["target"].notna()]
            if len(mine):
                series.append((m, colors.get(m), False, 100 * mine[acc].to_numpy(float)))
        for c in here["control"].dropna().unique():
            kind, m = c.split(" of ", 1)
            series.append((f"{'scratch-B' if kind == 'scratch-b' else kind} ({m})", colors.get(m), True,
                           100 * here[here["control"] == c][acc].to_numpy(float)))
        dense = here[here["target"].isna() & here["control"].isna()]
        if len(dense):
            series.append(("dense", "black", False, 100 * dense[acc].to_numpy(float)))
        means = np.array([v.mean() for *_, v in series])
        low, high, collapsed = informative_range(means)
        cis = [mean_ci(v) for *_, v in series]
        top = max([high] + [hi for _, _, hi in cis if not math.isnan(hi)])
        bottom = min([low] + [lo for (_, lo, _), c in zip(cis, collapsed) if not c and not math.isnan(lo)])
        pad = max(0.3, 0.08 * (top - bottom))
        edge = bottom - 0.6 * pad
        for i, ((label, colour, hollow, values), (mean, lo, hi), low_one) in enumerate(zip(series, cis, collapsed)):
            face = "white" if hollow else colour
            if low_one:
                ax.plot([i], [edge], marker="v", color=colour)
                ax.annotate(f"{mean:.1f}", (i, edge), fontsize=7, xytext=(4, 2), textcoords="offset points")
                notes.append(f"{label} at {target} ({mean:.1f} %) is drawn at the lower edge.")
                continue
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(i + jitter, values, s=12, color=colour, alpha=0.5, zorder=2)
            err = None if math.isnan(lo) else [[mean - lo], [hi - mean]]
            ax.errorbar([i], [mean], yerr=err, marker="s" if hollow else "o", markerfacecolor=face, color=colour,
                        capsize=4, markersize=7, zorder=3)
        ax.set_xticks(range(len(series)), [s[0] for s in series], rotation=60, ha="right", fontsize=8)
        ax.set_ylim(edge - 0.4 * pad, top + pad)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(target + (f", {variant}" if variant else "")
                     + ("" if len({s for s, _, _ in keys}) == 1 else f", {sweep}"), fontsize=9)
    fig.tight_layout()
    fig.bench_notes = notes   # type: ignore[attr-defined]
    return fig


def fig_forest(results: Results):
    """The paired differences the equal-target tables test, one panel per target: per comparison (a row, "A - B"),
    each seed's difference as a dot, the mean with its 95 % interval, zero marked; a comparison beyond noise after
    Holm's correction is drawn filled, the others hollow. None without a comparison of two seeds."""

    rows = results.protocol
    if rows.empty:
        return None
    shown = [p for p in (_panel(results, *key) for key in panels(rows)) if any(r["n"] >= 2 for *_, r in p["comparisons"])]
    if not shown:
        return None
    plt, _ = _plt()
    height = max(len(p["comparisons"]) for p in shown)
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 0.9 + 0.32 * height), squeeze=False)
    colors = palette(results.methods)
    for ax, panel in zip(axes[0], shown):
        pairs = list(zip(panel["comparisons"], panel["adjusted"]))
        for i, ((a, b, r), p) in enumerate(reversed(pairs)):
            colour = colors.get(a.split(" of ")[-1], "black")
            diffs = 100 * np.asarray(r["diffs"], dtype=float)
            ax.scatter(diffs, np.full(len(diffs), i) + np.linspace(-0.12, 0.12, len(diffs)) * (len(diffs) > 1),
                       s=10, color=colour, alpha=0.5, zorder=2)
            if len(diffs) >= 2 and not math.isnan(r["lo"]):
                beyond = not math.isnan(p) and p < ALPHA
                ax.errorbar([100 * r["diff"]], [i], xerr=[[100 * (r["diff"] - r["lo"])], [100 * (r["hi"] - r["diff"])]],
                            marker="o", color=colour, markerfacecolor=colour if beyond else "white", capsize=3,
                            markersize=6, zorder=3)
        ax.axvline(0.0, color="grey", linewidth=0.8, zorder=1)
        ax.set_yticks(range(len(pairs)), [f"{a} - {b}" for (a, b, _), _ in reversed(pairs)], fontsize=7)
        ax.set_ylim(-0.7, len(pairs) - 0.3)
        ax.set_xlabel("paired difference (accuracy points)")
        ax.set_title(panel["label"] + (f" (primary {panel['primary']})" if panel["primary"] else ""), fontsize=9)
    fig.tight_layout()
    return fig
