"""Attention heads as units: torch's ``nn.MultiheadAttention`` (ViT's), counted, masked and rebuilt.

A head of a ``MultiheadAttention`` with ``h`` heads of dimension ``d`` is one group: its ``d`` query, key and
value rows of ``in_proj_weight`` (rows ``i*d ..``, ``E + i*d ..``, ``2E + i*d ..``) with their biases, and its
``d`` input columns of ``out_proj``. Zeroing the rows makes the head's queries, keys and values zero, so its
attention output is exactly zero and ``out_proj`` reads zeros there: the same rule as a filter. A head unit is
three :class:`methods.groups.Part` of the attention (``per = d``, ``prefix = "in_proj_"``) and a
:class:`bench.structure.Feed` of ``out_proj``; the compact model replaces the attention with
:class:`HeadAttention` (the kept heads, ``num_heads`` and ``head_dim`` consistent), whose outputs equal the masked
model's.

FLOPs: on a CPU torch runs a ``MultiheadAttention`` through fused kernels that ``FlopCounterMode`` does not count
(its input projection and both attention products), so the structure counts them here (:func:`cost`) and
:func:`explicit` gives the copy that ``FlopCounterMode`` measures, every attention run as :class:`HeadAttention`
(matrix products it counts, the same outputs).

Other attention (Swin's shifted windows, a user's module with ``num_heads``) is not rebuilt: its heads are
refused in one line naming it (:func:`head_units`), Torch-Pruning does not trace into it (:class:`Opaque`), the
units that touch it are refused naming it, and the rest of the model prunes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import Dependency, Group
from torch_pruning.dependency.node import Node

from methods.groups import Part, Unit

from .layers import HeadAttention


@dataclass(frozen=True)
class Attention:
    """Where an attention ran: query positions (tokens) and key positions per example."""

    tokens: int
    keys: int
    out_proj: str


def positions(m: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(examples, positions) of an attention's query, key or value ``x``: (T, E) unbatched, (N, T, E) with
    ``batch_first``, else (T, N, E)."""
    if x.dim() == 2:
        return 1, int(x.shape[0])
    return (int(x.shape[0]), int(x.shape[1])) if m.batch_first else (int(x.shape[1]), int(x.shape[0]))


def rebuildable(m: nn.Module) -> str | None:
    """Why the heads of attention module ``m`` cannot be rebuilt, or None when they can."""
    if not isinstance(m, nn.MultiheadAttention):
        return f"{type(m).__name__} is not torch's nn.MultiheadAttention"
    if not m._qkv_same_embed_dim or m.in_proj_weight is None:
        return "a MultiheadAttention with key or value sizes of its own (kdim, vdim)"
    if m.bias_k is not None or m.add_zero_attn:
        return "a MultiheadAttention with add_bias_kv or add_zero_attn"
    return None


def head_units(model: nn.Module, names: list[str], ran: dict[str, Attention]
               ) -> tuple[list[Unit], dict[str, tuple[str, torch.Tensor]], dict[str, str]]:
    """The head unit of every rebuildable attention of ``names`` (the model's ``attention_modules``) that ran
    (``ran``: from the forward), each with its ``out_proj`` feed (layer, (heads, d) input columns), and why the
    others' heads are refused, by name."""
    units, feeds, refused = [], {}, {}
    for name in names:
        m = model.get_submodule(name)
        why = rebuildable(m)
        if why is None and name not in ran:
            why = "a MultiheadAttention that did not run on the example"
        if why is not None:
            refused[name] = f"attention heads not rebuilt by the compact model: {why}"
            continue
        e, h, d = m.embed_dim, m.num_heads, m.head_dim
        parts = tuple(Part(name, m, k * e, per=d, prefix="in_proj_") for k in range(3))
        unit = Unit(name, h, parts, (), _group(m, ran[name].out_proj, model.get_submodule(ran[name].out_proj)))
        units.append(unit)
        feeds[name] = (ran[name].out_proj, torch.arange(e).view(h, d))
    return units, feeds, refused


def _group(m: nn.MultiheadAttention, out_name: str, out_proj: nn.Module) -> Group:
    """A Torch-Pruning ``Group`` over the attention's channels (query, key and value rows of each channel, its
    ``out_proj`` column), on a linear layer that shares ``in_proj_weight`` and its gradient: what the criteria
    score, per channel; a head's score is the mean of its channels' (``methods/criteria.py``), as Torch-Pruning's
    own head pruning ranks heads."""
    e = m.embed_dim
    proxy = nn.Linear(1, 1, bias=False, device="meta")
    proxy.weight = m.in_proj_weight
    proxy.bias = m.in_proj_bias
    proxy.in_features, proxy.out_features = e, 3 * e
    rows, cols = Node(proxy, None, "in_proj"), Node(out_proj, None, out_name)
    out_fn, in_fn = tp.pruner.function.prune_linear_out_channels, tp.pruner.function.prune_linear_in_channels
    group = Group()
    items = [(Dependency(out_fn, out_fn, rows, rows), k * e) for k in range(3)] + \
        [(Dependency(out_fn, in_fn, rows, cols), 0)]
    for dep, offset in items:
        group.add_dep(dep, [offset + c for c in range(e)])
        group[len(group) - 1].root_idxs = list(range(e))
    return group


class Opaque(tp.pruner.function.BasePruningFunc):
    """How Torch-Pruning sees an attention module whose heads are refused: a layer of ``widths[module]`` (input,
    output) channels that it does not trace into (Swin's window partitions and shifts make its tracing stall), with
    no dependency between its input and output channels, and never pruned (a unit touching it is refused)."""

    TARGET_MODULES = (nn.Module,)

    def __init__(self, widths: dict[nn.Module, tuple]) -> None:
        super().__init__()
        self.widths = widths

    def prune_out_channels(self, layer: nn.Module, idxs: list) -> nn.Module:
        raise NotImplementedError("an attention the compact model does not rebuild is not pruned")

    def prune_in_channels(self, layer: nn.Module, idxs: list) -> nn.Module:
        raise NotImplementedError("an attention the compact model does not rebuild is not pruned")

    def get_out_channels(self, layer: nn.Module) -> int | None:
        return self.widths.get(layer, (None, None))[1]

    def get_in_channels(self, layer: nn.Module) -> int | None:
        return self.widths.get(layer, (None, None))[0]


def cost(m: nn.Module, kept: int, where: Attention) -> tuple[int, int]:
    """(parameters, FLOPs) of an attention's input projection and attention products with ``kept`` of each of
    its query, key and value rows (``out_proj`` is counted as the linear layer it is)."""
    sizes = [m.embed_dim, m.kdim, m.vdim]
    bias = m.in_proj_bias is not None
    params = kept * sum(sizes) + (3 * kept if bias else 0)
    flops = 2 * kept * (sizes[0] * where.tokens + (sizes[1] + sizes[2]) * where.keys) + 4 * where.tokens * where.keys * kept
    return params, flops


def _macs(m: HeadAttention, inputs: tuple, output: object) -> None:
    """Torch-Pruning's count of a ``MultiheadAttention`` (``multihead_attention_counter_hook``: query scaling,
    the three projections and their biases, per head QK^T, softmax and AV, out_proj with its bias) for the kept
    heads' width ``w`` in place of the embedding's: the same number when every head is kept."""
    if not inputs:   # called with keywords only: Torch-Pruning's hooks do not see them
        return
    q, k = inputs[0], inputs[1] if len(inputs) > 1 else inputs[0]
    batch, t = positions(m, q)
    s, e, w = positions(m, k)[1], m.embed_dim, m.num_heads * m.head_dim
    ops = t * w + (t + 2 * s) * e * w + (t + 2 * s) * w * (m.q_bias is not None)
    ops += m.num_heads * (2 * t * s * m.head_dim + t * s) + t * e * (w + 1)
    m.__flops__ += int(ops * batch)


tp.utils.op_counter.MODULES_MAPPING[HeadAttention] = _macs   # what bench.compact.torch_pruning_macs counts


def explicit(model: nn.Module) -> nn.Module:
    """``model`` itself when it holds no ``MultiheadAttention``; else a copy sharing its tensors with each one run
    as :class:`HeadAttention` (all heads): what ``FlopCounterMode`` counts in full."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention) and rebuildable(m) is None]
    if not names:
        return model
    out = copy.deepcopy(model, {id(t): t for t in (*model.parameters(), *model.buffers())})
    for name in names:
        out.set_submodule(name, HeadAttention(out.get_submodule(name), share=True))
    return out

