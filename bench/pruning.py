"""The pruning step of ``--protocol prune-to-target``: one global ranking, pruned to an exact target.

At the end of the sparse epochs the method scores every group of every prunable unit (``Method.importance``:
higher is kept first). :func:`normalise` puts each unit's scores on a common scale with the method's
``importance_normalizer`` (Torch-Pruning's choices: ``mean`` divides a unit's scores by their mean, ``sum`` by
their sum, ``lamp`` is LAMP's per-layer normalisation, ``none`` keeps them: raw norms of layers of different
sizes are not comparable, so most methods use ``mean``; docs/methods.md lists each method's). :func:`plan` then
sorts every alive group by its normalised score (ties: unit order, then index) and walks that order, skipping a
group whose unit has already given ``floor(max_layer_ratio * size)`` groups (and never a unit's last group):
the removal order. The step removes the shortest prefix of that order whose removal meets the target (the
filters, FLOPs or parameters removed, counted exactly as the per-epoch metrics count them); the prefix one
shorter misses it, so the achieved value lands on the target within one group's worth. Those counts never
decrease along the order, so the prefix is found by bisection. No method branch: every method is one
``importance`` and one normaliser.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch_pruning.pruner.importance import GroupMagnitudeImportance

from .metrics import removed_fractions
from .structure import Structure

NORMALISERS = ("mean", "sum", "lamp", "none")


class PruningError(ValueError):
    """A target the pruning step cannot meet (the ``--max-layer-ratio`` bound leaves too little to remove)."""


def normalise(scores: torch.Tensor, how: str) -> torch.Tensor:
    """One unit's scores on the common scale of the global ranking (module docstring), in float64."""
    s = scores.detach().double().cpu()
    if how == "none":
        return s
    if how == "mean":
        m = s.mean()
        return s / m if m > 0 else torch.zeros_like(s)
    if how == "sum":
        total = s.sum()
        return s / total if total > 0 else torch.zeros_like(s)
    if how == "lamp":   # Torch-Pruning's LAMP normaliser: each score over the sum of the scores not below it
        return torch.nan_to_num(GroupMagnitudeImportance()._lamp(s.float()).double(), nan=0.0)
    raise ValueError(f"importance normaliser must be one of {', '.join(NORMALISERS)}, got {how!r}")


def order(structure: Structure, scores: Mapping[str, torch.Tensor], normaliser: str,
          max_layer_ratio: float, alive: Mapping[str, torch.Tensor] | None = None) -> list[tuple[str, int]]:
    """The removal order (module docstring): (unit, group index) pairs, lowest normalised score first, at most
    ``floor(max_layer_ratio * size)`` groups of a unit and never its last alive one."""
    rows = []
    for position, unit in enumerate(structure.units):
        if unit.name not in scores:
            continue
        s = normalise(scores[unit.name], normaliser)
        if s.numel() != unit.size:
            raise PruningError(f"importance of {unit.name} has {s.numel()} scores for {unit.size} groups")
        living = alive[unit.name].cpu() if alive is not None else torch.ones(unit.size, dtype=torch.bool)
        for i in living.nonzero().flatten().tolist():
            value = float(s[i])
            rows.append((value if math.isfinite(value) else math.inf, position, i, unit.name))
    rows.sort(key=lambda r: r[:3])
    sizes = {u.name: u.size for u in structure.units}
    left = {name: int(alive[name].sum()) if alive is not None else sizes[name] for name in sizes}
    # the bound counts the groups removed before (an iterative protocol's earlier steps): at most floor(ratio *
    # size) of a unit in all, and never its last alive one
    cap = {name: max(0, min(math.floor(max_layer_ratio * sizes[name]) - (sizes[name] - left[name]), left[name] - 1))
           for name in sizes}
    taken = dict.fromkeys(sizes, 0)
    out = []
    for _, _, i, name in rows:
        if taken[name] < cap[name]:
            taken[name] += 1
            out.append((name, i))
    return out


def _removed(structure: Structure, prefix: list[tuple[str, int]],
             already: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    out = {u.name: (~already[u.name].cpu()).clone() if already is not None else torch.zeros(u.size, dtype=torch.bool)
           for u in structure.units}
    for name, i in prefix:
        out[name][i] = True
    return out


def plan(structure: Structure, scores: Mapping[str, torch.Tensor], normaliser: str, metric: str, target: float,
         max_layer_ratio: float = 0.9, alive: Mapping[str, torch.Tensor] | None = None
         ) -> tuple[dict[str, list[int]], float]:
    """The groups to remove, by unit, so that ``metric`` (``total_sparsity``, ``flops_reduction`` or
    ``params_reduction``) reaches ``target``: the shortest prefix of :func:`order` that meets it. Returns the
    removal and the value it gives. :class:`PruningError` when even the whole order falls short."""
    sequence = order(structure, scores, normaliser, max_layer_ratio, alive)

    def value(k: int) -> float:
        return removed_fractions(structure, _removed(structure, sequence[:k], alive))[metric]

    if value(len(sequence)) < target - 1e-12:
        raise PruningError(f"the target {metric} {target:g} cannot be met: removing every group the bound allows "
                           f"(--max-layer-ratio {max_layer_ratio:g} of each unit) gives {value(len(sequence)):.4f}")
    lo, hi = 0, len(sequence)   # value(hi) meets the target; find the smallest such prefix
    while lo < hi:
        mid = (lo + hi) // 2
        if value(mid) >= target - 1e-12:
            hi = mid
        else:
            lo = mid + 1
    removal: dict[str, list[int]] = {}
    for name, i in sequence[:lo]:
        removal.setdefault(name, []).append(i)
    return {name: sorted(idx) for name, idx in removal.items()}, value(lo)
