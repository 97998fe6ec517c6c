"""How trials and sweeps end: a trial's outcome (status, last metrics, error), the sweep's status and the
command's exit status derived from them. Plain data; imports nothing of Ray or MLflow."""
from __future__ import annotations

import re
import traceback
from dataclasses import dataclass, field
from typing import Any

from . import guard
from . import names as N
from .config import TrialConfig

EXIT_OK = 0
EXIT_TRIALS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

NO_SPACE = "no space left on device"   # a FAILED outcome's error when the disk was full


@dataclass
class TrialOutcome:
    """One trial's end as the sweep saw it (its last reported metrics, the error's last line)."""

    name: str
    status: str                       # FINISHED / FAILED / KILLED
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    key: str | None = None
    trial: TrialConfig | None = field(default=None, repr=False, compare=False)


def finished_outcome(trial: TrialConfig, run: Any) -> TrialOutcome:
    """The outcome of a trial that finished in an earlier run, from that MLflow run's last metrics (a probe it
    stopped at an overshoot: OVERSHOT, data of its search, not a point to interpolate)."""
    why = run.data.tags.get(N.OVERSHOOT_TAG)
    return TrialOutcome(trial.name, "OVERSHOT" if why else "FINISHED",
                        {**run.data.metrics, N.RUN_ID_KEY: run.info.run_id}, why, key=trial.key, trial=trial)


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def error_text(error: BaseException) -> str:
    """The one line a failed trial's error comes down to: its type, its message's last line and where it was
    raised (``KeyError: 'epoch' (at bench/recording.py:124 in __init__)``); a full disk said as such."""
    cause = getattr(error, "cause", None) or error
    if guard.disk_full(str(error)) or guard.disk_full(str(cause)):
        return f"{NO_SPACE}: {type(cause).__name__}"
    kind = type(cause).__name__
    text = str(cause).strip().splitlines()
    last = text[-1].strip() if text else ""
    line = last if last.startswith(kind) else f"{kind}: {last}" if last else kind
    where = raised_at(error)
    return line + (f" (at {where})" if where else "")


def raised_at(error: BaseException) -> str | None:
    """Where an error was raised, as ``path:line in function`` with the path from the package down
    (``bench/trainer.py``, ``methods/l1.py``, a user's file by its name): the innermost frame of the worker's
    traceback that Ray's error carries as text, else of the error's own traceback."""
    frames = [(f, int(n), fn) for f, n, fn in _FRAME.findall(str(error))]
    cause = getattr(error, "cause", None) or error
    if not frames and cause.__traceback__ is not None:
        frames = [(f.filename, f.lineno or 0, f.name) for f in traceback.extract_tb(cause.__traceback__)]
    if not frames:
        return None
    path, line, function = frames[-1]
    parts = path.replace("\\", "/").split("/")
    for package in ("bench", "methods"):
        if package in parts[:-1]:
            parts = parts[len(parts) - 1 - parts[::-1].index(package):]
            break
    else:
        parts = parts[-1:]
    return f"{'/'.join(parts)}:{line} in {function}"


def ending(outcomes: list) -> tuple[str, int, str | None]:
    """How a sweep ended from its trials' outcomes: (the parent run's status, the exit status, a note).

    Any trial KILLED (interrupted or never run): KILLED, 130. Else any FAILED: the sweep FAILED when every
    trial failed, FINISHED otherwise, exit 1. Else FINISHED, 0."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("FINISHED", "FAILED", "KILLED")}
    problems = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if s != "FINISHED" and n)
    note = f"{problems} of {len(outcomes)} trials" if problems else None
    if counts["KILLED"]:
        return "KILLED", EXIT_INTERRUPTED, note
    if counts["FAILED"]:
        return ("FAILED" if counts["FAILED"] == len(outcomes) else "FINISHED"), EXIT_TRIALS_FAILED, note
    return "FINISHED", EXIT_OK, note
