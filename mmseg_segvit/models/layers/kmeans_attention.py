"""k-means cross-attention (kMaX-DeepLab) on the parameters of ATM.

kMaX-DeepLab (Yu et al., "k-means Mask Transformer", ECCV 2022) reads query-to-
pixel cross-attention as one step of k-means clustering with the queries as
cluster centres: every pixel is assigned to the query of highest affinity (an
argmax over the queries instead of a softmax over the pixels), then each query
is updated from the pixels assigned to it.
"""
from typing import Optional, Tuple

import torch
from mmseg.registry import MODELS
from torch import Tensor

from .amp import autocast_disabled
from .atm_attention import ATMCrossAttention

__all__ = ['KMeansCrossAttention']


@MODELS.register_module()
class KMeansCrossAttention(ATMCrossAttention):
    """Cross-attention whose weights are a hard pixel-to-query assignment.

    The parameters are those of :class:`ATMCrossAttention` (``q``, ``k``,
    ``v``, ``proj``), so checkpoints load into either class. The forward
    pass differs:

    1. Affinity: the ATM mask, i.e. ``q.k^T * scale`` averaged over heads,
       shape (B, Q, N). Averaged over heads, it equals
       ``q.k^T * scale / num_heads`` on the full width, which is how it is
       computed. All heads share this one assignment, as kMaX's k-means
       cross-attention is single-headed.
    2. Assignment (k-means E-step): each token goes to the query with the
       largest affinity (``argmax`` over queries, the first one on ties),
       a one-hot (B, Q, N) map with exactly one 1 per token.
    3. Update (k-means M-step): each query gathers the values of its tokens,
       summed (``update='sum'``, as kMaX) or averaged (``update='mean'``,
       the k-means centroid), then the output projection.

    Gradients: the assignment is a constant for autograd (no
    straight-through estimator), as in kMaX, where the one-hot map is
    computed under ``stop_gradient``. The values and the projection learn
    through the update; ``q`` and ``k`` learn only through the returned
    affinity, which is the mask that the mask losses supervise (kMaX
    supervises the cluster logits of every layer in the same way). A layer
    whose mask is not supervised therefore leaves its ``q`` and ``k``
    without gradient.

    Args:
        embed_dims (int): Channels D of queries and tokens.
        num_heads (int): Heads of the parent class; the affinity is their
            mean.
        qkv_bias (bool): Whether the q, k, v projections have a bias.
            Default: True.
        attn_drop (float): Kept for the parent class; a hard assignment is
            not dropped out. Default: 0.1.
        proj_drop (float): Dropout after the output projection. Default: 0.
        update (str): ``'mean'``: a query receives the mean value of its
            tokens, on the scale of a softmax-weighted mean (queries without
            tokens receive zero). ``'sum'``: the sum, as in kMaX (which
            normalises it with a BatchNorm afterwards; here the decoder
            layer's post-norm LayerNorm follows). Default: 'mean'.
    """

    UPDATES = ('mean', 'sum')
    mask_trains_qk = True

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.1,
                 proj_drop: float = 0.0,
                 update: str = 'mean') -> None:
        super().__init__(
            embed_dims,
            num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop)
        if update not in self.UPDATES:
            raise ValueError(f'update must be one of {self.UPDATES}, got '
                             f'{update!r}')
        self.update = update

    def affinity(self, query: Tensor, key: Tensor) -> Tensor:
        """Head-averaged scaled similarity, the ATM mask.

        Args:
            query (Tensor): Queries, shape (B, Q, D).
            key (Tensor): Tokens, shape (B, N, D).

        Returns:
            Tensor: Affinity logits, shape (B, Q, N).
        """
        q = self.q(query) * (self.scale / self.num_heads)
        return q @ self.k(key).transpose(-2, -1)

    @staticmethod
    def assign(affinity: Tensor) -> Tensor:
        """Hard assignment of every token to one query (no gradient).

        Args:
            affinity (Tensor): Affinity logits, shape (B, Q, N).

        Returns:
            Tensor: One-hot map of shape (B, Q, N) and the affinity's dtype;
            it sums to 1 over Q for every token.
        """
        with torch.no_grad():
            index = affinity.argmax(dim=1, keepdim=True)
            return torch.zeros_like(affinity).scatter_(1, index, 1.0)

    def forward(self,
                query: Tensor,
                key: Tensor,
                value: Optional[Tensor] = None,
                need_mask: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """Assign tokens to queries (the cluster centres) and update the
        queries from them.

        Arguments and shapes as :meth:`ATMCrossAttention.forward`; the mask
        returned is the affinity (B, Q, N).
        """
        value = key if value is None else value
        affinity = self.affinity(query, key)
        assignment = self.assign(affinity)
        v = self.v(value)
        # Sums over up to N tokens: accumulate in fp32, also under autocast.
        with autocast_disabled(v.device):
            weights = assignment.float()
            if self.update == 'mean':
                weights = weights / weights.sum(-1, keepdim=True).clamp(min=1)
            out = (weights @ v.float()).to(v.dtype)
        out = self.proj_drop(self.proj(out))
        return out, (affinity if need_mask else None)
