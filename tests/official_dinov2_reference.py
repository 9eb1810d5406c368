"""The official DINOv2 ViT computation, re-implemented for parity tests.

Written from facebookresearch/dinov2 (``dinov2/models/vision_transformer.py``
``DinoVisionTransformer``: ``prepare_tokens_with_masks``,
``interpolate_pos_encoding``, ``get_intermediate_layers``; ``dinov2/layers``:
``PatchEmbed``, ``Attention``, ``Mlp``, ``LayerScale``, ``Block``; the hub
settings of ``dinov2/hub/backbones.py``) and checked once against that
repository (figures in docs/backbones.md). Parameter names are the official
ones, so ``state_dict()`` is a file in the layout of the released
``dinov2_vit*14[_reg4]_pretrain.pth``.

Only the inference path (no masks, no drop-path, no chunked blocks).
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RefBlock(nn.Module):
    """Pre-norm block with layer scales: x + ls1(attn(norm1(x))), then the same
    with the MLP (names of the official ``Block``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.ls1 = nn.Module()
        self.ls1.gamma = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, hidden)
        self.mlp.fc2 = nn.Linear(hidden, dim)
        self.ls2 = nn.Module()
        self.ls2.gamma = nn.Parameter(torch.ones(dim))

    def attention(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.attn.qkv(x).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        weights = (q * (c // self.heads)**-0.5) @ k.transpose(-2, -1)
        out = weights.softmax(-1) @ v
        return self.attn.proj(out.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1.gamma * self.attention(self.norm1(x))
        hidden = F.gelu(self.mlp.fc1(self.norm2(x)))
        return x + self.ls2.gamma * self.mlp.fc2(hidden)


class RefDinoV2(nn.Module):
    """``DinoVisionTransformer`` as the hub builds it.

    Args:
        img_size (int): Pretraining size (518 for the releases).
        patch_size (int): 14.
        embed_dim, depth, num_heads: Width, blocks, heads.
        num_register_tokens (int): 0, or 4 for ``*_reg4``.
        interpolate_offset (float), interpolate_antialias (bool): The hub
            gives 0.1 / False without registers, 0.0 / True with them.
    """

    def __init__(self,
                 img_size: int = 518,
                 patch_size: int = 14,
                 embed_dim: int = 32,
                 depth: int = 4,
                 num_heads: int = 2,
                 num_register_tokens: int = 0,
                 interpolate_offset: float = 0.1,
                 interpolate_antialias: bool = False):
        super().__init__()
        self.patch_size = patch_size
        self.offset = interpolate_offset
        self.antialias = interpolate_antialias
        self.num_register_tokens = num_register_tokens
        grid = img_size // patch_size
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, 1 + grid * grid, embed_dim))
        if num_register_tokens:
            self.register_tokens = nn.Parameter(
                torch.zeros(1, num_register_tokens, embed_dim))
        self.blocks = nn.ModuleList(
            RefBlock(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))

    @classmethod
    def hub(cls, registers: bool, **kwargs) -> 'RefDinoV2':
        """The hub's settings for ``dinov2_vit*14`` / ``*14_reg``."""
        if registers:
            return cls(
                num_register_tokens=4,
                interpolate_offset=0.0,
                interpolate_antialias=True,
                **kwargs)
        return cls(**kwargs)

    def positions(self, h: int, w: int) -> Tensor:
        """The table for an h x w patch grid (``interpolate_pos_encoding``)."""
        n = self.pos_embed.shape[1] - 1
        if n == h * w and h == w:
            return self.pos_embed
        side = int(math.sqrt(n))  # the official code's square source table
        table = self.pos_embed.float()
        grid = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        if self.offset:
            kwargs = dict(
                scale_factor=((h + self.offset) / side,
                              (w + self.offset) / side))
        else:
            kwargs = dict(size=(h, w))
        grid = F.interpolate(
            grid, mode='bicubic', antialias=self.antialias, **kwargs)
        assert grid.shape[-2:] == (h, w)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat((table[:, :1], grid), 1).to(self.pos_embed.dtype)

    def get_intermediate_layers(self, x: Tensor,
                                n: Sequence[int]) -> Tuple[Tensor, ...]:
        """The official ``get_intermediate_layers(x, n, reshape=True,
        norm=False)``: the maps of blocks ``n``, each (B, C, H / p, W / p)."""
        b, _, height, width = x.shape
        h, w = height // self.patch_size, width // self.patch_size
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), tokens), 1)
        tokens = tokens + self.positions(h, w)
        if self.num_register_tokens:
            tokens = torch.cat(
                (tokens[:, :1], self.register_tokens.expand(
                    b, -1, -1), tokens[:, 1:]), 1)
        outputs: List[Tensor] = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in n:
                outputs.append(tokens)
        start = 1 + self.num_register_tokens
        return tuple(o[:, start:].reshape(b, h, w, -1).permute(0, 3, 1, 2)
                     for o in outputs)


def center_padding(x: Tensor, multiple: int) -> Tensor:
    """The official ``CenterPadding`` (``dinov2/hub/utils.py``): zeros, half
    the padding (rounded down) before and the rest after, on H and W."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        pad = math.ceil(size / multiple) * multiple - size
        pads += [pad // 2, pad - pad // 2]
    return F.pad(x, pads)


def randomise(model: nn.Module, seed: int = 0) -> None:
    """Random values in every tensor (layer scales, tokens and position table
    included), so a wrong mapping shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 if name.endswith('gamma') else 0.2
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
            if 'norm' in name and name.endswith('weight'):
                p.add_(1.0)
