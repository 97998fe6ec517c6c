"""Layers the compact model puts in place of a pruned one whose own class cannot hold the kept channels.

- :class:`PaddedLayerNorm`: a LayerNorm whose input lost channels, normalised with the full width's statistics;
- :class:`HeadAttention`: a ``MultiheadAttention`` with some of its heads (``bench/attention.py``).

Each gives the masked model's outputs at the kept channels (``bench.structure.check_units`` checks it per model).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods.groups import channels_last


class PaddedLayerNorm(nn.Module):
    """A LayerNorm of the compact model whose input lost channels: it normalises the kept ones with the statistics
    of the full width, the removed channels counted as the zeros they are in the masked model (mean = sum / C,
    variance = (sum of squared deviations + (C - kept) * mean^2) / C), so its outputs equal the masked LayerNorm's
    at the kept channels. ``channels``: the kept channels' indices; a ``LayerNorm2d`` (torchvision's, timm's)
    normalises dimension 1, any other LayerNorm the last."""

    def __init__(self, norm: nn.LayerNorm, channels: torch.Tensor) -> None:
        super().__init__()
        idx = channels.to(norm.weight.device if norm.weight is not None else "cpu")
        self.weight = nn.Parameter(norm.weight[idx].clone()) if norm.weight is not None else None
        self.bias = nn.Parameter(norm.bias[idx].clone()) if norm.bias is not None else None
        self.full, self.eps = int(norm.normalized_shape[0]), float(norm.eps)
        self.dim = -1 if channels_last(norm) else 1
        self.normalized_shape = (len(idx),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.sum(self.dim, keepdim=True) / self.full
        centred = x - mean
        var = (centred.square().sum(self.dim, keepdim=True) + (self.full - x.shape[self.dim]) * mean.square()) / self.full
        y = centred * torch.rsqrt(var + self.eps)
        shape = [1] * x.dim()
        shape[self.dim] = -1
        if self.weight is not None:
            y = y * self.weight.view(shape)
        if self.bias is not None:
            y = y + self.bias.view(shape)
        return y


class HeadAttention(nn.Module):
    """Multi-head attention with the kept heads of a ``MultiheadAttention`` (its call signature and outputs),
    computed with matrix products: queries, keys and values of ``num_heads`` heads of ``head_dim``, then
    ``out_proj`` from ``num_heads * head_dim`` features back to the embedding."""

    def __init__(self, m: nn.MultiheadAttention, heads: torch.Tensor | None = None, share: bool = False) -> None:
        super().__init__()
        e, d = m.embed_dim, m.head_dim
        heads = torch.arange(m.num_heads) if heads is None else heads
        keep = (heads[:, None] * d + torch.arange(d)).flatten().to(m.out_proj.weight.device)

        def take(t: torch.Tensor | None, start: int) -> nn.Parameter | None:
            if t is None:
                return None
            return nn.Parameter(t[start:start + e].index_select(0, keep) if not share or len(keep) < e
                                else t[start:start + e], t.requires_grad)

        w = m.in_proj_weight
        if w is not None:
            self.q_weight, self.k_weight, self.v_weight = (take(w, k * e) for k in range(3))
        else:
            self.q_weight, self.k_weight, self.v_weight = (take(t, 0) for t in (m.q_proj_weight, m.k_proj_weight,
                                                                                   m.v_proj_weight))
        b = m.in_proj_bias
        self.q_bias, self.k_bias, self.v_bias = (take(b, k * e) for k in range(3)) if b is not None else (None,) * 3
        self.out_proj = type(m.out_proj)(len(keep), e, bias=m.out_proj.bias is not None,   # as the attention's own
                                         device=m.out_proj.weight.device, dtype=m.out_proj.weight.dtype)
        self.out_proj.weight = nn.Parameter(m.out_proj.weight.index_select(1, keep) if not share or len(keep) < e
                                            else m.out_proj.weight)
        if m.out_proj.bias is not None:
            self.out_proj.bias = m.out_proj.bias if share else nn.Parameter(m.out_proj.bias.clone())
        self.num_heads, self.head_dim, self.embed_dim = len(heads), d, e
        self.batch_first, self.dropout = m.batch_first, m.dropout

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)

        def heads(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
            return F.linear(x, w, b).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

        q, k, v = heads(query, self.q_weight, self.q_bias), heads(key, self.k_weight, self.k_bias), \
            heads(value, self.v_weight, self.v_bias)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        if is_causal and attn_mask is None:
            attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).triu(1)
        for mask in (attn_mask, None if key_padding_mask is None else key_padding_mask[:, None, None, :]):
            if mask is not None:
                scores = scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        weights = torch.softmax(scores, dim=-1)
        out = torch.matmul(F.dropout(weights, self.dropout, self.training), v)
        out = self.out_proj(out.transpose(1, 2).flatten(2))
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        weights = weights.mean(1) if average_attn_weights else weights
        return out, weights.squeeze(0) if unbatched else weights
