"""Honest validation of a student: full retrieval for held-out labelled queries.

A student is what a user's first stage becomes, so it is validated the way it is used: it
retrieves from the corpus (no candidate list handed to it), and its NDCG@10 on queries it
never trained on is compared with its start's. A student worse than its start is refused.

The retrieval pool is the whole corpus up to ``max_docs`` documents; past that, the
validation queries' own candidates and gold documents plus a seeded random sample, so the
cost stays bounded on corpora of any size.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from distill import metrics, retrieval
from distill.querysets import split_queries


def split_validation(
    labelled: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]] | None,
    fraction: float,
    max_queries: int,
    seed: int,
    min_queries: int = 10,
) -> set[str]:
    """Query ids held out for validation: a ``fraction`` (at most ``max_queries``) of the
    labelled queries that have gold positives; empty when fewer than ``min_queries`` would be
    held out (too few to tell a better student from noise, so none is taken from training)."""
    judged = {
        q: t for q, t in labelled.items() if qrels and any(g > 0 for g in qrels.get(q, {}).values())
    }
    if fraction <= 0 or not judged:
        return set()
    held = sorted(split_queries(judged, fraction, seed).val)
    if len(held) > max_queries:
        held = sorted(random.Random(seed).sample(held, max_queries))
    return set(held) if len(held) >= min_queries else set()


def retrieval_pool(corpus, keep: set[str], max_docs: int, seed: int) -> dict:
    """The corpus, or past ``max_docs`` documents ``keep`` plus a seeded random fill."""
    if len(corpus) <= max_docs:
        return corpus
    rest = sorted(set(corpus) - keep)
    fill = random.Random(seed).sample(rest, max(0, min(len(rest), max_docs - len(keep))))
    return {d: corpus[d] for d in sorted(keep | set(fill))}


def retrieval_ndcg(
    model,
    pool,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    query_length: int,
    doc_length: int,
    batch_size: int = 64,
    cache_dir: str | None = None,
    model_path: str | None = None,
) -> float:
    """NDCG@10 (pytrec_eval) of ``model`` retrieving from ``pool`` for ``queries``; the
    pool's embeddings come from ``cache_dir`` when ``model_path`` has encoded it before."""
    model.max_seq_length = doc_length
    doc_ids, emb = retrieval.encode_corpus(
        model,
        pool,
        model_path=model_path or "",
        batch_size=batch_size,
        cache_dir=cache_dir if model_path else None,
    )
    model.max_seq_length = query_length
    run = retrieval.search_index(
        model, retrieval.build_index(emb, "flat", gpu=False), doc_ids, queries, 100
    )
    judged = {q: dict(qrels[q]) for q in queries}
    return round(metrics.summarize(judged, run, ["ndcg@10"])["ndcg@10"], 4)
