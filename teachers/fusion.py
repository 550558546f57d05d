"""An ensemble teacher's members fused into one, and the first stage as a baseline.

:func:`first_stage_member` makes BM25 or the miner bi-encoder a calibrated member;
:func:`fuse` fits weights on validation over the members' unit-spread logits and writes
``ensemble.json``; :func:`first_stage_order` scores the first stage's own order, the baseline
a teacher must beat.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from distill import console
from teachers.calibration import fit_platt, reliability_plot
from teachers.scoring import save_ensemble
from teachers.teach_config import TeachConfig
from teachers.teach_data import TeachData


def fit_weights(scores: dict[str, np.ndarray], evaluator, step: float = 0.1) -> dict[str, float]:
    """Weights on the simplex (grid of ``step``) maximising validation NDCG@10."""
    names = list(scores)
    ticks = round(1 / step)
    best, best_w = -1.0, None
    for combo in itertools.product(range(ticks + 1), repeat=len(names)):
        if sum(combo) != ticks:
            continue
        w = [c / ticks for c in combo]
        value = evaluator.evaluate_scores(
            sum(wi * scores[n] for wi, n in zip(w, names, strict=True))
        )["ndcg@10"]
        if value > best + 1e-9:
            best, best_w = value, w
    return dict(zip(names, best_w, strict=True))


def first_stage_member(
    kind: str,
    d: TeachData,
    config: TeachConfig,
    target: Path,
    evaluator,
    echo,
    bi_encoder: str,
) -> dict[str, Any]:
    """BM25 or the bi-encoder ``bi_encoder`` (a model) as a calibrated ensemble member,
    validated like the others."""
    from teachers.members import BiEncoderScorer, BM25Scorer

    scorer = BM25Scorer.fit(d.corpus_texts) if kind == "bm25" else BiEncoderScorer(bi_encoder)
    scores = np.asarray(scorer.score(evaluator.pairs, 64), dtype=np.float64)
    result = evaluator.evaluate_scores(scores)
    scorer.calibration = fit_platt(scores, evaluator.labels())
    target.mkdir(parents=True, exist_ok=True)
    scorer.save(target)
    console.detail(  # the teacher's verdict line repeats these figures
        echo,
        f"{kind}: validation NDCG@10 {result['ndcg@10']:.4f}, MRR@10 {result['mrr@10']:.4f} (first-stage member)",
    )
    cal = scorer.calibration
    return {
        "start": bi_encoder if kind == "bi-encoder" else "bm25",
        "after": result,
        "val_scores": scores,
        "calibration": {
            "temperature": round(cal.temperature, 4),
            "bias": round(cal.bias, 4),
            "ece_after": round(cal.ece_after, 4),
        },
    }


def fuse(
    results: dict[str, dict[str, Any]], tmp: Path, config: TeachConfig, evaluator, echo
) -> dict[str, Any]:
    """Combine the members' calibrated logits on one scale and save ``ensemble.json``.

    Each member's logits are divided by their spread on validation before weights are
    fitted, so a weight means the same for every member (raw logits of different scales let
    a 0.10 weight decide the whole ranking). The stored weights include that division. The
    grid holds every member alone, so the fused teacher is never below its best member on
    validation.
    """
    from teachers.calibration import Calibration

    logits = {
        n: Calibration.load(tmp / "members" / n).logit(r["val_scores"]) for n, r in results.items()
    }
    spread = {n: float(np.std(v)) or 1.0 for n, v in logits.items()}
    if config.combine == "mean":
        weights = {n: 1 / len(logits) for n in logits}
    else:
        weights = fit_weights({n: v / spread[n] for n, v in logits.items()}, evaluator)
    stored = {n: weights[n] / spread[n] for n in logits}
    combined = sum(stored[n] * logits[n] for n in logits)
    ens = evaluator.evaluate_scores(combined)
    cal = fit_platt(combined, evaluator.labels())
    save_ensemble(
        tmp,
        [(n, f"members/{n}", stored[n]) for n in logits],
        cal,
        {"combine": config.combine, "validation": ens, "weights_on_unit_spread": weights},
    )
    reliability_plot(combined, evaluator.labels(), cal, tmp / "reliability.png")
    echo(
        f"ensemble ({config.combine}; weights on unit-spread scores "
        f"{', '.join(f'{n} {w:.2f}' for n, w in weights.items())}): "
        f"validation NDCG@10 {ens['ndcg@10']:.4f}, MRR@10 {ens['mrr@10']:.4f}"
    )
    return {
        "weights": weights,
        "stored_weights": stored,
        "validation": ens,
        "ece_after": round(cal.ece_after, 4),
    }


def first_stage_order(evaluator) -> dict[str, float]:
    """Validation figures of the candidates in the first stage's own order (no teacher)."""
    rank: dict[str, int] = {}
    scores = []
    for q, _ in evaluator.owners:
        rank[q] = rank.get(q, 0) + 1
        scores.append(-rank[q])
    return evaluator.evaluate_scores(np.asarray(scores, dtype=np.float64))
