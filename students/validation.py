"""Honest validation of a student: full retrieval for held-out labelled queries.

A student is what a user's first stage becomes, so it is validated the way it is used: it
retrieves from the corpus (no candidate list handed to it), and its NDCG@10 on queries it
never trained on is compared with its start's. A student worse than its start by more than
the noise of that many queries (one standard error of the per-query differences) is refused.

The retrieval pool is the whole corpus up to ``max_docs`` documents; past that, the
validation queries' own candidates and gold documents plus a seeded random sample, so the
cost stays bounded on corpora of any size.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from distill import metrics, retrieval
from distill.errors import Refused
from distill.querysets import split_queries
from students.config import StudentConfig


def split_validation(
    labelled: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]] | None,
    fraction: float,
    max_queries: int,
    seed: int,
    min_queries: int = 10,
    floor: int = 0,
) -> set[str]:
    """Query ids held out for validation: a ``fraction`` (at most ``max_queries``, at least
    ``floor`` but never over a quarter) of the labelled queries that have gold positives;
    empty when fewer than ``min_queries`` would be held out (too few to tell a better student
    from noise, so none is taken from training)."""
    judged = {
        q: t for q, t in labelled.items() if qrels and any(g > 0 for g in qrels.get(q, {}).values())
    }
    if fraction <= 0 or not judged:
        return set()
    fraction = max(fraction, min(floor / len(judged), 0.25))
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
) -> dict[str, float]:
    """{qid: NDCG@10} (pytrec_eval) of ``model`` retrieving from ``pool`` for ``queries``;
    the pool's embeddings come from ``cache_dir`` when ``model_path`` has encoded it before."""
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
    return metrics.per_query(judged, run, ["ndcg@10"])["ndcg@10"]


class Validation:
    """The start and the trained student, each retrieving for the held-out queries."""

    def __init__(self, held, labels, queries, qrels, corpus, config: StudentConfig) -> None:
        keep = {d for q in held for d in labels[q].dids} | {d for q in held for d in qrels[q]}
        self.pool = retrieval_pool(corpus, keep & set(corpus), config.val_docs, config.seed)
        self.queries = {q: queries[q] for q in sorted(held)}
        self.qrels = {q: qrels[q] for q in held}
        self.config = config
        self.ndcg: dict[str, float] = {}
        self.per_query: dict[str, dict[str, float]] = {}
        self.verdict: dict | None = None

    def measure(self, name: str, model, echo, model_path: str | None = None) -> None:
        """NDCG@10 of ``model``; ``model_path`` (an unchanged model's folder) lets the
        corpus embeddings come from ``cache_dir``."""
        self.per_query[name] = retrieval_ndcg(
            model,
            self.pool,
            self.queries,
            self.qrels,
            query_length=self.config.max_query_length,
            doc_length=self.config.max_doc_length,
            cache_dir=self.config.cache_dir if model_path else None,
            model_path=model_path,
        )
        self.ndcg[name] = round(metrics.mean(self.per_query[name]), 4)
        echo(
            f"{name}: validation NDCG@10 {self.ndcg[name]:.4f} ({len(self.queries)} held-out "
            f"queries retrieving from {len(self.pool):,} documents)",
            err=True,
        )

    def figures(self) -> dict:
        """Mean NDCG@10 of each model, and its per-query values (so that two runs on the same
        held-out queries can be paired-tested afterwards)."""
        per_query = {
            name: {q: round(v, 4) for q, v in sorted(scores.items())}
            for name, scores in self.per_query.items()
        }
        out = {
            "queries": len(self.queries),
            "documents": len(self.pool),
            "ndcg@10": self.ndcg,
            "per_query_ndcg@10": per_query,
        }
        return out | ({"below_start": self.verdict} if self.verdict else {})

    def guard(self, allow_worse: bool, echo) -> None:
        """Refuse a student shown worse than its start: below it by more than one standard
        error of the per-query differences. A drop within that is noise on this many queries
        (measured on the demo sample: students 0.025 and 0.003 below their start on 20 and 50
        held-out queries scored 0.045 and more above base on test); it is kept, and said."""
        import numpy as np

        start, student = self.ndcg["start"], self.ndcg["student"]
        if student >= start:
            return
        a = np.array([self.per_query["student"][q] for q in self.queries])
        b = np.array([self.per_query["start"][q] for q in self.queries])
        se = float(np.std(a - b, ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0
        p = metrics.randomization_test(a, b)
        figures = (
            f"full retrieval, NDCG@10 student {student:.4f} vs start {start:.4f} on "
            f"{len(self.queries)} held-out queries; standard error of the difference {se:.4f}, "
            f"paired p = {p:.2f}"
        )
        what = "the supervised baseline" if self.config.loss == "mnrl" else "the student"
        self.verdict = {"drop": round(start - student, 4), "standard_error": round(se, 4)}
        if start - student <= se:
            self.verdict["kept"] = "within noise"
            echo(f"note: {what} is below its start within noise ({figures}); kept", err=True)
            return
        message = f"{what} is worse than its start on validation ({figures})."
        if not allow_worse:
            raise Refused(f"{message} Nothing was saved; pass --allow-worse to keep it anyway.")
        self.verdict["kept"] = "allow_worse"
        echo(f"warning: {message} Kept because of --allow-worse.", err=True)
