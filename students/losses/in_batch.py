"""An in-batch-negatives term added to a distillation loss, from one set of embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


def gathered_candidates(columns: list[Tensor]) -> tuple[Tensor, int]:
    """Every process's candidates, and where this process's positives start among them.

    Run by several processes (``accelerate launch``), each query's in-batch negatives are the
    candidates of *all* processes, gathered with gradients (sentence-transformers'
    ``all_gather_with_grad``), so N processes of batch B train as one process of batch N*B
    would. Column by column: [positives of process 0, 1, ..., negatives_1 of 0, 1, ...]; this
    process's row i has its positive at ``rank * B + i``. When the processes' batches differ
    in size (a short last batch), each keeps its own candidates for that step."""
    import torch.distributed as dist
    from sentence_transformers.util import all_gather_with_grad

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return torch.cat(columns, dim=0), 0
    size = torch.tensor([columns[0].size(0)], device=columns[0].device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    if any(int(s) != int(size) for s in sizes):
        return torch.cat(columns, dim=0), 0
    gathered = [all_gather_with_grad(c) for c in columns]
    return torch.cat(gathered, dim=0), dist.get_rank() * columns[0].size(0)


class WithInBatchNegatives(nn.Module):
    """``base(embeddings, labels) + weight * InfoNCE(query_i vs every candidate in the batch)``.

    The InfoNCE term treats column 1 (the positive) of row i as the target among all
    candidate columns of all rows (of all processes: :func:`gathered_candidates`), with
    similarity ``scale * dot``. The embeddings are computed once and shared by both terms.

    Parameters
    ----------
    base : a sentence-transformers loss with ``compute_loss_from_embeddings``
    scale : inverse temperature of the in-batch softmax
    weight : weight of the in-batch term
    """

    def __init__(self, base: nn.Module, scale: float = 20.0, weight: float = 1.0) -> None:
        super().__init__()
        if weight <= 0:
            raise ValueError(f"weight must be positive, got {weight}")
        self.base = base
        self.model = base.model
        self.scale = scale
        self.weight = weight

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        return self.compute_loss_from_embeddings(
            embed_columns(self.model, sentence_features), labels
        )

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """``embeddings``: [queries (B, d), positives (B, d), negatives_1 (B, d), ...]."""
        queries = embeddings[0]
        candidates, offset = gathered_candidates(embeddings[1:])
        logits = self.scale * queries @ candidates.T
        target = offset + torch.arange(queries.size(0), device=queries.device)
        in_batch = nn.functional.cross_entropy(logits, target)
        return self.base.compute_loss_from_embeddings(embeddings, labels) + self.weight * in_batch

    def get_config_dict(self) -> dict[str, Any]:
        return {"base": type(self.base).__name__, "scale": self.scale, "weight": self.weight}
