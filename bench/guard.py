"""The sweep's guardian: a small process that outlives a driver killed without a chance to close its records.

``bench run`` starts one per sweep (in a session of its own, so a signal to the driver's process group does not
reach it) once the sweep's MLflow parent run exists. It waits for the driver's process to end; if the parent run
is still RUNNING then (the driver was SIGKILLed, or Ray terminated it: when a whole process group is sent
SIGTERM, the local Ray's object store dies with it and Ray's core worker ends the driver with exit status 1
before it can stop gracefully), it marks every RUNNING run of the sweep KILLED with the reason, so that nothing
is left running and ``bench resume`` continues the sweep. A driver that ends normally has closed its runs
itself; the guardian sees the closed run and exits.

    python -m bench.guard PID URI EXPERIMENT_ID PARENT_RUN_ID [PGID,...]

The process groups are those of the local Ray the driver started (each of its processes in a session of its
own, bench/sweep.py): whatever of them outlives the driver is ended.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .config import ConfigError

REASON = "the sweep's driver ended without closing this run (killed, or its local Ray died with it)"


@contextlib.contextmanager
def exclusive(uri: str, parent_run_id: str, name: str) -> Iterator[None]:
    """One driver per sweep on this machine: an exclusive lock on a file named after the store and the sweep's
    run (under ``~/.cache/bench/running``), held while the sweep runs and released when its driver ends, however
    it ends. A second ``bench run --resume`` or ``bench resume`` of a running sweep is refused, naming the
    driver that holds it (a sweep's drivers on other machines are not seen)."""

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bench" / "running"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{uri} {parent_run_id}".encode()).hexdigest()[:32]
    path = folder / f"{digest}.lock"
    lock = open(path, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise ConfigError(f"sweep {name!r} is running now ({holder}); wait for it to end, or stop it (Ctrl-C, "
                          "or SIGTERM to that process) before resuming it") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"bench pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    lock.flush()
    try:
        yield
    finally:
        lock.close()


# what a full disk or quota says, through the layers that meet it first (the OS, sqlite, pyarrow, MLflow)
DISK_FULL = ("No space left on device", "database or disk is full", "[Errno 28]", "Disk quota exceeded",
             "[Errno 122]")


def disk_full(text: str | None) -> bool:
    return text is not None and any(marker in text for marker in DISK_FULL)


class Reserve:
    """A few MiB set aside on the disks a sweep writes (its sqlite store's folder, its storage path) while it
    runs: when a trial meets a full disk, :meth:`release` frees them so that the runs can still be closed
    FAILED or KILLED and the checkpoints' records stay whole, instead of being left RUNNING. One file per disk
    (``.bench-reserve-PID``); files a dead driver left are removed when the next sweep sets aside its own."""

    SIZE = 4 << 20

    def __init__(self, folders: list[str | os.PathLike]) -> None:
        self.files: list[Path] = []
        devices = set()
        for folder in folders:
            path = Path(folder).absolute()
            try:
                path.mkdir(parents=True, exist_ok=True)
                device = path.stat().st_dev
            except OSError:
                continue
            if device in devices:
                continue
            devices.add(device)
            for stale in path.glob(".bench-reserve-*"):
                pid = stale.name.rpartition("-")[2]
                if pid.isdigit() and not _alive(int(pid)):
                    stale.unlink(missing_ok=True)
            target = path / f".bench-reserve-{os.getpid()}"
            try:
                target.unlink(missing_ok=True)   # a new file: never written through a link left at its name
                with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600),
                               "wb") as f:
                    f.write(b"\0" * self.SIZE)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as err:
                target.unlink(missing_ok=True)
                raise ConfigError(f"{path}: cannot write {self.SIZE >> 20} MiB there ({err.strerror or err}): the "
                                  "disk is full; free space before running the sweep") from None
            self.files.append(target)

    def release(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)
        self.files = []


def start(uri: str, experiment_id: str, parent_run_id: str, groups: Sequence[int] = ()) -> subprocess.Popen | None:
    """Start the guardian of this process's sweep; None where it cannot start (the sweep runs unguarded).
    ``groups``: the process groups of the local Ray this driver started, ended by the guardian once the driver
    is gone (Ray's own processes die with the driver, the agents the raylet started would linger)."""
    try:
        return subprocess.Popen([sys.executable, "-m", "bench.guard", str(os.getpid()), uri, experiment_id,
                                 parent_run_id, ",".join(map(str, groups))], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True)
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def watch(pid: int, uri: str, experiment_id: str, parent_run_id: str, poll: float = 0.2, check: float = 5.0,
          groups: Sequence[int] = ()) -> int:
    """Wait for ``pid`` to end, then end what is left of the local Ray's process ``groups`` and close the
    sweep's runs if it left them RUNNING; returns how many. Without groups, ends early, doing nothing, once the
    sweep's run is closed (every ``check`` seconds)."""

    from .tracking import Store  # lazy: keeps bench --help free of mlflow

    store = Store(uri)
    last = time.monotonic()
    while _alive(pid):
        time.sleep(poll)
        if not groups and time.monotonic() - last > check:
            last = time.monotonic()
            if store.get_run(parent_run_id).status != "RUNNING":
                return 0
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if store.get_run(parent_run_id).status != "RUNNING":
        return 0
    closed = store.close_open_children(experiment_id, parent_run_id, "KILLED", REASON)
    store.end_run(parent_run_id, "KILLED", REASON)
    return closed + 1


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4],
          groups=[int(g) for g in (sys.argv[5] if len(sys.argv) > 5 else "").split(",") if g])
