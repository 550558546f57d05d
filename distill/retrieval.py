"""First-stage retrieval: BM25 (bm25s), dense (a bi-encoder + faiss) and their fusion.

A ranking is ``{query id: {doc id: score}}`` holding the top-k documents of each query.
Corpus embeddings are cached on disk by (model fingerprint, corpus fingerprint, max length),
so a corpus is encoded once per model, whichever stage asks first.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from distill.data import Document

Ranking = dict[str, dict[str, float]]


def bm25_tokenize(texts: Sequence[str], *, return_ids: bool = True):
    """bm25s tokens with English stopwords and Snowball stemming (one definition for every
    BM25 in the project: retrieval, cost timing and the BM25 ensemble member)."""
    import bm25s
    import Stemmer

    return bm25s.tokenize(
        list(texts),
        stopwords="en",
        stemmer=Stemmer.Stemmer("english"),
        show_progress=False,
        return_ids=return_ids,
    )


class BM25Index:
    """A bm25s index (Lucene variant, k1=1.5, b=0.75) over a corpus."""

    def __init__(self, corpus: Mapping[str, Document]) -> None:
        import bm25s

        self.doc_ids = list(corpus)
        self.index = bm25s.BM25()
        self.index.index(
            bm25_tokenize([corpus[d].full_text for d in self.doc_ids]), show_progress=False
        )

    def search(self, queries: Mapping[str, str], k: int = 100) -> Ranking:
        qids = list(queries)
        tokens = bm25_tokenize([queries[q] for q in qids])
        hits, scores = self.index.retrieve(
            tokens, k=min(k, len(self.doc_ids)), show_progress=False, n_threads=0
        )
        return {
            qid: {
                self.doc_ids[j]: float(s)
                for j, s in zip(hits[row], scores[row], strict=True)
                if s > 0
            }
            for row, qid in enumerate(qids)
        }


def bm25_search(
    corpus: Mapping[str, Document], queries: Mapping[str, str], k: int = 100
) -> Ranking:
    """Top-k BM25 of each query over ``corpus``."""
    return BM25Index(corpus).search(queries, k)


def _corpus_key(
    model_path: str, doc_ids: Sequence[str], corpus: Mapping[str, Document], max_length: int | None
) -> str:
    from distill.artifacts import fingerprint

    digest = hashlib.sha256()
    digest.update(
        fingerprint(model_path).encode() if Path(model_path).exists() else model_path.encode()
    )
    digest.update(str(max_length).encode())
    for d in doc_ids:
        digest.update(d.encode() + b"\0" + corpus[d].full_text.encode() + b"\0")
    return digest.hexdigest()[:24]


# Documents encoded between two saved parts of a cached corpus encoding: a killed run loses at
# most this many; a part of 384-d float32 vectors is 6 MB (a 1M-document corpus has 123 parts).
CHUNK_DOCS = 4096


def encode_corpus(
    model,
    corpus: Mapping[str, Document],
    *,
    model_path: str,
    batch_size: int = 64,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """(doc ids, float32 embeddings), from the cache when this model has seen this corpus.

    A corpus of more than one chunk is encoded ``CHUNK_DOCS`` documents at a time, with a
    progress line and ETA in a log; with a cache each chunk is saved as it ends
    (``corpus-KEY.parts/``), so a killed run resumes from the last saved chunk."""
    from distill.artifacts import atomic_path

    doc_ids = list(corpus)
    cache = parts = None
    if cache_dir is not None:
        cache = _cache_file(model, corpus, model_path, cache_dir)
        if cache.is_file():
            return doc_ids, np.load(cache, allow_pickle=False)
        parts = cache.with_suffix(".parts")
    chunks = [doc_ids[i : i + CHUNK_DOCS] for i in range(0, len(doc_ids), CHUNK_DOCS)]
    out = [
        _encode_chunk(model, corpus, chunk, n, parts, batch_size) for n, chunk in _chunks(chunks)
    ]
    emb = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    if cache is not None:
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.save(fh, emb, allow_pickle=False)
        if parts is not None and parts.is_dir():  # distill's own partial files, now in the cache
            for f in parts.glob("*.npy"):
                f.unlink()
            parts.rmdir()
    return doc_ids, emb


def _cache_file(model, corpus: Mapping[str, Document], model_path: str, cache_dir) -> Path:
    key = _corpus_key(model_path, list(corpus), corpus, getattr(model, "max_seq_length", None))
    return Path(cache_dir) / f"corpus-{key}.npy"


def cached_corpus(
    model, corpus: Mapping[str, Document], *, model_path: str, cache_dir
) -> np.ndarray | None:
    """The embeddings :func:`encode_corpus` cached for this model and corpus (rows in corpus
    order), or None when there are none (or the file does not hold one row a document);
    never encodes."""
    cache = _cache_file(model, corpus, model_path, cache_dir)
    vectors = np.load(cache, allow_pickle=False) if cache.is_file() else None
    return vectors if vectors is not None and len(vectors) == len(corpus) else None


def _chunks(chunks: list[list[str]]):
    """(number, chunk) of every chunk; a corpus of several chunks shows progress per chunk."""
    from distill.progress import progress

    if len(chunks) <= 1:
        yield from enumerate(chunks)
        return
    bar = progress(sum(map(len, chunks)), "encoding the corpus", "docs")
    for n, chunk in enumerate(chunks):
        yield n, chunk
        bar.update(len(chunk))
    bar.close()


def _encode_chunk(model, corpus, chunk: list[str], n: int, parts: Path | None, batch_size: int):
    """One chunk's float32 embeddings: from its saved part, or encoded (and saved)."""
    from distill.artifacts import atomic_path

    part = None if parts is None else parts / f"{n:06d}.npy"
    if part is not None and part.is_file():
        emb = np.load(part, allow_pickle=False)
        if len(emb) == len(chunk):
            return emb
    # encode() already batches by length (longest first), so padding stays small.
    emb = model.encode(
        [corpus[d].full_text for d in chunk],
        batch_size=batch_size,
        convert_to_numpy=True,
        show_progress_bar=False,
    ).astype(np.float32)
    if part is not None:
        part.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(part) as tmp, open(tmp, "wb") as fh:
            np.save(fh, emb, allow_pickle=False)
    return emb


def build_index(
    embeddings: np.ndarray,
    kind: str = "flat",
    *,
    nlist: int | None = None,
    hnsw_m: int = 32,
    gpu: bool | None = None,
):
    """A faiss inner-product index: exact ``flat``, or approximate ``ivf`` / ``hnsw``.

    A GPU index is used when faiss has GPU support and a GPU is present (``gpu=None``), or
    when asked for (``gpu=True``).
    """
    import faiss

    dim = embeddings.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = nlist or max(1, int(4 * np.sqrt(len(embeddings))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(embeddings)
        index.nprobe = max(1, nlist // 8)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    else:
        raise ValueError(f"unknown index kind {kind!r}; use flat, ivf or hnsw")
    has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if (gpu is None and has_gpu) or gpu:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(embeddings)
    return index


def search_index(
    model,
    index,
    doc_ids: Sequence[str],
    queries: Mapping[str, str],
    k: int,
    *,
    batch_size: int = 64,
) -> Ranking:
    """Top-k of ``index`` for each query, encoded by ``model``."""
    qids = list(queries)
    q_emb = model.encode(
        [queries[q] for q in qids],
        batch_size=batch_size,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    scores, hits = index.search(np.ascontiguousarray(q_emb, dtype=np.float32), min(k, len(doc_ids)))
    return {
        qid: {doc_ids[j]: float(s) for j, s in zip(hits[r], scores[r], strict=True) if j >= 0}
        for r, qid in enumerate(qids)
    }


def dense_search(
    model,
    corpus: Mapping[str, Document],
    queries: Mapping[str, str],
    k: int = 100,
    *,
    model_path: str,
    index_kind: str = "flat",
    batch_size: int = 64,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Ranking:
    """Top-k by the bi-encoder's similarity (inner product of its, normally unit, vectors)."""
    doc_ids, doc_emb = encode_corpus(
        model, corpus, model_path=model_path, batch_size=batch_size, cache_dir=cache_dir
    )
    return search_index(
        model, build_index(doc_emb, index_kind), doc_ids, queries, k, batch_size=batch_size
    )


def rrf(rankings: Sequence[Ranking], k: int = 60, depth: int | None = None) -> Ranking:
    """Reciprocal-rank fusion: score = sum over rankings of 1 / (k + rank), rank from 1."""
    from distill.metrics import trec_order

    fused: Ranking = {}
    for ranking in rankings:
        for qid, docs in ranking.items():
            target = fused.setdefault(qid, {})
            for rank, did in enumerate(trec_order(docs), 1):
                target[did] = target.get(did, 0.0) + 1.0 / (k + rank)
    if depth is not None:
        fused = {q: {d: docs[d] for d in trec_order(docs)[:depth]} for q, docs in fused.items()}
    return fused


APPROXIMATE_FROM = 200_000  # documents; below this, exact search is fast enough on a CPU


def first_stage(
    corpus: Mapping[str, Document],
    queries: Mapping[str, str],
    method: str,
    k: int,
    *,
    model: str = "bundled",
    index: str = "auto",
    batch_size: int = 64,
    rrf_k: int = 60,
    cache_dir: str | None = None,
    trust_remote_code: bool = False,
) -> Ranking:
    """The first stage ``method`` (``bm25``, ``dense`` or ``hybrid``: both, fused by RRF) over
    ``queries``; top ``k`` each. ``distill mine`` runs it; ``distill teach`` mines negatives
    with it. The defaults are ``MineConfig``'s (tests/test_stages.py checks)."""
    runs = []
    if method in ("bm25", "hybrid"):
        runs.append(bm25_search(corpus, queries, k))
    if method in ("dense", "hybrid"):
        from distill.data import cache_dir as default_cache_dir
        from distill.models import load_bi_encoder, resolve_model

        bi_encoder = load_bi_encoder(model, trust_remote_code=trust_remote_code)
        kind = index if index != "auto" else ("flat" if len(corpus) < APPROXIMATE_FROM else "hnsw")
        runs.append(
            dense_search(
                bi_encoder,
                corpus,
                queries,
                k,
                model_path=resolve_model(model),
                index_kind=kind,
                batch_size=batch_size,
                cache_dir=cache_dir or str(default_cache_dir() / "embeddings"),
            )
        )
    return runs[0] if len(runs) == 1 else rrf(runs, k=rrf_k, depth=k)
