"""The Python API, for notebooks and scripts: what ``bench run``, ``bench export`` and the report read, as
functions and pandas DataFrames. ``import bench`` imports none of this (nor torch, nor Ray) until a function
is first used::

    import bench
    df = bench.load_results("lenet5-fashion-mnist")          # one row per trial
    df.plot.scatter(x="flops", y="test_accuracy")

- :func:`load_results`: one row per trial (or per trial and epoch) of an experiment;
- :func:`load_targets`: the records of its target searches (``targets.json``);
- :func:`run`: a sweep, as ``bench run`` runs it, in this process; returns a :class:`Summary`;
- :func:`export`: a trial's compact model written to a file (and/or registered).
"""
from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .config import ConfigError
from .config_layers import build_sweep, load_config_file
from .files import write_with
from .names import COMPACT_MODEL, COMPACT_PROGRAM
from .report import read_store
from .tracking import Store, check_tracking_uri, default_tracking_uri, normalize_uri
from .usercode import load_plugins


def _uri(tracking_uri: str | None, write: bool = False, existing: bool = True) -> str:
    """The store's address, checked; ``existing``: one that is read must exist (reading never creates it)."""
    uri = normalize_uri(tracking_uri or default_tracking_uri())
    check_tracking_uri(uri, write=write, existing=existing)
    return uri


def _number(text: Any) -> Any:
    """An MLflow param (a string) as the number it spells, else as it is."""
    if not isinstance(text, str):
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def load_results(experiment: str, tracking_uri: str | None = None, per_epoch: bool = False,
                 sweep: str | None = None) -> pd.DataFrame:
    """The trials of ``experiment`` (every sweep of it, or the one named ``sweep``) in the store at
    ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``).

    One row per trial: ``sweep``, ``trial``, ``run_id``, ``status``, ``method``, ``seed``, ``axis`` (``lam``,
    ``ratio`` or empty) and the swept value both as ``value`` and under the axis's own name (``lam`` or
    ``ratio``), the trial's settings (its MLflow params: ``model``, ``dataset``, ``epochs``, ``lr``,
    ``zeroing``, ...) and its last epoch's metrics (``test_accuracy``, ``total_sparsity``, ``flops``,
    ``params``, ``filters_alive/<conv>``, ...); a trial that ran several times (a retry, a resume) is its
    first finished run. ``per_epoch``: one row per trial and epoch instead (``epoch``, and every metric of that
    epoch: the report's results.csv).
    """

    uri = _uri(tracking_uri)
    results = read_store(uri, experiment, sweep, with_filters=False)
    if per_epoch:
        return results.epochs.reset_index(drop=True)
    trials = results.trials.copy()
    store = Store(uri)
    params = {r.run_id: r.params for r in store.trial_runs(store.experiment_id_of(experiment) or "")}
    settings = pd.DataFrame([{k: _number(v) for k, v in params.get(run_id, {}).items()}
                             for run_id in trials["run_id"]], index=trials.index)
    for axis in sorted({a for a in trials["axis"] if a}):
        trials[axis] = [v if a == axis else math.nan for a, v in zip(trials["axis"], trials["value"])]
    trials = trials.join(settings[[c for c in settings.columns if c not in trials.columns]])
    return trials.reset_index(drop=True)


def load_targets(experiment: str, tracking_uri: str | None = None, sweep: str | None = None) -> pd.DataFrame:
    """The target searches of ``experiment``: one row per method, seed and target (``method``, ``seed``,
    ``kind``, ``target``, ``status`` reached / unreachable / unfinished, ``value``, ``achieved``,
    ``test_accuracy``, ``probes``, ``run_id``, ``sweep``; docs/comparing.md: Equal sparsity). Empty when it has none."""
    results = read_store(_uri(tracking_uri), experiment, sweep, with_filters=False)
    return pd.DataFrame(results.targets)


@dataclass
class Summary:
    """What :func:`run` returns: the exit status ``bench run`` would have (0 all finished, 1 some failed, 2
    never happens here: bad input raises, 130 interrupted), where the sweep is recorded, and its trials (as
    :func:`load_results` gives them)."""

    exit_code: int
    experiment: str
    sweep: str | None
    tracking_uri: str
    trials: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run(config: Mapping[str, Any] | str | Path | None = None, *, resume: bool = False, quiet: bool = False,
        **settings: Any) -> Summary:
    """Run a sweep as ``bench run`` does, in this process (Ray and MLflow as usual): ``config`` a mapping of
    ``bench run``'s settings (underscored keys, as in a ``--config`` file) or the path of such a TOML file,
    ``settings`` more of them (they win): ``bench.run(methods=["l1l2", "l1"], epochs=2, dataset="synthetic")``.
    Bad settings raise ``bench.config.ConfigError`` (the message ``bench run`` prints) before any work.
    ``quiet`` drops the progress lines. Returns a :class:`Summary`."""
    from . import session  # lazy: keeps import bench.api free of torch, ray

    values = dict(load_config_file(config) if isinstance(config, (str, Path)) else (config or {}))
    values.update(settings)
    sweep = build_sweep(values)
    uri = _uri(sweep.tracking_uri, write=True, existing=resume)
    where: dict[str, str] = {}
    code = session.run(sweep, uri, resume=resume, write=(lambda line: None) if quiet else print,
                       command=f"bench.run({', '.join(f'{k}={v!r}' for k, v in values.items())})", ended=where)
    name = where.get("name")
    trials = pd.DataFrame()
    if name is not None:
        try:
            trials = load_results(sweep.experiment_name, uri, sweep=name)
        except Exception:   # a sweep that ran no trial has none to load
            pass
    return Summary(code, sweep.experiment_name, name, uri, trials)


def export(run_id: str, path: str | Path | None = None, tracking_uri: str | None = None,
           register: str | None = None, plugins: tuple[str, ...] = ()) -> dict[str, Any]:
    """A trial's compact model written to ``path`` (``FILE.pt``: state dict and widths, reloaded by
    ``bench.compact.load_compact``; ``FILE.pt2``: a torch.export program) and/or registered in MLflow's Model
    Registry under ``register``. Returns what was done: ``path``, ``model``, ``widths``, ``params``,
    ``removed`` (filters per layer), ``run`` (its name), ``status``, ``registered`` ((name, version) or None).
    """

    from .compact import export_program, load_compact, read_compact_info  # lazy: keeps import bench.api free of torch
    from .models import rebuildable  # lazy: keeps import bench.api free of torch

    load_plugins(plugins)
    if path is None and register is None:
        raise ConfigError("say what to do with the compact model: --out FILE.pt|FILE.pt2, --register NAME, or both")
    out = Path(path) if path is not None else None
    if out is not None and out.suffix not in (".pt", ".pt2"):
        raise ConfigError(f"--out {out}: name the file FILE.pt (state dict and widths) or FILE.pt2 (torch.export)")
    uri = _uri(tracking_uri, write=True)
    store = Store(uri)
    run = store.get_run(run_id)
    if run.kind == "sweep":
        raise ConfigError(f"run {run.run_id} is the sweep {run.name!r}; give one of its trials' run ids")
    done: dict[str, Any] = {"path": out, "run": run.name, "status": run.status, "registered": None}
    if register is not None:
        done["registered"] = store.registered_model(run.run_id, register)
    if out is None:
        return done
    with tempfile.TemporaryDirectory() as folder:
        saved = store.download_artifact(run.run_id, COMPACT_MODEL, folder)
        if saved is None:
            raise ConfigError(f"run {run.run_id} ({run.name}, {run.status}) has no compact model: a trial saves "
                              "it when it finishes")
        info = read_compact_info(saved)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not rebuildable(info["model"]):   # only its program loads without the model's code
            program = store.download_artifact(run.run_id, COMPACT_PROGRAM, folder)
            if program is None or out.suffix != ".pt2":
                raise ConfigError(f"{info['model']} is not rebuilt from its widths: export it as FILE.pt2 (a "
                                  "torch.export program)" if program is not None else
                                  f"run {run.run_id} has no {COMPACT_PROGRAM}")
            write_with(out, lambda path: shutil.copyfile(program, path))   # a link at --out replaced, not followed
            params = info["params"]
        else:
            model, info = load_compact(saved)
            params = sum(p.numel() for p in model.parameters())
            if out.suffix == ".pt2":
                write_with(out, lambda path: export_program(model, info["input_shape"], path))
            else:
                write_with(out, lambda path: shutil.copyfile(saved, path))
    done.update(model=info["model"], widths=list(info["widths"]), params=params,
                removed={k: v for k, v in info["removed"].items() if v})
    return done


__all__ = ["Summary", "export", "load_results", "load_targets", "run"]
