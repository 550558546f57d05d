"""In-batch negatives: the supervised baseline's loss, and a term added to a distillation loss
from the same embeddings.

A batch's other rows hold documents that are positives of this row's query more often than
one would guess: on SciFact 2.5% of rows (queries citing the same paper), on data with about
40 positives a query 18% (two rows of one query, or queries sharing positives; ``README``,
"In-batch false negatives"). Such a document is not a negative: the softmax leaves it out,
given each row's known positives as document ids (:class:`BatchIds`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class BatchIds:
    """Document ids of a batch: ``candidates`` (B, columns) the row's documents, positive
    first; ``positives`` (B, P) the row's query's known positives, padded with -1."""

    candidates: Tensor
    positives: Tensor


def gathered_candidates(columns: list[Tensor], ids: Tensor | None = None):
    """Every process's candidates, where this process's positives start among them, and the
    candidates' document ids (None without ``ids``).

    Run by several processes (``accelerate launch``), each query's in-batch negatives are the
    candidates of *all* processes, gathered with gradients (sentence-transformers'
    ``all_gather_with_grad``), so N processes of batch B train as one process of batch N*B
    would. Column by column: [positives of process 0, 1, ..., negatives_1 of 0, 1, ...]; this
    process's row i has its positive at ``rank * B + i``. When the processes' batches differ
    in size (a short last batch), each keeps its own candidates for that step."""
    import torch.distributed as dist
    from sentence_transformers.util import all_gather_with_grad

    def local():
        flat = None if ids is None else ids.T.reshape(-1)
        return torch.cat(columns, dim=0), 0, flat

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local()
    size = torch.tensor([columns[0].size(0)], device=columns[0].device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    if any(int(s) != int(size) for s in sizes):
        return local()
    gathered = [all_gather_with_grad(c) for c in columns]
    flat = None
    if ids is not None:  # (processes, B, columns) -> the candidates' column-major order
        every = [torch.empty_like(ids) for _ in range(dist.get_world_size())]
        dist.all_gather(every, ids.contiguous())
        flat = torch.stack(every).permute(2, 0, 1).reshape(-1)
    return torch.cat(gathered, dim=0), dist.get_rank() * columns[0].size(0), flat


def in_batch_loss(embeddings: list[Tensor], scale: float, ids: BatchIds | None) -> Tensor:
    """InfoNCE: row i's query against every candidate of the batch (of all processes), its own
    positive the target, similarity ``scale * dot``; with ``ids``, candidates that are known
    positives of row i's query (other than its target) are left out of row i's softmax."""
    queries = embeddings[0]
    candidates, offset, candidate_ids = gathered_candidates(
        embeddings[1:], None if ids is None else ids.candidates
    )
    logits = scale * queries @ candidates.T
    target = offset + torch.arange(queries.size(0), device=queries.device)
    if ids is not None:
        known = (candidate_ids[None, :, None] == ids.positives[:, None, :]).any(-1)
        known[torch.arange(queries.size(0), device=known.device), target] = False
        logits = logits.masked_fill(known, float("-inf"))
    return nn.functional.cross_entropy(logits, target)


class InBatchNegatives(nn.Module):
    """The supervised baseline's loss: :func:`in_batch_loss` alone. Without known positives it
    is sentence-transformers' ``MultipleNegativesRankingLoss`` on normalised embeddings."""

    def __init__(self, model: nn.Module, scale: float = 20.0) -> None:
        super().__init__()
        self.model = model
        self.scale = scale

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        return self.compute_loss_from_embeddings(
            embed_columns(self.model, sentence_features), labels
        )

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor, ids: BatchIds | None = None
    ) -> Tensor:
        """``embeddings``: [queries (B, d), positives (B, d), negatives_1 (B, d), ...]."""
        return in_batch_loss(embeddings, self.scale, ids)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale}


class WithInBatchNegatives(InBatchNegatives):
    """``base(embeddings, labels) + weight * in_batch_loss(embeddings)``: the embeddings are
    computed once and shared by both terms.

    Parameters
    ----------
    base : a sentence-transformers loss with ``compute_loss_from_embeddings``
    scale : inverse temperature of the in-batch softmax
    weight : weight of the in-batch term
    """

    def __init__(self, base: nn.Module, scale: float = 20.0, weight: float = 1.0) -> None:
        super().__init__(base.model, scale)
        if weight <= 0:
            raise ValueError(f"weight must be positive, got {weight}")
        self.base = base
        self.weight = weight

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor, ids: BatchIds | None = None
    ) -> Tensor:
        """``embeddings``: [queries (B, d), positives (B, d), negatives_1 (B, d), ...]."""
        in_batch = in_batch_loss(embeddings, self.scale, ids)
        return self.base.compute_loss_from_embeddings(embeddings, labels) + self.weight * in_batch

    def get_config_dict(self) -> dict[str, Any]:
        return {"base": type(self.base).__name__, "scale": self.scale, "weight": self.weight}
