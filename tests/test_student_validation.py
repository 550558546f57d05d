"""The student's validation reads its start's corpus embeddings from the shared cache."""

from __future__ import annotations

import pytest
from sentence_transformers import SentenceTransformer

from distill.data import BeirDataset
from students.validation import retrieval_ndcg


@pytest.fixture(scope="module")
def judged(scifact_slice):
    ds = BeirDataset(scifact_slice)
    qrels = ds.qrels("test")
    return ds.corpus, {q: ds.queries[q] for q in qrels}, qrels


def test_cached_start_embeddings_give_the_same_figure(judged, tiny_models, tmp_path):
    """Prevents a cache keyed too loosely (model, corpus or length) from handing validation
    another model's or another length's embeddings: with the cache, each figure equals the one
    computed without it, and each (model, length) gets its own file."""
    corpus, queries, qrels = judged
    cache = tmp_path / "cache"
    for name in ("bert-bi", "deberta-bi"):
        model = SentenceTransformer(tiny_models[name])
        for length in (32, 64):
            plain = retrieval_ndcg(
                model, corpus, queries, qrels, query_length=16, doc_length=length
            )
            for _ in range(2):  # the first call writes the cache, the second reads it
                cached = retrieval_ndcg(
                    model,
                    corpus,
                    queries,
                    qrels,
                    query_length=16,
                    doc_length=length,
                    cache_dir=str(cache),
                    model_path=tiny_models[name],
                )
                assert cached == plain, (name, length)
    assert len(list(cache.glob("corpus-*.npy"))) == 4
