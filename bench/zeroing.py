"""Zeroing rules and filter masks: removed filters stay exactly zero.

A filter is *removed* when its weights, its bias and (when a BatchNorm follows) that BN channel's weight
and bias are exactly zero (docs/methods.md). :class:`FilterMasks` keeps them there: after every optimizer step
the trainer calls :meth:`FilterMasks.apply`, which multiplies the removed slices of each parameter *and of
its optimizer state* (momentum, Adam moments) by zero in place, so momentum cannot resurrect a filter.
Gradients are masked too (:meth:`FilterMasks.mask_grads`) so nothing flows into a removed filter.

Rules (specs as on the command line)
------------------------------------
- ``cumulative:T[:global|layer]`` (Berthelier et al. 2020, Sec. III-C): at the end of every epoch take the
  kernel pseudo-norms N of all alive groups (of every prunable unit for ``global``, the default; of each
  layer separately for ``layer``), normalise them to sum to 1, sort ascending, and remove the filters whose
  cumulative sum is <= T. The paper uses T = 0.01.
- ``threshold:EPS`` (Wen et al. 2016, "stabilizing sparsity"): after every optimizer step, member conv
  weights with |w| < EPS are set to zero; a filter whose weights are then all zero is removed.
- ``none``.

Every rule goes through :meth:`FilterMasks.remove`, which never removes the last alive filter of a layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from methods.groups import Unit, group_rows, kernel_norms
from methods.kernel_norms import NORM_SCALES

from .structure import Structure


class ZeroingSpecError(ValueError):
    """A ``--zeroing`` value that does not parse."""


class FilterMasks:
    """One alive-mask per unit (``methods/groups.py``), tied to the parameters a removed group must zero."""

    def __init__(self, structure: Structure, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.structure = structure
        self.optimizer = optimizer
        self.layers = structure.eligible
        self._units: dict[str, Unit] = {u.name: u for u in structure.units}
        self._slices: dict[str, list[tuple[nn.Parameter, int, int]]] = {}
        self._masks: dict[str, torch.Tensor] = {}
        self._dirty: dict[str, bool] = {}
        for name in self.layers:
            unit = self._units[name]
            weight = unit.convs[0].weight
            self._slices[name] = unit.slices()
            self._masks[name] = torch.ones(unit.size, device=weight.device, dtype=weight.dtype)
            self._dirty[name] = False

    # -- queries -------------------------------------------------------------------------------------
    def alive(self, layer: str) -> torch.Tensor:
        """Boolean vector: which groups of ``layer`` are alive."""
        return self._masks[layer] > 0

    def mask(self, layer: str) -> torch.Tensor:
        return self._masks[layer]

    def unit(self, layer: str) -> Unit:
        return self._units[layer]

    def parameters(self, layer: str) -> list[torch.Tensor]:
        """What a removal zeroes, as views indexed by group: member convs' weights and biases, member
        BatchNorms' weights and biases."""
        return self._units[layer].parameters()

    def weights(self, layer: str) -> list[torch.Tensor]:
        """The member convs' weight rows of ``layer``'s groups (views)."""
        return [w for _, w in self._units[layer].weights()]

    def state_dict(self) -> dict[str, Any]:
        """The masks and which layers have removed groups (a trial checkpoint's part)."""
        return {"masks": {n: m.clone() for n, m in self._masks.items()}, "dirty": dict(self._dirty)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, mask in state["masks"].items():
            self._masks[name].copy_(mask)
        self._dirty.update(state["dirty"])

    # -- acting --------------------------------------------------------------------------------------
    def remove(self, layer: str, filters: Sequence[int] | torch.Tensor) -> list[int]:
        """Remove groups of ``layer`` (indices or a boolean vector); returns the indices removed.

        The last alive group of a layer is never removed: when a request would remove every alive group,
        the one with the largest kernel norm is kept.
        """
        if layer not in self._masks:
            raise KeyError(f"{layer!r} is not a prunable layer; prunable: {', '.join(self.layers)}")
        mask = self._masks[layer]
        request = torch.zeros(mask.shape[0], dtype=torch.bool, device=mask.device)
        if isinstance(filters, torch.Tensor) and filters.dtype == torch.bool:
            request |= filters.to(mask.device)
        else:
            idx = torch.as_tensor(list(filters) if not isinstance(filters, torch.Tensor) else filters,
                                  dtype=torch.long, device=mask.device)
            if idx.numel() and (idx.min() < 0 or idx.max() >= mask.shape[0]):
                raise IndexError(f"filter index out of range for {layer!r} with {mask.shape[0]} filters")
            request[idx] = True
        alive = mask > 0
        request &= alive
        if not request.any():
            return []
        if not (alive & ~request).any():  # would empty the layer: keep its strongest group
            norms = kernel_norms(self._units[layer], "none").detach().masked_fill(~alive, -1.0)
            request[norms.argmax()] = False
        mask.masked_fill_(request, 0.0)
        self._dirty[layer] = True
        self._apply_layer(layer)
        return request.nonzero().flatten().tolist()

    def mark_all_dirty(self) -> None:
        """Apply every layer's mask at each step (for rules that remove filters without a host sync)."""
        for name in self.layers:
            self._dirty[name] = True

    @torch.no_grad()
    def apply(self) -> None:
        """Zero removed groups (parameters and optimizer state) in place; call after each optimizer step."""
        for name in self.layers:
            if self._dirty[name]:
                self._apply_layer(name)

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Zero the gradients of removed groups; call between backward() and the optimizer step."""
        for name in self.layers:
            if not self._dirty[name]:
                continue
            mask = self._masks[name]
            for p, offset, per in self._slices[name]:
                if p.grad is not None:
                    rows = group_rows(p.grad, offset, len(mask), per)
                    rows.mul_(_shaped(mask, rows))

    @torch.no_grad()
    def _apply_layer(self, name: str) -> None:
        mask = self._masks[name]
        for p, offset, per in self._slices[name]:
            rows = group_rows(p, offset, len(mask), per)
            m = _shaped(mask, rows)
            rows.mul_(m)
            if self.optimizer is not None:
                for value in self.optimizer.state.get(p, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == p.shape:
                        group_rows(value, offset, len(mask), per).mul_(m)


def _shaped(mask: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (p.dim() - 1)))


# -- rules ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ZeroingRule:
    """Base rule: does nothing. ``spec`` is the canonical command-line form."""

    @property
    def spec(self) -> str:
        return "none"

    def prepare(self, masks: FilterMasks) -> None:
        """Called once before training."""

    def after_step(self, masks: FilterMasks) -> None:
        """Called after every optimizer step, before the trainer re-applies the masks (so a rule only has to
        clear mask entries: :meth:`FilterMasks.apply` zeroes the slices)."""

    def on_epoch_end(self, masks: FilterMasks) -> None:
        """Called at the end of every epoch, before evaluation."""


@dataclass(frozen=True)
class NoZeroing(ZeroingRule):
    pass


@dataclass(frozen=True)
class Cumulative(ZeroingRule):
    t: float = 0.01
    scope: str = "global"
    norm_scale: str = "filters"

    def __post_init__(self) -> None:
        if not 0.0 < self.t < 1.0:
            raise ZeroingSpecError(f"cumulative threshold t must be in (0, 1), got {self.t}")
        if self.scope not in ("global", "layer"):
            raise ZeroingSpecError(f"cumulative scope must be 'global' or 'layer', got {self.scope!r}")
        if self.norm_scale not in NORM_SCALES:
            raise ZeroingSpecError(f"norm_scale must be one of {NORM_SCALES}, got {self.norm_scale!r}")

    @property
    def spec(self) -> str:
        return f"cumulative:{self.t:g}" + (":layer" if self.scope == "layer" else "")

    @torch.no_grad()
    def on_epoch_end(self, masks: FilterMasks) -> None:
        norms = [kernel_norms(masks.unit(n), self.norm_scale) for n in masks.layers]
        alive = [masks.alive(n) for n in masks.layers]
        for name, remove in zip(masks.layers, cumulative_selection(norms, alive, self.t, self.scope)):
            if remove.any():
                masks.remove(name, remove)


def cumulative_selection(norms: Sequence[torch.Tensor], alive: Sequence[torch.Tensor], t: float,
                         scope: str = "global") -> list[torch.Tensor]:
    """Which alive filters the cumulative rule removes: one boolean vector per layer.

    ``norms[l]`` holds layer l's kernel pseudo-norms, ``alive[l]`` its alive mask. Among alive filters
    (globally or per layer), norms are normalised to sum to 1 and sorted ascending; filters whose
    cumulative sum is <= t are selected. Computed in float64 so the boundary is deterministic. Does not
    apply the last-filter rule: :meth:`FilterMasks.remove` does.
    """
    if scope == "layer":
        return [cumulative_selection([n], [a], t, "global")[0] for n, a in zip(norms, alive)]
    flat = torch.cat([n.detach().double().flatten().cpu() for n in norms])
    live = torch.cat([a.flatten().cpu() for a in alive])
    selected = torch.zeros_like(live)
    total = flat[live].sum()
    if live.any() and total > 0:
        idx = live.nonzero().flatten()
        share = flat[idx] / total
        order = torch.argsort(share, stable=True)
        below = torch.cumsum(share[order], 0) <= t
        selected[idx[order[below]]] = True
    return list(torch.split(selected, [n.numel() for n in norms]))


@dataclass(frozen=True)
class Threshold(ZeroingRule):
    """Two implementations of the same rule: on CPU, where reading a value back costs nothing, the common
    step is a few passes and filters are removed through :meth:`FilterMasks.remove` when they empty; on
    an accelerator, :func:`threshold_unit` does it without any host sync (every layer's masks are then
    re-applied at each step). ``sync_free`` forces one of them (None: by the weights' device)."""

    eps: float = 1e-4
    sync_free: bool | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ZeroingSpecError(f"threshold eps must be > 0, got {self.eps}")

    @property
    def spec(self) -> str:
        return f"threshold:{self.eps:g}"

    def _sync_free(self, weight: torch.Tensor) -> bool:
        return weight.device.type != "cpu" if self.sync_free is None else self.sync_free

    def prepare(self, masks: FilterMasks) -> None:
        if any(self._sync_free(masks.weights(n)[0]) for n in masks.layers):
            masks.mark_all_dirty()  # filters may be removed at any step, without a host sync

    @torch.no_grad()
    def after_step(self, masks: FilterMasks) -> None:
        for name in masks.layers:
            weights = masks.weights(name)
            if self._sync_free(weights[0]):
                threshold_unit(weights, masks.mask(name), self.eps)
                continue
            largest = None
            for weight in weights:
                flat = weight.flatten(1)
                top = torch.maximum(flat.amax(1), flat.amin(1).neg())
                largest = top if largest is None else torch.maximum(largest, top)
            emptied = (largest < self.eps) & masks.alive(name)
            kept = None
            if emptied.any():   # rare, and free to ask on CPU
                if not (masks.alive(name) & ~emptied).any():   # keep the strongest group's weights
                    norms = sum(w.flatten(1).abs().sum(1) for w in weights)
                    keep = int(norms.masked_fill(~masks.alive(name), -1.0).argmax())
                    emptied[keep] = False
                    kept = (keep, [w[keep].clone() for w in weights])
            # |w| < eps -> 0 in one fused pass: hardshrink keeps |w| > lambd, and lambd is the largest
            # number below eps in the weights' precision
            for weight in weights:
                torch.hardshrink(weight, _below(self.eps, weight.dtype), out=weight)
            if kept is not None:
                for weight, values in zip(weights, kept[1]):
                    weight[kept[0]] = values
            if emptied.any():
                masks.remove(name, emptied)


def _below(value: float, dtype: torch.dtype) -> float:
    """The largest number below ``value`` in ``dtype``."""
    v = torch.tensor(value, dtype=dtype)
    return float(torch.nextafter(v, torch.zeros((), dtype=dtype)))


@torch.no_grad()
def threshold_unit(weights: Sequence[torch.Tensor], mask: torch.Tensor, eps: float) -> None:
    """Zero weights with |w| < eps in place and clear ``mask`` for groups left all zero (in every member).

    Without a host sync: if every alive group would be emptied, the strongest one keeps its weights
    (the last group of a layer is never removed).
    """
    alive = mask > 0
    smalls = [weight.abs() < eps for weight in weights]
    emptied = alive
    for small in smalls:
        emptied = small.flatten(1).all(1) & emptied
    survivors = (alive & ~emptied).any()
    norms = sum(weight.abs().flatten(1).sum(1) for weight in weights) * mask
    keep = torch.zeros_like(emptied)
    keep.scatter_(0, norms.argmax().view(1), (~survivors).view(1))
    for weight, small in zip(weights, smalls):
        small &= ~keep.view(-1, *([1] * (weight.dim() - 1)))
        weight.masked_fill_(small, 0.0)
    mask.mul_((~(emptied & ~keep)).to(mask.dtype))


def parse_zeroing(spec: str, norm_scale: str = "filters") -> ZeroingRule:
    """Parse ``none``, ``cumulative:T[:global|layer]`` or ``threshold:EPS``.

    ``norm_scale`` is the kernel pseudo-norm scaling the cumulative rule uses (the method's, when it has one).
    """
    parts = spec.strip().lower().split(":")
    kind, args = parts[0], parts[1:]
    try:
        if kind == "none" and not args:
            return NoZeroing()
        if kind == "cumulative" and 1 <= len(args) <= 2:
            return Cumulative(float(args[0]), args[1] if len(args) == 2 else "global", norm_scale)
        if kind == "threshold" and len(args) == 1:
            return Threshold(float(args[0]))
    except ValueError as err:
        if isinstance(err, ZeroingSpecError):
            raise
        raise ZeroingSpecError(f"cannot parse zeroing rule {spec!r}: {err}") from None
    raise ZeroingSpecError(f"cannot parse zeroing rule {spec!r}; expected 'none', 'cumulative:T[:global|layer]' "
                           "(e.g. cumulative:0.01) or 'threshold:EPS' (e.g. threshold:1e-4)")
