"""``nisp``: a NISP-style importance baseline, swept over the pruning ratio p.

Yu, Li, Chen, Lai, Morariu, Han, Gao, Lin, Davis, "NISP: Pruning Networks using Neuron Importance Score
Propagation", CVPR 2018. A post-hoc criterion, no penalty:

1. Pre-train without penalty for ``epochs - finetune_epochs`` epochs.
2. Collect the final response layer (FRL, the input of the classifier: LeNet's 500-d ReLU output) on
   ``samples`` random training examples.
3. Score the FRL units with Inf-FS (Roffo et al. 2015, :func:`inf_fs`).
4. Propagate the scores back to every conv filter: ``s_k = |W_{k+1}|^T s_{k+1}`` through linear layers,
   flatten (reshape), pooling (each score spread evenly over its window) and convolutions (transposed
   convolution with |W|); biases are ignored and ReLU, dropout and BatchNorm scaling are identity. That is one
   vector-Jacobian product through a surrogate network with |W|, no biases and identity nonlinearities
   (:func:`filter_importance`). A filter's score is the sum over its output positions.
5. Remove ``floor(p * F)`` lowest-score filters in every eligible layer (so ``ceil((1 - p) * F)`` stay; never
   the last one), then fine-tune for ``finetune_epochs`` with the removed filters frozen by the masks.

The epoch at which pruning happens records ``accuracy_before_pruning`` and ``accuracy_after_pruning``; its
``test_accuracy`` is the accuracy right after pruning, and the last epoch's is the accuracy after fine-tuning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import register_method
from .base import HparamsBase, MethodError, MethodState, PruneThenFinetune, eval_mode, option


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
        if not isinstance(model, nn.Sequential):
            raise MethodError(f"nisp propagates importance through nn.Sequential models only; "
                              f"{type(model).__name__} is not one")
        classifier(model)

    def prune(self, model: nn.Module, state: MethodState) -> None:
        frl = final_responses(model, state, self.hparams.samples)
        scores = filter_importance(model, state.input_shape, inf_fs(frl, self.hparams.alpha))
        for layer in state.layers:
            s = scores[layer]
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


class _AbsSurrogate(nn.Module):
    """The model's layers up to the final response layer with |W|, no biases and identity nonlinearities.

    Works for ``nn.Sequential`` models of Conv2d, BatchNorm2d, pooling, activations, dropout, Flatten and Linear
    (the registered models); convs' outputs are kept so their gradients give the filter scores.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Sequential):
            raise MethodError(f"nisp's importance propagation supports nn.Sequential models, not {type(model).__name__}")
        self.layers = list(model.named_children())
        self.last = classifier(model)
        self.conv_outputs: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, m in self.layers:
            if m is self.last:
                return x
            if isinstance(m, nn.Conv2d):
                x = F.conv2d(x, m.weight.detach().abs(), None, m.stride, m.padding, m.dilation, m.groups)
                x.retain_grad()
                self.conv_outputs[name] = x
            elif isinstance(m, nn.Linear):
                x = F.linear(x, m.weight.detach().abs())
            elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                x = F.avg_pool2d(x, m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
            elif isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
                x = F.adaptive_avg_pool2d(x, m.output_size)
            elif isinstance(m, nn.Flatten):
                x = m(x)
            elif not isinstance(m, (nn.ReLU, nn.BatchNorm2d, nn.Dropout, nn.Identity, nn.LeakyReLU, nn.ReLU6)):
                raise MethodError(f"nisp cannot propagate importance through {type(m).__name__} ({name!r})")
        raise MethodError("the classifier is not a direct child of the model")


def filter_importance(model: nn.Module, input_shape: tuple[int, ...], frl_scores: torch.Tensor
                      ) -> dict[str, torch.Tensor]:
    """Importance of every conv filter, by conv name: the FRL scores propagated back through |W| (one VJP)."""
    surrogate = _AbsSurrogate(model)
    param = next(model.parameters())
    x = torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype, requires_grad=True)
    with torch.enable_grad():
        out = surrogate(x)
        if out.shape[1:] != frl_scores.shape:
            raise MethodError(f"final response layer has {tuple(out.shape[1:])} units, scores {tuple(frl_scores.shape)}")
        out.backward(frl_scores.to(out.device, out.dtype).unsqueeze(0))
    return {name: y.grad.sum(dim=(0, 2, 3)).detach().cpu() for name, y in surrogate.conv_outputs.items()}
