"""The hand-object interaction blocks (spec §4, the official networks/CR.py).

One block, for a query map Q and a key map K of C channels and N = H·W tokens:

    q, k, v = conv_q(Q), conv_k(K), conv_v(K)     # 1×1 convs with bias; V comes from the key map
    t = tokens(Q) + MultiHeadAttention(q, k, v)    # no out-projection, no pre-norm, residual on Q itself
    out = t + MLP(LayerNorm(t))                    # Linear(C, 4C) -> GELU (erf) -> Linear(4C, C)

The 1×1 convs are applied as one matrix product on the token matrix; for self-attention (Q is K) the three
projections share one product.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as nnf


class Mlp(nn.Module):
    """Linear -> GELU (exact erf form) -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        hidden = self.act(self.fc1(x))
        if out_channels is None:
            return self.fc2(hidden)
        return nnf.linear(hidden, self.fc2.weight[:out_channels], self.fc2.bias[:out_channels])


def _conv1x1_weight(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight.flatten(1)


class InteractionBlock(nn.Module):
    """Attention of a query map over a key map, with the official module names (encode_*, norm2, mlp)."""

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"{dim} channels cannot be split into {heads} heads")
        self.dim = dim
        self.heads = heads
        self.encode_value = nn.Conv2d(dim, dim, 1)
        self.encode_query = nn.Conv2d(dim, dim, 1)
        self.encode_key = nn.Conv2d(dim, dim, 1)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def _project(self, query: torch.Tensor, key: torch.Tensor | None):
        """q, k, v token matrices (B, N, C); ``key=None`` means self-attention on ``query``."""
        convs = (self.encode_query, self.encode_key, self.encode_value)
        if key is None:
            weight = torch.cat([_conv1x1_weight(c) for c in convs])
            bias = torch.cat([c.bias for c in convs])
            return nnf.linear(query, weight, bias).chunk(3, dim=-1)
        q = nnf.linear(query, _conv1x1_weight(self.encode_query), self.encode_query.bias)
        weight = torch.cat([_conv1x1_weight(c) for c in convs[1:]])
        bias = torch.cat([c.bias for c in convs[1:]])
        k, v = nnf.linear(key, weight, bias).chunk(2, dim=-1)
        return q, k, v

    def forward(
        self, query: torch.Tensor, key: torch.Tensor | None = None, out_channels: int | None = None
    ) -> torch.Tensor:
        """query, key: (B, C, H, W) maps; ``key=None`` attends the query map to itself.

        ``out_channels`` returns only the first channels of the output (the MLP's last layer is then
        evaluated for those channels only); the result equals that slice of the full output.
        """
        b, c, h, w = query.shape
        q_tokens = query.flatten(2).transpose(1, 2)
        k_tokens = None if key is None else key.flatten(2).transpose(1, 2)
        q, k, v = self._project(q_tokens, k_tokens)
        split = (b, h * w, self.heads, c // self.heads)
        q, k, v = (x.reshape(split).transpose(1, 2) for x in (q, k, v))
        attn = nnf.scaled_dot_product_attention(q, k, v, scale=(c / self.heads) ** -0.5)
        t = attn.transpose(1, 2).reshape(b, h * w, c) + q_tokens
        keep = c if out_channels is None else out_channels
        out = t[..., :keep] + self.mlp(self.norm2(t), out_channels)
        return out.transpose(1, 2).reshape(b, keep, h, w)


class InteractionTransformer(nn.Module):
    """A stack of InteractionBlocks (depth 1 in HFL-Net) under the official name ``layers``."""

    def __init__(self, dim: int, heads: int = 4, depth: int = 1):
        super().__init__()
        self.layers = nn.ModuleList(InteractionBlock(dim, heads) for _ in range(depth))

    def forward(
        self, query: torch.Tensor, key: torch.Tensor | None = None, out_channels: int | None = None
    ) -> torch.Tensor:
        out = query
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            # As in the official code, each layer attends over the original key map (the input, if self).
            layer_key = key if key is not None or i == 0 else query
            out = layer(out, layer_key, out_channels if i == last else None)
        return out
