"""The figures, drawn with matplotlib and seaborn (imported on first use; the Agg backend)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import names as N
from .analysis import _KIND_WORDS, _pct, baseline_accuracy, best_sparse_trial, pareto_front, settings
from .load import Results


def fig_equal_sparsity(results: Results):
    """Test accuracy against each target, mean over the seeds that reached it with one standard deviation and n;
    the baseline as a band of its seeds' spread; the y-axis spans the informative points, a collapsed one is
    marked at the lower edge with its value (:func:`informative_range`)."""
    plt, sns = _plt()
    records = pd.DataFrame(results.targets)
    reached = records[records["status"] == "reached"]
    if reached.empty:
        return None
    kinds = sorted(set(reached["kind"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False)
    colors = palette(list(dict.fromkeys([*results.methods, *records["method"]])))
    notes: list[str] = []
    for ax, kind in zip(axes[0], kinds):
        mine = reached[reached["kind"] == kind]
        drawn = []
        for i, (method, group) in enumerate(mine.groupby("method", sort=False)):
            stats = group.groupby("target")["test_accuracy"].agg(["mean", "std", "count"]).reset_index()
            offset = (i - len(set(mine["method"])) / 2) * 0.004
            drawn.append((method, 100 * (stats["target"] + offset), 100 * stats["mean"], 100 * stats["std"].fillna(0),
                          stats["count"]))
        ticks = sorted(set(100 * mine["target"]))
        base = _baseline_band(ax, results, notes)
        values = np.concatenate([d[2].to_numpy() for d in drawn] + ([np.array(base)] if base else []))
        collapse_line, high, _ = informative_range(values)   # means under it: collapsed
        low = collapse_line
        for _, _, y, sd, _ in drawn:   # the error bars of the informative means fit too
            ok = (y >= collapse_line - 1e-9).to_numpy()
            if ok.any():
                low, high = min(low, float((y - sd)[ok].min())), max(high, float((y + sd)[ok].max()))
        pad = max(0.5, 0.08 * (high - low))
        edge = low - 0.6 * pad
        for method, x, y, sd, n in drawn:
            collapsed = y.to_numpy() < collapse_line - 1e-9
            ax.errorbar(x[~collapsed], y[~collapsed], yerr=sd[~collapsed], marker="o", capsize=3, label=method,
                        color=colors.get(method))
            for xi, yi, ni in zip(x, y, n):
                if yi >= collapse_line - 1e-9:
                    ax.annotate(f"n={ni}", (xi, yi), fontsize=7, xytext=(4, -9), textcoords="offset points",
                                color="dimgrey")
            for xi, yi in zip(x[collapsed], y[collapsed]):
                ax.plot([xi], [edge], marker="v", ms=8, color=colors.get(method), clip_on=False)
                ax.annotate(f"{yi:.1f} %", (xi, edge), fontsize=7, xytext=(5, 2), textcoords="offset points")
            if collapsed.any():
                notes.append(f"`{method}` at {', '.join(f'{v:.1f} %' for v in y[collapsed])} sits below the axis "
                             "(triangle at its lower edge, value written).")
        ax.set_ylim(low - pad, high + pad)
        ax.set_xticks(ticks)
        ax.set_xlim(ticks[0] - 5, ticks[-1] + 5)
        ax.set_xlabel(f"target: % {_KIND_WORDS[kind]}")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.bench_notes = ["Mean test accuracy over the seeds that reached each target (n beside each point) with "
                       "one standard deviation."] + list(dict.fromkeys(notes))
    return fig


def informative_range(values: Any, least_gap: float = 5.0) -> tuple[float, float, np.ndarray]:
    """(low, high) of the values that carry a comparison, and a mask of the collapsed ones: those under the
    widest gap in the sorted values that is wider than both ``least_gap`` and the span of all the values above
    it, with two values at least above it (runs that collapsed towards chance accuracy would otherwise squeeze
    the differences that matter into a few pixels)."""
    v = np.asarray(values, dtype=float)
    finite = np.sort(v[np.isfinite(v)])
    if not len(finite):
        return 0.0, 100.0, np.zeros(len(v), bool)
    start, widest = 0, 0.0
    for k in range(1, len(finite) - 1):
        gap = finite[k] - finite[k - 1]
        if gap > least_gap and gap > finite[-1] - finite[k] and gap > widest:
            start, widest = k, gap
    low, high = float(finite[start]), float(finite[-1])
    return low, high, np.isfinite(v) & (v < low)


def _baseline_band(ax, results: Results, notes: list[str]) -> list[float]:
    """The baseline (``none``) on ``ax``: its mean as a dashed line and, with two seeds or more, a band of one
    standard deviation; says what was drawn in ``notes``; returns the values drawn (for the y-range)."""
    base = results.finished[results.finished["method"] == "none"][N.TEST_ACCURACY].dropna() * 100
    if base.empty:
        return []
    mean = float(base.mean())
    ax.axhline(mean, color="grey", ls="--", lw=1, label="baseline (none, mean)")
    if len(base) > 1:
        sd = float(base.std(ddof=1))
        ax.axhspan(mean - sd, mean + sd, color="grey", alpha=0.15, lw=0)
        notes.append(f"Dashed grey: the baseline (`none`), mean over its {len(base)} seeds; shaded: one standard "
                     "deviation of those seeds.")
        return [mean - sd, mean + sd]
    notes.append("Dashed grey: the baseline (`none`, one seed: no spread to shade).")
    return [mean]


def _plt():
    matplotlib.use("Agg")
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
    """Test accuracy against ``x`` at the final epoch: trials, seed means with spread and n, Pareto fronts, the
    baseline band; the y-axis spans the informative points, collapsed ones marked at its lower edge."""
    plt, sns = _plt()
    colours = palette(results.methods)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    final = results.finished
    scale = 100.0 if x == N.TOTAL_SPARSITY else 1e-6
    points = settings(final)
    notes: list[str] = []
    base = _baseline_band(ax, results, notes)
    shown = final
    low, high, _ = informative_range(np.concatenate([shown[N.TEST_ACCURACY].to_numpy(float) * 100, base]))
    pad = max(0.5, 0.08 * (high - low))
    edge = low - 0.6 * pad
    collapsed_any = False
    for method in results.methods:
        rows = shown[shown["method"] == method]
        if rows.empty:
            continue
        colour = colours[method]
        y = rows[N.TEST_ACCURACY].to_numpy(float) * 100
        down = y < low - 1e-9
        ax.scatter(rows[x][~down] * scale, y[~down], color=colour, alpha=0.35, s=18, linewidths=0)
        if down.any():
            collapsed_any = True
            ax.scatter(rows[x][down] * scale, np.full(down.sum(), edge), color=colour, marker="v", s=40,
                       clip_on=False)
            for xi, yi in zip(rows[x][down] * scale, y[down]):
                ax.annotate(f"{yi:.1f} %", (xi, edge), fontsize=7, xytext=(4, 2), textcoords="offset points")
        means = points[points["method"] == method]
        up = means[N.TEST_ACCURACY].to_numpy(float) * 100 >= low - 1e-9
        ax.errorbar(means[x][up] * scale, means[N.TEST_ACCURACY][up] * 100, xerr=means[f"{x}_sd"][up] * scale,
                    yerr=means[f"{N.TEST_ACCURACY}_sd"][up] * 100, fmt="o", color=colour, capsize=3, label=method,
                    ms=6)
        if (means["seeds"] > 1).any():
            for _, m in means[up].iterrows():
                ax.annotate(f"n={int(m['seeds'])}", (m[x] * scale, m[N.TEST_ACCURACY] * 100), fontsize=7,
                            xytext=(4, -9), textcoords="offset points", color="dimgrey")
        front = pareto_front(means[up], x, N.TEST_ACCURACY, maximize_x)
        if len(front) > 1:
            ax.plot(front[x] * scale, front[N.TEST_ACCURACY] * 100, "-", color=colour, alpha=0.8, lw=1.5)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    if not maximize_x:
        ax.invert_xaxis()
    ax.legend(title="method", fontsize=9, loc="best")
    fig.tight_layout()
    seeds = points[points["method"] != "none"]["seeds"] if len(points) else pd.Series(dtype=float)
    fig.bench_notes = notes + (["n beside a mean: the seeds it averages."] if (seeds > 1).any() else
                               ["Each point is one seed: the error bars are absent, there is no spread to show."])
    if collapsed_any:
        fig.bench_notes.append("Trials far below the others (collapsed) sit under the axis: a triangle at its "
                               "lower edge, their accuracy written.")
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


LINE_STYLES = ("-", "--", ":", "-.")   # a trial's seed, in the order of the seeds


def fig_losses(results: Results):
    """Task loss and penalty over epochs, one column per method (Berthelier et al. Fig. 4): one shade of the
    method's colour per setting (darker: stronger), one line style per seed; every line in its panel's legend."""
    plt, sns = _plt()
    methods = results.finished_methods
    colours = palette(results.methods)
    fig, axes = plt.subplots(2, max(1, len(methods)), figsize=(3.4 * max(1, len(methods)), 5.6), squeeze=False,
                             sharex=True)
    data = results.finished_epochs
    seeds = sorted(data["seed"].dropna().unique())
    for j, method in enumerate(methods):
        part = data[data["method"] == method]
        values = sorted(part["value"].dropna().unique())
        shades = _shades(colours[method], len(values))
        for (value, setting, seed), trial in part.sort_values("epoch").groupby(["value", "setting", "seed"],
                                                                               dropna=False):
            shade = shades[values.index(value)] if value in values else colours[method]
            style = LINE_STYLES[seeds.index(seed) % len(LINE_STYLES)] if seed in seeds else "-"
            label = f"{setting} s{seed}" if setting != "-" else f"s{seed}"
            for i, metric in enumerate((N.TRAIN_LOSS, N.PENALTY)):
                if metric in trial and trial[metric].notna().any() and (i == 0 or trial[metric].abs().sum() > 0):
                    axes[i, j].plot(trial["epoch"], trial[metric], style, color=shade, lw=1.3, label=label)
        axes[0, j].set_title(method)
        if axes[0, j].get_lines():
            axes[0, j].legend(fontsize=7)
        axes[1, j].set_xlabel("epoch")
        axes[1, j].xaxis.get_major_locator().set_params(integer=True)
        if not part.get(N.PENALTY, pd.Series([0.0])).fillna(0).any():
            axes[1, j].text(0.5, 0.5, "no penalty", ha="center", va="center", transform=axes[1, j].transAxes,
                            color="grey")
    axes[0, 0].set_ylabel("task loss (train)")
    axes[1, 0].set_ylabel("penalty (without lambda)")
    fig.tight_layout()
    fig.bench_notes = ["One shade of the method's colour per setting, darker for a stronger one"
                       + ("; line style: the seed (" + ", ".join(f"{LINE_STYLES[i % 4]!r} s{s}"
                                                                  for i, s in enumerate(seeds)) + ")."
                          if len(seeds) > 1 else ".")]
    return fig


def _shades(colour: Any, n: int) -> list[tuple[float, float, float]]:
    """``n`` shades of ``colour``, from a light tint (weakest setting) to a dark shade (strongest)."""
    rgb = np.asarray(colour[:3], dtype=float)
    if n <= 1:
        return [tuple(rgb)]
    light, dark = rgb + 0.6 * (1 - rgb), 0.5 * rgb
    return [tuple(light + (dark - light) * i / (n - 1)) for i in range(n)]


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
