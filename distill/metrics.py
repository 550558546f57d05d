"""IR metrics with trec_eval semantics (pytrec_eval), graded relevance, per query.

``ndcg@10`` is trec_eval's ``ndcg_cut.10`` (gain = the grade), ``recall@100`` is ``recall.100``
and ``mrr@10`` is ``recip_rank`` over the top 10 of each ranking. Ties in score are broken as
trec_eval breaks them (by document id, descending), so a run scores the same here as in
trec_eval and BEIR. A query with no retrieved documents scores 0; a query without relevant
documents in the qrels is left out, as trec_eval does. Any other pytrec_eval measure may be
asked for by its own name (``map``, ``P.5``, ``ndcg_cut.20``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

ALIASES = {
    "ndcg@10": "ndcg_cut.10",
    "recall@100": "recall.100",
}
DEFAULT_MEASURES = ("ndcg@10", "mrr@10", "recall@100")


def trec_order(docs: Mapping[str, float]) -> list[str]:
    """Document ids in trec_eval's order: score descending, then id descending."""
    return [d for d, _ in sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def _cut(run: Run, depth: int) -> dict[str, dict[str, float]]:
    return {q: {d: float(docs[d]) for d in trec_order(docs)[:depth]} for q, docs in run.items()}


def per_query(
    qrels: Qrels, run: Run, measures: Iterable[str] = DEFAULT_MEASURES
) -> dict[str, dict[str, float]]:
    """``{measure: {query id: value}}`` for every query that has a relevant document."""

    judged = {
        q: {d: int(g) for d, g in docs.items()}
        for q, docs in qrels.items()
        if any(g > 0 for g in docs.values())
    }
    full_run = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in judged}
    out: dict[str, dict[str, float]] = {}
    for name in measures:
        if name.startswith("mrr@"):
            depth = int(name.split("@")[1])
            values = _evaluate(judged, _cut(full_run, depth), "recip_rank")
        else:
            trec = ALIASES.get(name, name)
            values = _evaluate(judged, full_run, trec)
        out[name] = values
    return out


def _evaluate(qrels: dict, run: dict, measure: str) -> dict[str, float]:
    import pytrec_eval

    family = measure.split(".")[0]
    key = measure.replace(".", "_")
    # pytrec_eval skips queries without a ranking; trec_eval -c counts them as 0.
    filled = {q: docs if docs else {"__none__": 0.0} for q, docs in run.items()}
    results = pytrec_eval.RelevanceEvaluator(
        qrels, {measure if "." in measure else family}
    ).evaluate(filled)
    return {q: float(results.get(q, {}).get(key, 0.0)) for q in qrels}


def mean(values: Mapping[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else 0.0


def summarize(
    qrels: Qrels, run: Run, measures: Iterable[str] = DEFAULT_MEASURES
) -> dict[str, float]:
    """Mean of each measure over the judged queries."""
    return {name: mean(values) for name, values in per_query(qrels, run, measures).items()}
