"""Writing the report: index.html (self-contained), report.md, results.csv and the figures, attached to each
sweep's MLflow run."""
from __future__ import annotations

import base64
import html
import io
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from .. import names as N
from ..files import write_bytes
from ..tracking import Store
from ..version import __version__
from .axis import protocol_comparison
from .equal import equal_target, fig_equal_target, fig_forest, field_quoted, stability
from .analysis import (ALPHA, _missing, at_sparsity, best_table, config_table, equal_sparsity, latency_table,
                       layer_table, method_table, notes, problem_table, quoted_table, training_noise)
from .figures import _plt, fig_equal_sparsity, fig_filters, fig_losses, fig_tradeoff, fig_trajectories
from .load import TARGETS, MethodInfo, Results


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
                   "(Berthelier et al. Fig. 4)."),
    "filters.png": ("Learned first-layer filters",
                    "The baseline's and each method's best sparse model (the sparsest within 1 point of the "
                    "baseline, else the most accurate sparse one; Berthelier et al. Fig. 5)."),
}


def build_report(results: Results, out: str | Path, registry: Mapping[str, MethodInfo],
                 attach: bool = True) -> Path:
    """Write the report folder; returns the path of ``index.html``.

    Every file is made in memory, then written into ``out`` as a new file renamed over its name
    (bench/files.py): a symbolic link planted there is replaced, never written through. The copies attached
    to the sweeps' runs are written to a private temporary folder first, so nothing is read back from ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {"results.csv": results.epochs.to_csv(index=False).encode("utf-8")}
    figures: dict[str, bytes] = {}
    drawn: dict[str, list[str]] = {}   # what each figure drew beyond its fixed caption
    plt, _ = _plt()
    for name, make in (("accuracy_vs_sparsity.png", lambda: fig_tradeoff(results, N.TOTAL_SPARSITY,
                                                                          "total filter sparsity (%)", True)),
                       ("accuracy_vs_flops.png", lambda: fig_tradeoff(results, N.FLOPS,
                                                                       "forward MFLOPs per example", False)),
                       ("trajectories.png", lambda: fig_trajectories(results)),
                       ("losses.png", lambda: fig_losses(results)),
                       ("filters.png", lambda: fig_filters(results)),
                       ("accuracy_at_targets.png", lambda: fig_equal_sparsity(results) if results.targets else None),
                       ("accuracy_at_equal_target.png", lambda: fig_equal_target(results)),
                       ("paired_differences.png", lambda: fig_forest(results))):
        if results.finished.empty:
            break
        fig = make()
        if fig is None:
            continue
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png", dpi=110)
        fig.savefig(svg, format="svg")   # for papers: scales without loss
        drawn[name] = list(getattr(fig, "bench_notes", []))
        plt.close(fig)
        figures[name] = files[name] = png.getvalue()
        files[vector(name)] = svg.getvalue()
    sections = _sections(results, registry, figures, drawn)
    files["report.md"] = _markdown(results, sections).encode("utf-8")
    files["index.html"] = _html(results, sections, figures).encode("utf-8")
    for name, data in files.items():
        write_bytes(out / name, data)
    if attach:   # the files written here, never anything else the folder holds
        store = Store(results.uri)
        with tempfile.TemporaryDirectory() as private:
            written = [write_bytes(Path(private) / name, data) for name, data in files.items()]
            for sweep in results.sweeps:
                store.attach_files(sweep["run_id"], written, N.REPORT_FOLDER)
    return out / "index.html"


@dataclass
class Section:
    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figure: str | None = None
    code: str | None = None


def _noise_text(results: Results) -> str:
    noise = {b: training_noise(results, b) for b in (1, 64)}
    spreads = [f"{spread:.2f}x at batch {b}" for b, spread in noise.items() if spread]
    return f": here the dense model ranges over {' and '.join(spreads)}" if spreads else ""


def vector(name: str) -> str:
    """The SVG file written beside a figure's PNG."""
    return name.rsplit(".", 1)[0] + ".svg"


def _sections(results: Results, registry: Mapping[str, MethodInfo], figures: Mapping[str, bytes],
              drawn: Mapping[str, Sequence[str]] | None = None) -> list[Section]:
    drawn = drawn or {}
    finished = results.finished
    counts = results.trials["status"].value_counts().to_dict()
    summary = (f"{len(results.trials)} trial(s) of {len(results.methods)} method(s) in {len(results.sweeps)} "
               f"sweep(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".")
    out = [Section("Summary", summary + ("\n\n" + "\n".join(f"- {n}" for n in notes(results))
                                         if notes(results) else ""))]
    protocol = results.protocol
    only_protocol = len(finished) > 0 and len(protocol) == len(finished)
    for n, (target, table, verdicts) in enumerate(equal_target(results)):
        figure = "accuracy_at_equal_target.png" if n == 0 and "accuracy_at_equal_target.png" in figures else None
        caption = (" The figure: every method's seeds (dots) and mean with its 95 % interval, per target; scratch "
                   "controls hollow, the dense reference in black." + "".join(
                       " " + x for x in drawn.get("accuracy_at_equal_target.png", []))) if figure else ""
        what, _, sweep = target.partition(", sweep ")
        what, _, variant = what.partition(", ")   # the protocol and fine-tuning of a study over them
        title = f"Accuracy at equal target: {what} removed" + (f", {variant}" if variant else "") + (
            f" (sweep {sweep})" if sweep else "")
        out.append(Section(title, " ".join(verdicts) + (
            " One trial per method, target and seed (`bench run --protocol prune-to-target`, or `iterative`): sparse "
            "training, pruning to the target by the method's importance (one global step, or `--prune-steps` steps "
            "each meeting a rising fraction of it), fine-tuning. A cell is the final "
            "accuracy, mean over seeds with its 95 % confidence interval (Student's t); the removed fraction is "
            "the mean achieved (the target within one group). Comparisons are paired by seed (trials of one seed "
            "start from the same weights and see the same batches): the mean difference in accuracy points with "
            "its 95 % interval and the two-sided paired t-test's p-value, Holm-corrected across every comparison "
            f"of the table; 'better' or 'worse' only below {ALPHA:g} (an interval is its comparison's own, not "
            "adjusted: one that excludes 0 can still show no difference after the correction). 'detectable' is "
            "the smallest true difference, in points, the comparison would have found 80 % of the time (the paired "
            "t-test's power from the noncentral t, with its seeds' spread, at Holm's strictest step: the level over "
            "the number of comparisons tested); `bench report --detect D` adds the seeds each would need for D "
            "points. The accuracies and tests are on test accuracy; the best method is the one of highest mean "
            "selection accuracy. " + (
                f"Primary method {results.primary} (`--primary`): the table compares it with every other method "
                f"(column 'vs {results.primary}': that method minus {results.primary}) and with its own controls, "
                "one Holm family of the other methods plus its controls, instead of every method against the best "
                "and random. " if results.primary else "") + "vs scratch: against the same widths trained "
            "from the seed's initialisation for the same epochs (`--controls scratch-e`). " + (
                "vs scratch-B: the same widths trained for the same compute (`--controls scratch-b`, Liu et al.'s "
                "Scratch-B): round(epochs x dense FLOPs / pruned FLOPs) epochs, at most `--scratch-b-max-factor` "
                "times the epochs; its row states its epochs and on how many seeds the cap bit. "
                if "vs scratch-B" in table.columns else "") + results.choice_note()
            + caption), table, figure=figure))
    if "paired_differences.png" in figures:
        out.append(Section("Paired differences at equal target", "Every paired comparison of the tables above, one "
                           "row each ('A - B', in accuracy points): each seed's difference (dots), the mean with its "
                           "95 % interval (Student's t), zero marked by the grey line; filled where the difference is "
                           f"beyond noise after Holm's correction at {ALPHA:g}, hollow where it is not.",
                           figure="paired_differences.png"))
    for label, table, text in protocol_comparison(results):
        out.append(Section(f"Protocol against protocol: {label}", " ".join(text) + (
            " Each method's final test accuracy under every protocol and fine-tuning of the sweep (mean over seeds "
            "[95 % CI]), and under each against the first: the mean paired difference in points by seed (trials of "
            "one seed start from the same weights whatever the protocol) with its 95 % interval and the paired "
            "t-test's p-value, Holm-corrected across the table."), table))
    stable = stability(results)
    if stable is not None:
        out.append(Section("Stability of the kept groups across seeds", "For each method and target, the mean "
                           "Jaccard overlap |A and B| / |A or B| of the groups two seeds kept, over every pair of "
                           "seeds: overall (every unit's groups together) and per unit (named by its first conv). "
                           "1 is the same choice on every seed; `random` shows the overlap of chance at these "
                           "widths.", stable))
    best, note = best_table(results)
    if not only_protocol:
        out.append(Section("Highest sparsity within 0.5 and 1 accuracy points of the baseline", note,
                           best if len(best) else None))
    if len(finished) and not only_protocol:
        targets, verdicts = at_sparsity(results)
        out.append(Section("Accuracy at " + " and ".join(f"{t:.0%}" for t in TARGETS) + " filter sparsity",
                           " ".join(verdicts) + " A cell reads a method's Pareto front (final epoch, mean over "
                           "seeds) at the target sparsity: linear between the two front points around it (named), "
                           "or the front's first point where that point is above the target. "
                           + results.choice_note(), targets if len(targets) else None))
    if results.targets:
        table, verdicts = equal_sparsity(results)
        out.insert(1, Section("Accuracy at equal sparsity", " ".join(verdicts) + (
            " Each method's strength was searched per seed for each target (`bench run --target-sparsity`); a "
            "cell is the final test accuracy, mean +- sd over the seeds that reached the target within its "
            "tolerance, with n and the mean value achieved. The best method is named only where its lead over "
            f"the runner-up is beyond seed noise: Welch's t-test, one-sided at {ALPHA}, on the seeds' accuracies."
            + "".join(" " + n for n in drawn.get("accuracy_at_targets.png", []))),
            table, figure="accuracy_at_targets.png" if "accuracy_at_targets.png" in figures else None))
    quoted = quoted_table(results) or field_quoted(results)
    if quoted is not None:
        out.append(Section("Published numbers (quoted) beside this run", quoted[1], quoted[0]))
    for name, (title, caption) in FIGURES.items():
        if name in figures:
            out.append(Section(title, " ".join([caption, *drawn.get(name, [])]), figure=name))
    if finished.empty:
        out.append(Section("Figures", "No trial finished, so there is nothing to plot yet."))
    out.append(Section("Filters left per layer",
                       "One row per finished trial, laid out like Berthelier et al.'s Tables I-III: filters "
                       "left / filters in the layer (layer sparsity), total filter sparsity, then the network with "
                       "removed filters deleted: its parameters and FLOPs with their reduction from the dense model "
                       "(`none` rows: the dense reference), its MACs, and the compact model's measured parameters "
                       "and CPU speed-up over the dense model at batch 1 and 64 as measured at the end of each trial "
                       "(other trials may have shared the CPU: a speed-up the dense model's own spread over the "
                       "trials reaches is marked within noise" + _noise_text(results) + "; `bench report --latency` "
                       "measures them again with nothing else running). FLOPs/example: one forward pass of "
                       "one example, counted structurally with 2 FLOPs per multiply-add of the convs and linears "
                       "(torch's FlopCounterMode convention). MACs/example (Torch-Pruning): "
                       "`tp.utils.count_ops_and_params` on the compact model at batch 1 (multiply-adds of convs "
                       "and linears plus its counts for BatchNorm, pooling and activations), the number Torch-Pruning's "
                       "tables and most pruning papers quote as FLOPs or MACs; '-' for trials recorded before it "
                       "was logged.",
                       layer_table(results) if len(finished) else None))
    latency = latency_table(results)
    if latency is not None:
        out.append(Section("Latency after the sweep", latency[1], latency[0]))
    problems = problem_table(results)
    out.append(Section("Trials that did not finish",
                       "Every trial finished." if problems.empty else
                       "Failed, killed or still running trials, with the last line of their error (the full "
                       "traceback is the run's `bench.error` tag in MLflow), and target-search probes stopped at an "
                       "overshoot (OVERSHOT: past every target of their search, data for the search's bisection).", problems if len(problems) else None))
    out.append(Section("Methods", "From the method registry (loss = task loss + lambda * penalty).",
                       method_table(results, registry)))
    configs = {s["name"]: s["config"] for s in results.sweeps}
    out.append(Section("Configuration and versions", f"Store: `{results.uri}`, experiment "
                       f"`{results.experiment}`.", config_table(results),
                       code=json.dumps(configs, indent=2, sort_keys=True, default=str)))
    return out


def md_escape(text: str) -> str:
    """Text for report.md with HTML's special characters escaped outside `code` spans: a name that holds HTML
    (an experiment called ``<img src=x onerror=...>``) shows as text in a Markdown viewer, not as markup."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") and p.endswith("`") and len(p) > 1 else html.escape(p, quote=False)
                   for p in parts)


def _markdown(results: Results, sections: Sequence[Section]) -> str:
    lines = [f"# Trade-off report: {md_escape(results.experiment)}", ""]
    for s in sections:
        lines += [f"## {md_escape(s.title)}", ""]
        if s.text:
            lines += [md_escape(s.text), ""]
        if s.figure:
            lines += [f"![{md_escape(s.title)}]({s.figure})", ""]
        if s.table is not None:
            lines += [markdown_table(s.table), ""]
        if s.code:
            lines += ["<details><summary>sweep configurations</summary>", "", "```json", s.code, "```", "",
                      "</details>", ""]
    return "\n".join(lines)


def markdown_table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        text = "-" if _missing(v) else str(v)
        return md_escape(text).replace("|", "\\|").replace("\n", " ")
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
