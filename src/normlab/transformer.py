"""A small Transformer encoder built from ``normlab`` normalization layers.

Used by the LayerNorm chapter to compare where the normalization sits:

* **Post-LN** (the original Transformer): ``x = norm(x + sublayer(x))``;
* **Pre-LN**: ``x = x + sublayer(norm(x))``, plus one final norm after the last block.

Xiong et al. (2020) showed that at initialization Post-LN gives large gradients to the
parameters near the output, which is why it needs a learning-rate warm-up, while Pre-LN's
gradients are well behaved across depth.

``norm="dyt"`` puts :class:`normlab.nn.DynamicTanh` (Zhu et al., 2025) in every norm's place:
the same architecture with no normalization statistic at all.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .models import norm_layer

#: The :func:`normlab.models.norm_layer` names that act on each token on its own, over
#: ``d_model``: the norms a Transformer block can use. ``"dyt"`` (DynamicTanh) is the
#: statistics-free replacement of a norm, element-wise within the token.
TOKEN_NORMS = ("ln", "rms", "dyt")


def _norm(kind: str, d_model: int) -> nn.Module:
    if kind not in TOKEN_NORMS:
        raise ValueError(f"norm must be one of {', '.join(map(repr, TOKEN_NORMS))} (a norm that "
                         f"acts on each token on its own), got {kind!r}")
    return norm_layer(kind, d_model, spatial=False)


class TransformerBlock(nn.Module):
    """Self-attention and a feed-forward layer, each with a residual connection and a norm.

    Input and output ``(batch, tokens, d_model)``. ``placement`` is ``"pre"`` or ``"post"``;
    ``norm`` is ``"ln"`` (:class:`normlab.nn.LayerNorm`), ``"rms"``
    (:class:`normlab.nn.RMSNorm`) or ``"dyt"`` (:class:`normlab.nn.DynamicTanh`, no
    statistic), as named by :func:`normlab.models.norm_layer` (:data:`TOKEN_NORMS`). Each
    token is normalized (or, with ``"dyt"``, squashed element-wise) on its own, over
    ``d_model``.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None,
                 placement: str = "pre", norm: str = "ln") -> None:
        super().__init__()
        if placement not in ("pre", "post"):
            raise ValueError(f"placement must be 'pre' or 'post', got {placement!r}")
        self.placement = placement
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        d_ff = d_ff or 4 * d_model
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.norm1, self.norm2 = _norm(norm, d_model), _norm(norm, d_model)

    def _attend(self, x: Tensor, pad: Tensor | None) -> Tensor:
        return self.attn(x, x, x, key_padding_mask=pad, need_weights=False)[0]

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if self.placement == "pre":
            x = x + self._attend(self.norm1(x), key_padding_mask)
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self._attend(x, key_padding_mask))
        return self.norm2(x + self.ff(x))


class TinyTransformer(nn.Module):
    """Token embedding + learned positions, ``depth`` blocks, (final norm for Pre-LN), and a
    linear read-out per token. ``forward(tokens, key_padding_mask=None)`` takes ``(batch,
    tokens)`` integer ids and returns ``(batch, tokens, n_out)``."""

    def __init__(self, vocab: int, d_model: int = 32, n_heads: int = 4, depth: int = 6,
                 max_len: int = 64, n_out: int | None = None, placement: str = "pre",
                 norm: str = "ln") -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, placement=placement,
                                                     norm=norm) for _ in range(depth))
        self.final_norm = _norm(norm, d_model) if placement == "pre" else nn.Identity()
        self.head = nn.Linear(d_model, n_out or vocab)

    def forward(self, tokens: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, key_padding_mask)
        return self.head(self.final_norm(x))
