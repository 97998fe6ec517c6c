"""Groups of coupled output channels: what a method scores and a zeroing rule removes.

A *group* is a set of output channels that can only be removed together: a filter with its bias and its
BatchNorm channel, plus whatever is tied to it, such as the depthwise conv channel it feeds, or, for a residual
stream, the same channel of every conv that writes into the stream. Removing a group zeroes all of them, which
makes that channel exactly zero wherever it flows, so the matching input channels of every consumer can be
deleted from a compact model.

Groups come in *units* (``bench.structure`` derives them from the model's dependency graph): group ``i`` of a
unit is output channel ``offset + i`` of each of its member convs and BatchNorms. A plain conv is a unit of as
many groups as filters; so are the CIFAR ResNets' block-internal convs. A unit's name is its first member
conv's name, and a method's "layers" (``MethodState.layers``) are the unit names.

Per-group quantities used by the methods (docs/methods.md):

- the kernel pseudo-norm of a group is the mean over the unit's *filters* (its member convs that are not
  depthwise) of their pseudo-norms, where a depthwise conv's channel is added to the filter that feeds it.
  With one member conv it is exactly that filter's pseudo-norm, so models without coupled channels compute
  what they always computed; a coupled group of k filters is scored by their mean, so it competes with single
  filters on the same scale under the global cumulative rule (a sum would make it k times larger);
- the parameters of a group (SSL's group, l0sgl's group, what a removal zeroes): every member's weights, biases
  and BatchNorm weights and biases at that channel.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Part:
    """Output channels ``offset .. offset + size - 1`` of one module of a unit (a conv or a BatchNorm); with
    ``per`` > 1, group i is rows ``offset + i * per .. offset + (i + 1) * per - 1`` of the parameters
    ``prefix + "weight"`` and ``prefix + "bias"`` (an attention head's query, key or value rows in a
    ``MultiheadAttention``'s ``in_proj_weight``: three parts of one module)."""

    name: str
    module: nn.Module
    offset: int = 0
    per: int = 1
    prefix: str = ""

    @property
    def weight(self) -> torch.Tensor:
        return getattr(self.module, self.prefix + "weight")

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.module, self.prefix + "bias", None)

    @property
    def layer_groups(self) -> int:
        """Groups of its layer (F_l of eq. 2): a conv's filters, a linear layer's rows, an attention's query, key
        and value blocks of its heads (3 x heads)."""
        return self.weight.shape[0] // self.per


def group_rows(tensor: torch.Tensor, offset: int, size: int, per: int = 1) -> torch.Tensor:
    """The rows of ``size`` groups starting at row ``offset`` of ``tensor``, indexed by group along the first
    dimension: ``per`` rows each, as (size, per, ...) when ``per`` > 1. A view: zeroing a group's rows zeroes
    ``tensor``'s."""
    rows = tensor if offset == 0 and tensor.shape[0] == size * per else tensor[offset:offset + size * per]
    return rows if per == 1 else rows.unflatten(0, (size, per))


def channels_last(module: nn.Module) -> bool:
    """Whether a member's output has its channels on the last axis: a linear layer's (tokens or pixels first) and a
    LayerNorm's, but a ``LayerNorm2d``'s (torchvision's, timm's) are on axis 1, as a conv's and a BatchNorm's."""
    return isinstance(module, nn.Linear) or (isinstance(module, nn.LayerNorm)
                                             and not type(module).__name__.endswith("2d"))


def attention_modules(model: nn.Module) -> list[str]:
    """Names of the model's attention modules: ``nn.MultiheadAttention`` and any module with ``num_heads`` or
    ``n_heads`` (Swin's windowed attention, MaxViT's, a user's), the innermost of nested ones."""
    def attends(m: nn.Module) -> bool:
        return isinstance(m, nn.MultiheadAttention) or hasattr(m, "num_heads") or hasattr(m, "n_heads")
    return [n for n, m in model.named_modules() if attends(m) and not any(attends(c) for c in m.modules() if c is not m)]


def is_depthwise(conv: nn.Module) -> bool:
    """A conv whose every output channel reads exactly one input channel (groups == in == out channels)."""
    return isinstance(conv, nn.Conv2d) and conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


@dataclass(frozen=True)
class Unit:
    """A set of ``size`` groups: group i is channel ``offset + i`` of every member conv and BatchNorm."""

    name: str
    size: int
    convs: tuple[Part, ...]
    norms: tuple[Part, ...] = ()
    #: Torch-Pruning's ``Group`` this unit was made from (``bench.structure.derive``), on the same modules: what
    #: Torch-Pruning's importance criteria score (``methods/criteria.py``); None for units made without the graph
    group: Any = field(default=None, compare=False, repr=False)

    @property
    def filters(self) -> int:
        """Member convs that are filters of their own (not depthwise): a group's coupling multiplicity (the
        query, key and value parts of a head are one module, one filter)."""
        return max(1, len({id(p.module) for p in self.convs if not is_depthwise(p.module)}))

    @property
    def per(self) -> int:
        """Rows of each member per group: 1, or an attention head's dimension."""
        return self.convs[0].per if self.convs else 1

    @property
    def layers(self) -> tuple[Part, ...]:
        """The member convs, linear layers and attentions, each once (a head unit's three parts are one layer)."""
        return tuple({p.name: p for p in reversed(self.convs)}.values())[::-1]

    @property
    def coupled(self) -> bool:
        """True when several filters write into the same channels (a residual stream)."""
        return self.filters > 1

    def _rows(self, part: Part, tensor: torch.Tensor) -> torch.Tensor:
        """The rows of this unit's groups in ``tensor`` (a member's parameter, its gradient or a copy of it); a
        linear layer's (out, in) rows as (out, in, 1, 1): a linear row is a filter of 1x1 kernels, so every
        method's conv formulas hold for it unchanged; an attention head's (per, in) rows of a part likewise as
        (heads, per * in, 1, 1)."""
        rows = group_rows(tensor, part.offset, self.size, part.per)
        if part.per > 1:
            rows = rows.view(self.size, -1)
        return rows[:, :, None, None] if rows.dim() == 2 else rows

    def grad_rows(self, part: Part) -> torch.Tensor:
        """The rows of this unit's groups in a member conv's weight gradient (created as zeros when unset), to
        add a closed-form penalty gradient into."""
        weight = part.weight
        if weight.grad is None:
            weight.grad = torch.zeros_like(weight)
        return self._rows(part, weight.grad)

    def weights(self) -> list[tuple[Part, torch.Tensor]]:
        """Each member conv with its weight rows of this unit's groups (a view, indexed by group)."""
        return [(p, self._rows(p, p.weight)) for p in self.convs]

    def slices(self) -> list[tuple[nn.Parameter, int, int]]:
        """Every parameter a removal zeroes, with the offset of this unit's rows in it and the rows per group:
        member convs' (linear layers', attentions') weights and biases, member norms' weights and biases."""
        out: list[tuple[nn.Parameter, int, int]] = []
        for p in (*self.convs, *self.norms):   # a BatchNorm's or LayerNorm's scale and shift, where it has them
            out += [(t, p.offset, p.per) for t in (p.weight, p.bias) if t is not None]
        return out

    def parameters(self) -> list[torch.Tensor]:
        """The rows of :meth:`slices` as views indexed by group along their first dimension (zeroing a view's
        row zeroes the parameter's)."""
        return [group_rows(param, offset, self.size, per) for param, offset, per in self.slices()]


def kernel_norms(unit: Unit, norm_scale: str = "filters") -> torch.Tensor:
    """Per-group kernel pseudo-norms of a unit (module docstring): with ``filters`` scaling (eq. 2) each member's
    l1 norms are divided by that conv's filter count."""
    total = None
    for part, w in unit.weights():
        norms = w.abs().flatten(1).sum(dim=1)
        if norm_scale == "filters":
            norms = norms / part.layer_groups
        elif norm_scale != "none":
            raise ValueError(f"norm_scale must be one of ('filters', 'none'), got {norm_scale!r}")
        total = norms if total is None else total + norms
    assert total is not None
    return total if unit.filters == 1 else total / unit.filters


def filter_norms(unit: Unit, term) -> torch.Tensor:
    """Per group, ``term(rows)`` of each member filter's weight rows (one value per row), averaged over the
    group's filters as :func:`kernel_norms` does (a depthwise member adds to the filter that feeds it)."""
    total = None
    for _, w in unit.weights():
        values = term(w.flatten(1))
        total = values if total is None else total + values
    assert total is not None
    return total if unit.filters == 1 else total / unit.filters


def single_units(model: nn.Module, convs: Sequence[tuple[str, nn.Conv2d]],
                 batchnorms: Mapping[str, nn.Module] | None = None) -> list[Unit]:
    """One unit per conv (each filter its own group), with the BatchNorm that follows it when given."""
    batchnorms = batchnorms or {}
    return [Unit(name, conv.out_channels, (Part(name, conv),),
                 (Part(_name_of(model, batchnorms[name]), batchnorms[name]),) if name in batchnorms else ())
            for name, conv in convs]


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)
