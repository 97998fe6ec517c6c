"""Ray Tune runs every sweep: the only module that imports ray.

Each trial (method x swept value x seed) is one Tune trial running :func:`bench.trainer.train` in a Ray
actor, logging to its own MLflow child run and reporting every epoch to Tune. The dataset is put in Ray's
object store once (``tune.with_parameters``) and read zero-copy by every trial on the node. Actors are
reused between trials. A failed trial is a row in the results, never the end of the sweep.

Without ``--ray-address`` (or ``RAY_ADDRESS``) a local Ray starts with the command and stops with it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # keep Tune's own tables quiet; progress is ours
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Tune's automatic TensorBoard logger imports tensorboardX on the driver and writes event files nobody reads
# here (MLflow is the record); the JSON and CSV loggers it would add too are passed explicitly below.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback  # noqa: E402

from . import metrics as M  # noqa: E402
from .config import SweepConfig, TrialConfig  # noqa: E402
from .data import Dataset  # noqa: E402
from .tracking import TrackingInfo, TrialRun, close_open_children  # noqa: E402


class _NoTuneRestoreHint(logging.Filter):
    """Tune suggests ``Tuner.restore`` after an interruption; bench resumes with ``bench resume`` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


logging.getLogger("ray.tune.tune").addFilter(_NoTuneRestoreHint())


class ClusterError(RuntimeError):
    """The Ray cluster cannot be reached or cannot run the sweep."""


@dataclass
class TrialOutcome:
    name: str
    status: str                       # FINISHED / FAILED / KILLED
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    key: str | None = None


def trial_params(trial: TrialConfig) -> dict[str, Any]:
    """The short flat params of a trial's MLflow run."""
    t = trial.train
    params: dict[str, Any] = {"method": trial.method, "seed": trial.seed, "model": t.model, "dataset": t.dataset,
                              "epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr, "momentum": t.momentum,
                              "weight_decay": t.weight_decay, "zeroing": trial.zeroing,
                              "limit_train": t.limit_train, "limit_test": t.limit_test}
    params.update(trial.options)  # the swept value (lam / ratio) and the method's options
    if trial.sweep_axis is not None:
        params["sweep_axis"] = trial.sweep_axis
    return {k: v for k, v in params.items() if v is not None}


def _run_trial(config: dict[str, Any], data: Dataset, tracking: TrackingInfo, threads: int,
               plugins: tuple[str, ...] = ()) -> None:
    """Tune's function trainable: one trial, logged to MLflow and reported to Tune every epoch."""
    import torch

    from methods import load_plugins

    from .trainer import resolve_device, train

    torch.set_num_threads(max(1, threads))
    load_plugins(plugins)
    trial = TrialConfig.from_dict(config["trial"])
    device = str(resolve_device(trial.train.device))
    run = TrialRun(tracking, trial.name, trial_params(trial),
                   {"trial": trial.to_dict(), "trial_key": trial.key, "device": device,
                    "data": {"name": data.name, "source": data.source, "train": len(data.train_x),
                             "test": len(data.test_x)}},
                   trial.key, device)

    def report(epoch: int, values: dict[str, float]) -> None:
        run.log_epoch(epoch, values)
        tune.report({**values, "epoch": epoch, "trial_key": trial.key, "mlflow_run_id": run.run_id})

    def finish(model, structure) -> dict[str, float]:
        """The compact model: measured, saved as the run's ``compact_model.pt``."""
        import tempfile
        from pathlib import Path

        from .compact import FIRST_FILTERS, measure, save_compact, save_first_filters

        small, values = measure(model, structure, data.input_shape)
        removed = {layer: structure.by_name[layer].module.out_channels - n
                   for layer, n in M.alive_filters(structure).items()}
        with tempfile.TemporaryDirectory() as folder:
            path = save_compact(Path(folder) / "compact_model.pt", small, trial.train.model, data.input_shape,
                                data.num_classes, removed)
            run.log_artifact(path)
            run.log_artifact(save_first_filters(Path(folder) / FIRST_FILTERS, model, structure))
        run.set_tag("bench.filters_removed", sum(removed.values()))
        return values

    try:
        train(trial, data, report, finish)
    except (KeyboardInterrupt, SystemExit) as err:  # Ray stops a trial with SystemExit inside tune.report
        run.finish("KILLED", err)
        raise
    except BaseException as err:
        run.finish("FAILED", err)
        raise
    run.finish("FINISHED")


class _Progress(tune.Callback):
    """One line per trial epoch on the driver: trial, epoch, accuracy, filters left."""

    def __init__(self, trials: list[TrialConfig], write: Callable[[str], None]) -> None:
        self.total = len(trials)
        self.epochs = trials[0].train.epochs if trials else 0
        self.write = write
        self.done = 0
        self.start = time.monotonic()

    def _name(self, trial) -> str:
        return TrialConfig.from_dict(trial.config["trial"]).name

    def on_trial_start(self, iteration, trials, trial, **info):
        self.write(f"[{self._elapsed()}] start  {self._name(trial)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        filters = " ".join(f"{layer} {n}" for layer, n in M.filters_by_layer(result).items())
        self.write(f"[{self._elapsed()}] {self._name(trial):<28} epoch {int(result['epoch']):>3}/{self.epochs}  "
                   f"acc {result[M.TEST_ACCURACY]:.4f}  loss {result[M.TRAIN_LOSS]:.4f}  "
                   f"sparsity {result[M.TOTAL_SPARSITY]:6.1%}  filters {filters}  "
                   f"({result.get('epoch_time_s', 0):.1f}s/epoch)")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        self.write(f"[{self._elapsed()}] done   {self._name(trial)}  ({self.done}/{self.total} trials)")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.write(f"[{self._elapsed()}] retry  {self._name(trial)} after an error "
                   f"(failure {trial.run_metadata.num_failures})")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        self.write(f"[{self._elapsed()}] FAILED {self._name(trial)}  ({self.done}/{self.total} trials); "
                   f"error in {trial.storage.trial_fs_path if trial.storage else '?'}")

    def _elapsed(self) -> str:
        s = int(time.monotonic() - self.start)
        return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


def check_ray_address(address: str | None) -> str | None:
    """Fail fast when the cluster at ``address`` (or ``$RAY_ADDRESS``) cannot be reached; returns the address.

    ``ray.init`` retries an unreachable address for a long time before failing; a TCP connection to the
    head's GCS port answers in seconds.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address or address in ("auto", "local"):
        return address
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"Ray address {address!r} is not HOST:PORT (the address `ray start --head` prints)")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as err:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {err}. Start one with "
                           f"`ray start --head --port {port}` or leave out --ray-address (and RAY_ADDRESS) to run "
                           "on a local Ray") from None
    return address


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` or start a local Ray; returns True when a local Ray was started."""
    address = check_ray_address(address)
    try:
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            return False
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)
        return True
    except Exception as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ClusterError(f"cannot start or join {where}: {type(err).__name__}: {err}") from None


@contextlib.contextmanager
def ray_session(address: str | None):
    """Ray for the length of a command: joined at ``address``, or a local one started and stopped here.

    While it lasts, SIGTERM (``kill PID``, a batch scheduler's time limit) stops the sweep as Ctrl-C does:
    gracefully, unfinished trials marked KILLED, resumable. Ray's own SIGTERM handler (installed by
    ``ray.init``) would abort the process instead.
    """
    connect(address)
    previous = signal.getsignal(signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, _sigterm_as_sigint)
    try:
        yield
    finally:
        ray.shutdown()  # stops a local Ray; from a cluster it only disconnects this driver
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _sigterm_as_sigint(signum, frame) -> None:
    handler = signal.getsignal(signal.SIGINT)  # Ray Tune's graceful stop while a sweep runs
    if callable(handler) and handler is not _sigterm_as_sigint:
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def cluster_summary() -> str:
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return f"{nodes} node{'s' * (nodes != 1)}, {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"


def run_sweep(sweep: SweepConfig, trials: list[TrialConfig], data: Dataset, tracking: TrackingInfo,
              write: Callable[[str], None] = print, run_name: str | None = None) -> list[TrialOutcome]:
    """Run ``trials`` on Ray Tune (connected with :func:`ray_session`); one outcome per trial.

    A trial that raises is retried up to ``sweep.max_failures`` times (each attempt is its own MLflow run),
    then recorded FAILED; the others go on. A trial whose worker was lost has its run closed FAILED here.
    """
    gpus = sweep.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if sweep.train.device != "cpu" and cluster_gpus() > 0 else 0.0
    cpus = sweep.cpus_per_trial
    trainable = tune.with_resources(
        tune.with_parameters(_run_trial, data=data, tracking=tracking, threads=max(1, int(cpus)),
                             plugins=tuple(sweep.plugins)),
        {"cpu": cpus, "gpu": gpus})
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([t.to_dict() for t in trials])},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=sweep.max_concurrent or None,
                                    trial_name_creator=lambda t: TrialConfig.from_dict(t.config["trial"]).name,
                                    trial_dirname_creator=lambda t: f"{t.trial_id}"),
        run_config=tune.RunConfig(name=run_name or f"{sweep.experiment_name}-{tracking.parent_run_id[:8]}",
                                  storage_path=os.path.abspath(sweep.storage_path), verbose=0,
                                  callbacks=[_Progress(trials, write), JsonLoggerCallback(), CSVLoggerCallback()],
                                  failure_config=tune.FailureConfig(max_failures=sweep.max_failures)),
    )
    try:
        grid = tuner.fit()  # Ray Tune stops gracefully on Ctrl-C and returns what it has
    finally:
        sys.stdout.flush()
    outcomes = collect_outcomes(grid, trials)
    for o in outcomes:
        if o.status == "FAILED":  # the trial closes its own run; a lost worker cannot
            close_open_children(tracking.uri, tracking.experiment_id, tracking.parent_run_id, "FAILED",
                                o.error or "failed", trial_key=o.key)
    return outcomes


def collect_outcomes(grid, trials: list[TrialConfig]) -> list[TrialOutcome]:
    """One outcome per trial: FINISHED (all epochs reported), FAILED (raised) or KILLED (stopped or never run)."""
    by_key = {t.key: t for t in trials}
    outcomes: dict[str, TrialOutcome] = {}
    for result in grid:
        metrics = dict(result.metrics or {})
        key = metrics.get("trial_key")
        if key is None and result.config and "trial" in result.config:
            key = TrialConfig.from_dict(result.config["trial"]).key
        if key not in by_key:
            continue
        trial = by_key[key]
        if result.error is not None:
            outcomes[key] = TrialOutcome(trial.name, "FAILED", metrics, _error_text(result.error), key)
        elif metrics.get("epoch") == trial.train.epochs:
            outcomes[key] = TrialOutcome(trial.name, "FINISHED", metrics, key=key)
        else:
            outcomes[key] = TrialOutcome(trial.name, "KILLED", metrics, "stopped before its last epoch", key)
    for key, trial in by_key.items():
        outcomes.setdefault(key, TrialOutcome(trial.name, "KILLED", {}, "not run", key))
    return [outcomes[t.key] for t in trials]


def _error_text(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(cause).__name__
