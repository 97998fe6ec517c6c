"""A trial's MLflow run while the trial trains: created (or continued) with its params, config, tags and
dataset; metrics per epoch; the compact model as an MLflow Model; MLflow's system metrics; the final status.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import re
import time
import traceback
from dataclasses import dataclass
from typing import Any, Mapping

import mlflow
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import DatasetInput, InputTag, Metric, Param
from mlflow.models import infer_signature

from ..names import ERROR_TAG, KIND_TAG, PARENT_TAG, TRIAL_CONFIG, TRIAL_KEY_TAG
from .store import Store, _set_error, _short, provenance


@dataclass(frozen=True)
class TrackingInfo:
    """What a trial needs to log into the sweep's store (picklable, sent to Ray workers): where, the tags of
    every run (:func:`source_tags`) and the dataset's description (:func:`bench.data.dataset_record`)."""

    uri: str
    experiment_id: str
    parent_run_id: str
    tags: tuple[tuple[str, str], ...] = ()
    dataset: tuple[tuple[str, Any], ...] = ()


def model_name(trial_name: str) -> str:
    """A trial's logged model name: its trial name with what MLflow refuses in a name ('.', '/', ':', ...)
    turned into '_' (``l1l2-lam0.2-s0`` -> ``l1l2-lam0_2-s0``), so the Models tab tells the trials apart."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", trial_name) or "compact_model"


def _log_torch_model(model: Any, kwargs: dict[str, Any]) -> Any:
    """``mlflow.pytorch.log_model`` as a torch.export program where this MLflow can (``serialization_format``,
    3.10+) and torch.export traces the model, else pickled."""

    import mlflow.pytorch  # lazy: keeps the report, import bench.api free of torch
    try:
        if "serialization_format" not in inspect.signature(mlflow.pytorch.log_model).parameters:
            raise TypeError("this MLflow (before 3.10) saves PyTorch models by pickle only")
        return mlflow.pytorch.log_model(model, serialization_format="pt2", **kwargs)
    except Exception:   # torch.export cannot trace every module (data-dependent control flow)
        quiet = logging.getLogger("mlflow.pytorch")   # its advice to prefer pt2, which just failed
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            if "serialization_format" in inspect.signature(mlflow.pytorch.log_model).parameters:
                kwargs = {**kwargs, "serialization_format": "pickle"}
            return mlflow.pytorch.log_model(model, **kwargs)
        finally:
            quiet.setLevel(level)


def dataset_input(record: Mapping[str, Any]) -> DatasetInput:
    """A trial's dataset as an MLflow dataset input (the runs page's Dataset column): ``record`` holds
    ``name``, ``digest`` (of the content: a changed file shows as a new digest), ``source`` (a path, or the
    generator) and the split sizes (the dataset's profile)."""

    source = str(record.get("source") or "")
    local = source.startswith("/")
    entity = DatasetEntity(name=str(record["name"]), digest=str(record["digest"]),
                           source_type="local" if local else "code",
                           source=json.dumps({"uri": source} if local else {"description": source}),
                           profile=json.dumps({k: record[k] for k in ("train", "val", "test") if k in record}))
    return DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])


class TrialRun:
    """The child run of one trial: params and config at start, metrics per epoch, a final status."""

    def __init__(self, info: TrackingInfo, name: str, params: Mapping[str, Any], config: Mapping[str, Any],
                 trial_key: str, device: str, continues: str | None = None, system_metrics: float = 0,
                 kind: str = "trial") -> None:
        """A new run, or with ``continues`` (the run of an earlier attempt that left a checkpoint) that run
        reopened: the trial goes on in it from the checkpoint's epoch. ``system_metrics``: seconds between
        the samples of MLflow's system metrics (:meth:`watch_system`), 0 for none. ``kind``: ``trial``, or
        ``phase`` for a shared phase (bench/phases.py), which the report and the API never read as a trial."""
        self.store = Store(info.uri)
        self.client = self.store.client
        self.info = info
        self.name = name
        self.monitor: Any = None
        if continues is not None:
            try:
                self.client.update_run(continues, status="RUNNING")
            except Exception:   # gone from the store (deleted): a new run then
                continues = None
            else:
                self.run_id = continues
                if ERROR_TAG in self.client.get_run(continues).data.tags:
                    self.client.delete_tag(continues, ERROR_TAG)   # the interruption is over
                self.watch_system(system_metrics, resume=True)
                return
        tags = {PARENT_TAG: info.parent_run_id, KIND_TAG: kind, TRIAL_KEY_TAG: trial_key,
                **provenance(device), **dict(info.tags)}
        run = self.client.create_run(info.experiment_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, _short(v)) for k, v in params.items()])
        self.client.log_dict(self.run_id, dict(config), TRIAL_CONFIG)
        if info.dataset:
            self.log_dataset(dataset_input(dict(info.dataset)))
        self.watch_system(system_metrics)

    def log_dataset(self, dataset: DatasetInput, attempts: int = 4) -> None:
        """The run's dataset input. Trials that start together log the same dataset: on a database server
        (PostgreSQL behind an `mlflow server`) the second insert of the experiment's new dataset row can fail on its
        key while the first commits; the dataset then exists, and logging again links it."""
        for attempt in range(attempts):
            try:
                self.client.log_inputs(self.run_id, datasets=[dataset])
                return
            except mlflow.exceptions.MlflowException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.25 * (attempt + 1))

    def watch_system(self, interval: float, resume: bool = False) -> None:
        """MLflow's system metrics on this run (``system/cpu_utilization_percentage``,
        ``system/system_memory_usage_megabytes``, disk and network; GPU utilisation and memory where nvidia-ml-py
        is importable), sampled every ``interval`` seconds by MLflow's ``SystemMetricsMonitor`` (the fluent
        ``log_system_metrics`` applies to runs it starts, not to these). The figures are the machine's and the
        card's, not this trial's alone. Nothing when ``interval`` is 0 or psutil is missing."""
        if interval <= 0:
            return
        try:
            # lazy: optional (psutil is what MLflow's CPU monitor reads; without it the run has no system metrics)
            import psutil  # noqa: F401
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # lazy: as psutil
        except ImportError:
            return
        quiet = logging.getLogger("mlflow.system_metrics")
        quiet.setLevel(logging.WARNING)   # its start and stop notices, on every trial
        self.monitor = SystemMetricsMonitor(self.run_id, sampling_interval=interval, resume_logging=resume,
                                            tracking_uri=self.info.uri)
        self.monitor.start()

    def _stop_watching(self) -> None:
        """Stop the sampling; a trial shorter than one interval still records the sample taken at its start."""
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        try:
            monitor.finish()
            if monitor._logging_step == 0:   # nothing published yet: the first sample, once
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()
        except Exception:   # a record of the machine, never a reason for a trial to fail
            pass

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, epoch) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):  # MLflow's per-request limit
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def copy_epochs(self, run_id: str, last: int) -> None:
        """Every metric run ``run_id`` logged for epochs 1 to ``last`` (a shared phase's), logged here at the same
        epochs: a branch's run shows its whole curve."""
        source = self.client.get_run(run_id).data.metrics
        metrics = [Metric(k, m.value, m.timestamp, m.step) for k in source
                   for m in self.client.get_metric_history(run_id, k) if 1 <= m.step <= last]
        for i in range(0, len(metrics), 1000):  # MLflow's per-request limit
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log_artifact(self, path: str | os.PathLike) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def set_tag(self, key: str, value: Any) -> None:
        self.client.set_tag(self.run_id, key, _short(value))

    def log_model(self, model: Any, example: Any, output: Any, step: int, requirements: list[str],
                  metadata: Mapping[str, Any] | None = None) -> str:
        """``model`` (a torch module, the trial's compact model) as an MLflow Model of the run: a logged model
        of the experiment named after the trial (:func:`model_name`), with the run's params and the metrics of
        ``step`` (its last epoch), a signature and input example (``example`` -> ``output``, numpy arrays), saved as a
        torch.export program (it loads without bench's code; a model torch.export cannot trace, or an MLflow
        without ``serialization_format``, before 3.10, pickles it instead) with ``requirements`` as its pip
        requirements (inferring them costs seconds); returns its model URI."""

        # the flavour's log_model writes through the fluent client's global URI; setting it also exports
        # MLFLOW_TRACKING_URI, which is put back afterwards (processes this one starts keep their own)
        exported = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.info.uri)
        signature = infer_signature(example, output)
        params = {k: _short(v) for k, v in self.client.get_run(self.run_id).data.params.items()}
        name = model_name(self.name)
        logged = self.client.create_logged_model(self.info.experiment_id, name=name, source_run_id=self.run_id,
                                                 params=params)
        kwargs = dict(name=name, model_id=logged.model_id, run_id=self.run_id, step=step,
                      signature=signature, input_example=example, pip_requirements=list(requirements),
                      metadata=dict(metadata or {}))
        try:
            info = _log_torch_model(model, kwargs)
        finally:
            if exported is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = exported
        return info.model_uri

    def finish(self, status: str = "FINISHED", error: BaseException | None = None) -> None:
        self._stop_watching()
        if error is not None:
            _set_error(self.client, self.run_id, "".join(traceback.format_exception(error)))
        self.client.set_terminated(self.run_id, status)
