"""The figures, drawn with matplotlib and seaborn (imported on first use; the Agg backend)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import names as N
from .analysis import _KIND_WORDS, _pct, baseline_accuracy, best_sparse_trial, pareto_front, settings
from .load import Results


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
