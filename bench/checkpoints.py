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
- a checkpoint written before records held a hash cannot be verified: skipped (the trial starts over);
- a file that matches its record but is not a trial's state (a well-formed ``torch.save`` of something else
  whose hash was written into the record, a state of another model): :class:`CheckpointError` too. Its contents
  are checked against what a trial's state holds (:func:`contents_problem`: its keys, the epoch, and, given the
  sweep's :class:`Expected`, the model's parameter names and shapes, the masks and the method's state), before
  any trial starts (:func:`check_sweep`) and again where a trial loads it (:func:`latest`).

No ray, no mlflow: sweep.py writes and finds checkpoints through this module, session.py checks them.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

STATE = "trial_state.pt"           # a checkpoint's snapshot (bench.trainer.train's keep)
INFO = "bench_checkpoint.json"     # its record: trial key, epoch, runs, the state file's size and sha256
KEEP = 2                           # checkpoints kept per trial: the newest may be cut short by a full disk
_ZIP = b"PK\x03\x04"               # how a torch.save archive starts


class CheckpointError(RuntimeError):
    """A checkpoint that does not match its record, holds more than tensors and plain data, or is not the state
    of a trial of this sweep."""


# what a trial's state (bench.trainer's snapshot) holds at its top level, and the type of each entry
SNAPSHOT_KEYS: dict[str, type | tuple[type, ...]] = {
    "epoch": int, "step": int, "model": dict, "optimizer": dict, "masks": dict, "method": dict, "rng": dict,
    "last": dict}
RNG_KEYS = ("generator", "torch", "numpy", "python")


@dataclass(frozen=True)
class Expected:
    """What the states of a sweep's trials must hold: the model's state (parameter and buffer names with their
    shapes), the masks' (unit names with their shapes) and, per trial key that is known in advance (not a target
    search's probes, nor the controls, which a Scratch-B makes longer), its epochs and the top-level keys of its
    method's state (``Method.state_dict``)."""

    model: Mapping[str, tuple[int, ...]]
    masks: Mapping[str, tuple[int, ...]]
    method: Mapping[str, Collection[str]] = field(default_factory=dict)
    epochs: Mapping[str, int] = field(default_factory=dict)


def _shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}


def _differs(what: str, got: Mapping[str, tuple[int, ...]], want: Mapping[str, tuple[int, ...]]) -> str | None:
    """How ``got`` (names -> shapes) differs from ``want``, in a few words, or None."""
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        parts = ([f"lacks {', '.join(missing[:3])}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")]
                 if missing else []) + ([f"has {', '.join(extra[:3])} it should not"
                                         + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")] if extra else [])
        return f"its {what} {' and '.join(parts)}"
    wrong = [k for k in want if tuple(got[k]) != tuple(want[k])]
    if wrong:
        return f"its {what} {wrong[0]} has shape {tuple(got[wrong[0]])}, not {tuple(want[wrong[0]])}"
    return None


def contents_problem(snapshot: Any, info: Mapping[str, Any], expected: Expected | None = None) -> str | None:
    """Why a loaded state is not the state of a trial of this sweep (a few words), or None when it is: its
    top-level keys and their types, its epoch against the record's, its random states; with ``expected``,
    the epoch within the trial's, the model's and the masks' names and shapes, the method's state keys."""
    if not isinstance(snapshot, dict):
        return f"it holds a {type(snapshot).__name__}, not a trial's state"
    missing = [k for k in SNAPSHOT_KEYS if k not in snapshot]
    if missing:
        return f"it lacks {', '.join(repr(k) for k in missing)} (it holds {', '.join(map(repr, list(snapshot)[:5]))})"
    for key, kind in SNAPSHOT_KEYS.items():
        if not isinstance(snapshot[key], kind) or (kind is int and isinstance(snapshot[key], bool)):
            return f"its {key!r} is a {type(snapshot[key]).__name__}"
    if snapshot["epoch"] != info.get("epoch"):
        return f"it is the state of epoch {snapshot['epoch']}, its record says epoch {info.get('epoch')}"
    if not all(k in snapshot["rng"] for k in RNG_KEYS) or not isinstance(snapshot["masks"].get("masks"), dict):
        return "its random states or masks are incomplete"
    if expected is None:
        return None
    epochs = expected.epochs.get(str(info.get("trial_key")))
    if snapshot["epoch"] < (0 if "part" in snapshot else 1) or (epochs is not None and snapshot["epoch"] >= epochs):
        return f"its epoch {snapshot['epoch']} is not one a trial of {epochs or 'its'} epochs keeps"
    wrong = _differs("model", _shapes(snapshot["model"]), expected.model) or \
        _differs("masks", _shapes(snapshot["masks"]["masks"]), expected.masks)
    if wrong:
        return wrong
    keys = expected.method.get(str(info.get("trial_key")))
    if keys is not None and set(snapshot["method"]) != set(keys):
        return (f"its method state holds {sorted(snapshot['method'])}, the trial's method keeps {sorted(keys)}")
    return None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(folder: Path, state: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """The checkpoint of one epoch in ``folder``: the state file, then its record with its size and hash."""

    path = Path(folder) / STATE
    torch.save(dict(state), path)
    record = {**info, "size": path.stat().st_size, "sha256": sha256(path)}
    (Path(folder) / INFO).write_text(json.dumps(record))


def _records(storage: str | os.PathLike, parent_run_id: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every checkpoint of the sweep run ``parent_run_id`` under ``storage``: (folder, record)."""
    for path in Path(storage).absolute().glob(f"*/*/checkpoint_*/{INFO}"):   # named whole in messages
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

    path = folder / STATE
    try:
        with warnings.catch_warnings():   # a foreign pickle's protocol: it is refused just below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} holds more than tensors and plain data, or is not a checkpoint "
                              f"({first[:200]}); it is not loaded") from None


def _refusal(folder: Path, why: str) -> str:
    return (f"refusing to resume from a checkpoint: {why}. bench loads only checkpoints it wrote; delete the "
            f"folder {folder} to continue that trial from an earlier checkpoint (or from its start), after checking "
            "who could write there")


def latest(storage: str | os.PathLike, key: str, parent_run_id: str, map_location: Any = None,
           note: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest usable checkpoint a trial (``key``) of the sweep run left under ``storage``: (snapshot,
    record), or None. An incomplete or unverifiable one is skipped for the one before it (``note`` hears
    why); an altered one, or one that is not a trial's state, raises :class:`CheckpointError` naming it."""
    found = sorted(((folder, info) for folder, info in _records(storage, parent_run_id)
                    if info.get("trial_key") == key),   # a shared phase's split after its epoch's checkpoint
                   key=lambda c: (-int(c[1].get("epoch", 0)), -int(bool(c[1].get("split")))))
    for folder, info in found:
        wrong = problem(folder, info)
        if wrong is not None and wrong[0] == "altered":
            raise CheckpointError(wrong[1])
        if wrong is not None:
            if note is not None:
                note(f"checkpoint of epoch {info.get('epoch')} skipped: {wrong[1]}")
            continue
        snapshot = load(folder, map_location)
        why = contents_problem(snapshot, info)
        if why is not None:
            raise CheckpointError(_refusal(folder, f"{folder / STATE} is not a trial's state: {why}"))
        return snapshot, info
    return None


def check_sweep(storage: str | os.PathLike, parent_run_id: str,
                expected: Callable[[], Expected] | None = None) -> list[str]:
    """Before a sweep is resumed: every checkpoint it left is verified against its record, read with the safe
    loader and its contents checked (:func:`contents_problem`; ``expected`` is called once, when there is a
    checkpoint to check). Raises :class:`CheckpointError` naming the first one that was altered, holds more than
    tensors and plain data, or is not a trial's state of this sweep (and what to do); returns a note per
    checkpoint that will be skipped."""
    notes = []
    want: Expected | None = None
    for folder, info in _records(storage, parent_run_id):
        wrong = problem(folder, info)
        if wrong is None:
            try:
                snapshot = load(folder, "cpu")
                if want is None and expected is not None:
                    want = expected()
                why = contents_problem(snapshot, info, want)
                if why is not None:
                    wrong = ("altered", f"{folder / STATE} is not the state of a trial of this sweep: {why}")
            except CheckpointError as err:
                wrong = ("altered", str(err))
        if wrong is None:
            continue
        if wrong[0] == "altered":
            raise CheckpointError(_refusal(folder, wrong[1]))
        notes.append(f"checkpoint of epoch {info.get('epoch')} of a trial skipped: {wrong[1]}")
    return notes
