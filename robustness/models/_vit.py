"""torchvision's Vision Transformer, as ``vit_tiny`` with patch 4 for 32x32 images.

Layer for layer ``torchvision.models.vision_transformer.VisionTransformer``
(Dosovitskiy et al. 2021, arXiv 2010.11929): a patch-embedding conv
(``conv_proj``, kernel = stride = patch), a learned class token prepended, a
learned position embedding (N(0, 0.02²) as in torchvision), dropout, ``depth`` pre-norm encoder blocks (LayerNorm eps 1e-6 -
``nn.MultiheadAttention`` - dropout - residual; LayerNorm - Linear-GELU-Dropout-
Linear-Dropout - residual), a final LayerNorm, and a Linear head on the class
token.

``vit_tiny``'s defaults are ViT-Ti/DeiT-Ti's (width 192, depth 12, 3 heads, MLP
768) with patch 4, so a 32x32 image is an 8x8 grid of 64 patches plus the class
token, the usual CIFAR adaptation (the ImageNet models use patch 16 on 224x224):
5,362,762 parameters for (3, 32, 32) and 10 classes. With torchvision's ViT-B/16
settings (``patch=16, width=768, depth=12, heads=12, mlp=3072``, 224x224, 1000
classes) it has torchvision's published 86,567,656.

The input may be any (C, H, W) whose H and W are multiples of ``patch``.

Under a run's init scheme the Linear layers, the patch conv and the LayerNorms
are re-initialized like any model's; the attention's fused input projection
(``in_proj_weight``, not an ``nn.Linear``), the class token and the position
embedding keep their construction-time values (PyTorch's xavier-uniform, zeros,
N(0, 0.02²)), drawn from the run's seed.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness._options import number_in, positive_int
from robustness.errors import UserInputError
from robustness.models._checks import image_shape


class EncoderBlock(nn.Module):
    """Pre-norm self-attention and MLP sub-blocks, each with a residual sum."""

    def __init__(self, heads: int, width: int, mlp: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp, width),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    """Patch embedding, class token, position embedding, encoder, head on the class token."""

    def __init__(
        self,
        in_channels: int,
        num_patches: int,
        num_outputs: int,
        *,
        patch: int,
        width: int,
        depth: int,
        heads: int,
        mlp: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.width = width
        self.conv_proj = nn.Conv2d(in_channels, width, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embedding = nn.Parameter(torch.empty(1, num_patches + 1, width).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(
            *(EncoderBlock(heads, width, mlp, dropout) for _ in range(depth))
        )
        self.ln = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # (N, patches, width)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.ln(self.layers(self.dropout(x + self.pos_embedding)))
        return self.head(x[:, 0])


def vit_tiny(
    input_shape: tuple[int, ...],
    num_outputs: int,
    *,
    patch: int = 4,
    width: int = 192,
    depth: int = 12,
    heads: int = 3,
    mlp: int = 768,
    dropout: float = 0.0,
) -> nn.Module:
    """torchvision's ViT at ViT-Ti size with patch 4 for 32x32 images (5.4M)."""
    owner = "model 'vit_tiny'"
    c, h, w = image_shape("vit_tiny", input_shape)
    patch = positive_int(owner, "patch", patch)
    width = positive_int(owner, "width", width)
    depth = positive_int(owner, "depth", depth)
    heads = positive_int(owner, "heads", heads)
    mlp = positive_int(owner, "mlp", mlp)
    dropout = number_in(owner, "dropout", dropout, 0.0, 1.0, closed_low=True)
    if h % patch or w % patch:
        raise UserInputError(
            f"{owner}: the image size {h}x{w} is not a multiple of patch={patch}; "
            "choose a patch that divides both"
        )
    if width % heads:
        raise UserInputError(f"{owner}: width={width} is not a multiple of heads={heads}")
    return VisionTransformer(
        c,
        (h // patch) * (w // patch),
        num_outputs,
        patch=patch,
        width=width,
        depth=depth,
        heads=heads,
        mlp=mlp,
        dropout=dropout,
    )
