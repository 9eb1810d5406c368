"""The official DINOv3 ViT computation, re-implemented for parity tests.

Written from facebookresearch/dinov3 (``dinov3/models/vision_transformer.py``
``DinoVisionTransformer``: ``prepare_tokens_with_masks``,
``_get_intermediate_layers_not_chunked``, ``get_intermediate_layers``;
``dinov3/layers``: ``RopePositionEmbedding`` (coordinates 0.5-centred,
normalised per side, in [-1, 1]; periods ``base ** (2 i / (D / 2))``),
``SelfAttention`` (RoPE on the patch tokens only, ``rope_rotate_half``),
``LinearKMaskedBias`` (the key third of the qkv bias masked out),
``SelfAttentionBlock`` with ``LayerScale``; the ViT-L hub settings of
``dinov3/hub/backbones.py``: LayerNorm eps 1e-5, 4 storage tokens, masked
k bias) and checked once against that repository (figures in
docs/backbones.md). Parameter and buffer names are the official ones, so
``state_dict()`` is a file in the layout of the released
``dinov3_vit*16_pretrain_*.pth``.

Only the inference path (eval mode: no coordinate augmentation, no
drop-path).
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rope_sincos(periods: Tensor, h: int, w: int) -> Tuple[Tensor, Tensor]:
    """(sin, cos), each (h * w, D_head), of ``RopePositionEmbedding``
    (``normalize_coords='separate'``)."""
    coords_h = torch.arange(0.5, h, dtype=torch.float32) / h
    coords_w = torch.arange(0.5, w, dtype=torch.float32) / w
    coords = torch.stack(
        torch.meshgrid(coords_h, coords_w, indexing='ij'), -1).flatten(0, 1)
    coords = 2.0 * coords - 1.0
    angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]
    angles = angles.flatten(1, 2).tile(2)
    return torch.sin(angles), torch.cos(angles)


def rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class RefBlock(nn.Module):
    """``SelfAttentionBlock`` (official names: norm1, attn.qkv with
    ``bias_mask``, attn.proj, ls1.gamma, norm2, mlp.fc1/fc2, ls2.gamma)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        mask = torch.ones(3 * dim)
        mask[dim:2 * dim] = 0
        self.attn.qkv.register_buffer('bias_mask', mask)
        self.attn.proj = nn.Linear(dim, dim)
        self.ls1 = nn.Module()
        self.ls1.gamma = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, hidden)
        self.mlp.fc2 = nn.Linear(hidden, dim)
        self.ls2 = nn.Module()
        self.ls2.gamma = nn.Parameter(torch.ones(dim))

    def attention(self, x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv_layer = self.attn.qkv
        bias = qkv_layer.bias * qkv_layer.bias_mask
        qkv = F.linear(x, qkv_layer.weight, bias)
        q, k, v = qkv.reshape(b, n, 3, self.heads,
                              c // self.heads).permute(2, 0, 3, 1, 4)
        prefix = n - sin.shape[0]

        def rope(t: Tensor) -> Tensor:
            rotated = t[:, :, prefix:] * cos + rotate_half(t[:, :,
                                                             prefix:]) * sin
            return torch.cat((t[:, :, :prefix], rotated), dim=2)

        q, k = rope(q), rope(k)
        weights = (q * (c // self.heads)**-0.5) @ k.transpose(-2, -1)
        out = weights.softmax(-1) @ v
        return self.attn.proj(out.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
        x = x + self.ls1.gamma * self.attention(self.norm1(x), sin, cos)
        hidden = F.gelu(self.mlp.fc1(self.norm2(x)))
        return x + self.ls2.gamma * self.mlp.fc2(hidden)


class RefDinoV3(nn.Module):
    """``DinoVisionTransformer`` with the ViT-L hub settings.

    Args:
        patch_size (int): 16.
        embed_dim, depth, num_heads: Width, blocks, heads.
        n_storage_tokens (int): 4 for the releases.
        rope_base (float): 100 for the releases.
    """

    def __init__(self,
                 patch_size: int = 16,
                 embed_dim: int = 32,
                 depth: int = 4,
                 num_heads: int = 2,
                 n_storage_tokens: int = 4,
                 rope_base: float = 100.0):
        super().__init__()
        self.patch_size = patch_size
        self.n_storage_tokens = n_storage_tokens
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.storage_tokens = nn.Parameter(
            torch.zeros(1, n_storage_tokens, embed_dim))
        head_dim = embed_dim // num_heads
        self.rope_embed = nn.Module()
        periods = rope_base**(2 * torch.arange(head_dim // 4) /
                              (head_dim // 2))
        self.rope_embed.register_buffer('periods', periods.float())
        self.blocks = nn.ModuleList(
            RefBlock(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-5)
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))

    def get_intermediate_layers(self, x: Tensor,
                                n: Sequence[int]) -> Tuple[Tensor, ...]:
        """``get_intermediate_layers(x, n=n, reshape=True, norm=False)``."""
        b = x.shape[0]
        tokens = self.patch_embed.proj(x)
        h, w = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)
        cls = self.cls_token + 0 * self.mask_token
        tokens = torch.cat((cls.expand(
            b, -1, -1), self.storage_tokens.expand(b, -1, -1), tokens), 1)
        sin, cos = rope_sincos(self.rope_embed.periods, h, w)
        outputs: List[Tensor] = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, sin, cos)
            if i in n:
                outputs.append(tokens)
        start = 1 + self.n_storage_tokens
        return tuple(o[:, start:].reshape(b, h, w, -1).permute(0, 3, 1, 2)
                     for o in outputs)
