"""The channel structure of any traceable model: units of coupled channels, who consumes them, what they cost.

:func:`derive` traces the model once with Torch-Pruning's ``DependencyGraph`` (a maintained library that follows
channels through residual additions, concatenations, splits, depthwise convs, flattening and pooling) and turns
each of its pruning groups rooted at a ``Conv2d``, or at a ``Linear`` that runs at positions (tokens, pixels: a
transformer block's MLP), into a :class:`methods.groups.Unit`: the convs, linear layers and BatchNorms whose
output channels are removed together, and the input channels of every conv or linear layer that reads them
(:class:`Feed`). A classifier's linear layers (on one vector per example) are not units. The heads of each
``nn.MultiheadAttention`` are a unit too (``bench/attention.py``). From that one description come:

- the per-epoch counts (:func:`counts`): trainable parameters and forward FLOPs of the network with removed groups
  deleted, exactly what ``FlopCounterMode`` and a parameter count measure on the compact model
  (``bench.compact``), which is built by the same index sets;
- the masks (``bench.zeroing``) and every method's groups (``methods/``).

What is prunable
----------------
A unit is *prunable* unless: it holds the layer that produces the logits (the last conv or linear layer that
runs) or the model's input; it is coupled (several filters share its channels: the convs writing into a residual
stream, or a squeeze-and-excitation gate multiplying a conv's output) and ``prune_coupled`` is off; one of its convs matches an ``exclude`` pattern (``fnmatch`` on module
names) or the model's own ``sparsity_exclude``; it touches a layer the compact model cannot rebuild (a grouped,
non-depthwise conv; a normalisation other than BatchNorm or a LayerNorm over the channels (rebuilt as
:class:`PaddedLayerNorm`); attention; a parameter-holding module of another kind); or the
check fails (:func:`check_units`): a dependency library can mis-group an operation it does not know (channel
padding in option-A shortcuts, a LayerNorm over channels), so before any trial each unit's removal is tried once
on the masked model and on a compacted copy, which must give the same outputs. Every reason is kept in
``Structure.skipped`` and printed by ``bench run``.
"""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from methods.base import eval_mode
from methods.groups import Part, Unit, attention_modules, group_rows, is_depthwise

from . import attention as heads
from .attention import Attention
from .layers import HeadAttention, PaddedLayerNorm

_NORMS = (nn.BatchNorm2d, nn.LayerNorm)
_COUNTED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm, nn.MultiheadAttention)


class StructureError(ValueError):
    """A model whose channel structure cannot be derived (an untraceable forward, say)."""


class TraceError(StructureError):
    """Torch-Pruning's dependency graph cannot follow the model's operations."""


@dataclass(frozen=True)
class Feed:
    """Input channels of a conv or linear layer that carry a unit's groups: ``index[i]`` are the input positions
    of group i (several per group for a linear layer after a flatten: the group's H*W features)."""

    layer: str
    index: torch.Tensor     # (size, per), long


@dataclass(frozen=True)
class Tensor:
    """A parameter used outside any layer (ConvNeXt's layer scale) on a unit's channels, along dimension ``dim``
    (Torch-Pruning's rule: its last of more than one entry): ``index[i]`` are group i's entries."""

    name: str
    dim: int
    index: torch.Tensor     # (size, k), long
    per: int                # entries of the parameter per index along ``dim``


@dataclass
class Structure:
    """A model's prunable units (model order), their consumers, and what :func:`counts` needs."""

    units: tuple[Unit, ...]
    feeds: dict[str, tuple[Feed, ...]]
    modules: dict[str, nn.Module]                     # every counted layer (conv, linear, BatchNorm), by name
    out_hw: dict[str, int]                            # output positions per example of every conv and linear
    skipped: dict[str, str] = field(default_factory=dict)   # unit name -> why it is not prunable
    extra_params: int = 0                             # parameters of layers not counted here (fixed)
    extra_flops: int = 0                              # FLOPs FlopCounterMode sees outside convs and linears
    ops: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)   # unit -> traced operations
    tensors: dict[str, tuple[Tensor, ...]] = field(default_factory=dict)   # unit -> parameters outside layers
    attention: dict[str, Attention] = field(default_factory=dict)   # every MultiheadAttention that ran, by name

    @property
    def eligible(self) -> tuple[str, ...]:
        return tuple(u.name for u in self.units)

    @property
    def by_name(self) -> dict[str, Unit]:
        return {u.name: u for u in self.units}

    def filters(self) -> dict[str, int]:
        """Output channels of every conv of a prunable unit, by conv name (what ``total_sparsity`` counts)."""
        out: dict[str, int] = {}
        for unit in self.units:
            for part in unit.layers:
                out[part.name] = out.get(part.name, 0) + unit.size
        return out

    def without(self, names: Sequence[str], reason: str) -> "Structure":
        """The same structure with the units ``names`` made unprunable for ``reason``."""
        drop = set(names)
        skipped = {**self.skipped, **{n: reason for n in drop}}
        return Structure(tuple(u for u in self.units if u.name not in drop),
                         {k: v for k, v in self.feeds.items() if k not in drop}, self.modules, self.out_hw,
                         skipped, self.extra_params, self.extra_flops, self.ops,
                         {k: v for k, v in self.tensors.items() if k not in drop}, self.attention)


# -- deriving ------------------------------------------------------------------------------------------------

def _forward_order(model: nn.Module, example: torch.Tensor, attention: Sequence[nn.Module] = ()
                   ) -> tuple[list[str], dict[str, int], set[str], dict[str, Attention], dict[nn.Module, tuple]]:
    """Names of the conv and linear layers in the order they run, each one's output positions, the linear
    layers that run at positions (on tokens or pixels: an input of more than two dimensions), where each
    ``MultiheadAttention`` ran, and the (input, output) channels of each module of ``attention`` (its channels
    last). A forward that fails raises :class:`StructureError` naming the innermost module that was
    running."""
    order: list[str] = []
    out_hw: dict[str, int] = {}
    positional: set[str] = set()
    running: list[str] = []
    ran: dict[str, Attention] = {}
    opaque: dict[nn.Module, tuple] = {}

    def attended(name):
        def record(module, args, kwargs, output):
            query, key = args[0] if args else kwargs["query"], args[1] if len(args) > 1 else kwargs["key"]
            ran[name] = Attention(heads.positions(module, query)[1], heads.positions(module, key)[1],
                                  f"{name}.out_proj")
        return record

    def enter(name):
        return lambda module, inputs: running.append(name)

    def leave(name):
        def record(module, inputs, output):
            running.pop()
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                order.append(name)
            elif module in attention and inputs:
                out = output[0] if isinstance(output, (tuple, list)) else output
                opaque[module] = (int(inputs[0].shape[-1]), int(out.shape[-1]))
            if isinstance(module, nn.Conv2d):
                out_hw[name] = int(output.shape[2] * output.shape[3])
            elif isinstance(module, nn.Linear) and isinstance(output, torch.Tensor):   # tokens or pixels it runs on
                out_hw[name] = int(output.numel() // max(1, output.shape[0] * module.out_features))
                if output.dim() > 2:
                    positional.add(name)
        return record

    handles = []
    for n, m in model.named_modules():
        if n:
            handles += [m.register_forward_pre_hook(enter(n)), m.register_forward_hook(leave(n))]
        if isinstance(m, nn.MultiheadAttention):
            handles.append(m.register_forward_hook(attended(n), with_kwargs=True))
    try:
        with torch.no_grad():
            model(example)
    except Exception as err:
        where = f"in module {running[-1]!r} ({type(model.get_submodule(running[-1])).__name__})" if running else \
            "in the model's own forward"
        raise StructureError(f"{type(model).__name__} does not run on one example of shape {tuple(example.shape[1:])}"
                             f": {type(err).__name__} {where}: {err}") from None
    finally:
        for h in handles:
            h.remove()
    for where in ran.values():   # out_proj runs inside the attention's fused kernel, unseen by its hooks
        out_hw[where.out_proj] = where.tokens
    return order, out_hw, positional, ran, opaque


def derive(model: nn.Module, input_shape: Sequence[int], prune_coupled: bool = False,
           exclude: Sequence[str] = (), check: bool = False) -> Structure:
    """The structure of ``model`` for inputs of shape (C, H, W) (module docstring). ``check`` runs
    :func:`check_units` as well (what a sweep does once before its trials)."""

    param = next(model.parameters())
    example = torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype)
    names = {m: n for n, m in model.named_modules()}
    position = {n: i for i, n in enumerate(names.values())}
    param_names = {id(p): n for n, p in model.named_parameters()}
    with eval_mode(model):
        attention = attention_modules(model)
        other = [m for m in map(model.get_submodule, attention) if not isinstance(m, nn.MultiheadAttention)]
        order, out_hw, positional, ran, opaque = _forward_order(model, example, other)
        if not order:
            raise StructureError(f"{type(model).__name__} has no Conv2d or Linear layer")
        logits = order[-1]
        try:
            with warnings.catch_warnings():   # parameters used outside a module (ViT's class token, ConvNeXt's
                # layer scale): Torch-Pruning's notice that it would prune their last dimension; such channels are
                # residual streams, refused or checked below
                warnings.filterwarnings("ignore", message="Unwrapped parameters")
                graph = tp.DependencyGraph().build_dependency(   # attention it cannot rebuild: not traced into
                    model, example_inputs=example, customized_pruners={type(m): heads.Opaque(opaque) for m in opaque})
            groups = list(graph.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear], ignored_layers=[]))
        except Exception as err:
            frame = traceback.extract_tb(err.__traceback__)[-1]
            where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno} ({frame.name})"
            raise TraceError(f"Torch-Pruning's DependencyGraph cannot trace the channel dependencies of "
                             f"{type(model).__name__} ({type(err).__name__}: {err}, in {where}): an operation it "
                             "does not follow mixes channels (a channel shuffle, say, a view that splits the "
                             "channel axis); such a model cannot be pruned by channel groups here. Replace that "
                             "operation in your model, or choose a model without it") from None
    excluded = set(getattr(model, "sparsity_exclude", ()))
    units: list[Unit] = []
    feeds: dict[str, tuple[Feed, ...]] = {}
    skipped: dict[str, str] = {}
    ops: dict[str, tuple[str, ...]] = {}
    unit_params: dict[str, tuple[Tensor, ...]] = {}
    for group in groups:
        convs, norms, unit_feeds, op_names, tensors = [], [], [], [], []
        problems: dict[str, list[str]] = {}   # what the compact model cannot rebuild: kind -> layer names
        size = None
        for item in group:
            dep, idxs = item.dep, [int(i) for i in item.idxs]
            module = dep.target.module
            name = names.get(module)
            outgoing = dep.handler.__name__.startswith("prune_out")
            if isinstance(module, nn.Parameter) and id(module) in param_names:   # used outside a layer
                tensors.append((param_names[id(module)], module, idxs))
                continue
            if name is None:   # an operation (add, concat, reshape, ...), not a module
                op_names.append(_op_name(dep.target.name))
                continue
            if module in opaque:
                problems.setdefault(type(module).__name__, []).append(name)
                continue
            if size is None:
                size = len(idxs)
            if outgoing:
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    if isinstance(module, nn.Conv2d) and module.groups > 1 and not is_depthwise(module):
                        problems.setdefault("grouped convolution", []).append(name)
                    convs.append((name, module, idxs))
                elif isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
                    problems.setdefault("LayerNorm over several dimensions", []).append(name)
                elif isinstance(module, _NORMS):
                    norms.append((name, module, idxs))
                elif any(True for _ in module.parameters(recurse=False)):
                    problems.setdefault(type(module).__name__, []).append(name)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                if isinstance(module, nn.Conv2d) and module.groups > 1:
                    problems.setdefault("grouped convolution", []).append(name)
                unit_feeds.append((name, idxs))
            elif any(True for _ in module.parameters(recurse=False)):
                problems.setdefault(type(module).__name__, []).append(name)
        if not convs or size is None or all(isinstance(m, nn.Linear) and n not in positional for n, m, _ in convs):
            continue   # a classifier's linear layers (on one vector per example, after pooling or a flatten)
        convs.sort(key=lambda c: position[c[0]])
        norms.sort(key=lambda c: position[c[0]])
        size = len(convs[0][2])
        parts, norm_parts = [], []
        for name, module, idxs in convs + norms:
            if idxs != list(range(idxs[0], idxs[0] + size)):
                problems.setdefault("a non-contiguous channel mapping into", []).append(name)
                continue
            (parts if isinstance(module, (nn.Conv2d, nn.Linear)) else norm_parts).append(Part(name, module, idxs[0]))
        unit = Unit(convs[0][0], size, tuple(parts), tuple(norm_parts), group)
        ops[unit.name] = tuple(dict.fromkeys(op_names))
        member_names = [p.name for p in unit.convs]
        unit_feed = []
        for name, idxs in unit_feeds:
            if len(idxs) % size:
                problems.setdefault("an input mapping of another size than the channels into", []).append(name)
                continue
            unit_feed.append(Feed(name, torch.tensor(idxs, dtype=torch.long).view(size, -1)))
        unit_tensors = []
        for name, param, idxs in tensors:
            dims = [d for d, n in enumerate(param.shape) if n > 1]
            if not dims or len(idxs) % size or max(idxs) >= param.shape[dims[-1]]:
                problems.setdefault("a parameter of another layout", []).append(name)
                continue
            unit_tensors.append(Tensor(name, dims[-1], torch.tensor(idxs, dtype=torch.long).view(size, -1),
                                       param.numel() // param.shape[dims[-1]]))
        reason = None
        if logits in member_names:
            reason = "produces the logits"
        elif problems:
            reason = "touches " + "; ".join(_listed(kind, names) for kind, names in problems.items()) + \
                " (not rebuilt by the compact model)"
        elif (why := _excluded(member_names, excluded, exclude)) is not None:
            reason = why
        elif unit.coupled and not prune_coupled:
            reason = (f"coupled: {unit.filters} filters share these channels (a residual stream, or a gate) "
                      f"({', '.join(member_names)}); pruned with --prune-coupled")
        if reason:
            skipped[unit.name] = reason
            continue
        units.append(unit)
        feeds[unit.name] = tuple(unit_feed)
        if unit_tensors:
            unit_params[unit.name] = tuple(unit_tensors)
    head_units, head_feeds, refused = heads.head_units(model, attention, ran)
    skipped.update(refused)
    for unit in head_units:
        if (why := _excluded([unit.name], excluded, exclude)) is not None:
            skipped[unit.name] = why
            continue
        units.append(unit)
        feeds[unit.name] = (Feed(*head_feeds[unit.name]),)
    units.sort(key=lambda u: position[u.name])
    modules = {n: m for n, m in model.named_modules() if isinstance(m, _COUNTED)}
    structure = Structure(tuple(units), feeds, modules, {n: out_hw.get(n, 0) for n in modules
                                                         if not isinstance(modules[n], _NORMS)}, skipped, ops=ops,
                          tensors=unit_params, attention=ran)
    dense_params, dense_flops = counts(structure, {})
    structure.extra_params = sum(p.numel() for p in model.parameters() if p.requires_grad) - dense_params
    structure.extra_flops = measured_flops(model, input_shape) - dense_flops
    if check:
        structure = check_units(model, structure, input_shape)
    return structure


def _excluded(names: Sequence[str], excluded: set[str], exclude: Sequence[str]) -> str | None:
    """Why a unit of these member layers is left out by the model's ``sparsity_exclude`` or ``--exclude-layers``
    (``fnmatch`` patterns), or None."""
    if any(n in excluded for n in names):
        return "excluded by the model (sparsity_exclude)"
    if any(fnmatch.fnmatchcase(n, pattern) for n in names for pattern in exclude):
        return "excluded by --exclude-layers"
    return None


def _listed(kind: str, names: list[str], most: int = 2) -> str:
    """``MultiheadAttention a, b and 3 more``."""
    names = list(dict.fromkeys(names))
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"{kind} {', '.join(names[:most])}{more}"


def _op_name(target: str) -> str:
    """``_ElementWiseOp_12(AddBackward0)`` -> ``AddBackward0``; ``_ConcatOp_3([0, 64])`` -> ``concat``."""
    if "(" in target and target.startswith("_ElementWiseOp"):
        return target[target.index("(") + 1:target.rindex(")")].replace("Backward0", "").replace("Backward1", "")
    return target.split("_")[1].lower().removesuffix("op") if target.startswith("_") else target


@torch.no_grad()
def measured_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs for one example, measured by torch's FlopCounterMode."""

    param = next(model.parameters())
    x = torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype)
    with eval_mode(model), FlopCounterMode(display=False) as counter:
        heads.explicit(model)(x)   # attention as matrix products FlopCounterMode counts (bench/attention.py)
    return int(counter.get_total_flops())


# -- what is removed, and what it costs -----------------------------------------------------------------------

@torch.no_grad()
def removed_groups(unit: Unit, modules: Mapping[str, nn.Module] | None = None) -> torch.Tensor:
    """Boolean vector over a unit's groups: True where the group is removed (every parameter a removal zeroes
    is zero). ``modules``: look the members up by name there (a copy of the model) instead."""
    if modules is not None:
        unit = Unit(unit.name, unit.size, tuple(dataclasses.replace(p, module=modules[p.name]) for p in unit.convs),
                    tuple(dataclasses.replace(p, module=modules[p.name]) for p in unit.norms))
    zero = None
    for rows in unit.parameters():
        z = rows.reshape(rows.shape[0], -1).abs().amax(1) == 0 if rows.dim() > 1 else rows == 0
        zero = z if zero is None else zero & z
    assert zero is not None
    return zero.cpu()


def removed_channels(structure: Structure, removed: Mapping[str, torch.Tensor]
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per counted layer, boolean vectors of removed output and input channels (features for a linear layer),
    given each unit's removed groups. Layers that lose nothing are absent."""
    out: dict[str, torch.Tensor] = {}
    inp: dict[str, torch.Tensor] = {}

    def mark(table, name, size, index):
        vec = table.get(name)
        if vec is None:
            vec = table[name] = torch.zeros(size, dtype=torch.bool)
        vec[index] = True

    for unit in structure.units:
        gone = removed.get(unit.name)
        if gone is None or not bool(gone.any()):
            continue
        groups = gone.nonzero().flatten()
        for part in unit.convs:
            m = part.module
            rows = (groups[:, None] * part.per + torch.arange(part.per)).flatten()
            mark(out, part.name, width(m), rows + part.offset)
            if is_depthwise(m):
                mark(inp, part.name, m.in_channels, groups + part.offset)
        for part in unit.norms:
            mark(out, part.name, width(part.module), groups + part.offset)
        for feed in structure.feeds.get(unit.name, ()):
            m = structure.modules[feed.layer]
            mark(inp, feed.layer, width(m, inputs=True), feed.index[groups].flatten())
    return out, inp


def counts(structure: Structure, removed: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(trainable parameters, forward FLOPs per example) of the network with the ``removed`` groups deleted."""
    out, inp = removed_channels(structure, removed)
    params = flops = 0
    for name, m in structure.modules.items():
        if isinstance(m, nn.MultiheadAttention):   # input projection, attention products; out_proj on its own
            if name in structure.attention:
                p, f = heads.cost(m, m.embed_dim - (int(out[name].sum()) // 3 if name in out else 0),
                                  structure.attention[name])
                params, flops = params + p, flops + f
            continue
        if isinstance(m, _NORMS):   # a scale and a shift per channel, where it has them
            kept = width(m) - (int(out[name].sum()) if name in out else 0)
            params += kept * sum(t is not None for t in (m.weight, m.bias))
            continue
        cout = width(m) - (int(out[name].sum()) if name in out else 0)
        cin = width(m, inputs=True) - (int(inp[name].sum()) if name in inp else 0)
        bias = cout if m.bias is not None else 0
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            per_filter = (1 if is_depthwise(m) else cin // m.groups) * kh * kw
            macs = cout * per_filter
            params += macs + bias
            flops += 2 * macs * structure.out_hw.get(name, 0)
        else:   # once per token or pixel it runs on (one, after a flatten)
            params += cout * cin + bias
            flops += 2 * cout * cin * structure.out_hw.get(name, 1)
    for unit, tensors in structure.tensors.items():   # parameters outside layers: their entries on removed groups
        gone = removed.get(unit)
        if gone is not None:
            for t in tensors:
                params -= int(gone.sum()) * t.index.shape[1] * t.per
    return params + structure.extra_params, flops + structure.extra_flops


# -- compaction and its check ----------------------------------------------------------------------------------

@torch.no_grad()
def compact(model: nn.Module, structure: Structure, share: bool = False) -> nn.Module:
    """A copy of ``model`` with every removed group (all its parameters zero) physically deleted: member convs
    lose those filters (a depthwise member its channels and groups), BatchNorms those channels (running
    statistics included), consumers those input channels or features. With ``share``, the layers that lose
    nothing keep ``model``'s own tensors instead of copies (for a copy that is only measured or exported)."""
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())} if share else None
    out = copy.deepcopy(model, memo)
    modules = dict(out.named_modules())
    removed = {u.name: removed_groups(u, modules) for u in structure.units}
    gone_out, gone_in = removed_channels(structure, removed)
    rebuilt = {structure.attention[n].out_proj for n in gone_out if n in structure.attention}
    for name in set(gone_out) | set(gone_in):
        m = modules[name]
        if name in structure.attention:   # the kept heads (its unit's groups), out_proj's columns with them
            out.set_submodule(name, HeadAttention(m, (~removed[name]).nonzero().flatten()))
            continue
        if name in rebuilt:
            continue
        keep_out = _kept(gone_out.get(name), m)
        keep_in = _kept(gone_in.get(name), m, inputs=True)
        if isinstance(m, nn.BatchNorm2d):
            idx = keep_out.to(m.weight.device if m.affine else m.running_mean.device)
            if m.affine:
                m.weight = nn.Parameter(m.weight[idx].clone())
                m.bias = nn.Parameter(m.bias[idx].clone())
            if m.track_running_stats:
                m.running_mean = m.running_mean[idx].clone()
                m.running_var = m.running_var[idx].clone()
            m.num_features = len(idx)
            continue
        if isinstance(m, nn.LayerNorm):
            out.set_submodule(name, PaddedLayerNorm(m, keep_out))
            continue
        w = m.weight
        o, i = keep_out.to(w.device), keep_in.to(w.device)
        depthwise = isinstance(m, nn.Conv2d) and is_depthwise(m)
        if name in gone_out:
            w = w.index_select(0, o)
        if name in gone_in and not depthwise:
            w = w.index_select(1, i)
        m.weight = nn.Parameter(w if w is not m.weight else w.clone())
        if depthwise:
            m.groups = len(o)
        if m.bias is not None:
            m.bias = nn.Parameter(m.bias.index_select(0, o) if name in gone_out else m.bias.clone())
        if isinstance(m, nn.Conv2d):
            m.out_channels, m.in_channels = len(o), len(o) if is_depthwise(m) else len(i)
        else:
            m.out_features, m.in_features = len(o), len(i)
    for unit, tensors in structure.tensors.items():
        gone = removed[unit]
        if bool(gone.any()):
            for t in tensors:
                param = out.get_parameter(t.name)
                keep = t.index[~gone].flatten().to(param.device)
                parent, _, leaf = t.name.rpartition(".")
                setattr(out.get_submodule(parent) if parent else out, leaf,
                        nn.Parameter(param.index_select(t.dim, keep).clone(), param.requires_grad))
    if hasattr(out, "widths"):   # the registered models' own record of their conv widths
        out.widths = tuple(m.out_channels for m in out.modules() if isinstance(m, nn.Conv2d))
    return out


def width(m: nn.Module, inputs: bool = False) -> int:
    """Output (or input) channels of a conv, features of a linear layer, channels of a BatchNorm or LayerNorm."""
    if isinstance(m, nn.BatchNorm2d):
        return m.num_features
    if isinstance(m, nn.LayerNorm):
        return int(m.normalized_shape[0])
    if isinstance(m, nn.MultiheadAttention):   # query, key and value rows of in_proj_weight
        return 3 * m.embed_dim
    if isinstance(m, nn.Conv2d):
        return m.in_channels if inputs else m.out_channels
    return m.in_features if inputs else m.out_features


def _kept(gone: torch.Tensor | None, m: nn.Module, inputs: bool = False) -> torch.Tensor:
    if gone is None:
        return torch.arange(width(m, inputs))
    return (~gone).nonzero().flatten()


@torch.no_grad()
def check_units(model: nn.Module, structure: Structure, input_shape: Sequence[int], tolerance: float = 1e-4
                ) -> Structure:
    """``structure`` without the units whose removal the compact model does not reproduce: one group of each
    unit is zeroed in a copy of the model and deleted in a compacted copy, and both must give the same outputs
    (eval mode, float32, relative ``tolerance``). All units are tried at once, then halves of a failing set,
    down to the units that fail alone; each is recorded in ``skipped`` with the operations its group runs
    through."""
    generator = torch.Generator().manual_seed(0)
    param = next(model.parameters())
    x = torch.randn((4, *input_shape), generator=generator).to(param.device, param.dtype)
    units = {u.name: u for u in structure.units}
    with eval_mode(model):
        if not bool(torch.isfinite(model(x)).all()):
            raise StructureError(f"{type(model).__name__}'s output holds NaN or infinite values (eval mode, 4 random "
                                 "inputs): a model must give finite logits before anything can be pruned")

    def agrees(names: Sequence[str]) -> bool:
        saved = []
        try:   # one group of each unit zeroed in the model itself, restored after
            for name in names:
                for param, offset, per in units[name].slices():
                    rows = group_rows(param, offset, units[name].size, per)
                    saved.append((rows, rows[0].clone()))
                    rows[0] = 0
            with eval_mode(model):
                want = model(x)
                got = compact(model, structure, share=True).eval()(x)
        except Exception:
            return False
        finally:
            for rows, first in reversed(saved):
                rows[0] = first
        if got.shape != want.shape:
            return False
        return bool((got - want).abs().max() <= tolerance * max(1.0, float(want.abs().max())))

    failed: list[str] = []

    def search(names: list[str]) -> None:
        if not names or agrees(names):
            return
        if len(names) == 1:
            failed.append(names[0])
            return
        half = len(names) // 2
        search(names[:half])
        search(names[half:])

    search([u.name for u in structure.units])
    if not failed:
        return structure
    out = structure
    for name in failed:
        ops = structure.ops.get(name, ())
        out = out.without([name], "its removal changes the outputs of the compact model: an operation the "
                          "dependency graph does not follow" + (f" (it runs through {', '.join(ops)})" if ops else ""))
    return out

