"""Reading the store: the trials of an experiment's sweeps as tables (:class:`Results`), one run per trial."""
from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import names as N
from ..tracking import Store

TOLERANCES = (0.5, 1.0)  # accuracy points below the baseline for the "best sparsity within" table
TARGETS = (0.5, 0.8)     # total filter sparsities at which the report names the most accurate method
ID_COLUMNS = ["sweep", "trial", "run_id", "status", "method", "axis", "value", "setting", "seed", "epoch", "target",
              "control"]


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
    latency: list[dict[str, Any]] = field(default_factory=list)    # bench report --latency (latency.json)
    detect: float | None = None   # bench report --detect D: the seeds each comparison needs to detect D points
    primary: str | None = None    # --primary METHOD (bench run's, or bench report's): its comparisons only
    kept: dict[str, dict[str, list[int]]] = field(default_factory=dict)   # run_id -> unit -> kept groups

    @property
    def protocol(self) -> pd.DataFrame:
        """The finished trials of the prune-to-target protocol (a target, or a control of one) and its dense
        references (``none`` trials of sweeps run under that protocol)."""
        f = self.finished
        if "target" not in f or "control" not in f:   # tables made by hand, before the protocol existed
            return f.iloc[0:0]
        return f[f["target"].notna() | f["trial"].isin(self._references())]

    def _references(self) -> list[str]:
        """The dense references: ``none`` trials without a target in sweeps whose trials prune to targets."""
        f = self.finished
        names = set(f[f["target"].notna()]["sweep"])
        return list(f[(f["sweep"].isin(names)) & (f["method"] == "none") & f["target"].isna()]["trial"])

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
        for sweep in self.sweeps:   # a grown sweep's config lists the methods it has now, its params the first
            listed = sweep.get("config", {}).get("methods") or str(sweep["params"].get("methods", "")).split(",")
            order += [m for m in listed if m]
        order += list(self.trials["method"])
        seen = sorted(set(order), key=order.index)
        return sorted(seen, key=lambda m: (m != "none", seen.index(m)))


def choose_experiment(uri: str, experiment: str | None) -> str:
    """The experiment to report: the one named, or the store's only experiment with sweeps."""
    store = Store(uri)
    known = [e for e in store.experiment_names() if e != "Default"]
    if experiment is not None:
        if store.experiment_id_of(experiment) is None:
            listing = ", ".join(sorted(known)) or "none: run `bench run` first"
            raise ReportError(f"no experiment {experiment!r} in {uri}; experiments there: {listing}")
        return experiment
    with_sweeps = [e for e in known if store.sweep_runs(store.experiment_id_of(e))]
    if not with_sweeps:
        raise ReportError(f"the store {uri} holds no sweep: run `bench run` first (or pass the --tracking-uri "
                          "the sweeps used)")
    if len(with_sweeps) > 1:
        raise ReportError(f"the store {uri} holds several experiments; pick one with --experiment: "
                          f"{', '.join(sorted(with_sweeps))}")
    return with_sweeps[0]


def choose_primary(results: Results, asked: str | None) -> None:
    """``results.primary``: ``asked`` (``bench report --primary``), else the one the sweeps were run with
    (``bench run --primary``); an asked method without a trial in the report is refused."""
    recorded = {s.get("config", {}).get("primary") for s in results.sweeps} - {None}
    primary = asked or (next(iter(recorded)) if len(recorded) == 1 else None)
    ran = list(dict.fromkeys(results.trials["method"])) if "method" in results.trials else []
    if asked is not None and asked not in ran:
        raise ReportError(f"--primary {asked}: no trial of that method in experiment {results.experiment!r} "
                          f"(its methods: {', '.join(ran) or 'none'})")
    results.primary = primary


def read_store(uri: str, experiment: str, sweep: str | None = None, with_filters: bool = True) -> Results:
    """Read every trial of ``experiment`` (of the sweep named ``sweep`` only, when given) from the store."""
    store = Store(uri)
    experiment_id = store.experiment_id_of(experiment)
    if experiment_id is None:
        raise ReportError(f"no experiment {experiment!r} in {uri}")
    parents = store.sweep_runs(experiment_id)
    if sweep is not None:
        parents = [p for p in parents if p.name == sweep]
        if not parents:
            raise ReportError(f"no sweep {sweep!r} in experiment {experiment!r}")
    parent_ids = {p.run_id for p in parents}
    runs = [r for r in store.trial_runs(experiment_id) if r.tags.get(N.PARENT_TAG) in parent_ids]
    if not runs:
        raise ReportError(f"experiment {experiment!r} in {uri} has no trial runs yet")
    sweeps = [{"run_id": p.run_id, "name": p.name, "status": p.status, "params": p.params, "tags": p.tags,
               "config": store.read_json_artifact(p.run_id, N.SWEEP_CONFIG) or {}} for p in parents]
    sweep_names = {p.run_id: p.name for p in parents}

    chosen = _one_run_per_trial(runs)
    trial_rows, epoch_rows = [], []
    for run in chosen:
        ids = _identity(run, sweep_names)
        if run.tags.get(N.OVERSHOOT_TAG):   # a probe stopped past every target: not a finished trial's point
            ids["status"] = "OVERSHOT"
        # MLflow's system metrics (system/...) are sampled on their own steps, not epochs: not the trial's results
        history = store.metric_histories(run.run_id, sorted(k for k in run.metrics
                                                            if not k.startswith("system/")))
        steps = sorted({step for values in history.values() for step, _ in values})
        for step in steps:
            row = dict(ids, epoch=step)
            for key, values in history.items():
                found = [v for s, v in values if s == step]
                if found:
                    row[key] = found[-1]
            epoch_rows.append(row)
        final = {k: v[-1][1] for k, v in history.items() if v}
        trial_rows.append({**ids, "epoch": max(steps) if steps else 0,
                           "error": run.tags.get(N.ERROR_TAG) or run.tags.get(N.OVERSHOOT_TAG),
                           "epochs_planned": _int(run.params.get("epochs")), **final})
    trials = pd.DataFrame(trial_rows)
    epochs = pd.DataFrame(epoch_rows)
    if epochs.empty:
        epochs = pd.DataFrame(columns=ID_COLUMNS)
    layers, sizes = _layers(epochs)
    epochs = epochs[_column_order(epochs.columns, layers)]
    results = Results(experiment, uri, sweeps, trials, epochs, layers, sizes)
    results.targets = [{**r, "sweep": p.name} for p in parents
                       for r in (store.read_json_artifact(p.run_id, N.TARGETS_ARTIFACT) or [])]
    seen: set[tuple] = set()   # the dense-against-dense records are on every sweep's run: once each
    for p in parents:
        for r in store.read_json_artifact(p.run_id, N.LATENCY_ARTIFACT) or []:
            key = (r.get("trial"), r.get("model"), r.get("batch"))
            if key not in seen:
                seen.add(key)
                results.latency.append(r)
    if with_filters:
        results.filters = _first_filters(uri, results.finished["run_id"])
    protocol = results.protocol
    results.kept = {run_id: kept for run_id in protocol[protocol["control"].isna()]["run_id"]
                    if (kept := store.read_json_artifact(run_id, N.KEPT_GROUPS)) is not None}
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
    target = f"{p['target_kind']} {_float(p.get('target')):g}" if p.get("target_kind") else None
    control = f"{p['control']} of {p.get('control_method', '?')}" if p.get("control") else None
    return {"sweep": sweep_names.get(run.tags.get(N.PARENT_TAG), ""), "trial": run.name,
            "run_id": run.run_id, "status": run.status, "method": p.get("method", "?"), "axis": axis or "",
            "value": value, "setting": setting, "seed": _int(p.get("seed")), "target": target, "control": control,
            "epochs": _int(p.get("epochs")), "variant": _variant(p),
            **({"control_capped": p["control_capped"]} if p.get("control_capped") else {})}   # Scratch-B's cap bit


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

    out, store = {}, Store(uri)
    with tempfile.TemporaryDirectory() as folder:
        for run_id in run_ids:
            path = store.download_artifact(run_id, N.FIRST_FILTERS, Path(folder) / run_id)
            if path is not None:
                out[run_id] = np.load(path)
    return out


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _variant(params: Mapping[str, Any]) -> str:
    """A trial's protocol and fine-tuning, as a study over them names its tables: ``iterative, rewind``."""
    return str(params.get("protocol") or "") + (", rewind" if params.get("finetune") == "rewind" else "")


def _int(text: Any) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None
