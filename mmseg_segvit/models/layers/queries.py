"""Learned queries repeated over a batch."""
import torch
from torch import Tensor

__all__ = ['batch_queries']


def batch_queries(queries: Tensor, batch: int) -> Tensor:
    """Learned queries as a batch (a view, no copy).

    Without gradients the view is detached: a view of a parameter made
    under ``torch.no_grad`` says ``requires_grad`` but has no ``grad_fn``,
    which module hooks such as those of
    ``torch.utils.flop_counter.FlopCounterMode`` cannot take.

    Args:
        queries (Tensor): Queries, shape (Q, D) (e.g. an ``nn.Embedding``
            weight).
        batch (int): Batch size B.

    Returns:
        Tensor: Shape (B, Q, D).
    """
    out = queries.unsqueeze(0).expand(batch, -1, -1)
    return out if torch.is_grad_enabled() else out.detach()
