"""The MLflow store: :class:`Store` reads and writes experiments, sweep runs, trial runs and artifacts through
one client; the store's address (``--tracking-uri``) is checked and made absolute here. What the runs hold is
described in bench/tracking/__init__.py.

The default store is sqlite at an absolute path (``<cwd>/mlflow.db``): Ray trials run in their own
working directories, so a relative URI would scatter stores. Artifacts of a sqlite store go beside the
database, in ``mlartifacts/``.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import getpass
import json
import logging
import os
import platform
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

from mlflow.exceptions import MlflowException

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in bench's output

from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from ..names import (  # noqa: E402
    ERROR_TAG,
    EXPERIMENT_KIND_TAG,
    GIT_COMMIT_TAG,
    GROWN_TAG,
    KIND_TAG,
    NOTE_TAG,
    PARENT_TAG,
    PROVENANCE_PREFIX,
    RESUMED_TAG,
    SOURCE_NAME_TAG,
    SOURCE_TYPE_TAG,
    SWEEP_CONFIG,
    SWEEP_KEY_TAG,
    TRIAL_KEY_TAG,
    USER_TAG,
)
from ..version import __version__  # noqa: E402

# MLflow announces the creation and migration of an sqlite store at INFO ("Creating initial MLflow database
# tables...", alembic's "Running upgrade ..."): routine for bench, which creates stores as needed
for _name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
    logging.getLogger(_name).setLevel(logging.WARNING)

EXPERIMENT_KIND = "custom_model_development"   # MLflow 3's UI: a model-training experiment, not a GenAI one


class TrackingError(RuntimeError):
    """The tracking store cannot be used (unreachable server, unwritable path)."""


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else sqlite at an absolute ``<cwd>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def normalize_uri(uri: str) -> str:
    """Make file-backed URIs absolute (trials run in other working directories)."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri[len("sqlite:///"):]
        if path and not path.startswith("/"):
            return f"sqlite:///{(Path.cwd() / path).resolve()}"
        return uri
    if parsed.scheme in ("", "file"):
        raise TrackingError(f"tracking URI {uri!r}: use sqlite:///PATH.db or http://HOST:PORT "
                            "(MLflow's file store is deprecated)")
    return uri


def check_tracking_uri(uri: str, timeout: float = 5.0, write: bool = True, existing: bool = False) -> None:
    """Fail fast, before any trial starts, if the store cannot be reached, or written (``write``; a command
    that only reads, such as ``bench report --no-attach``, passes False). ``existing``: a command that reads
    what a store holds (``bench resume``, ``bench report``, ``bench.load_results``) refuses an sqlite store that
    does not exist, before anything (the database, its folder, its lock) is created."""
    parsed = urlparse(uri)
    if existing and parsed.scheme == "sqlite" and not Path(uri[len("sqlite:///"):]).is_file():
        raise TrackingError(f"no tracking database at {uri[len('sqlite:///'):]} (nothing was created there): "
                            "run `bench run` with this --tracking-uri first, or pass the one the sweeps used")
    if parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
                if resp.status != 200:
                    raise TrackingError(f"MLflow server at {uri} answered {resp.status} on /health")
        except (urllib.error.URLError, OSError) as err:
            raise TrackingError(f"cannot reach the MLflow tracking server at {uri}: {err}. Start one with "
                                f"`mlflow server --host {parsed.hostname} --port {parsed.port}` or pick "
                                "another --tracking-uri") from None
    elif parsed.scheme.split("+")[0] in _DATABASE_PORTS:   # postgresql://, mysql+pymysql://, ...
        host, port = parsed.hostname or "localhost", parsed.port or _DATABASE_PORTS[parsed.scheme.split("+")[0]]
        try:   # MLflow retries an unreachable database for minutes; a TCP connection answers in seconds
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as err:
            raise TrackingError(f"cannot reach the tracking database at {host}:{port} ({parsed.scheme}): "
                                f"{err.strerror or err}; start it, or pick another --tracking-uri") from None
    elif parsed.scheme == "sqlite":
        db = Path(uri[len("sqlite:///"):])
        if not write:
            if db.exists():
                check_sqlite_store(db)
            return
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingError(f"cannot create the folder of the tracking database {db}: {err}") from None
        if not os.access(db.parent, os.W_OK):
            raise TrackingError(f"cannot write the tracking database {db}: {db.parent} is not writable")
        if db.exists():
            with _store_lock(uri):   # a store another command is creating right now is checked once it is whole
                check_sqlite_store(db)


_DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}   # SQLAlchemy stores MLflow takes


def check_sqlite_store(db: Path) -> None:
    """An existing sqlite store must be a whole MLflow database: a file that is not sqlite, or one whose
    creation was cut short (no MLflow tables), is named here instead of failing later with a traceback."""

    if not db.exists() or db.stat().st_size == 0:
        return
    with open(db, "rb") as f:
        header = f.read(16)
    if header != b"SQLite format 3\x00":
        raise TrackingError(f"the tracking database {db} is not an sqlite file (corrupt, or another kind of file); "
                            "move it away, or pick another --tracking-uri")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:
        raise TrackingError(f"cannot read the tracking database {db}: {err} (corrupt?); move it away, or pick "
                            "another --tracking-uri") from None
    if tables and not {"alembic_version", "experiments", "runs"} <= tables:
        raise TrackingError(f"the tracking database {db} is incomplete (its creation was interrupted, or it is "
                            "not an MLflow store); move it away, or pick another --tracking-uri")


@contextlib.contextmanager
def _store_lock(uri: str):
    """For an sqlite store, an exclusive lock on ``<db>.lock`` beside it: the first creation of the database
    and of an experiment are serialized between processes (concurrent creation breaks sqlite stores). A
    database this process created and could not finish is removed, so that no half-made store is left."""
    if not uri.startswith("sqlite:///"):
        yield
        return

    db = Path(uri[len("sqlite:///"):])
    if uri in _HELD:   # re-entered by this process: it holds the lock already
        yield
        return
    with open(f"{db}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _HELD.add(uri)
        new = not db.exists() or db.stat().st_size == 0
        try:
            yield
        except BaseException:
            if new and db.exists():
                db.unlink()
            raise
        finally:
            _HELD.discard(uri)
            fcntl.flock(lock, fcntl.LOCK_UN)


_READY: set[str] = set()   # sqlite stores this process has seen created
_HELD: set[str] = set()    # sqlite stores whose creation lock this process holds


def _client(uri: str) -> MlflowClient:
    """A client of the store; an sqlite store is created (or migrated) under the store's lock the first time
    this process touches it, so that two commands starting together in an empty folder cannot both create it."""
    if uri.startswith("sqlite:///") and uri not in _READY:
        db = Path(uri[len("sqlite:///"):])
        if db.is_file() and db.stat().st_size and not os.access(db.parent, os.W_OK):
            pass   # a whole store in a read-only folder, only read (bench report --no-attach): nothing to create
        else:
            with _store_lock(uri):
                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        _READY.add(uri)
    return MlflowClient(tracking_uri=uri)


def _search(client: MlflowClient, experiment_id: str, query: str, order_by: list[str] | None = None) -> list:
    """Every run matching ``query`` (all pages: a sweep can have more runs than one page holds)."""
    runs: list = []
    token = None
    while True:
        page = client.search_runs([experiment_id], query, order_by=order_by, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def provenance(device: str | None = None) -> dict[str, str]:
    """Library versions, the project version, the host and the device (``bench.*`` tags; the git commit is
    MLflow's own tag, :func:`source_tags`)."""
    p = PROVENANCE_PREFIX
    tags = {f"{p}version": __version__, f"{p}python": platform.python_version(), f"{p}host": platform.node()}
    tags.update({f"{p}{dist}": version for dist, version in _library_versions().items()})
    if device:
        tags[f"{p}device"] = device
    return tags


def source_tags() -> dict[str, str]:
    """MLflow's standard source tags, taken on the driver and given to every run of the sweep (a worker on
    another node may have no git checkout): the user, the program, and the project's git commit."""
    try:
        user = getpass.getuser()
    except Exception:   # no name for this uid (a container)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    tags = {USER_TAG: user, SOURCE_NAME_TAG: "bench", SOURCE_TYPE_TAG: "LOCAL"}
    commit = _git_commit()
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    return tags


@functools.cache
def _library_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing torchvision just to ask costs ~2 s)."""

    out = {}
    for dist in ("torch", "torchvision", "ray", "mlflow"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


@functools.cache
def _git_commit() -> str | None:
    here = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, (int, float)) else f"{value}"
    return text[:500]


def _set_error(client: MlflowClient, run_id: str, error: str) -> None:
    """The run's ``bench.error`` tag. The trial and the driver may close a run at the same moment (a stopped
    sweep): where the other one's tag went in first (sqlite's UNIQUE constraint on the tag), that one stays."""
    try:
        client.set_tag(run_id, ERROR_TAG, error[-5000:])
    except MlflowException as err:
        if "UNIQUE constraint" not in str(err) and "unique constraint" not in str(err).lower():
            raise


@dataclass(frozen=True)
class SweepRecord:
    """A sweep found in the store: its parent run, its name and saved config, and how it ended."""

    run_id: str
    name: str
    status: str
    key: str | None
    config: dict[str, Any]


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    name: str
    status: str
    kind: str | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]


class Store:
    """One MLflow store (``uri``: sqlite, an ``mlflow server``, a database): everything bench reads from and
    writes to it, through one client. Cheap to make; picklable (the client is made on first use)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client: MlflowClient | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "_client": None}

    @property
    def client(self) -> MlflowClient:
        """A client of the store; an sqlite store is created (or migrated) under the store's lock the first
        time this process touches it, so that two commands starting together in an empty folder cannot both
        create it."""
        if self._client is None:
            self._client = _client(self.uri)
        return self._client

    def prepare_experiment(self, experiment: str) -> str:
        """Create (or find) the experiment once, on the driver; returns its id. The store itself is created here
        when it does not exist yet, under a lock (:func:`_store_lock`)."""
        try:
            with _store_lock(self.uri):
                return self._find_or_create_experiment(experiment)
        except TrackingError:
            raise
        except Exception as err:  # MlflowException, sqlalchemy errors, connection errors
            raise TrackingError(f"cannot use the MLflow store {self.uri}: {type(err).__name__}: {err}") from None

    def _find_or_create_experiment(self, experiment: str) -> str:
        client = self.client
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise TrackingError(f"experiment {experiment!r} is deleted in {self.uri}; restore it or pick another "
                                    "--experiment")
            if EXPERIMENT_KIND_TAG not in found.tags:   # made before bench set it, or by hand
                client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            location = (Path(self.uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
        try:
            return client.create_experiment(experiment, artifact_location=location,
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except Exception:   # created meanwhile by another driver on the same server
            again = client.get_experiment_by_name(experiment)
            if again is None:
                raise
            return again.experiment_id

    def start_sweep_run(self, experiment_id: str, name: str, params: Mapping[str, Any],
                        sweep_config: Mapping[str, Any], sweep_key: str, unique: bool = False,
                        note: str | None = None, tags: Mapping[str, str] | None = None) -> tuple[str, str]:
        """Create a sweep's parent run; returns (run id, name). With ``unique`` (a default name), a name another
        sweep of the experiment has already gets a suffix (``-2``, ``-3``...): two sweeps started in the same
        second stay apart. For an sqlite store the choice and the creation happen under the store's lock.
        ``note`` (the command that made the sweep) becomes the run's description in the MLflow UI."""
        client = self.client
        with _store_lock(self.uri):
            if unique:
                taken = {r.info.run_name for r in _search(client, experiment_id, f"tags.`{KIND_TAG}` = 'sweep' and "
                                                                               f"attributes.run_name LIKE '{name}%'")}
                name = next(n for n in [name] + [f"{name}-{i}" for i in range(2, len(taken) + 3)] if n not in taken)
            run = client.create_run(experiment_id, run_name=name,
                                    tags={KIND_TAG: "sweep", SWEEP_KEY_TAG: sweep_key, **provenance(), **(tags or {}),
                                          **({NOTE_TAG: note} if note else {})})
        client.log_batch(run.info.run_id, params=[Param(k, _short(v)) for k, v in params.items()])
        client.log_dict(run.info.run_id, {**sweep_config, "name": name}, SWEEP_CONFIG)
        return run.info.run_id, name

    def update_sweep(self, run_id: str, sweep_config: Mapping[str, Any], sweep_key: str, added: str) -> None:
        """A grown sweep (bench/growth.py): its parent run's ``sweep.json`` and sweep key become the grown
        sweep's, and the tag ``bench.grown`` lists what each growth added (its first params stay as they were:
        MLflow params cannot change)."""
        client = self.client
        before = client.get_run(run_id).data.tags.get(GROWN_TAG)
        entry = f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {added}"
        client.log_dict(run_id, {**sweep_config, "name": client.get_run(run_id).info.run_name}, SWEEP_CONFIG)
        client.set_tag(run_id, SWEEP_KEY_TAG, sweep_key)
        client.set_tag(run_id, GROWN_TAG, (f"{before}\n{entry}" if before else entry)[-5000:])

    def find_sweeps(self, experiment_id: str, name: str | None = None, key: str | None = None) -> list[SweepRecord]:
        """Sweeps (parent runs) of an experiment, newest first, optionally only those of a name or sweep key."""

        client = self.client
        query = f"tags.`{KIND_TAG}` = 'sweep'"
        if name is not None:
            query += f" and attributes.run_name = '{name}'"
        if key is not None:
            query += f" and tags.`{SWEEP_KEY_TAG}` = '{key}'"
        out = []
        for run in _search(client, experiment_id, query, ["attributes.start_time DESC"]):
            path = client.download_artifacts(run.info.run_id, SWEEP_CONFIG)
            with open(path) as f:
                config = json.load(f)
            out.append(SweepRecord(run.info.run_id, run.info.run_name, run.info.status,
                                   run.data.tags.get(SWEEP_KEY_TAG), config))
        return out

    def experiment_names(self) -> list[str]:
        return [e.name for e in self.client.search_experiments()]

    def experiment_id_of(self, experiment: str) -> str | None:
        found = self.client.get_experiment_by_name(experiment)
        return None if found is None or found.lifecycle_stage == "deleted" else found.experiment_id

    def finished_trials(self, experiment_id: str, parent_run_id: str) -> dict[str, Any]:
        """The FINISHED child runs of a sweep by trial key (the earliest one when a trial finished twice)."""
        client = self.client
        runs = _search(client, experiment_id, f"tags.`{PARENT_TAG}` = '{parent_run_id}' and "
                                              "attributes.status = 'FINISHED'", ["attributes.start_time ASC"])
        out: dict[str, Any] = {}
        for run in runs:
            out.setdefault(run.data.tags.get(TRIAL_KEY_TAG), run)
        return out

    def reopen_run(self, run_id: str) -> None:
        """Mark a sweep's parent run RUNNING again (it is being resumed)."""
        client = self.client
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, RESUMED_TAG, time.strftime("%Y-%m-%d %H:%M:%S"))
        if ERROR_TAG in client.get_run(run_id).data.tags:
            client.delete_tag(run_id, ERROR_TAG)  # the interruption's note no longer applies

    def end_run(self, run_id: str, status: str = "FINISHED", error: str | None = None) -> None:
        client = self.client
        if error:
            client.set_tag(run_id, ERROR_TAG, error[-5000:])
        client.set_terminated(run_id, status)

    def close_open_children(self, experiment_id: str, parent_run_id: str, status: str = "KILLED",
                            error: str = "the sweep stopped before this trial finished",
                            trial_key: str | None = None) -> int:
        """Mark every child run of a sweep (of one trial, with ``trial_key``) still RUNNING as ``status``: its
        trial was stopped, its worker was lost, or the driver was killed. Returns how many runs were closed.
        """
        client = self.client
        query = f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'"
        if trial_key is not None:
            query += f" and tags.`{TRIAL_KEY_TAG}` = '{trial_key}'"
        runs = _search(client, experiment_id, query)
        for run in runs:
            _set_error(client, run.info.run_id, error)
            client.set_terminated(run.info.run_id, status)
        return len(runs)

    def get_run(self, run_id: str) -> RunRecord:
        """One run of the store; a clear error when it does not exist."""
        try:
            run = self.client.get_run(run_id)
        except Exception as err:
            raise TrackingError(f"no run {run_id!r} in {self.uri} ({type(err).__name__})") from None
        return RunRecord(run.info.run_id, run.info.run_name, run.info.status, run.data.tags.get(KIND_TAG),
                         dict(run.data.tags), dict(run.data.params), dict(run.data.metrics))

    def trial_runs(self, experiment_id: str, status: str | None = None) -> list[RunRecord]:
        """The trial runs of an experiment (all sweeps), optionally only those of a status."""
        query = f"tags.`{KIND_TAG}` = 'trial'" + (f" and attributes.status = '{status}'" if status else "")
        return [RunRecord(r.info.run_id, r.info.run_name, r.info.status, r.data.tags.get(KIND_TAG), dict(r.data.tags),
                          dict(r.data.params), dict(r.data.metrics))
                for r in _search(self.client, experiment_id, query, ["attributes.start_time ASC"])]

    def sweep_runs(self, experiment_id: str) -> list[RunRecord]:
        """The sweep (parent) runs of an experiment, oldest first."""
        return [RunRecord(r.info.run_id, r.info.run_name, r.info.status, r.data.tags.get(KIND_TAG), dict(r.data.tags),
                          dict(r.data.params), dict(r.data.metrics))
                for r in _search(self.client, experiment_id, f"tags.`{KIND_TAG}` = 'sweep'",
                                 ["attributes.start_time ASC"])]

    def metric_histories(self, run_id: str, keys) -> dict[str, list[tuple[int, float]]]:
        """Every logged value of each metric in ``keys``, as (step, value) pairs in step order."""
        client = self.client
        out = {}
        for key in keys:
            history = client.get_metric_history(run_id, key)
            out[key] = sorted((int(m.step), float(m.value)) for m in history)
        return out

    def read_json_artifact(self, run_id: str, name: str) -> Any:
        """A JSON artifact of a run (``sweep.json``, ``config.json``); None when the run has none."""

        with tempfile.TemporaryDirectory() as folder:
            path = self.download_artifact(run_id, name, folder)
            return None if path is None else json.loads(path.read_text())

    def log_json_artifact(self, run_id: str, name: str, value: Any) -> None:
        """``value`` as the JSON artifact ``name`` of a run."""
        self.client.log_dict(run_id, value, name)

    def attach_files(self, run_id: str, paths: Sequence[str | os.PathLike], artifact_path: str) -> None:
        """Log these files as artifacts of a run, under ``artifact_path`` (replacing earlier copies)."""
        client = self.client
        for path in paths:
            client.log_artifact(run_id, str(path), artifact_path)

    def download_artifact(self, run_id: str, name: str, folder: str | os.PathLike) -> Path | None:
        """Download one artifact of a run into ``folder``; None when the run has no such artifact."""
        client = self.client
        if name not in {f.path for f in client.list_artifacts(run_id)}:
            return None
        return Path(client.download_artifacts(run_id, name, str(folder)))

    def registered_model(self, run_id: str, name: str) -> tuple[str, int]:
        """Register the compact model logged by a trial run under ``name`` in the Model Registry; returns (name,
        version). A clear error when the run logged none (it did not finish, or ran before bench logged models)."""
        client = self.client
        run = client.get_run(run_id)
        outputs = [o.model_id for o in (run.outputs.model_outputs if run.outputs else [])]
        if not outputs:
            raise TrackingError(f"run {run_id} has no logged model to register (only finished trials log their "
                                "compact model)")
        try:
            client.create_registered_model(name)
        except MlflowException as err:
            if "already exists" not in str(err).lower() and "ALREADY_EXISTS" not in str(err.error_code):
                raise TrackingError(f"cannot register a model named {name!r}: {err.message}") from None
        version = client.create_model_version(name, f"models:/{outputs[-1]}", run_id=run_id, model_id=outputs[-1])
        return version.name, int(version.version)

    def runs_page(self, experiment: str | None = None) -> str:
        """The MLflow UI's address (after host and port) of an experiment's training runs: ``experiment``, else
        the one a sweep wrote last; the UI's root when the store has none. ``workflowType=machine_learning``
        keeps MLflow 3's UI out of its GenAI view, which it shows by default."""
        if self.uri.startswith("sqlite:///") and not Path(self.uri[len("sqlite:///"):]).exists():
            return "/"
        try:
            client = self.client
            if experiment is not None:
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    names = ", ".join(sorted(self.experiment_names())) or "none"
                    raise TrackingError(f"no experiment {experiment!r} in {self.uri} (it has: {names})")
                experiment_id = found.experiment_id
            else:
                ids = [e.experiment_id for e in client.search_experiments()]
                sweeps = client.search_runs(ids, f"tags.`{KIND_TAG}` = 'sweep'", order_by=["attributes.start_time DESC"],
                                            max_results=1) if ids else []
                if not sweeps:
                    return "/"
                experiment_id = sweeps[0].info.experiment_id
        except TrackingError:
            raise
        except Exception:   # a store the UI will explain better
            return "/"
        return f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning"

    def log_summary(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Summary metrics on a sweep's run (trials finished and failed per method, accuracy at each target):
        what compares sweeps in MLflow's runs table."""
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        client = self.client
        for i in range(0, len(items), 1000):
            client.log_batch(run_id, metrics=items[i:i + 1000])
