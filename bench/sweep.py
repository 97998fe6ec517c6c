"""Ray Tune runs every sweep: the only module that imports ray.

Each trial (method x swept value x seed) is one Tune trial running :func:`bench.trainer.train` in a Ray
actor, logging to its own MLflow child run and reporting every epoch to Tune. The dataset is put in Ray's
object store once (``tune.with_parameters``) and read zero-copy by every trial on the node. Actors are
reused between trials. A failed trial is a row in the results, never the end of the sweep.

Without ``--ray-address`` (or ``RAY_ADDRESS``) a local Ray starts with the command and stops with it.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ray._private import services
from ray._private.utils import get_num_cpus
from tqdm import tqdm

from .progress import Eta
from .recording import TrialRecorder
from .trainer import resolve_device
from .usercode import load_plugins

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # keep Tune's own tables quiet; progress is ours
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Tune's automatic TensorBoard logger imports tensorboardX on the driver and writes event files nobody reads
# here (MLflow is the record); the JSON and CSV loggers it would add too are passed explicitly below.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Keeping few checkpoints per trial (CheckpointConfig(num_to_keep=2)) makes Tune snapshot its experiment state
# at every checkpoint, and warn when that happens often; the snapshot is a small JSON written where the
# checkpoints go, and bench resumes from MLflow and the checkpoints themselves, not from that state
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from . import checkpoints, guard, phases, quiet  # noqa: E402,F401  (quiet: filters on Ray's loggers)
from . import names as N
from .config import SweepConfig, TrialConfig  # noqa: E402
from .datatypes import Dataset, StreamData  # noqa: E402
from .outcomes import TrialOutcome, error_text, finished_outcome  # noqa: E402
from .tracking import Store, TrackingInfo  # noqa: E402


class ClusterError(RuntimeError):
    """The Ray cluster cannot be reached or cannot run the sweep."""


def _run_trial(config: dict[str, Any], data: Dataset | StreamData, tracking: TrackingInfo, threads: int,
               plugins: tuple[str, ...] = (), storage: str = "ray_results") -> None:
    """Tune's function trainable: one trial, recorded by bench/recording.py's :class:`TrialRecorder` and reported
    to Tune every epoch with a checkpoint of the epoch (the two newest kept per trial: bench/checkpoints.py). A
    trial that an earlier attempt (a retry, or the sweep before it was interrupted) left a checkpoint of continues
    from that epoch in the same MLflow run; a branch of a shared phase without one starts from the phase's."""
    torch.set_num_threads(max(1, threads))
    load_plugins(plugins)
    trial = TrialConfig.from_dict(config["trial"])   # validated on the driver; carries its name and key
    key = trial.key
    device = str(resolve_device(trial.train.device))
    # the newest checkpoint an earlier attempt left (verified, read as tensors and plain data only); a resumed
    # sweep is a new Tuner with new trial ids, so checkpoints are found by the trial key and the sweep's run
    earlier = phases.start_of(trial, storage, tracking.parent_run_id, device)
    recorder = TrialRecorder(trial, key, data, tracking, device, _tune_report, earlier)
    try:
        last = phases.run(trial, data, recorder)   # a trial, or a shared phase up to its split
        why = trial.overshoot({**last, "epoch": recorder.reported.get("epoch", 0)}) \
            if recorder.reported.get("epoch", 0) < trial.train.epochs else None
        if why is not None:   # a probe stopped early: its run FINISHED, the tag says why (an overshoot)
            recorder.run.set_tag(N.OVERSHOOT_TAG, why)
    except (KeyboardInterrupt, SystemExit) as err:  # Ray stops a trial with SystemExit inside tune.report
        recorder.close("KILLED", err)
        raise
    except BaseException as err:
        recorder.close("FAILED", err)
        raise
    recorder.close("FINISHED")


def _tune_report(metrics: dict[str, Any], folder: Path | None) -> None:
    """An epoch's metrics to Tune, with the checkpoint in ``folder`` (the last epoch has none)."""
    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder is not None else None)


class _Progress(tune.Callback):
    """One line per trial epoch on the driver (trial, epoch, accuracy, filters left) and the sweep's progress
    with the time it has left (bench/progress.py): a status line at each trial's end and every ``every``
    seconds, or, on a terminal, a live line under the others (tqdm)."""

    def __init__(self, trials: list[TrialConfig], write: Callable[[str], None], total: int | None = None,
                 epochs: int = 0, on_disk_full: Callable[[str], None] | None = None, bound: int | None = None,
                 every: float = 30.0) -> None:

        self.total = total if total is not None else len(trials)   # 0: unknown (a target search)
        self.epochs = epochs or (trials[0].train.epochs if trials else 0)
        self.write = write
        self.on_disk_full = on_disk_full
        self.done = 0
        self.keys: dict[str, str] = {}   # Tune's trial id -> the trial's key (a result may come back without config)
        self.start = time.monotonic()
        self.eta = Eta(self.total or bound or 0, self.epochs, bound=not self.total)
        self.every, self.last_status = every, self.start
        self.bar = None
        if write is print and sys.stdout.isatty() and os.get_terminal_size(sys.stdout.fileno()).columns >= 40:

            self.bar = tqdm(total=max(1, self.eta.total * self.eta.epochs), unit="trial-epoch", leave=False,
                            dynamic_ncols=True, bar_format="{bar:20} {desc}")
            self.write = self.bar.write

    def status(self, force: bool = False) -> None:
        """The progress line (or the live line's text), at most every ``every`` seconds unless ``force``."""
        if self.bar is not None:
            self.bar.n = self.eta.epochs_done
            self.bar.set_description_str(f"[{self._elapsed()}] {self.eta.line()}", refresh=True)
        elif force or time.monotonic() - self.last_status >= self.every:
            self.last_status = time.monotonic()
            self.write(f"[{self._elapsed()}] progress {self.eta.line()}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _name(self, trial) -> str:
        self.keys[trial.trial_id] = trial.config["trial"]["key"]
        return trial.config["trial"]["name"]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.eta.started(trial.trial_id)
        self.write(f"[{self._elapsed()}] start  {self._name(trial)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if N.PHASE_SPLIT in result:   # a shared phase's end, not an epoch (bench/phases.py)
            return self.write(f"[{self._elapsed()}] split  {self._name(trial)} in epoch {result[N.PHASE_SPLIT]}")
        self.write(f"[{self._elapsed()}] {self._name(trial):<28} epoch {int(result['epoch']):>3}/"
                   f"{trial.config['trial']['train']['epochs']}  "
                   f"acc {result[N.TEST_ACCURACY]:.4f}  loss {result[N.TRAIN_LOSS]:.4f}  "
                   f"sparsity {result[N.TOTAL_SPARSITY]:6.1%}  filters {N.filters_line(result)}  "
                   f"({result.get('epoch_time_s', 0):.1f}s/epoch)")
        self.eta.epoch(trial.trial_id, int(result["epoch"]))
        self.status()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        self.eta.ended(trial.trial_id)
        self.write(f"[{self._elapsed()}] done   {self._name(trial)}  ({self._count()})")
        self.status(force=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.write(f"[{self._elapsed()}] retry  {self._name(trial)} after an error "
                   f"(failure {trial.run_metadata.num_failures})")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        self.eta.ended(trial.trial_id)
        self.write(f"[{self._elapsed()}] FAILED {self._name(trial)}  ({self._count()}); "
                   f"error in {trial.storage.trial_fs_path if trial.storage else '?'}")
        self.status(force=True)
        try:
            text = Path(trial.error_file).read_text()[-50000:] if trial.error_file else ""
        except OSError as err:
            text = str(err)
        if self.on_disk_full is not None and guard.disk_full(text):
            self.on_disk_full(trial.storage.trial_fs_path if trial.storage else "?")

    def _count(self) -> str:
        return f"{self.done}/{self.total} trials" if self.total else f"{self.done} trials done"

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


def local_cpus() -> int:
    """CPUs this process may really use: the smaller of its CPU affinity (what a batch system's allocation
    restricts) and Ray's own cgroup-aware count (a container's quota)."""
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    try:
        counts.append(int(get_num_cpus()))
    except Exception:   # a private helper: fall back on the affinity when it moves
        pass
    return max(1, min(counts))


def local_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_local_resources(cpus_per_trial: float, gpus_per_trial: float | None, ray_cpus: int | None = None
                          ) -> None:
    """Before a local Ray starts: one trial must fit this machine, else Ray would wait for it forever."""
    cpus, gpus = ray_cpus or local_cpus(), local_gpus()
    if cpus_per_trial > cpus:
        where = f"the local Ray's --ray-cpus {cpus}" if ray_cpus else \
            f"this machine: {cpus} CPU(s) available to this process"
        raise ClusterError(f"--cpus-per-trial {cpus_per_trial:g} does not fit {where}; ask for at most that many, "
                           "or join a larger cluster with --ray-address")
    if (gpus_per_trial or 0) > gpus:
        raise ClusterError(f"--gpus-per-trial {gpus_per_trial:g} does not fit this machine: {gpus} GPU(s) "
                           "available; use 0 on a machine without GPUs")


def check_cluster_fits(cpus_per_trial: float, gpus_per_trial: float, device: str) -> None:
    """Once joined: some live node must hold one trial's CPUs and GPUs, and a CUDA device needs GPUs."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    fits = [r for r in nodes if r.get("CPU", 0) >= cpus_per_trial and r.get("GPU", 0) >= gpus_per_trial]
    if not fits:
        have = "; ".join(f"{r.get('CPU', 0):g} CPUs, {r.get('GPU', 0):g} GPUs" for r in nodes) or "no live node"
        raise ClusterError(f"no node of the Ray cluster fits one trial ({cpus_per_trial:g} CPUs, {gpus_per_trial:g} "
                           f"GPUs per trial); its nodes have: {have}")
    if device.startswith("cuda") and gpus_per_trial <= 0:
        raise ClusterError(f"--device {device} needs GPUs, and the Ray cluster has none (or --gpus-per-trial is 0)")


def trial_gpus(sweep: SweepConfig) -> float:
    """GPUs per trial: as given, else 1 when the cluster has GPUs and the device may be CUDA, else 0."""
    if sweep.gpus_per_trial is not None:
        return sweep.gpus_per_trial
    return 1.0 if sweep.train.device != "cpu" and cluster_gpus() > 0 else 0.0


def connect(address: str | None, ray_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` or start a local Ray of ``ray_cpus`` CPUs (default: :func:`local_cpus`);
    returns True when a local Ray was started."""
    address = check_ray_address(address)
    try:
        if address:
            LOCAL_RAY_GROUPS.clear()
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            return False
        # address="local": always a Ray of its own, never one that a `ray start` left (or still runs) here;
        # its processes in a session of their own, so a SIGTERM to this command's process group reaches the
        # driver alone, which stops the sweep gracefully and stops them
        with _own_session():
            ray.init(address="local", num_cpus=ray_cpus or local_cpus(), include_dashboard=False,
                     logging_level="WARNING", log_to_driver=False, _node_ip_address="127.0.0.1")
        LOCAL_RAY_GROUPS[:] = _own_groups()
        _private_token()
        return True
    except Exception as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ClusterError(f"cannot start or join {where}: {type(err).__name__}: {err}") from None


LOCAL_RAY_GROUPS: list[int] = []   # the process groups of the local Ray this driver started


def _own_groups() -> list[int]:
    """This process's children that lead a process group of their own: the local Ray's processes."""
    me, groups = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        if int(fields[1]) == me and int(fields[2]) == pid:   # ppid, pgrp
            groups.append(pid)
    return sorted(groups)


@contextlib.contextmanager
def _own_session():
    """While a local Ray starts: its processes (GCS, raylet and through it every worker) are started in a
    session of their own. Ray has no option for it, so its process class gets ``start_new_session``; where Ray
    no longer has that class, nothing changes (a group SIGTERM then reaches Ray too, and the guardian closes
    the records). They still die with the driver: Ray starts them with kernel fate-sharing (PR_SET_PDEATHSIG)."""

    original = getattr(services, "ConsolePopen", None)
    if original is None:
        yield
        return

    class OwnSession(original):   # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = OwnSession
    try:
        yield
    finally:
        services.ConsolePopen = original


def _private_token() -> None:
    """Ray's token (its default for a local Ray: ``~/.ray/auth_token``) readable by its owner only: it is the
    one barrier before the local Ray's ports (docs/sweeps.md: Security). Ray writes it world-readable."""
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        if path.is_file() and path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:
        pass


class ray_session:
    """Ray for the length of a command: joined at the sweep's address, or a local one started and stopped here;
    ``with ray_session(sweep) as summary`` checks that one trial fits the cluster before anything else.

    While it lasts, SIGTERM (``kill PID``, ``timeout``, a batch scheduler's time limit) stops the sweep as
    Ctrl-C does: gracefully, unfinished trials marked KILLED, resumable. Ray's own SIGTERM handler (installed by
    ``ray.init``) would abort the process instead. When the whole process group is terminated, the local Ray
    dies with it and cannot stop the trials gracefully: after ``grace`` seconds the callback given to
    :meth:`on_abort` closes the records and the process exits 130 without waiting on Ray.
    """

    def __init__(self, sweep: SweepConfig, grace: float = 5.0) -> None:
        self.sweep = sweep
        self.grace = grace
        self._abort: Callable[[], None] | None = None
        self._timer: threading.Timer | None = None
        self._previous: Any = None
        self.terminated = False   # a SIGTERM arrived: what fails after it is part of the stop

    def on_abort(self, callback: Callable[[], None]) -> None:
        self._abort = callback

    def __enter__(self) -> str:
        address = self.sweep.ray_address or os.environ.get("RAY_ADDRESS") or None
        connect(address, self.sweep.ray_cpus)
        try:
            check_cluster_fits(self.sweep.cpus_per_trial, trial_gpus(self.sweep), self.sweep.train.device)
        except BaseException:
            ray.shutdown()
            raise
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_sigterm)
        return cluster_summary() + (f" at {address}" if address else " (local)")

    def __exit__(self, *exc: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        ray.shutdown()  # stops a local Ray; from a cluster it only disconnects this driver
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _on_sigterm(self, signum, frame) -> None:
        self.terminated = True
        if self._timer is None:
            self._timer = threading.Timer(self.grace, self._hard_stop)
            self._timer.daemon = True
            self._timer.start()
        handler = signal.getsignal(signal.SIGINT)  # Ray Tune's graceful stop while a sweep runs
        if callable(handler) and handler is not self._on_sigterm:
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    def _hard_stop(self) -> None:
        try:
            if self._abort is not None:
                self._abort()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def cluster_summary() -> str:
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return f"{nodes} node{'s' * (nodes != 1)}, {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"


class TargetSearcher(Searcher):
    """Ray Tune's side of a target search (bench/targets.py): the sweep's fixed trials first (the baselines),
    then the probes its searches propose, as many at once as Tune has room for; every finished probe is handed
    back to its search. FINISHED once every search has settled all its targets."""

    def __init__(self, sweep: SweepConfig, fixed: list[TrialConfig], searches: list) -> None:
        super().__init__(metric=N.TEST_ACCURACY, mode="max")
        self.sweep, self.queue, self.searches = sweep, list(fixed), searches
        self.asked: dict[str, tuple[Any, float]] = {}

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.queue:
            trial = self.queue.pop(0)
            return {"trial": trial.payload()}
        for search in self.searches:
            value = search.propose()
            if value is not None:
                self.asked[trial_id] = (search, value)
                trial = self.sweep.probe(search.method, value, search.seed)
                return {"trial": trial.payload()}
        if not self.asked and all(s.finished for s in self.searches):
            return Searcher.FINISHED
        return None

    def save(self, checkpoint_path: str) -> None:
        """Tune's periodic snapshot of the searcher (``bench resume`` rebuilds searches from MLflow instead:
        a probe is recorded there when it finishes, this snapshot only every few seconds)."""
        with open(checkpoint_path, "wb") as f:
            pickle.dump((self.queue, self.searches, self.asked), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.queue, self.searches, self.asked = pickle.load(f)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.asked:
            return
        search, value = self.asked.pop(trial_id)
        done = not error and result is not None and result.get("epoch") == self.sweep.train.epochs
        bound = not error and result is not None and not done and \
            self.sweep.probe(search.method, value, search.seed).overshoot(result) is not None
        search.record(value, result if done or bound else None, (result or {}).get(N.RUN_ID_KEY),
                      failed=not (done or bound), bound=bound)


class _StopAll(tune.Stopper):
    """Stops every trial once :meth:`trip` is called (a full disk: no trial can go on writing)."""

    def __init__(self) -> None:
        self.tripped = False

    def trip(self) -> None:
        self.tripped = True

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.tripped


#: how many times one sweep's trials start again after Ray lost their workers (its memory monitor killed them)
LOST_WORKER_RESTARTS = 3


def run_sweep(sweep: SweepConfig, trials: list[TrialConfig], data: Dataset | StreamData, tracking: TrackingInfo,
              write: Callable[[str], None] = print, run_name: str | None = None, searches: list | None = None,
              reserve: guard.Reserve | None = None, restarts: int = 0) -> list[TrialOutcome]:
    """Run ``trials`` on Ray Tune (connected with :func:`ray_session`); one outcome per trial. With
    ``searches`` (a target search: ``SweepConfig.searches``, possibly holding probes of an earlier run), the
    trials run first and the searches' probes after them; the outcomes then hold every probe too.

    A trial that raises is retried up to ``sweep.max_failures`` times (each attempt is its own MLflow run),
    then recorded FAILED; the others go on. A trial whose worker was lost has its run closed FAILED here. A
    trial that met a full disk stops the sweep: ``reserve`` (space set aside by the driver) is freed so that
    every run can be closed, and the other trials are stopped (KILLED, resumable once space is back). Workers
    Ray lost in a way Tune does not handle (its memory monitor killing them while they train ends ``fit`` with
    a RuntimeError) have their runs closed KILLED, and the trials not finished start again from their checkpoints,
    up to :data:`LOST_WORKER_RESTARTS` times.
    """
    stopper = _StopAll()

    def disk_full(where: str) -> None:
        if stopper.tripped:
            return
        if reserve is not None:
            reserve.release()
        stopper.trip()
        write(f"no space left on device (a trial's error in {where}): stopping every trial; free space, then "
              "resume the sweep")

    gpus = trial_gpus(sweep)
    cpus = sweep.cpus_per_trial
    trainable = tune.with_resources(
        tune.with_parameters(_run_trial, data=data, tracking=tracking, threads=max(1, int(cpus)),
                             plugins=tuple(sweep.plugins), storage=os.path.abspath(sweep.storage_path)),
        {"cpu": cpus, "gpu": gpus})
    epochs = max([sweep.train.epochs, *(t.train.epochs for t in trials)])   # a Scratch-B control's are more
    progress = _Progress(trials, write, None if searches is None else 0, epochs, on_disk_full=disk_full,
                         bound=len(trials) + sum(s.max_probes for s in searches or ()))
    if searches is None:
        space, search = {"trial": tune.grid_search([t.payload() for t in trials])}, {}
    else:
        budget = len(trials) + sum(s.max_probes for s in searches)
        space, search = {}, {"search_alg": TargetSearcher(sweep, trials, searches), "num_samples": budget}
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=sweep.max_concurrent or None, **search,
                                    trial_name_creator=lambda t: t.config["trial"]["name"],
                                    trial_dirname_creator=lambda t: f"{t.trial_id}"),
        run_config=tune.RunConfig(name=run_name or f"{sweep.experiment_name}-{tracking.parent_run_id[:8]}",
                                  storage_path=os.path.abspath(sweep.storage_path), verbose=0,
                                  stop=stopper,
                                  callbacks=[progress,
                                             JsonLoggerCallback(),
                                             CSVLoggerCallback()],
                                  failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=checkpoints.KEEP)),
    )
    try:
        grid = tuner.fit()  # Ray Tune stops gracefully on Ctrl-C and returns what it has
    except RuntimeError as err:
        if not isinstance(err.__cause__, ray.exceptions.RayError):
            raise
        lost = str(err.__cause__).strip().splitlines()[0]
        store = Store(tracking.uri)
        store.close_open_children(tracking.experiment_id, tracking.parent_run_id, "KILLED", f"Ray lost its worker: {lost}")
        if searches is not None or restarts >= LOST_WORKER_RESTARTS:
            raise ClusterError(f"Ray lost trial workers ({lost}){' again' * (restarts > 0)}: the sweep stopped, its "
                               "runs are closed and `bench resume` continues it without redoing finished work; when "
                               "Ray's memory monitor killed them, free memory or lower --max-concurrent") from None
        done = store.finished_trials(tracking.experiment_id, tracking.parent_run_id)
        left = [t for t in trials if t.key not in done]
        write(f"ray    lost trial workers ({lost}): {len(left)} unfinished trial(s) start again from their "
              f"checkpoints ({restarts + 1} of at most {LOST_WORKER_RESTARTS}); lower --max-concurrent if it recurs")
        return [finished_outcome(t, done[t.key]) for t in trials if t.key in done] + (run_sweep(
            sweep, left, data, tracking, write, f"{run_name}-restart{restarts + 1}" if run_name else None, None,
            reserve, restarts + 1) if left else [])
    finally:
        progress.close()
        sys.stdout.flush()
    outcomes = collect_outcomes(grid, trials, probes=searches is not None, ids=progress.keys)
    for o in outcomes:
        if o.status == "FAILED":  # the trial closes its own run; a lost worker cannot
            Store(tracking.uri).close_open_children(tracking.experiment_id, tracking.parent_run_id, "FAILED",
                                o.error or "failed", trial_key=o.key)
    return outcomes


def collect_outcomes(grid, trials: list[TrialConfig], probes: bool = False, ids: dict[str, str] | None = None
                     ) -> list[TrialOutcome]:
    """One outcome per trial: FINISHED (all epochs reported), FAILED (raised) or KILLED (stopped or never run);
    with ``probes``, also one per trial a target search added. ``ids``: trial keys by Tune's trial id (its
    folder's name), for a result that comes back without its config (a worker killed while it started)."""
    by_key = {t.key: t for t in trials}
    if probes:
        for result in grid:
            if result.config and "trial" in result.config:
                trial = TrialConfig.from_dict(result.config["trial"])
                by_key.setdefault(trial.key, trial)
        trials = list(by_key.values())
    outcomes: dict[str, TrialOutcome] = {}
    for result in grid:
        metrics = dict(result.metrics or {})
        key = metrics.get(N.TRIAL_KEY)
        if key is None and result.config and "trial" in result.config:
            key = result.config["trial"]["key"]
        if key is None and result.path:
            key = (ids or {}).get(Path(result.path).name)
        if key not in by_key:
            continue
        trial = by_key[key]
        if result.error is not None:   # Tune's text of it where the worker died before raising anything
            error = error_text(result.error) if isinstance(result.error, BaseException) else next(
                (line for line in str(result.error).splitlines() if line and not line.startswith("Failure #")), "")
            outcomes[key] = TrialOutcome(trial.name, "FAILED", metrics, error, key, trial)
        elif metrics.get("epoch") == trial.train.epochs or N.PHASE_SPLIT in metrics:   # a phase ends at its split
            outcomes[key] = TrialOutcome(trial.name, "FINISHED", metrics, key=key, trial=trial)
        elif (why := trial.overshoot(metrics)) is not None:   # a probe stopped past every target: search data
            outcomes[key] = TrialOutcome(trial.name, "OVERSHOT", metrics, why, key, trial)
        else:
            outcomes[key] = TrialOutcome(trial.name, "KILLED", metrics, "stopped before its last epoch", key, trial)
    for key, trial in by_key.items():
        outcomes.setdefault(key, TrialOutcome(trial.name, "KILLED", {}, "not run", key, trial))
    return [outcomes[t.key] for t in trials]
