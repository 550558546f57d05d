"""A teacher reranking each query's first-stage candidates (``distill evaluate``'s teacher and
cascade systems), and the teacher as a judge grading a pool of candidates when there are no
qrels (``--judge``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from distill import metrics, retrieval


def rerank(
    teacher,
    queries: dict[str, str],
    corpus,
    first: retrieval.Ranking,
    k: int,
    batch_size: int,
    members: dict | None = None,
) -> retrieval.Ranking:
    """The teacher's raw scores for each query's top-k of ``first``.

    For an ensemble, pass a dict as ``members``: it receives each member's own ranking of the
    same candidates, from the same scoring pass (members whose fitted weight is 0 are not
    scored: they cannot change the ensemble's ranking).
    """
    pairs, owners = [], []
    for qid in queries:
        for did in metrics.trec_order(first.get(qid, {}))[:k]:
            pairs.append((queries[qid], corpus[did].full_text))
            owners.append((qid, did))
    per_member = (
        teacher.member_scores(pairs, batch_size, skip_zero=True) if members is not None else {}
    )
    scores = teacher.combine(per_member) if per_member else teacher.score(pairs, batch_size)

    def ranking(values) -> retrieval.Ranking:
        out: retrieval.Ranking = {q: {} for q in queries}
        for (qid, did), s in zip(owners, values, strict=True):
            out[qid][did] = float(s)
        return out

    if members is not None:
        members.update({name: ranking(values) for name, values in per_member.items()})
    return ranking(scores)


def judge_qrels(
    judge,
    queries,
    corpus,
    runs: dict[str, retrieval.Ranking],
    depth: int,
    thresholds: list[float],
    batch_size: int,
) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """Teacher-graded qrels for the union of every system's top-``depth``.

    Grade g = the number of thresholds the judge's probability reaches (0 = not relevant);
    the probability is calibrated when the judge has a stored calibration, else the sigmoid.
    """
    pool = {
        q: {d for run in runs.values() for d in metrics.trec_order(run.get(q, {}))[:depth]}
        for q in queries
    }
    scores = rerank(
        judge,
        queries,
        corpus,
        {q: dict.fromkeys(sorted(d), 0.0) for q, d in pool.items()},
        10**9,
        batch_size,
    )
    calibrated = judge.calibration.method != "identity"
    how = (
        f"calibrated ({judge.calibration.method})"
        if calibrated
        else "uncalibrated: sigmoid of the raw logit"
    )
    qrels = {}
    for q, docs in scores.items():
        probs = judge.probability(np.array(list(docs.values()))) if docs else []
        qrels[q] = {
            d: int(sum(p >= t for t in thresholds)) for d, p in zip(docs, probs, strict=True)
        }
    info = {
        "pool_depth": depth,
        "thresholds": thresholds,
        "probabilities": how,
        "pooled_pairs": sum(map(len, pool.values())),
    }
    return qrels, info
