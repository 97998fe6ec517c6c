"""``hgsr``: hierarchical group sparse regularization, then filter selection by the loss, then fine-tuning.

Mitsuno and Kurita, "Filter Pruning using Hierarchical Group Sparse Regularization for Deep Convolutional
Neural Networks", arXiv 2011.02389 (2020). Three phases in one budget of epochs:

1. Train with the hierarchical squared group l1/2 penalty on the 2-D kernels of every conv of a prunable unit,
   ``a[o, i] = ||W[o, i, :, :]||_1``::

       penalty = sum_l [ lam2 * sum_i (sum_o sqrt(a[o, i] + eps))**2 + (1 - lam2) * sum |W| ]

   (eps keeps the gradient of the square root finite at zero kernels).
2. At the end of epoch ``epochs - finetune_epochs``: draw ``samples`` random training examples, measure the
   increase of their mean cross-entropy when each alive filter alone is removed (weights, bias and BN
   channel zeroed, as a removal does), sort the filters by that increase, and remove the longest prefix
   of that order whose joint removal raises the loss by at most ``tolerance`` (found by bisection on the
   prefix length, each candidate measured for real; the last filter of a layer always stays).
3. Fine-tune for ``finetune_epochs`` without the penalty, removed filters frozen.

The cost of step 2 is one forward pass over the samples per alive filter (70 for LeNet): cheap for small
networks; for large ones lower ``samples``.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_method
from .base import HparamsBase, MethodState, PruneThenFinetune, eval_mode, option
from .groups import channels_last


@register_method
class HGSR(PruneThenFinetune):
    name = "hgsr"
    description = "hierarchical squared group l1/2 on 2-D kernels, filters removed by their loss increase, fine-tune"
    paper = "Mitsuno & Kurita 2020, Filter Pruning using Hierarchical Group Sparse Regularization (arXiv 2011.02389)"
    formula = "lam * sum_l [lam2 sum_i (sum_o sqrt(||W[o,i]||_1))^2 + (1-lam2) sum|W|]; prune by loss increase"
    default_zeroing = "none"   # the loss-based selection removes filters
    closed_form_grad = True
    sweep_axis = "lam"
    default_grid = (3e-5, 1e-4, 4e-4)

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        lam: float = option(1e-4, "penalty strength: loss = task_loss + lam * hierarchical penalty", min=0.0)
        lam2: float = option(0.5, "weight of the squared group l1/2 term; 1 - lam2 weighs the plain l1 term",
                             min=0.0, max=1.0)
        eps: float = option(1e-8, "added under the square root of each kernel's l1 norm", min=0.0)
        tolerance: float = option(0.02, "largest increase of the samples' mean cross-entropy (nats) that the "
                                  "removal of the selected filters may cause", min=0.0)
        samples: int = option(1000, "random training examples on which the loss increases are measured", min=1)
        finetune_epochs: int = option(0, "epochs of fine-tuning after the selection; 0 = a quarter of the "
                                      "epochs (rounded down, at least 1)", min=0)

    @staticmethod
    def default_finetune(epochs: int) -> int:
        return max(1, epochs // 4)

    def training_penalty(self, model: nn.Module) -> torch.Tensor:
        hp = self.hparams
        return self.layer_sum(model, lambda unit: _unit_sum(unit, lambda w: hierarchical_penalty(w, hp.lam2, hp.eps)))

    @torch.no_grad()
    def add_training_penalty_grad(self, model: nn.Module, weight: float) -> None:
        hp = self.hparams
        for unit in self.units(model):
            for part, w in unit.weights():
                grad = unit.grad_rows(part)
                grad.addcmul_(torch.sign(w), hierarchical_coef(w, hp.lam2, hp.eps), value=weight)

    @torch.no_grad()
    def importance(self, model: nn.Module, state: MethodState) -> dict[str, torch.Tensor]:
        """Each filter's hierarchical group norm, (sum over its kernels of sqrt(||W[o, i]||_1))^2, the l1/2 group
        measure its penalty drives down, each unit over its mean."""
        units = {unit.name: unit for unit in self.units(model)}
        eps = self.hparams.eps

        def measure(w: torch.Tensor) -> torch.Tensor:
            return (w.abs().flatten(2).sum(2) + eps).sqrt().sum(1).square()

        out = {}
        for layer in state.layers:
            unit = units[layer]
            total = sum(measure(w) for _, w in unit.weights())
            out[layer] = (total / unit.filters).float()
        return out

    @torch.no_grad()
    def prune(self, model: nn.Module, state: MethodState) -> None:
        x, y = state.draw_batch(self.hparams.samples)
        groups = {layer: state.filter_parameters(layer) for layer in state.layers}
        alive = {layer: state.alive(layer) for layer in state.layers}

        def loss_without(removal: Mapping[str, torch.Tensor]) -> float:
            with zeroed(groups, removal):
                return float(F.cross_entropy(model(x), y))

        single = all(len(unit.convs) == 1 for unit in self.units(model))
        with eval_mode(model):
            base = loss_without({})
            increases = sequential_loss_increases(model, alive, x, y, base) if single else None
            if increases is None:   # any other model: several groups per forward pass, zeroed by hooks
                units = [unit for unit in self.units(model) if unit.name in alive]
                increases = hooked_loss_increases(model, units, alive, x, y, base)
            selected = select_by_loss(increases, lambda chosen: loss_without(chosen) - base, self.hparams.tolerance)
        for layer, idx in selected.items():
            if len(idx):
                state.remove(layer, idx)
        state.log(selection_loss_before=base)


def _unit_sum(unit, term) -> torch.Tensor:
    """``term(rows)`` summed over a unit's member convs (one conv: exactly ``term`` of its weight)."""
    members = unit.weights()
    if len(members) == 1:
        return term(members[0][1])
    return torch.stack([term(w) for _, w in members]).sum()


def hierarchical_penalty(weight: torch.Tensor, lam2: float = 0.5, eps: float = 1e-8) -> torch.Tensor:
    """lam2 * sum_i (sum_o sqrt(||W[o, i]||_1 + eps))**2 + (1 - lam2) * sum |W| for one conv weight."""
    kernel_l1 = weight.abs().sum(dim=(2, 3))                 # a[o, i]
    grouped = torch.sqrt(kernel_l1 + eps).sum(dim=0).square().sum()
    return lam2 * grouped + (1.0 - lam2) * weight.abs().sum()


def hierarchical_coef(weight: torch.Tensor, lam2: float = 0.5, eps: float = 1e-8) -> torch.Tensor:
    """The penalty's gradient is ``sign(W) * coef`` with, per kernel (o, i),
    ``coef = lam2 * S_i / sqrt(a[o, i] + eps) + (1 - lam2)`` and ``S_i = sum_o sqrt(a[o, i] + eps)``."""
    a = weight.abs().sum(dim=(2, 3), keepdim=True) + eps
    inv = torch.rsqrt(a)
    s = (a * inv).sum(dim=0, keepdim=True)
    return (s * inv).mul_(lam2).add_(1.0 - lam2)


@contextmanager
def zeroed(groups: Mapping[str, list[torch.Tensor]], removal: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily zero the filters ``removal[layer]`` (indices) in every parameter of ``groups[layer]``
    (conv weight, bias, BN weight and bias: what a removal zeroes), restoring them on exit."""
    saved = []
    try:
        with torch.no_grad():
            for layer, idx in removal.items():
                if len(idx) == 0:
                    continue
                for p in groups[layer]:
                    saved.append((p, idx, p[idx].clone()))
                    p[idx] = 0
        yield
    finally:
        with torch.no_grad():
            for p, idx, values in reversed(saved):
                p[idx] = values


def loss_increases(groups: Mapping[str, list[torch.Tensor]], alive: Mapping[str, torch.Tensor],
                   loss_without: Callable[[Mapping[str, torch.Tensor]], float], base: float
                   ) -> dict[str, torch.Tensor]:
    """Per layer, the loss increase when each filter alone is removed (``inf`` for filters already removed)."""
    out = {}
    for layer, mask in alive.items():
        inc = torch.full((mask.numel(),), float("inf"), dtype=torch.float64)
        for f in mask.nonzero().flatten().tolist():
            inc[f] = loss_without({layer: torch.tensor([f], device=mask.device)}) - base
        out[layer] = inc
    return out


@torch.no_grad()
def sequential_loss_increases(model: nn.Module, alive: Mapping[str, torch.Tensor], x: torch.Tensor,
                              y: torch.Tensor, base: float, max_batch: int = 4096) -> dict[str, torch.Tensor] | None:
    """The numbers of :func:`loss_increases`, faster, for an ``nn.Sequential`` whose eligible convs are its
    children (None otherwise). Removing a filter makes its channel of the conv's output (or of the BatchNorm's
    right after it: weight and bias zero) exactly zero, so the network's prefix runs once, and each filter's
    removal is that channel zeroed and fed through the rest of the network, several filters per batch."""
    if not isinstance(model, nn.Sequential):
        return None
    children = list(model.named_children())
    names = [n for n, _ in children]
    if any(layer not in names for layer in alive):
        return None
    ends = {}
    for layer in alive:   # the block of each layer ends at its conv, or at the BatchNorm right after it
        i = names.index(layer)
        ends[layer] = i + 1 if i + 1 < len(children) and isinstance(children[i + 1][1], nn.BatchNorm2d) else i
    cached: dict[int, torch.Tensor] = {}
    act = x
    for i, (_, module) in enumerate(children):
        act = module(act)
        if i in ends.values():
            cached[i] = act.clone()   # later in-place activations must not touch it
    n = len(x)
    out = {}
    for layer, mask in alive.items():
        h = cached[ends[layer]]
        suffix = [module for _, module in children[ends[layer] + 1:]]
        inc = torch.full((mask.numel(),), float("inf"), dtype=torch.float64)
        filters = mask.nonzero().flatten().tolist()
        per_batch = max(1, max_batch // n)
        for start in range(0, len(filters), per_batch):
            chunk = filters[start:start + per_batch]
            batch = h.repeat(len(chunk), *([1] * (h.dim() - 1)))
            batch.view(len(chunk), n, *h.shape[1:])[torch.arange(len(chunk)), :, torch.tensor(chunk)] = 0
            for module in suffix:
                batch = module(batch)
            losses = F.cross_entropy(batch, y.repeat(len(chunk)), reduction="none").view(len(chunk), n).mean(1)
            inc[chunk] = losses.double().cpu() - base
        out[layer] = inc
    return out


@torch.no_grad()
def hooked_loss_increases(model: nn.Module, units, alive: Mapping[str, torch.Tensor], x: torch.Tensor,
                          y: torch.Tensor, base: float, max_batch: int = 4096) -> dict[str, torch.Tensor]:
    """The numbers of :func:`loss_increases` for any model, with far fewer passes. Removing a group makes the
    outputs of its member convs and BatchNorms exactly zero at its channels (zero weights, bias, BN weight and
    bias), so forward hooks that zero those output channels measure the same loss; copies of the samples, each
    with another group's channels zeroed, go through the network together (``max_batch`` examples a pass)."""
    n = len(x)
    per_batch = max(1, max_batch // n)
    out = {}
    for unit in units:
        mask = alive[unit.name]
        inc = torch.full((mask.numel(),), float("inf"), dtype=torch.float64)
        groups = mask.nonzero().flatten().tolist()
        if unit.per > 1:   # an attention head's channels never leave its module: its parameters zeroed, a pass each
            for g in groups:
                with zeroed({unit.name: unit.parameters()}, {unit.name: torch.tensor([g])}):
                    inc[g] = float(F.cross_entropy(model(x), y)) - base
            out[unit.name] = inc
            continue
        for start in range(0, len(groups), per_batch):
            chunk = groups[start:start + per_batch]
            k = len(chunk)
            rows = torch.arange(k, device=x.device)
            channels = torch.tensor(chunk, device=x.device)

            def zero(offset: int):
                def hook(module, inputs, output):
                    output = output.clone()
                    view = output.view(k, n, *output.shape[1:])
                    if channels_last(module):   # (..., tokens or pixels, features)
                        view[rows, ..., channels + offset] = 0
                    else:
                        view[rows, :, channels + offset] = 0
                    return output
                return hook

            handles = [p.module.register_forward_hook(zero(p.offset)) for p in (*unit.convs, *unit.norms)]
            try:
                logits = model(x.repeat(k, *([1] * (x.dim() - 1))))
            finally:
                for h in handles:
                    h.remove()
            losses = F.cross_entropy(logits, y.repeat(k), reduction="none").view(k, n).mean(1)
            inc[chunk] = losses.double().cpu() - base
        out[unit.name] = inc
    return out


def select_by_loss(increases: Mapping[str, torch.Tensor], joint_increase: Callable[[dict], float],
                   tolerance: float) -> dict[str, torch.Tensor]:
    """The filters to remove: the longest prefix of all alive filters sorted by their own loss increase
    (ascending, ties in layer order then index) whose joint removal increases the loss by at most
    ``tolerance``, found by bisection on the prefix length. At most all but one filter of each layer."""
    layers = list(increases)
    entries = [(float(v), li, f) for li, layer in enumerate(layers)
               for f, v in enumerate(increases[layer].tolist()) if v != float("inf")]
    entries.sort()
    alive = {layer: int(torch.isfinite(increases[layer]).sum()) for layer in layers}
    # never a whole layer: cut the order before the point where some layer would lose its last filter
    taken = {layer: 0 for layer in layers}
    limit = 0
    for _, li, _ in entries:
        taken[layers[li]] += 1
        if taken[layers[li]] >= alive[layers[li]]:
            break
        limit += 1

    def prefix(k: int) -> dict[str, torch.Tensor]:
        chosen: dict[str, list[int]] = {layer: [] for layer in layers}
        for _, li, f in entries[:k]:
            chosen[layers[li]].append(f)
        return {layer: torch.tensor(sorted(v), dtype=torch.long) for layer, v in chosen.items()}

    lo, hi = 0, limit   # the prefix of length lo is within tolerance (length 0 trivially)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if joint_increase(prefix(mid)) <= tolerance:
            lo = mid
        else:
            hi = mid - 1
    return prefix(lo)
