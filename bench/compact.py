"""Compact models: removed groups physically deleted, with the same outputs and a measured speed-up.

:func:`bench.structure.compact` takes a trained model whose removed groups are zero (weights, biases and
BatchNorm weights and biases, as the masks leave them) and returns a copy in which each removed group is deleted:
the filters of its member convs with their biases, its BatchNorm channels (weight, bias, running mean and
variance) and the matching input channels of every consumer (for a linear layer after a flatten, the H*W input
features of each removed channel). It is driven by the model's :class:`~bench.structure.Structure`, derived with
Torch-Pruning's dependency graph, so it needs no per-model code; the same index sets drive the per-epoch counts,
so the compact model's parameter count equals ``structure.counts`` and ``FlopCounterMode`` on it measures its
FLOPs. The surgery itself is ~40 lines over those index sets (conv, depthwise conv, linear, BatchNorm), which
keeps BN running statistics and the parameter layout the reload relies on.

Why its outputs equal the masked model's: a removed group's channels are exactly zero (zero weights and bias,
and BN weight and bias zero make the BN output zero too), they stay zero through ReLU, pooling, additions of
other zero channels and concatenation, and a zero input channel adds nothing to the next layer. Every unit is
checked once before a sweep (``structure.check_units``); the tests check it on every registered model and a set
of torchvision models.

Saved form (``compact_model.pt``, see :func:`save_compact`): a plain dict (model name, input shape, classes,
per-conv widths, state dict) that ``torch.load(weights_only=True)`` reads, rebuilt by :func:`load_compact`
as the registered model class with those widths: no class definition has to be edited, and no pickled
code is loaded. Models that cannot be rebuilt from widths (torchvision, timm and user models) are also saved as a
``torch.export`` program (``compact_model.pt2``), which loads with plain torch, without the model's code.
``bench export RUN_ID --out model.pt2`` writes that program for any run.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from .models import build_model, rebuildable
from .structure import Structure, compact, measured_flops

FORMAT = "bench-compact/1"

__all__ = ["FORMAT", "compact", "conv_widths", "count_params", "export_program", "latency_ms", "load_compact",
           "measure", "measured_flops", "save_compact", "save_first_filters"]


def conv_widths(model: nn.Module) -> tuple[int, ...]:
    """Output channels of every conv layer, model order (a registered model's ``widths`` argument)."""
    return tuple(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def latency_ms(model: nn.Module, input_shape: Sequence[int], batch: int, min_run_time: float = 0.3,
               device: str | torch.device = "cpu") -> float:
    """Median forward time in milliseconds at ``batch``, eval mode, on ``device``.

    CPU: torch.utils.benchmark's ``blocked_autorange`` (with the process's torch threads) picks the number of
    runs per block and reports the median over blocks (after a warm-up), so a fast model gets many repeats and a
    slow one fewer. CUDA: CUDA events around blocks of runs (:func:`cuda_event_ms`), the GPU's own clock.
    """
    model = model.eval().to(device)
    x = torch.randn((batch, *input_shape), device=device)
    if torch.device(device).type == "cuda":
        return cuda_event_ms(model, x, min_run_time)

    # lazy: importing torch.utils.benchmark warns on stderr (CUDA_HOME without a CUDA runtime) in every command
    from torch.utils import benchmark
    timer = benchmark.Timer("model(x)", globals={"model": model, "x": x}, num_threads=torch.get_num_threads())
    model(x)  # warm-up
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def cuda_event_ms(model: nn.Module, x: torch.Tensor, min_run_time: float, block_s: float = 0.02) -> float:
    """Median over blocks of a forward's time in ms by CUDA events (recorded on the stream around a block of
    runs, read after a synchronize), blocks sized to about ``block_s`` seconds, for ``min_run_time`` in all."""
    with torch.no_grad():
        for _ in range(3):   # warm-up: kernels chosen, memory allocated
            model(x)
        torch.cuda.synchronize(x.device)
        per_block, times, spent = 1, [], 0.0
        while spent < min_run_time or len(times) < 3:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(per_block):
                model(x)
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
            times.append(ms / per_block)
            spent += ms / 1e3
            per_block = max(1, int(block_s * 1e3 / max(times[-1], 1e-3)))
    times.sort()
    return times[len(times) // 2]


def measure(model: nn.Module, structure: Structure, input_shape: Sequence[int],
            batches: Sequence[int] = (1, 64), min_run_time: float = 0.3,
            device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, float]]:
    """The compact model of ``model`` (on CPU) and its measurements against the dense (masked) model.

    Metrics: ``compact_params``, ``compact_flops`` (FlopCounterMode on the compact model), ``compact_macs``
    (Torch-Pruning's ``count_ops_and_params`` on it at batch 1: what published pruning tables quote),
    ``latency_ms_b{N}`` (compact) and ``dense_latency_ms_b{N}``, ``speedup_b{N}`` = dense / compact latency,
    on the CPU; when ``device`` is a GPU (the trial's), also ``gpu_latency_ms_b{N}``,
    ``gpu_dense_latency_ms_b{N}`` and ``gpu_speedup_b{N}`` there. ``min_run_time`` 0: no latency metric.
    """
    dense = copy.deepcopy(model).cpu().eval()
    small = compact(dense, structure, share=True).eval()
    out: dict[str, float] = {"compact_params": count_params(small), "compact_flops": measured_flops(small, input_shape),
                             "compact_macs": torch_pruning_macs(small, input_shape)}
    if min_run_time <= 0:
        return small, out
    for b in batches:
        d = latency_ms(dense, input_shape, b, min_run_time)
        c = latency_ms(small, input_shape, b, min_run_time)
        out[f"latency_ms_b{b}"] = c
        out[f"dense_latency_ms_b{b}"] = d
        out[f"speedup_b{b}"] = d / c
    if torch.device(device).type == "cuda":
        gpu_dense, gpu_small = copy.deepcopy(dense).to(device), copy.deepcopy(small).to(device)
        for b in batches:
            d = latency_ms(gpu_dense, input_shape, b, min_run_time, device)
            c = latency_ms(gpu_small, input_shape, b, min_run_time, device)
            out[f"gpu_latency_ms_b{b}"] = c
            out[f"gpu_dense_latency_ms_b{b}"] = d
            out[f"gpu_speedup_b{b}"] = d / c
        del gpu_dense, gpu_small
    return small, out


def torch_pruning_macs(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Multiply-accumulates of one forward pass of one example as Torch-Pruning counts them
    (``tp.utils.count_ops_and_params``: convs and linears, plus its counts for BatchNorm, pooling and
    activations), the convention of its benchmark tables and of most pruning papers' "FLOPs"."""

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            macs, _ = tp.utils.count_ops_and_params(model, torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    return float(macs)


# -- saving and loading ------------------------------------------------------------------------------------

def save_compact(path: str | Path, model: nn.Module, model_name: str, input_shape: Sequence[int],
                 num_classes: int, removed: dict[str, int] | None = None) -> Path:
    """Write a compact model as a plain dict (see the module docstring); returns the path."""
    path = Path(path)
    torch.save({"format": FORMAT, "model": model_name, "input_shape": tuple(int(v) for v in input_shape),
                "num_classes": int(num_classes), "widths": conv_widths(model),
                "removed": dict(removed or {}), "state_dict": {k: v.detach().cpu() for k, v in
                                                               model.state_dict().items()}}, path)
    return path


def _read(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict :func:`save_compact` wrote (weights only), or a ValueError naming the file."""
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable compact model ({type(err).__name__}: {err})") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"{path}: not a compact model written by bench (expected format {FORMAT})")
    return saved


def read_compact_info(path: str | Path) -> dict[str, Any]:
    """What :func:`save_compact` recorded (model, input shape, classes, widths, removed filters, parameter count),
    without rebuilding the model."""
    saved = _read(Path(path))
    info = {k: v for k, v in saved.items() if k != "state_dict"}
    info["params"] = sum(v.numel() for k, v in saved["state_dict"].items()
                         if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    return info


def load_compact(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_compact`: (the model in eval mode, its description)."""
    path = Path(path)
    saved = _read(path, map_location)
    if not rebuildable(saved["model"]):
        raise ValueError(f"{path}: model {saved['model']!r} cannot be rebuilt from its widths; load the run's "
                         "compact_model.pt2 program instead (torch.export.load)")
    model = build_model(saved["model"], saved["input_shape"], saved["num_classes"], widths=saved["widths"])
    model.load_state_dict(saved["state_dict"])
    info = {k: v for k, v in saved.items() if k != "state_dict"}
    return model.eval(), info


def save_first_filters(path: str | Path, model: nn.Module, structure: Structure) -> Path | None:
    """Write the first prunable conv's weights (or linear layer's, as 1x1 kernels), removed filters included (as
    zeros), as a float32 ``.npy`` of shape (filters, in_channels, kh, kw): what the report draws as the learned
    filters (paper Fig. 5), readable without torch. None when no unit has one (only attention heads)."""

    path = Path(path)
    weight = next((p.weight for u in structure.units for p in u.convs if p.per == 1), None)
    if weight is None:
        return None
    np.save(path, (weight[:, :, None, None] if weight.dim() == 2 else weight).detach().float().cpu().numpy())
    return path


def export_program(model: nn.Module, input_shape: Sequence[int], path: str | Path) -> Path:
    """Write ``model`` as a ``torch.export`` program with a dynamic batch size (loads with plain torch)."""
    path = Path(path)
    model = model.cpu().eval()
    example = torch.zeros((2, *input_shape))
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    return path
