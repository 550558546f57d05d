"""Distillation losses, sentence-transformers-compatible (``forward(sentence_features, labels)``).

* ``margin-mse``: sentence-transformers' :class:`MarginMSELoss` (Hofstätter et al., 2020):
  the student's margin sim(q, pos) - sim(q, neg_i) matches the teacher's.
* ``kl``: sentence-transformers' :class:`DistillKLDivLoss`: KL divergence between the softmax
  of the teacher's scores over the query's candidates and the student's. The student's logits
  are ``scale * dot`` at temperature 1, so the loss is not multiplied by ``1 / scale**2``
  (which would make it 400x weaker than an added in-batch term at ``scale=20``).
* ``mnrl``: in-batch negatives on gold pairs, no teacher (:class:`InBatchNegatives`:
  sentence-transformers' ``MultipleNegativesRankingLoss``, with a batch's known positives of a
  row's query left out of its softmax): the supervised baseline that distillation must beat.
* :class:`~students.losses.in_batch.WithInBatchNegatives` adds the same in-batch term to
  either distillation loss, from the same embeddings, so the student and the baseline learn
  from in-batch negatives alike.

The student's similarity is ``scale * dot`` (cosine for normalised models, so ``scale`` plays
the role of an inverse temperature, as in MNRL's ``scale=20``).
"""

from __future__ import annotations

from typing import Literal

from sentence_transformers.sentence_transformer.losses import (
    DistillKLDivLoss,
    MarginMSELoss,
)
from sentence_transformers.util import pairwise_dot_score

from students.losses.in_batch import BatchIds, InBatchNegatives, WithInBatchNegatives

LossName = Literal["kl", "margin-mse", "mnrl"]


class ScaledDot:
    """``scale * <a_i, b_i>`` row by row; picklable (a lambda would not be)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, a, b):
        return self.scale * pairwise_dot_score(a, b)

    def __repr__(self) -> str:
        return f"ScaledDot({self.scale})"


def build_loss(
    name: LossName,
    model,
    *,
    scale: float = 20.0,
    teacher_temperature: float = 1.0,
    in_batch: float = 0.0,
):
    """The configured loss module for ``model``."""
    if name == "mnrl":
        return InBatchNegatives(model, scale=scale)
    if name == "kl":
        loss = DistillKLDivLoss(
            model,
            similarity_fct=ScaledDot(scale),
            student_temperature=1.0,
            teacher_temperature=teacher_temperature,
        )
    elif name == "margin-mse":
        loss = MarginMSELoss(model, similarity_fct=ScaledDot(scale))
    else:
        raise ValueError(f"unknown loss {name!r}; use kl, margin-mse or mnrl")
    return WithInBatchNegatives(loss, scale=scale, weight=in_batch) if in_batch > 0 else loss


__all__ = [
    "BatchIds",
    "DistillKLDivLoss",
    "InBatchNegatives",
    "MarginMSELoss",
    "WithInBatchNegatives",
    "build_loss",
]
