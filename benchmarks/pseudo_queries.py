"""How good are the offline pseudo-query methods on SciFact? (a measurement, not a test)

For each offline method of ``distill queries`` (sentence, cloze, title), pseudo-queries are made from a seeded
sample of documents that no SciFact qrels (train or test) name, and compared with SciFact's
real train queries on what can be measured without training a student:

* words per query;
* how well BM25 and the base bi-encoder find the query's source document (MRR@10, R@10 over
  the whole corpus): near 1 with BM25 means the query copies the document's words (easy,
  little to learn from); near 0 means the source hardly answers it;
* the share of the source document's words the query reuses (lexical overlap).

For ``cloze`` the corpus searched is the one ``distill queries --method cloze`` writes: each
sampled document without its query's sentence (so the dense figures re-encode the corpus).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/pseudo_queries.py --docs 500

The generator method needs a seq2seq model (online users: a doc2query hub id) and is not
measured here, where no such model is installed.
"""

from __future__ import annotations

import argparse
import random
import statistics

from distill import data, metrics, models, retrieval
from distill.queries import QueriesConfig, cloze, offline_candidates


def overlap(query: str, doc: str) -> float:
    """Share of the query's stemmed, non-stopword tokens that occur in the document."""
    q, d = (set(t) for t in retrieval.bm25_tokenize([query, doc], return_ids=False))
    return len(q & d) / len(q) if q else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/scifact")
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--cache-dir", default="runs/cache")
    args = ap.parse_args()
    ds = data.BeirDataset(args.data)
    corpus = ds.corpus
    labeled = {d for s in ds.splits() for docs in ds.qrels(s).values() for d in docs}
    rng = random.Random(42)
    pool = sorted(d for d in corpus if d not in labeled)
    chosen = sorted(rng.sample(pool, min(args.docs, len(pool))))
    cfg = QueriesConfig(data=args.data)
    sets: dict[str, tuple[dict[str, str], dict[str, dict[str, int]], dict]] = {}
    for method in ("sentence", "title"):
        queries, qrels = {}, {}
        for did in chosen:
            cands = offline_candidates(corpus[did], method, cfg.min_words)
            if cands:
                qid = f"{method}:{did}"
                queries[qid] = rng.choice(cands)
                qrels[qid] = {did: 1}
        sets[method] = (queries, qrels, corpus)
    queries, qrels, masked = {}, {}, dict(corpus)
    for did in chosen:
        picked, masked[did] = cloze(corpus[did], 1, cfg.min_words, rng)
        if picked:
            queries[f"cloze:{did}"], qrels[f"cloze:{did}"] = picked[0], {did: 1}
    sets["cloze (sentence removed from its source)"] = (queries, qrels, masked)
    train = ds.qrels("train")
    sets["real (SciFact train)"] = ({q: ds.queries[q] for q in train}, train, corpus)
    model = models.load_bi_encoder("bundled")
    print(f"{len(chosen)} unlabeled documents sampled (seed 42); corpus {len(corpus):,}")
    print(
        "\n| queries | n | words (median) | BM25 MRR@10 | BM25 R@10 | base MRR@10 | base R@10 | words reused from source |"
        "\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    for name, (queries, qrels, searched) in sets.items():
        bm = metrics.summarize(
            qrels, retrieval.bm25_search(searched, queries, 10), ["mrr@10", "recall.10"]
        )
        dense = metrics.summarize(
            qrels,
            retrieval.dense_search(
                model,
                searched,
                queries,
                10,
                model_path=models.bundled_model_path(),
                cache_dir=args.cache_dir,
            ),
            ["mrr@10", "recall.10"],
        )
        words = statistics.median(len(t.split()) for t in queries.values())
        reuse = statistics.mean(
            overlap(t, searched[next(iter(qrels[q]))].full_text) for q, t in queries.items()
        )
        print(
            f"| {name} | {len(queries)} | {words:.0f} | {bm['mrr@10']:.3f} | {bm['recall.10']:.3f} | "
            f"{dense['mrr@10']:.3f} | {dense['recall.10']:.3f} | {reuse:.2f} |"
        )


if __name__ == "__main__":
    main()
