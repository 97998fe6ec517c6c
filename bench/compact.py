"""Compact models: removed filters physically deleted, with the same outputs and a measured speed-up.

:func:`compact` takes a trained model whose removed filters are zero (weights, bias and following BatchNorm
weight and bias, as the masks leave them) and returns a copy in which each removed filter is deleted with
its bias, its BatchNorm channel (weight, bias, running mean and variance) and the matching input channels
of the next layer (for a linear layer after a flatten, the H*W input features of each removed channel). It
is driven by the model's :class:`~bench.models.Structure`, so it needs no per-model code; that structure is
also what the metrics count, so the compact model's parameter count equals ``metrics.structural_params``
and ``FlopCounterMode`` on it measures ``metrics.structural_flops``.

Why its outputs equal the masked model's: a removed filter's output channel is exactly zero (zero weights
and bias, and BN weight and bias zero make the BN output zero too), it stays zero through ReLU and pooling,
and a zero input channel adds nothing to the next layer. The tests check this on every registered model.

A hand-written, structure-driven surgery was chosen over torch-pruning's DependencyGraph: the structure
is already derived (and tested) for the metrics, the surgery is ~40 lines, and it keeps BN running
statistics and the exact parameter layout the reload relies on.

Saved form (``compact_model.pt``, see :func:`save_compact`): a plain dict (model name, input shape, classes,
per-conv widths, state dict) that ``torch.load(weights_only=True)`` reads, rebuilt by :func:`load_compact`
as the registered model class with those widths: no class definition has to be edited, and no pickled
code is loaded. ``bench export RUN_ID --out model.pt2`` also writes a ``torch.export`` program that loads
with plain torch (``torch.export.load(path).module()``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from methods.base import eval_mode

from . import metrics as M
from .models import Structure, build_model, describe

FORMAT = "bench-compact/1"


@torch.no_grad()
def kept_filters(structure: Structure) -> dict[str, torch.Tensor]:
    """Indices of the alive filters of every eligible conv (a filter is removed when all its values are 0)."""
    return {name: torch.nonzero(~M.removed_filters(structure.by_name[name])).flatten()
            for name in structure.eligible}


@torch.no_grad()
def compact(model: nn.Module, structure: Structure) -> nn.Module:
    """A copy of ``model`` with every removed filter deleted (see the module docstring)."""
    keep = kept_filters(structure)
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    for info in structure.layers:
        layer = modules[info.name]
        if info.source is not None:  # input channels / features that came from removed filters go
            idx = keep[info.source].to(layer.weight.device)
            if info.kind == "linear":
                idx = (idx[:, None] * info.per_channel + torch.arange(info.per_channel, device=idx.device)).flatten()
            layer.weight = nn.Parameter(layer.weight[:, idx].clone())
            if info.kind == "conv":
                layer.in_channels = len(keep[info.source])
            else:
                layer.in_features = len(idx)
        if info.kind == "conv" and info.name in keep:
            idx = keep[info.name].to(layer.weight.device)
            layer.weight = nn.Parameter(layer.weight[idx].clone())
            if layer.bias is not None:
                layer.bias = nn.Parameter(layer.bias[idx].clone())
            layer.out_channels = len(idx)
            if info.bn is not None:
                bn = modules[_name_of(model, info.bn)]
                if bn.affine:
                    bn.weight = nn.Parameter(bn.weight[idx].clone())
                    bn.bias = nn.Parameter(bn.bias[idx].clone())
                if bn.track_running_stats:
                    bn.running_mean = bn.running_mean[idx].clone()
                    bn.running_var = bn.running_var[idx].clone()
                bn.num_features = len(idx)
    if hasattr(out, "widths"):
        out.widths = conv_widths(out)
    return out


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def conv_widths(model: nn.Module) -> tuple[int, ...]:
    """Output channels of every conv layer, model order (a registered model's ``widths`` argument)."""
    return tuple(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def measured_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs for one example, measured by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    x = torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype)
    with eval_mode(model), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


@torch.no_grad()
def latency_ms(model: nn.Module, input_shape: Sequence[int], batch: int, min_run_time: float = 0.3) -> float:
    """Median CPU forward time in milliseconds at ``batch``, eval mode, with the process's torch threads.

    torch.utils.benchmark's ``blocked_autorange`` picks the number of runs per block and reports the median
    over blocks (after a warm-up), so a fast model gets many repeats and a slow one fewer.
    """
    from torch.utils import benchmark

    model = model.eval()
    x = torch.randn((batch, *input_shape))
    timer = benchmark.Timer("model(x)", globals={"model": model, "x": x}, num_threads=torch.get_num_threads())
    model(x)  # warm-up
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def measure(model: nn.Module, structure: Structure, input_shape: Sequence[int],
            batches: Sequence[int] = (1, 64), min_run_time: float = 0.3) -> tuple[nn.Module, dict[str, float]]:
    """The compact model of ``model`` (on CPU) and its measurements against the dense (masked) model.

    Metrics: ``compact_params``, ``compact_flops`` (FlopCounterMode on the compact model),
    ``latency_ms_b{N}`` (compact) and ``dense_latency_ms_b{N}``, ``speedup_b{N}`` = dense / compact latency.
    """
    dense = copy.deepcopy(model).cpu().eval()
    small = compact(dense, describe(dense, input_shape)).eval()
    out: dict[str, float] = {"compact_params": count_params(small), "compact_flops": measured_flops(small, input_shape)}
    for b in batches:
        d = latency_ms(dense, input_shape, b, min_run_time)
        c = latency_ms(small, input_shape, b, min_run_time)
        out[f"latency_ms_b{b}"] = c
        out[f"dense_latency_ms_b{b}"] = d
        out[f"speedup_b{b}"] = d / c
    return small, out


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


def load_compact(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_compact`: (the model in eval mode, its description)."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable compact model ({type(err).__name__}: {err})") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"{path}: not a compact model written by bench (expected format {FORMAT})")
    model = build_model(saved["model"], saved["input_shape"], saved["num_classes"], widths=saved["widths"])
    model.load_state_dict(saved["state_dict"])
    info = {k: v for k, v in saved.items() if k != "state_dict"}
    return model.eval(), info


def save_first_filters(path: str | Path, model: nn.Module, structure: Structure) -> Path:
    """Write the first eligible conv's weights, removed filters included (as zeros), as a float32 ``.npy``
    of shape (filters, in_channels, kh, kw): what the report draws as the learned filters (paper Fig. 5),
    readable without torch."""
    import numpy as np

    path = Path(path)
    weight = structure.by_name[structure.eligible[0]].module.weight
    np.save(path, weight.detach().float().cpu().numpy())
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
