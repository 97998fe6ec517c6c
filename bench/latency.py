"""Latency that means something: ``bench report --latency`` times each finished trial's compact model against
the dense model after the sweep, one model at a time, with nothing else training.

A trial's speed-up at a batch size is the median over ``rounds`` of dense / compact, each round timing both
(``compact.latency_ms``: torch.utils.benchmark's median over blocks) in alternating order (dense first on even
rounds, compact first on odd ones), so that neither always runs on a cooler or warmer machine. The noise floor is
the dense model (the trials' architecture, freshly initialised: latency does not depend on the weights) timed
against a copy of itself the same way: the range of those ratios is what a speed-up must
leave to mean anything (the report marks one inside it as within noise). Results go to the sweeps' runs as
``latency.json`` (records, one per trial and batch, and the dense-against-dense ranges), which the report reads.
"""
from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import names as N
from .compact import latency_ms, load_compact, read_compact_info
from .models import build_model, rebuildable
from .tracking import Store

BATCHES = (1, 64)
ROUNDS = 5           # alternating rounds per trial and batch
MIN_RUN_TIME = 0.2   # seconds of timing per model and round (torch.utils.benchmark's blocked_autorange)


def paired(a: torch.nn.Module, b: torch.nn.Module, input_shape: Sequence[int], batch: int, rounds: int,
           min_run_time: float) -> dict[str, float]:
    """``a`` against ``b``, ``rounds`` times in alternating order: the medians of each one's latency (ms) and of
    the per-round ratio a / b, with the ratio's range."""
    ta, tb, ratios = [], [], []
    for r in range(rounds):
        order = (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a))
        got = {key: latency_ms(model, input_shape, batch, min_run_time) for key, model in order}
        ta.append(got["a"])
        tb.append(got["b"])
        ratios.append(got["a"] / got["b"])
    return {"a_ms": statistics.median(ta), "b_ms": statistics.median(tb), "ratio": statistics.median(ratios),
            "low": min(ratios), "high": max(ratios)}


def measure_sweeps(uri: str, sweeps: Sequence[dict[str, Any]], trials: Any, rounds: int | None = None,
                   batches: Sequence[int] | None = None, min_run_time: float | None = None,
                   log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Time every finished trial of ``trials`` (the report's trial table) against its dense model; returns the
    records and logs them as ``latency.json`` on each sweep's run where ``uri`` can be written (else only
    returned). One record per trial and batch; a record with ``trial`` None is the dense-against-dense noise."""
    rounds, batches = rounds or ROUNDS, batches or BATCHES
    min_run_time = MIN_RUN_TIME if min_run_time is None else min_run_time
    store = Store(uri)
    records: list[dict[str, Any]] = []
    dense_of: dict[tuple, torch.nn.Module] = {}
    finished = trials[trials["status"] == "FINISHED"]
    start = time.monotonic()
    log(f"latency: {len(finished)} finished trial(s), batches {', '.join(map(str, batches))}, {rounds} rounds each, "
        f"{torch.get_num_threads()} torch threads")
    with tempfile.TemporaryDirectory() as folder:
        for i, (_, t) in enumerate(finished.iterrows(), start=1):
            path = store.download_artifact(t["run_id"], N.COMPACT_MODEL, f"{folder}/{t['run_id']}")
            if path is None:
                log(f"latency: {t['trial']}: no compact model, skipped")
                continue
            small, info = _compact_model(store, t["run_id"], path, folder)
            if small is None:
                log(f"latency: {t['trial']}: {info}, skipped")
                continue
            shape = tuple(info["input_shape"])
            key = (info["model"], shape, int(info["num_classes"]))
            if key not in dense_of:
                dense_of[key] = build_model(info["model"], shape, int(info["num_classes"])).eval()
                for b in batches:   # the noise floor: the dense model against itself
                    noise = paired(dense_of[key], copy.deepcopy(dense_of[key]), shape, b, rounds, min_run_time)
                    records.append({"trial": None, "model": info["model"], "batch": b, "noise_low": noise["low"],
                                    "noise_high": noise["high"], "dense_ms": noise["a_ms"]})
            for b in batches:
                got = paired(dense_of[key], small.eval(), shape, b, rounds, min_run_time)
                records.append({"trial": t["trial"], "run_id": t["run_id"], "sweep": t["sweep"], "model": info["model"],
                                "batch": b, "dense_ms": got["a_ms"], "compact_ms": got["b_ms"],
                                "speedup": got["ratio"], "speedup_low": got["low"], "speedup_high": got["high"]})
            log(f"latency: {i}/{len(finished)} {t['trial']} [{time.monotonic() - start:.0f}s]")
    for sweep in sweeps:
        mine = [r for r in records if r["trial"] is None or r.get("sweep") == sweep["name"]]
        try:
            store.log_json_artifact(sweep["run_id"], N.LATENCY_ARTIFACT, mine)
        except Exception as err:   # a read-only store (report --no-attach): the report still shows them
            log(f"latency: not recorded on sweep {sweep['name']!r} ({type(err).__name__})")
    return records


def _compact_model(store: Store, run_id: str, path, folder: str) -> tuple[torch.nn.Module | None, Any]:
    """The trial's compact model: rebuilt from its widths, or its torch.export program (other models)."""

    info = read_compact_info(path)
    if rebuildable(info["model"]):
        model, info = load_compact(path)
        return model, info
    program = store.download_artifact(run_id, N.COMPACT_PROGRAM, f"{folder}/{run_id}")
    if program is None:
        return None, f"no {N.COMPACT_PROGRAM}"
    return _Program(torch.export.load(str(program)).module()), info


class _Program(torch.nn.Module):
    """A torch.export program as a module that timing can put in eval mode (the program, exported in eval mode,
    refuses ``eval()`` itself)."""

    def __init__(self, program: torch.nn.Module) -> None:
        super().__init__()
        self.program = program

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)

    def train(self, mode: bool = True) -> "_Program":
        return self
