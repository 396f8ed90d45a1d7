"""``transformer``: a small decoder-only causal transformer for the language datasets.

GPT-style (Radford et al. 2019): token embedding plus a learned position
embedding, ``depth`` pre-norm blocks (LayerNorm - causal multi-head
self-attention - residual; LayerNorm - Linear-GELU-Linear - residual), a final
LayerNorm and a Linear head to the vocabulary. It maps (N, T) int64 token ids to
(N, T, vocabulary) next-token logits; position t sees positions 0..t only.

Attention is a plain ``nn.Linear`` to queries, keys and values (``qkv``), the
causal ``scaled_dot_product_attention``, and an ``nn.Linear`` output projection
(``proj``), so an init scheme and the optimizers see ordinary Linear layers.
The head is not tied to the embedding. Options: ``width`` (model dimension),
``depth`` (blocks), ``heads`` (must divide ``width``), ``context`` (positions
of the position embedding: at least the dataset's sequence length, which is the
default), ``mlp`` (hidden width of the MLP, default 4 x width) and ``dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustness._options import number_in, positive_int
from robustness.errors import UserInputError

_LANGUAGE_DATASETS = "grammar, text"


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t attends to positions <= t."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, width = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, width // self.heads).unbind(2)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=True,
        )
        return self.proj(out.transpose(1, 2).reshape(n, t, width))


class Block(nn.Module):
    """Pre-norm causal attention and MLP, each added to the residual stream."""

    def __init__(self, width: int, heads: int, mlp: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads, dropout)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp), nn.GELU(), nn.Linear(mlp, width), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CausalTransformer(nn.Module):
    """Embeddings, blocks, final LayerNorm, vocabulary head: (N, T) ids -> (N, T, V)."""

    def __init__(
        self, vocab: int, context: int, width: int, depth: int, heads: int, mlp: int, dropout: float
    ) -> None:
        super().__init__()
        self.context = context
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = nn.Embedding(context, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(Block(width, heads, mlp, dropout) for _ in range(depth)))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.dropout(self.token_embedding(ids) + self.position_embedding(positions))
        return self.head(self.ln(self.blocks(x)))


def transformer(
    input_shape: tuple[int, ...],
    num_outputs: int,
    *,
    width: int = 128,
    depth: int = 2,
    heads: int = 4,
    context: int | None = None,
    mlp: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Decoder-only causal transformer over token ids (GPT-style, pre-norm)."""
    owner = "model 'transformer'"
    if len(input_shape) != 1 or input_shape[0] < 1:
        raise UserInputError(
            f"{owner} needs token sequences of shape (T,), but the dataset's input shape "
            f"is {tuple(input_shape)}; use a language dataset ({_LANGUAGE_DATASETS})"
        )
    seq_len = input_shape[0]
    width = positive_int(owner, "width", width)
    depth = positive_int(owner, "depth", depth)
    heads = positive_int(owner, "heads", heads)
    context = positive_int(owner, "context", seq_len if context is None else context)
    mlp = positive_int(owner, "mlp", 4 * width if mlp is None else mlp)
    dropout = number_in(owner, "dropout", dropout, 0.0, 1.0, closed_low=True)
    if width % heads:
        raise UserInputError(f"{owner}: width={width} is not a multiple of heads={heads}")
    if context < seq_len:
        raise UserInputError(
            f"{owner}: context={context} is shorter than the dataset's sequences ({seq_len}); "
            "use context >= the dataset's context, or leave it out"
        )
    return CausalTransformer(num_outputs, context, width, depth, heads, mlp, dropout)
