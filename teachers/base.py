"""What every non-ensemble teacher shares (a cross-encoder, or a first-stage scorer from
:mod:`teachers.members`): the ``(query, document)`` pair type and :class:`SingleTeacher`.

Here, not in :mod:`teachers.scoring`, so that ``scoring`` (which loads members) and
``members`` (which subclass ``SingleTeacher``) do not import each other."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from teachers.calibration import Calibration

Pair = tuple[str, str]


class SingleTeacher:
    """What every non-ensemble scorer shares: no members, probabilities from its calibration."""

    calibration: Calibration
    score_kind: str  # what ``score`` returns: "logit", "bm25", ...; recorded in the labels

    @property
    def members(self) -> list:
        """No members: a single teacher (an ensemble lists its members here)."""
        return []

    def member_scores(
        self, pairs: Sequence[Pair], batch_size: int = 32, *, skip_zero: bool = False
    ) -> dict[str, np.ndarray]:
        return {}

    def probability(self, scores: np.ndarray) -> np.ndarray:
        return self.calibration.probability(scores)
