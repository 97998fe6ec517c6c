"""Torch-Pruning's sparse-training regularizers as penalty methods, written on units: ``group-norm`` (DepGraph's
group sparse training, ``GroupNormPruner.regularize``) and ``growing-reg`` (Wang et al. 2021, ``GrowingRegPruner``).

Both push every parameter of a group towards zero with a per-group coefficient, the group being what
Torch-Pruning removes together: the channel's rows in the unit's convs (output channels), its BatchNorm scale,
and the matching input channels of every conv or linear layer that reads it (``Unit.group``, the unit's
Torch-Pruning ``Group``; a unit made without the graph has only its own convs and BatchNorms). Torch-Pruning
adds ``coef_i * w`` straight into ``.grad``; here that is the gradient of a penalty,

    P = 1/2 sum_i c_i ||W_i||^2,   dP/dW_i = c_i W_i,

with the coefficients ``c`` held constant (computed without gradient), so ``penalty()``'s autograd gradient
equals the closed form (``add_penalty_grad``) and the loss is ``task + lam * P``.

- ``group-norm``: ``c_i = alpha ** ((s_max - s_i) / (s_max - s_min))`` over the unit's groups, ``s_i`` the group
  norm (the square root of the mean over the group's layers of the channel's sum of squares): weak groups are
  pushed up to ``alpha`` times harder; recomputed at every step, as Torch-Pruning does.
- ``growing-reg``: ``c_i`` starts at 1 and grows at the end of every epoch by ``delta / lam * (q_max - q_i) /
  (q_max - q_min)``, ``q_i`` the squared group norm: the penalty on weak groups grows epoch after epoch (its
  coefficients are the method's state, kept by every checkpoint). Torch-Pruning's version leaves BatchNorm
  scales alone by accident (it adds into an indexed copy of ``.grad``); here they are regularized like the rest.

Their importance for ``--protocol prune-to-target`` is the group norm ``s``, each unit over its mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .registry import register_method
from .base import HparamsBase, Method, MethodState, grad_of, option
from .groups import Unit

# (parameter, dim, indices along dim, the group each index belongs to, whether the indices are the whole dim in
# order: then the parameter itself is the rows, with no gather or scatter per step)
Entry = tuple[nn.Parameter, int, torch.Tensor, torch.Tensor, bool]


def _entry(param: nn.Parameter, dim: int, index: torch.Tensor, root: torch.Tensor) -> Entry:
    index, root = index.to(param.device), root.to(param.device)
    whole = len(index) == param.shape[dim] and bool((index == torch.arange(len(index), device=index.device)).all())
    return param, dim, index, root, whole


def entries(unit: Unit) -> list[Entry]:
    """Where the unit's groups live: output rows of its convs and linears, BatchNorm scales, input channels of
    the layers that read them (from its Torch-Pruning group; without one, its own convs and BatchNorms)."""
    out: list[Entry] = []
    if unit.group is None:
        for p in unit.convs + tuple(p for p in unit.norms if getattr(p.module, "affine", False)):
            out.append(_entry(p.weight, 0, torch.arange(p.offset, p.offset + unit.size * p.per),
                              torch.arange(unit.size).repeat_interleave(p.per)))
        return out
    for item in unit.group:   # root channels to groups: an attention head's ``per`` channels are one group
        dep, idxs = item.dep, item.idxs
        module, handler = dep.target.module, dep.handler.__name__
        if not isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            continue
        index = torch.as_tensor([int(i) for i in idxs])
        root = torch.as_tensor([int(r) for r in item.root_idxs]) // unit.per
        if handler in ("prune_out_channels", "prune_batchnorm_out_channels"):
            if isinstance(module, nn.BatchNorm2d) and not module.affine:
                continue
            out.append(_entry(module.weight, 0, index, root))
        elif handler == "prune_in_channels" and getattr(module, "groups", 1) == 1:
            out.append(_entry(module.weight, 1, index, root))
    return out


def _rows(entry: Entry, param: torch.Tensor) -> torch.Tensor:
    """``param``'s rows of the entry's indices (``param`` itself when they are all of them, in order)."""
    _, dim, index, _, whole = entry
    return param if whole else param.index_select(dim, index)


def _sum_sq(rows: torch.Tensor, dim: int) -> torch.Tensor:
    other = [d for d in range(rows.dim()) if d != dim]
    return rows.square().sum(dim=other) if other else rows.square()


def group_sq(unit: Unit, table: list[Entry], rows: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Per group, the mean over the group's layers of its channel's sum of squares (Torch-Pruning's group
    importance with p=2; its group norm is the square root). ``rows``: each entry's rows, when already read."""
    total = None
    for k, entry in enumerate(table):
        param, dim, _, root, _ = entry
        sq = _sum_sq(rows[k] if rows is not None else _rows(entry, param.detach()), dim)
        per_group = torch.zeros(unit.size, device=sq.device, dtype=sq.dtype).index_add_(0, root, sq)
        total = per_group if total is None else total + per_group
    assert total is not None
    return total / len(table)


def _spread(values: torch.Tensor) -> torch.Tensor:
    """(max - v) / (max - min), 0 where every value is equal: 1 for the weakest group, 0 for the strongest."""
    span = values.max() - values.min()
    return (values.max() - values) / span if span > 0 else torch.zeros_like(values)


class _GroupRegularizer(Method):
    """The shared penalty of ``group-norm`` and ``growing-reg`` (module docstring); subclasses give ``coefs``."""

    closed_form_grad = True
    default_zeroing = "cumulative:0.01"

    def _tables(self, model: nn.Module) -> list[tuple[Unit, list[Entry]]]:
        units = self.units(model)
        return self.per_model(model, "entries", lambda: [(u, entries(u)) for u in units])

    def coefs(self, unit: Unit, table: list[Entry], rows: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Each group's coefficient (``rows``: each entry's rows, when already read)."""
        raise NotImplementedError

    def penalty(self, model: nn.Module) -> torch.Tensor:
        terms = []
        for unit, table in self._tables(model):
            with torch.no_grad():
                c = self.coefs(unit, table)
            for entry in table:
                param, dim, _, root, _ = entry
                terms.append(0.5 * (c[root] * _sum_sq(_rows(entry, param), dim)).sum())
        if not terms:
            raise ValueError(f"{type(model).__name__} has no eligible Conv2d layer to regularize")
        return torch.stack(terms).sum()

    @torch.no_grad()
    def add_penalty_grad(self, model: nn.Module, weight: float) -> None:
        """``weight * c_i * W_i`` into each parameter's gradient: each entry's rows read once for both the
        coefficients and the gradient, added in place where they are the whole parameter."""
        for unit, table in self._tables(model):
            rows = [_rows(entry, entry[0]) for entry in table]
            c = self.coefs(unit, table, rows)
            for (param, dim, index, root, whole), r in zip(table, rows):
                shape = [1] * r.dim()
                shape[dim] = -1
                scale = (weight * c[root]).view(shape)
                if whole:
                    grad_of(param).add_(r * scale)   # rounded as index_add_ rounds: the same numbers
                else:
                    grad_of(param).index_add_(dim, index, r * scale)

    @torch.no_grad()
    def importance(self, model: nn.Module, state: MethodState) -> dict[str, torch.Tensor]:
        """The group norm of every group (the square root of :func:`group_sq`), each unit over its mean."""
        tables = {unit.name: (unit, table) for unit, table in self._tables(model)}
        return {layer: group_sq(*tables[layer]).sqrt().float() for layer in state.layers}


@register_method
class GroupNorm(_GroupRegularizer):
    name = "group-norm"
    description = "DepGraph's group sparse training: each group's weights decayed by alpha^(weakness), group-wide"
    paper = "Fang et al. 2023, DepGraph: Towards Any Structural Pruning (CVPR); Torch-Pruning's GroupNormPruner"
    formula = "lam * 1/2 sum_g c_g ||W_g||^2, c_g = alpha^((s_max - s_g) / (s_max - s_min)), s_g the group norm"
    sweep_axis = "lam"
    default_grid = (1e-4, 5e-4, 2e-3)

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        lam: float = option(5e-4, "penalty strength (Torch-Pruning's reg; 5e-4 in its ResNet-56 recipe)", min=0.0)
        alpha: float = option(16.0, "how much harder the weakest group is pushed than the strongest (Torch-"
                              "Pruning's default 2^4)", min=1.0)

    def coefs(self, unit: Unit, table: list[Entry], rows: list[torch.Tensor] | None = None) -> torch.Tensor:
        return self.hparams.alpha ** _spread(group_sq(unit, table, rows).sqrt())


@register_method
class GrowingReg(_GroupRegularizer):
    name = "growing-reg"
    description = "growing regularization: an l2 penalty per group whose weight grows every epoch for weak groups"
    paper = "Wang et al. 2021, Neural Pruning via Growing Regularization (ICLR); Torch-Pruning's GrowingRegPruner"
    formula = "lam * 1/2 sum_g c_g ||W_g||^2, c_g += delta / lam * (q_max - q_g) / (q_max - q_min) every epoch"
    sweep_axis = "lam"
    default_grid = (1e-5, 1e-4, 1e-3)

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        lam: float = option(1e-4, "the starting penalty strength of every group (Torch-Pruning's reg)",
                            open_min=0.0)
        delta: float = option(1e-4, "how much the weakest group's strength grows per epoch (delta_reg)", min=0.0)

    def __init__(self, hparams: HparamsBase | None = None, **options: Any) -> None:
        super().__init__(hparams, **options)
        self.growth: dict[str, torch.Tensor] = {}   # per unit: c, from 1

    def coefs(self, unit: Unit, table: list[Entry], rows: list[torch.Tensor] | None = None) -> torch.Tensor:
        c = self.growth.get(unit.name)
        if c is None:
            param = table[0][0]
            c = self.growth[unit.name] = torch.ones(unit.size, device=param.device, dtype=param.dtype)
        return c

    @torch.no_grad()
    def on_epoch_end(self, model: nn.Module, state: MethodState) -> None:
        step = self.hparams.delta / self.hparams.lam
        for unit, table in self._tables(model):
            c = self.coefs(unit, table)
            c.add_(step * _spread(group_sq(unit, table)).to(c.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"growth": {name: c.clone() for name, c in self.growth.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.growth = {name: c.clone() for name, c in state.get("growth", {}).items()}
