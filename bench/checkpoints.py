"""Trial checkpoints on disk: written with their size and SHA-256, read back only as tensors and plain data.

A trial's per-epoch checkpoint is a folder of two files: ``trial_state.pt`` (the trainer's snapshot,
``torch.save``) and ``bench_checkpoint.json`` (the trial key, the epoch, the MLflow run and sweep run, and the
state file's ``size`` and ``sha256``). Ray Tune copies the folder into the sweep's storage path
(``<storage>/<tuner run>/<trial>/checkpoint_NNNNNN/``) and keeps the two newest of each trial.

Reading is safe by construction: ``torch.load(..., weights_only=True)``, whose unpickler builds tensors,
numbers, strings and containers and refuses anything else (a pickle that would run code raises instead), and
only after the file matched its record. The storage path is a folder every node of a cluster reaches, so what
it holds is checked, not trusted:

- a state file shorter than its record that is the start of a ``torch.save`` archive is an interrupted copy
  (a full disk, a killed copy): skipped, the trial continues from its previous checkpoint;
- any other mismatch (another size, another hash: the file was replaced or altered) or a file the safe loader
  refuses: :class:`CheckpointError`, which ``bench resume`` reports before any work (:func:`check_sweep`);
- a checkpoint written before records held a hash cannot be verified: skipped (the trial starts over).

No ray, no mlflow: sweep.py writes and finds checkpoints through this module, session.py checks them.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

STATE = "trial_state.pt"           # a checkpoint's snapshot (bench.trainer.train's keep)
INFO = "bench_checkpoint.json"     # its record: trial key, epoch, runs, the state file's size and sha256
KEEP = 2                           # checkpoints kept per trial: the newest may be cut short by a full disk
_ZIP = b"PK\x03\x04"               # how a torch.save archive starts


class CheckpointError(RuntimeError):
    """A checkpoint that does not match its record or holds more than tensors and plain data."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(folder: Path, state: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """The checkpoint of one epoch in ``folder``: the state file, then its record with its size and hash."""
    import torch

    path = Path(folder) / STATE
    torch.save(dict(state), path)
    record = {**info, "size": path.stat().st_size, "sha256": sha256(path)}
    (Path(folder) / INFO).write_text(json.dumps(record))


def _records(storage: str | os.PathLike, parent_run_id: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every checkpoint of the sweep run ``parent_run_id`` under ``storage``: (folder, record)."""
    for path in Path(storage).glob(f"*/*/checkpoint_*/{INFO}"):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):   # a record being written, or cut short
            continue
        if isinstance(info, dict) and info.get("parent_run_id") == parent_run_id:
            yield path.parent, info


def problem(folder: Path, info: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why the checkpoint in ``folder`` cannot be used, as (kind, text), or None when its state file matches
    its record. Kinds: ``incomplete`` and ``unverifiable`` (skipped), ``altered`` (refused)."""
    path = folder / STATE
    if not path.is_file():
        return "incomplete", f"{path} is missing"
    if "sha256" not in info or "size" not in info:
        return "unverifiable", f"{path} has no size and hash in its record (written by an earlier bench)"
    size = path.stat().st_size
    if size < int(info["size"]):
        with open(path, "rb") as f:
            if f.read(4) == _ZIP:
                return "incomplete", f"{path} holds {size} of its {info['size']} bytes (its copy was cut short)"
    if size != int(info["size"]) or sha256(path) != info["sha256"]:
        differs = f"{size} bytes against the {info['size']} it recorded" if size != int(info["size"]) else \
            "its SHA-256 differs from the one it recorded"
        return "altered", f"{path} is not the file the trial wrote ({differs}): it was replaced or altered since"
    return None


def load(folder: Path, map_location: Any = None) -> dict[str, Any]:
    """The snapshot of a checkpoint, read with torch's safe loader (tensors and plain data only)."""
    import pickle

    import torch

    path = folder / STATE
    try:
        with warnings.catch_warnings():   # a foreign pickle's protocol: it is refused just below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} holds more than tensors and plain data, or is not a checkpoint "
                              f"({first[:200]}); it is not loaded") from None


def latest(storage: str | os.PathLike, key: str, parent_run_id: str, map_location: Any = None,
           note: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest usable checkpoint a trial (``key``) of the sweep run left under ``storage``: (snapshot,
    record), or None. An incomplete or unverifiable one is skipped for the one before it (``note`` hears
    why); an altered one raises :class:`CheckpointError`."""
    found = sorted(((folder, info) for folder, info in _records(storage, parent_run_id)
                    if info.get("trial_key") == key), key=lambda c: -int(c[1].get("epoch", 0)))
    for folder, info in found:
        wrong = problem(folder, info)
        if wrong is not None and wrong[0] == "altered":
            raise CheckpointError(wrong[1])
        if wrong is not None:
            if note is not None:
                note(f"checkpoint of epoch {info.get('epoch')} skipped: {wrong[1]}")
            continue
        return load(folder, map_location), info
    return None


def check_sweep(storage: str | os.PathLike, parent_run_id: str) -> list[str]:
    """Before a sweep is resumed: every checkpoint it left is verified against its record and read with the
    safe loader. Raises :class:`CheckpointError` naming the first one that was altered or holds more than
    tensors and plain data (and what to do); returns a note per checkpoint that will be skipped."""
    notes = []
    for folder, info in _records(storage, parent_run_id):
        wrong = problem(folder, info)
        if wrong is None:
            try:
                load(folder, "cpu")
            except CheckpointError as err:
                wrong = ("altered", str(err))
        if wrong is None:
            continue
        if wrong[0] == "altered":
            raise CheckpointError(f"refusing to resume from a checkpoint: {wrong[1]}. bench loads only "
                                  f"checkpoints it wrote; delete the folder {folder} to continue that trial "
                                  "from an earlier checkpoint (or from its start), after checking who could "
                                  "write there")
        notes.append(f"checkpoint of epoch {info.get('epoch')} of a trial skipped: {wrong[1]}")
    return notes
