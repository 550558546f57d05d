"""An in-batch-negatives term added to a distillation loss, from one set of embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


class WithInBatchNegatives(nn.Module):
    """``base(embeddings, labels) + weight * InfoNCE(query_i vs every candidate in the batch)``.

    The InfoNCE term treats column 1 (the positive) of row i as the target among all
    candidate columns of all rows, with similarity ``scale * dot``. The embeddings are
    computed once and shared by both terms.

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
        candidates = torch.cat(embeddings[1:], dim=0)  # (B * (1 + n), d); row i's positive at i
        logits = self.scale * queries @ candidates.T
        target = torch.arange(queries.size(0), device=queries.device)
        in_batch = nn.functional.cross_entropy(logits, target)
        return self.base.compute_loss_from_embeddings(embeddings, labels) + self.weight * in_batch

    def get_config_dict(self) -> dict[str, Any]:
        return {"base": type(self.base).__name__, "scale": self.scale, "weight": self.weight}
