"""``--init-from``: start every trial from trained weights.

The file is a state dict (``torch.save(model.state_dict(), PATH)``), or a checkpoint that holds one under
``state_dict`` or ``model`` (a ``module.`` prefix from DataParallel is dropped), as torchvision and timm save
them. It is loaded with ``weights_only=True``: no pickled code runs.

Every key must match the model's in name and shape, with one exception: the classifier head (the tensors whose
first dimension is the dataset's class count in the model and something else in the file) is re-initialised
when the file was trained on another number of classes, and a notice says so; ``--strict-head`` refuses instead.
A mismatch names the first mismatching keys; the check runs before any trial starts.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class WeightsError(ValueError):
    """An ``--init-from`` file that cannot be loaded into the model."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"--init-from {path}: no such file") from None
    except Exception as err:
        raise WeightsError(f"--init-from {path}: not a readable torch file ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(saved, Mapping) and isinstance(saved.get(key), Mapping):
            saved = saved[key]
            break
    if not isinstance(saved, Mapping) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise WeightsError(f"--init-from {path}: expected a state dict (a mapping of names to tensors)")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in saved.items()}


def load_initial_weights(model: nn.Module, path: str | Path, num_classes: int | None = None,
                         strict_head: bool = False) -> list[str]:
    """Load ``path`` into ``model`` in place (module docstring); returns the notices to print."""
    given = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    wrong = [k for k in own if k in given and given[k].shape != own[k].shape]
    head = [k for k in wrong if num_classes is not None and own[k].dim() >= 1 and own[k].shape[0] == num_classes
            and given[k].shape[1:] == own[k].shape[1:]]
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    other = [k for k in wrong if k not in head or strict_head]
    if other:
        problems.append("shape mismatch " + ", ".join(f"{k} (file {tuple(given[k].shape)}, model "
                                                       f"{tuple(own[k].shape)})" for k in other[:3])
                        + (f" and {len(other) - 3} more" if len(other) > 3 else ""))
    if problems:
        hint = " (--strict-head is set: a classifier of another class count is refused)" if strict_head and head else ""
        raise WeightsError(f"--init-from {path} does not fit the model: " + "; ".join(problems) + hint)
    model.load_state_dict({k: v for k, v in given.items() if k not in head}, strict=False)
    if head:
        return [f"--init-from {path}: classifier {', '.join(head)} has {given[head[0]].shape[0]} classes in the file, "
                f"{num_classes} here: re-initialised"]
    return []


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
