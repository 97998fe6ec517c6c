"""What a sweep's run and a trial's run record, assembled in one place and written through bench/tracking/
(which alone imports mlflow). Imports neither mlflow nor ray.

- :func:`sweep_params` and :func:`summary_metrics`: the sweep run's params and summary metrics;
- :func:`tracking_info`: what every trial needs to log into the sweep's store (sent to the Ray workers);
- :func:`trial_params`: a trial run's short flat params;
- :class:`TrialRecorder`: one trial's run while it trains, the trainer's callbacks as methods: ``on_epoch``
  (metrics), ``keep`` (a checkpoint of the epoch), ``finish`` (the compact model, measured and saved) and
  ``close`` (the compact model as an MLflow Model, the run's final status). How an epoch reaches the sweep's
  scheduler (Ray Tune) is the ``report`` callable it is given.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from . import checkpoints
from . import metrics as M
from . import names as N
from .compact import export_program, measure, save_compact, save_first_filters
from .config import SweepConfig, TrainSettings, TrialConfig
from .data import dataset_record
from .datatypes import Dataset, StreamData
from .models import rebuildable
from .protocols import get_protocol, variants
from .settings import TRIAL, declared
from .structure import removed_groups
from .tracking import TrackingInfo, TrialRun, source_tags

Report = Callable[[dict[str, Any], "Path | None"], None]   # (metrics, checkpoint folder or None)


def sweep_params(sweep: SweepConfig, n_trials: int) -> dict[str, Any]:
    """The short flat params of a sweep's parent run."""
    t = sweep.train
    return {"methods": ",".join(sweep.methods), "trials": n_trials, "seeds": ",".join(map(str, sweep.seeds)),
            "model": t.model, "dataset": t.dataset, "epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr,
            "limit_train": t.limit_train, "limit_test": t.limit_test, "protocol": t.protocol,
            **{k: v for train in variants(t) for k, v in get_protocol(train.protocol).sweep_params(sweep).items()}}


def summary_metrics(outcomes: list, records: list[dict] | None = None) -> dict[str, float]:
    """The sweep run's summary metrics (MLflow's runs table compares sweeps by them): per method, trials
    ``finished``, ``failed``, ``diverged`` and ``overshot`` (a target search's overshoots: a NaN loss, or a probe
    stopped past every target), the best test accuracy of its
    finished trials; per method and target reached on some seed, the mean test accuracy and achieved value
    over those seeds and how many seeds reached it (``l1l2/sparsity_0.8/test_accuracy``...)."""
    out: dict[str, float] = {}
    for o in outcomes:
        method = o.trial.method if o.trial is not None else o.name.split("-")[0]
        for status in ("FINISHED", "FAILED", "DIVERGED", "OVERSHOT"):
            key = f"{method}/trials_{status.lower()}"
            out[key] = out.get(key, 0) + (o.status == status)
        if o.status == "FINISHED" and N.TEST_ACCURACY in o.metrics:
            key = f"{method}/best_test_accuracy"
            out[key] = max(out.get(key, 0.0), float(o.metrics[N.TEST_ACCURACY]))
    groups: dict[str, list[dict]] = {}
    for r in records or []:
        if r["status"] == "reached":
            groups.setdefault(f"{r['method']}/{r['kind']}_{r['target']:g}", []).append(r)
    for prefix, reached in groups.items():
        out[f"{prefix}/test_accuracy"] = sum(r["test_accuracy"] for r in reached) / len(reached)
        out[f"{prefix}/achieved"] = sum(r["achieved"] for r in reached) / len(reached)
        out[f"{prefix}/seeds_reached"] = len(reached)
    return out


def tracking_info(uri: str, experiment_id: str, parent_run_id: str, data: Dataset | StreamData | None,
                  dataset: str) -> TrackingInfo:
    """Where the sweep's trials log, with the tags of every run (taken here, on the driver: a worker on another
    node may have no git checkout) and the dataset's description (its digest computed once)."""
    record = tuple(dataset_record(data, dataset).items()) if data is not None else ()
    return TrackingInfo(uri, experiment_id, parent_run_id, tuple(source_tags().items()), record)


def trial_params(trial: TrialConfig) -> dict[str, Any]:
    """The short flat params of a trial's MLflow run: method, seed, zeroing rule, every setting that defines what
    a trial computes (the ``trial`` role of bench/settings.py: a newly declared one is logged too), and the
    method's options."""
    params: dict[str, Any] = {"method": trial.method, "seed": trial.seed, "zeroing": trial.zeroing}
    params.update({f.name: getattr(trial.train, f.name) for f in declared(TrainSettings) if f.metadata["role"] == TRIAL})
    params.update(trial.options)  # the swept value (lam / ratio) and the method's options
    if trial.sweep_axis is not None:
        params["sweep_axis"] = trial.sweep_axis
    if trial.target is not None:   # prune-to-target: the target its pruning step met
        params["target_kind"], params["target"] = trial.target
    if trial.control is not None:   # a control: of which trial (method, target), and which widths
        c = trial.control
        params.update(control=c["kind"], control_of=c["of"], control_method=c["method"],
                      **({"control_factor": c["factor"], "control_capped": c["capped"]} if "factor" in c else {}))
        if c.get("target"):
            params["target_kind"], params["target"] = c["target"]
    return {k: v for k, v in params.items() if v is not None}


def input_example(data: Dataset | StreamData):
    """Two inputs as the model takes them (float32, normalised): the first test images of data held in memory,
    else seeded noise of the data's shape (reading a streamed split's files here would cost a pass)."""

    if isinstance(data, Dataset) and len(data.test_x) >= 2:
        x = data.test_x[:2].astype(np.float32) / 255.0
        mean = np.asarray(data.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(data.std, np.float32).reshape(1, -1, 1, 1)
        return ((x - mean) / std).astype(np.float32)
    return np.random.default_rng(0).standard_normal((2, *data.input_shape)).astype(np.float32)


class TrialRecorder:
    """One trial's MLflow run while it trains. ``earlier``, the checkpoint an earlier attempt left (its state
    and record, bench/checkpoints.py), continues that attempt's run; ``report(metrics, folder)`` hands an
    epoch's metrics (and the folder of its checkpoint, or None for the last epoch) to the sweep's scheduler."""

    def __init__(self, trial: TrialConfig, key: str, data: Dataset | StreamData, tracking: TrackingInfo,
                 device: str, report: Report, earlier: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None
                 ) -> None:
        self.trial, self.key, self.data, self.tracking, self.device = trial, key, data, tracking, device
        self.report = report
        self.snapshot = earlier[0] if earlier is not None else None
        record = earlier[1] if earlier is not None else {}
        params = {**trial_params(trial), **({"phase": trial.phase["name"]} if trial.phase is not None else {})}
        self.run = TrialRun(tracking, trial.name, params,
                            {"trial": trial.to_dict(), N.TRIAL_KEY: key, "device": device,
                             "data": {"name": data.name, "source": data.source, "train": data.n_train,
                                      "test": data.n_test}},
                            key, device, continues=record.get("run_id"),
                            system_metrics=trial.train.system_metrics_interval,
                            kind="trial" if trial.phase is None else "phase")
        if record.get("phase_run_id"):   # a branch of a shared phase: its run starts with the phase's epochs
            split = int(record["split"])
            self.run.copy_epochs(record["phase_run_id"], split - 1)
            self.run.set_tag(N.SHARED_TAG, f"epochs 1-{split - 1} and epoch {split}'s training steps from the shared "
                                           f"phase run {record['phase_run_id']}")
        elif self.snapshot is not None:
            self.run.set_tag(N.CONTINUED_TAG, f"from epoch {self.snapshot['epoch']}")
        self.reported: dict[str, Any] = {}
        self.compact: Any = None

    def on_epoch(self, epoch: int, values: dict[str, float]) -> None:
        """An epoch's metrics: logged to the run; the last epoch's also reported (it keeps no checkpoint)."""
        self.run.log_epoch(epoch, values)
        self.reported = {**values, "epoch": epoch, N.TRIAL_KEY: self.key, N.RUN_ID_KEY: self.run.run_id}
        if epoch == self.trial.train.epochs:
            self.report(dict(self.reported), None)

    def keep(self, epoch: int, state: dict[str, Any]) -> None:
        """The epoch's checkpoint (bench/checkpoints.py), reported with the epoch's metrics."""

        with tempfile.TemporaryDirectory() as folder:
            checkpoints.write(Path(folder), state, {"trial_key": self.key, "epoch": epoch, "run_id": self.run.run_id,
                                                    "parent_run_id": self.tracking.parent_run_id})
            self.report(dict(self.reported), Path(folder))

    def split(self, state: dict[str, Any]) -> None:
        """A shared phase's end (bench/phases.py): its checkpoint, inside epoch ``state["epoch"] + 1``,
        reported as the phase's last result."""
        with tempfile.TemporaryDirectory() as folder:
            checkpoints.write(Path(folder), state, {"trial_key": self.key, "epoch": state["epoch"], "split": True,
                                                    "run_id": self.run.run_id,
                                                    "parent_run_id": self.tracking.parent_run_id})
            self.report({**self.reported, "epoch": state["epoch"], N.PHASE_SPLIT: state["epoch"] + 1,
                         N.TRIAL_KEY: self.key, N.RUN_ID_KEY: self.run.run_id}, Path(folder))

    def finish(self, model, structure) -> dict[str, float]:
        """The compact model: measured, saved as the run's ``compact_model.pt`` (and, for a model bench cannot
        rebuild, as a torch.export program) with the first layer's filters; returns its metrics."""

        train, data = self.trial.train, self.data
        small, values = measure(model, structure, data.input_shape, min_run_time=train.latency_time,
                                device=self.device)
        total = structure.filters()
        removed = {layer: total[layer] - n for layer, n in M.alive_filters(structure).items()}
        with tempfile.TemporaryDirectory() as folder:
            path = save_compact(Path(folder) / N.COMPACT_MODEL, small, train.model, data.input_shape,
                                data.num_classes, removed)
            self.run.log_artifact(path)
            if not rebuildable(train.model):   # loads without the model's code
                self.run.log_artifact(export_program(small, data.input_shape, Path(folder) / N.COMPACT_PROGRAM))
            if (first := save_first_filters(Path(folder) / N.FIRST_FILTERS, model, structure)) is not None:
                self.run.log_artifact(first)
            kept = {u.name: (~removed_groups(u)).nonzero().flatten().tolist() for u in structure.units}
            (Path(folder) / N.KEPT_GROUPS).write_text(json.dumps(kept))
            self.run.log_artifact(Path(folder) / N.KEPT_GROUPS)
        self.run.set_tag(N.FILTERS_REMOVED_TAG, sum(removed.values()))
        self.compact = small
        return values

    def close(self, status: str = "FINISHED", error: BaseException | None = None) -> None:
        """End the run: a finished trial's compact model first becomes an MLflow Model (its last epoch's metrics
        are the model's; a store that cannot take it leaves a tag, not a failed trial)."""
        if status == "FINISHED" and self.compact is not None:
            self._log_model()
        self.run.finish(status, error)

    def _log_model(self) -> None:

        data, trial = self.data, self.trial
        example = input_example(data)
        try:
            with torch.no_grad():
                output = self.compact.eval()(torch.from_numpy(example)).numpy()
            self.run.log_model(self.compact, example, output, trial.train.epochs,
                               [f"torch=={torch.__version__.split('+')[0]}"],
                               {"model": trial.train.model, "method": trial.method,
                                "input_shape": list(data.input_shape), "num_classes": data.num_classes,
                                "mean": list(data.mean), "std": list(data.std)})
        except Exception as err:
            self.run.set_tag(N.MODEL_ERROR_TAG, f"{type(err).__name__}: {err}")
