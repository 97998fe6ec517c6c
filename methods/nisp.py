"""``nisp``: a NISP-style importance baseline, swept over the pruning ratio p.

Yu, Li, Chen, Lai, Morariu, Han, Gao, Lin, Davis, "NISP: Pruning Networks using Neuron Importance Score
Propagation", CVPR 2018. A post-hoc criterion, no penalty:

1. Pre-train without penalty for ``epochs - finetune_epochs`` epochs.
2. Collect the final response layer (FRL, the input of the classifier: LeNet's 500-d ReLU output) on
   ``samples`` random training examples.
3. Score the FRL units with Inf-FS (Roffo et al. 2015, :func:`inf_fs`).
4. Propagate the scores back to every conv filter: ``s_k = |W_{k+1}|^T s_{k+1}`` through linear layers,
   flatten (reshape), pooling (each score spread evenly over its window) and convolutions (transposed
   convolution with |W|), residual additions and concatenations; biases are ignored and activations, dropout
   and BatchNorm scaling are identity. That is one vector-Jacobian product through a surrogate network with |W|,
   no biases and identity nonlinearities (:func:`filter_importance`: the model itself, its weights swapped and
   its activation modules hooked for the call, so any traceable model works). A filter's score is the sum over
   its output positions; a coupled group's is the sum over its filters.
5. Remove ``floor(p * F)`` lowest-score groups in every prunable unit (so ``ceil((1 - p) * F)`` stay; never
   the last one), then fine-tune for ``finetune_epochs`` with the removed groups frozen by the masks.

The epoch at which pruning happens records ``accuracy_before_pruning`` and ``accuracy_after_pruning``; its
``test_accuracy`` is the accuracy right after pruning, and the last epoch's is the accuracy after fine-tuning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_method
from .base import HparamsBase, MethodError, MethodState, PruneThenFinetune, eval_mode, option
from .groups import attention_modules, is_depthwise


@register_method
class NISP(PruneThenFinetune):
    name = "nisp"
    description = "NISP-style baseline: Inf-FS on the final response layer, |W| propagation, prune p, fine-tune"
    paper = "Yu et al. 2018, NISP: Pruning Networks using Neuron Importance Score Propagation (CVPR)"
    formula = "0 (post-hoc: remove the fraction p of lowest-importance filters per layer)"
    default_zeroing = "none"
    sweep_axis = "ratio"
    default_grid = (0.25, 0.5, 0.75, 0.9)

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        ratio: float = option(0.5, "fraction p of filters removed in every conv layer", open_min=0.0, open_max=1.0)
        samples: int = option(2000, "training examples whose final responses feed Inf-FS", min=2)
        alpha: float = option(0.5, "Inf-FS mixing: alpha * max(sd_i, sd_j) + (1 - alpha) * (1 - |rho_ij|)",
                              min=0.0, max=1.0)
        finetune_epochs: int = option(0, "epochs of fine-tuning after pruning; 0 = half of the epochs "
                                      "(rounded down, at least 1)", min=0)

    @property
    def has_penalty(self) -> bool:
        return False

    def check_model(self, model: nn.Module) -> None:
        classifier(model)
        attention = attention_modules(model)
        if attention:
            raise MethodError(f"{type(model).__name__} has attention ({attention[0]}"
                              f"{f' and {len(attention) - 1} more' if len(attention) > 1 else ''}): NISP propagates "
                              "importance back through |W| of linear layers and elementwise activations, which "
                              "attention is not (its softmax mixes positions by the weights' signs)")

    def importance(self, model: nn.Module, state: MethodState) -> dict[str, torch.Tensor]:
        """The propagated scores of every group (Inf-FS on the final responses, back through |W|); they shrink
        with depth, so each unit's are divided by their mean before the global ranking."""
        frl = final_responses(model, state, self.hparams.samples)
        scores = filter_importance(model, state.input_shape, inf_fs(frl, self.hparams.alpha))
        units = {unit.name: unit for unit in self.units(model)}
        return {layer: group_importance(scores, units[layer]).float() for layer in state.layers}

    def prune(self, model: nn.Module, state: MethodState) -> None:
        for layer, s in self.importance(model, state).items():
            k = math.floor(self.hparams.ratio * s.numel())
            if k:
                state.remove(layer, torch.argsort(s, stable=True)[:k])


def classifier(model: nn.Module) -> nn.Linear:
    """The last linear layer: its input is the final response layer."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise MethodError(f"{type(model).__name__} has no linear classifier: NISP needs a final response layer")
    return linears[-1]


@torch.no_grad()
def final_responses(model: nn.Module, state: MethodState, samples: int, chunk: int = 500) -> torch.Tensor:
    """The classifier's inputs on ``samples`` random training examples: a (samples, D) matrix."""
    captured: list[torch.Tensor] = []
    handle = classifier(model).register_forward_hook(lambda m, inp, out: captured.append(inp[0].detach().flatten(1)))
    try:
        with eval_mode(model):
            for start in range(0, samples, chunk):
                x, _ = state.draw_batch(min(chunk, samples - start))
                model(x)
    finally:
        handle.remove()
    return torch.cat(captured).float().cpu()


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Column-wise ranks (1..n) with ties given their average rank, as Spearman's rho needs."""
    ranks = torch.empty_like(x, dtype=torch.float64)
    for j in range(x.shape[1]):
        values, inverse, counts = torch.unique(x[:, j], sorted=True, return_inverse=True, return_counts=True)
        ends = torch.cumsum(counts, 0).double()
        ranks[:, j] = (ends - (counts.double() - 1) / 2)[inverse]
    return ranks


def inf_fs(responses: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Inf-FS scores (Roffo, Melzi, Cristani 2015) of the columns of a (samples, units) matrix.

    Energy ``a_ij = alpha * max(sd_i, sd_j) + (1 - alpha) * (1 - |rho_ij|)`` with sd the per-unit standard
    deviation min-max scaled to [0, 1] and rho the Spearman correlation; ``r = 0.9 / spectral_radius(A)``;
    ``S = inv(I - r A) - I``; the score is the row sum of S. Units with zero variance (dead units) are left
    out of A and score 0. Computed in float64.
    """
    x = responses.double()
    scores = torch.zeros(x.shape[1], dtype=torch.float64)
    sd = x.std(dim=0)
    live = sd > 0
    if live.sum() == 0:
        return scores
    if live.sum() == 1:
        scores[live] = 1.0
        return scores
    xl, sdl = x[:, live], sd[live]
    span = sdl.max() - sdl.min()
    sd01 = (sdl - sdl.min()) / span if span > 0 else torch.ones_like(sdl)
    ranks = _average_ranks(xl)
    ranks = ranks - ranks.mean(dim=0)
    ranks = ranks / ranks.norm(dim=0)
    rho = (ranks.T @ ranks).clamp(-1.0, 1.0)
    a = alpha * torch.maximum(sd01[:, None], sd01[None, :]) + (1 - alpha) * (1 - rho.abs())
    radius = torch.linalg.eigvalsh(a).abs().max()
    if radius <= 0:
        scores[live] = 1.0
        return scores
    eye = torch.eye(a.shape[0], dtype=torch.float64)
    s = torch.linalg.inv(eye - (0.9 / radius) * a) - eye
    scores[live] = s.sum(dim=1)
    return scores


_IDENTITY = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Sigmoid,
             nn.Hardsigmoid, nn.Tanh, nn.Mish, nn.PReLU, nn.Dropout, nn.Dropout2d, nn.Identity,
             nn.modules.batchnorm._BatchNorm, nn.LayerNorm)


def _surrogate_forward(m: nn.Module):
    """What the surrogate network has in place of module ``m`` (None: ``m`` itself). Replacing the forward
    instead of hooking its output keeps in-place activations (``ReLU(inplace=True)``) from running at all."""
    if isinstance(m, _IDENTITY):
        return lambda x, *args, **kwargs: x
    if isinstance(m, nn.MaxPool2d):
        return lambda x: F.avg_pool2d(x, m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return lambda x: F.adaptive_avg_pool2d(x, m.output_size)
    return None


@torch.no_grad()
def _swap(params: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for p, value in params:
        tmp = p.detach().clone()
        p.copy_(value)
        value.copy_(tmp)


def filter_importance(model: nn.Module, input_shape: tuple[int, ...], frl_scores: torch.Tensor
                      ) -> dict[str, torch.Tensor]:
    """Importance of every conv filter and linear row, by layer name: the FRL scores propagated back through |W|
    (one VJP).

    The surrogate network is the model itself with, for the duration of the call, every conv and linear weight
    replaced by |W| and every bias by 0, BatchNorms, LayerNorms, activation and dropout modules turned into the identity and
    max pooling modules into average pooling (their ``forward`` replaced), run at a positive input: every activation is then
    non-negative, so activations written as functions (``torch.relu`` in a ``forward``) pass the scores through
    as the identity would. Residual additions and concatenations are linear and need nothing. The FRL's scores
    are propagated with ``torch.autograd.grad`` to every conv's and linear layer's output (no parameter's ``.grad``
    is touched)."""
    last = classifier(model)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    swapped = [(m.weight, m.weight.detach().abs()) for _, m in layers]
    swapped += [(m.bias, torch.zeros_like(m.bias)) for _, m in layers if m.bias is not None]
    outputs: dict[str, torch.Tensor] = {}
    frl: list[torch.Tensor] = []
    handles = [last.register_forward_pre_hook(lambda m, inputs: frl.append(inputs[0]))]
    replaced = []
    for name, module in model.named_modules():
        forward = _surrogate_forward(module) if module is not model else None
        if forward is not None:
            module.forward = forward
            replaced.append(module)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(
                lambda m, inputs, output, name=name: outputs.__setitem__(name, output)))
    param = next(model.parameters())
    x = torch.ones((1, *input_shape), device=param.device, dtype=param.dtype)
    _swap(swapped)
    try:
        with eval_mode(model), torch.enable_grad():
            model(x)
            if not frl:
                raise MethodError("the classifier did not run: no final response layer")
            out = frl[0].flatten(1)
            if out.shape[1:] != frl_scores.shape:
                raise MethodError(f"final response layer has {tuple(out.shape[1:])} units, scores "
                                  f"{tuple(frl_scores.shape)}")
            names = [n for n in outputs if outputs[n].requires_grad]
            grads = torch.autograd.grad(out, [outputs[n] for n in names],
                                        frl_scores.to(out.device, out.dtype).unsqueeze(0), allow_unused=True)
    finally:
        _swap(swapped)
        for h in handles:
            h.remove()
        for module in replaced:
            del module.forward
    linear = {n for n, m in layers if isinstance(m, nn.Linear)}
    return {n: _per_channel(g, outputs[n], n in linear) for n, g in zip(names, grads)}


def _per_channel(grad: torch.Tensor | None, output: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A layer's propagated scores per output channel: summed over the batch and the positions (a conv's (N, C,
    H, W); a linear layer's (..., C) over every token or pixel it ran on)."""
    width = output.shape[-1] if channels_last else output.shape[1]
    if grad is None:
        return torch.zeros(width)
    summed = grad.reshape(-1, width).sum(0) if channels_last else grad.sum(dim=(0, 2, 3))
    return summed.detach().cpu()


def group_importance(scores: dict[str, torch.Tensor], unit) -> torch.Tensor:
    """A group's importance: its filter's score, or, for a coupled group, the sum over its filters (a depthwise
    member is already in the score of the filter that feeds it)."""
    members = [p for p in unit.convs if not is_depthwise(p.module)] or list(unit.convs)
    total = None
    for part in members:
        s = scores[part.name][part.offset:part.offset + unit.size]
        total = s if total is None else total + s
    return total
