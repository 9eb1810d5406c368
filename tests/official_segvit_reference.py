"""A small re-implementation of the official SegViT ATM head, for tests.

It follows the structure of the official code (github zbwxp/SegVit,
``decode_heads/atm_head.py``, mmseg 0.24) closely enough that its
``state_dict`` has the official key layout and its forward computes what
the official head computes:

* modules registered as attributes numbered from 1: ``input_proj_{n}``
  (Linear), ``proj_norm_{n}`` (LayerNorm), ``decoder_{n}`` (a torch
  ``TransformerDecoder`` of ``TransformerDecoderLayer`` s whose
  ``multihead_attn`` is replaced by a cross-attention with separate
  ``q``/``k``/``v``/``proj`` linears), then ``q`` (Embedding) and
  ``class_embed``;
* tensors sequence-first (N, B, C) inside the decoders, as torch's layers
  of that time;
* the inputs are reversed (deepest first), each stage's mask is the
  head-averaged pre-softmax similarity of the last decoder layer, grids
  come from ``sqrt`` of the token count, masks are summed stage after
  stage, resized to ``img_size`` and combined with the class softmax;
* the official loss registers a constant ``empty_weight`` buffer under
  ``loss_decode.criterion``.

The Shrunk model is covered the same way: :class:`OfficialViTShrink`
(``backbone/vit_shrink.py``: mmseg's ViT whose layer ``shrink_idx`` takes
the stride-2 tokens as queries) and :class:`OfficialTPNATMHead`
(``decode_heads/tpn_atm_head.py``: query up-sampling with torch's standard
decoder layers, then an ``ATMSingleHead`` without projections under
``atm``, one mask per decoder layer).

Only eval-mode forward is needed (no loss, no crop training).
"""
import math
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.backbones.vit import VisionTransformer
from torch import Tensor


class OfficialCrossAttention(nn.Module):
    """Cross-attention returning the head-averaged pre-softmax map."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads)**-0.5
        self.q = nn.Linear(dim, dim, bias=True)
        self.k = nn.Linear(dim, dim, bias=True)
        self.v = nn.Linear(dim, dim, bias=True)
        self.attn_drop = nn.Dropout(0.1)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, xq: Tensor, xk: Tensor, xv: Tensor):
        """Batch-first inputs; returns sequence-first output and the map."""
        b, nq, c = xq.shape
        h = self.num_heads

        def heads(x: Tensor) -> Tensor:
            return x.reshape(b, x.shape[1], h, c // h).permute(0, 2, 1, 3)

        q, k, v = heads(self.q(xq)), heads(self.k(xk)), heads(self.v(xv))
        sim = (q @ k.transpose(-2, -1)) * self.scale
        saved = sim.clone()
        attn = self.attn_drop(sim.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b, nq, c)
        x = self.proj_drop(self.proj(x))
        return x.transpose(0, 1), saved.sum(dim=1) / h


class OfficialDecoderLayer(nn.TransformerDecoderLayer):
    """torch's post-norm decoder layer with the cross-attention swapped."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int) -> None:
        super().__init__(
            d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward)
        del self.multihead_attn
        self.multihead_attn = OfficialCrossAttention(d_model, nhead)

    def forward(self, tgt: Tensor, memory: Tensor):  # type: ignore
        """(Q, B, C) queries and (N, B, C) memory."""
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(tgt, tgt, tgt)[0]))
        tgt2, attn = self.multihead_attn(
            tgt.transpose(0, 1), memory.transpose(0, 1),
            memory.transpose(0, 1))
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.linear2(self.dropout(self.activation(self.linear1(tgt))))
        tgt = self.norm3(tgt + self.dropout3(tgt2))
        return tgt, attn


class OfficialDecoder(nn.TransformerDecoder):
    """Runs the layers; returns the last queries and the last map, or the lists
    of every layer's (``ATMSingleHead``'s decoder)."""

    def __init__(self,
                 layer: nn.Module,
                 num_layers: int,
                 all_layers: bool = False) -> None:
        super().__init__(layer, num_layers)
        self.all_layers = all_layers

    def forward(self, tgt: Tensor, memory: Tensor):  # type: ignore
        out, outs, attns = tgt, [], []
        for layer in self.layers:
            out, attn = layer(out, memory)
            outs.append(out)
            attns.append(attn)
        if self.all_layers:
            return outs, attns
        return out, attn


class _Criterion(nn.Module):

    def __init__(self, num_classes: int, eos_coef: float = 0.1) -> None:
        super().__init__()
        weight = torch.ones(num_classes + 1)
        weight[-1] = eos_coef
        self.register_buffer('empty_weight', weight)


class _Loss(nn.Module):

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.criterion = _Criterion(num_classes)


def _add_stage(head: nn.Module, i: int, proj: nn.Module, norm: nn.Module,
               decoder: nn.Module) -> None:
    """Register stage ``i``'s modules under the official numbered names
    (``input_proj_{i + 1}``, ...) and in the head's per-stage lists."""
    for name, module, stages in (('input_proj', proj, head.input_proj),
                                 ('proj_norm', norm, head.proj_norm),
                                 ('decoder', decoder, head.decoder)):
        head.add_module(f'{name}_{i + 1}', module)
        stages.append(module)


class OfficialATMHead(nn.Module):
    """The official ATM head at eval time (see the module docstring).

    Args:
        img_size (int): Square size the masks are resized to.
        in_channels (int): Channels of every backbone input.
        embed_dims (int): Query width.
        num_classes (int): Classes (queries).
        num_layers (int): Decoder layers per stage.
        num_heads (int): Attention heads.
        use_stages (int): Backbone inputs used.
    """

    def __init__(self, img_size: int, in_channels: int, embed_dims: int,
                 num_classes: int, num_layers: int, num_heads: int,
                 use_stages: int) -> None:
        super().__init__()
        self.image_size = img_size
        self.use_stages = use_stages
        self.input_proj, self.proj_norm, self.decoder = [], [], []
        for i in range(use_stages):
            proj = nn.Linear(in_channels, embed_dims)
            norm = nn.LayerNorm(embed_dims)
            layer = OfficialDecoderLayer(embed_dims, num_heads, embed_dims * 4)
            decoder = OfficialDecoder(layer, num_layers)
            _add_stage(self, i, proj, norm, decoder)
        self.q = nn.Embedding(num_classes, embed_dims)
        self.class_embed = nn.Linear(embed_dims, num_classes + 1)
        self.loss_decode = _Loss(num_classes)

    @staticmethod
    def d3_to_d4(t: Tensor) -> Tensor:
        n, hw, c = t.shape
        if hw % 2 != 0:
            t = t[:, 1:]
        h = w = int(math.sqrt(hw))
        return t.transpose(1, 2).reshape(n, c, h, w)

    def forward(self, inputs: Sequence[Tensor]) -> Dict[str, Tensor]:
        """Inputs: (B, C, H, W) maps or (B, N, C) tokens, shallow first.

        Returns:
            dict: ``classes`` (L, B, K, K + 1), ``masks`` (L, B, K, h, w)
            (cumulative, on the last stage's grid) and ``pred`` (B, K,
            img_size, img_size).
        """
        x = [
            s.flatten(-2).transpose(-1, -2) if s.dim() > 3 else s
            for s in inputs[:self.use_stages]
        ]
        x.reverse()
        bs = x[0].shape[0]
        q = self.q.weight.repeat(bs, 1, 1).transpose(0, 1)
        qs: List[Tensor] = []
        attns: List[Tensor] = []
        for x_, proj, norm, decoder in zip(x, self.input_proj, self.proj_norm,
                                           self.decoder):
            lateral = norm(proj(x_))
            q, attn = decoder(q, lateral.transpose(0, 1))
            attns.append(self.d3_to_d4(attn.transpose(-1, -2)))
            qs.append(q.transpose(0, 1))
        classes = self.class_embed(torch.stack(qs))
        size = attns[-1].shape[-2:]
        masks: List[Tensor] = []
        for attn in attns:
            m = F.interpolate(
                attn, size=size, mode='bilinear', align_corners=False)
            masks.append(m if not masks else masks[-1] + m)
        pred_masks = F.interpolate(
            masks[-1],
            size=(self.image_size, self.image_size),
            mode='bilinear',
            align_corners=False)
        cls_prob = F.softmax(classes[-1], dim=-1)[..., :-1]
        pred = torch.einsum('bqc,bqhw->bchw', cls_prob, pred_masks.sigmoid())
        return dict(classes=classes, masks=torch.stack(masks), pred=pred)


def _semantic(classes: Tensor, masks: Tensor, size: int) -> Tensor:
    pred_masks = F.interpolate(
        masks, size=(size, size), mode='bilinear', align_corners=False)
    cls_prob = F.softmax(classes, dim=-1)[..., :-1]
    return torch.einsum('bqc,bqhw->bchw', cls_prob, pred_masks.sigmoid())


class OfficialATMSingleHead(nn.Module):
    """The official ``ATMSingleHead`` with ``use_proj=False`` (as inside
    ``TPNATMHead``): one decoder, one output per decoder layer, masks not
    summed."""

    def __init__(self, img_size: int, embed_dims: int, num_classes: int,
                 num_layers: int, num_heads: int) -> None:
        super().__init__()
        self.image_size = img_size
        self.add_module('input_proj_1', nn.Identity())
        self.add_module('proj_norm_1', nn.Identity())
        layer = OfficialDecoderLayer(embed_dims, num_heads, embed_dims * 4)
        self.add_module('decoder_1',
                        OfficialDecoder(layer, num_layers, all_layers=True))
        self.q = nn.Embedding(num_classes, embed_dims)
        self.class_embed = nn.Linear(embed_dims, num_classes + 1)
        self.loss_decode = _Loss(num_classes)

    def forward(self, inputs: Sequence[Tensor]) -> Dict[str, Tensor]:
        x = inputs[0].flatten(-2).transpose(-1, -2)
        lateral = self.proj_norm_1(self.input_proj_1(x))
        q = self.q.weight.repeat(x.shape[0], 1, 1).transpose(0, 1)
        qs, attns = [], []
        q_, attn_ = self.decoder_1(q, lateral.transpose(0, 1))
        for q, attn in zip(q_, attn_):
            attns.append(OfficialATMHead.d3_to_d4(attn.transpose(-1, -2)))
            qs.append(q.transpose(0, 1))
        classes = self.class_embed(torch.stack(qs))
        size = attns[-1].shape[-2:]
        masks = [
            F.interpolate(a, size=size, mode='bilinear', align_corners=False)
            for a in attns
        ]
        return dict(
            classes=classes,
            masks=torch.stack(masks),
            pred=_semantic(classes[-1], masks[-1], self.image_size))


class OfficialTPNATMHead(nn.Module):
    """The official ``TPNATMHead`` at eval time.

    Query up-sampling: ``(img_size // shrink_ratio) ** 2`` queries pass through
    one torch ``TransformerDecoder`` per input (not reversed: the high-
    resolution input first), then ``atm`` segments the result.
    """

    def __init__(self,
                 img_size: int,
                 in_channels: int,
                 embed_dims: int,
                 num_classes: int,
                 num_layers: int,
                 num_heads: int,
                 use_stages: int,
                 shrink_ratio: int = 16) -> None:
        super().__init__()
        self.use_stages = use_stages
        self.input_proj, self.proj_norm, self.decoder = [], [], []
        for i in range(use_stages):
            proj = nn.Linear(in_channels, embed_dims)
            norm = nn.LayerNorm(embed_dims)
            decoder = nn.TransformerDecoder(
                nn.TransformerDecoderLayer(
                    d_model=embed_dims,
                    nhead=num_heads,
                    dim_feedforward=embed_dims * 4), num_layers)
            _add_stage(self, i, proj, norm, decoder)
        self.q = nn.Embedding((img_size // shrink_ratio)**2, embed_dims)
        self.atm = OfficialATMSingleHead(img_size, embed_dims, num_classes,
                                         num_layers, num_heads)
        self.loss_decode = _Loss(num_classes)

    def forward(self, inputs: Sequence[Tensor]) -> Dict[str, Tensor]:
        """Inputs: (B, N_i, C) tokens of the backbone, shallow first."""
        x = list(inputs[:self.use_stages])
        q = self.q.weight.repeat(x[0].shape[0], 1, 1).transpose(0, 1)
        for x_, proj, norm, decoder in zip(x, self.input_proj, self.proj_norm,
                                           self.decoder):
            q = decoder(q, norm(proj(x_)).transpose(0, 1))
        q = OfficialATMHead.d3_to_d4(q.transpose(0, 1))
        return self.atm([q])


class OfficialViTShrink(VisionTransformer):
    """The official ``vit_shrink`` backbone's forward on mmseg's ViT.

    Same parameters as the plain ViT (the shrink layer is an ordinary encoder
    layer called differently), returns tokens (B, N, C).
    """

    def __init__(self, shrink_idx: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shrink_idx = shrink_idx

    def forward(self, inputs: Tensor) -> List[Tensor]:  # type: ignore
        b = inputs.shape[0]
        x, hw_shape = self.patch_embed(inputs)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        x = self._pos_embeding(x, hw_shape, self.pos_embed)
        if not self.with_cls_token:
            x = x[:, 1:]
        outs = []
        for i, layer in enumerate(self.layers):
            if i == self.shrink_idx:
                n, hw, c = x.shape
                if hw % 2 != 0:
                    x = x[:, 1:]
                h = w = int(math.sqrt(hw))
                down = x.transpose(1, 2).reshape(n, c, h, w)[:, :, ::2, ::2]
                down = down.reshape(n, c, hw // 4).transpose(2, 1)
                x = layer.attn(
                    query=layer.norm1(down),
                    key=layer.norm1(x),
                    value=layer.norm1(x),
                    identity=down)
                x = layer.ffn(layer.norm2(x), identity=x)
            else:
                x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
