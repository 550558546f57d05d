"""A stand-in dataset with many positives per query, cut from SciFact (a measurement aid).

Real datasets of another common shape have about 40 graded positives per query, most of
which the first stage does not retrieve. We have none offline, so this builds one: each
sampled train and test query keeps its SciFact positives (grade 2) and gains as positives
(grade 1) the ``--positives`` documents nearest to them, taken in turn from two neighbour
lists, the base bi-encoder's and BM25's (document to document, so the query's own words play
no part, and neither first stage is handed all the positives). The whole corpus is kept. It prints how
many positives the first stage finds in its top 30, the property that made the default
pipeline fail silently on the real data.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/many_positives.py ../shared/data/scifact \
        --output runs/manypos --train-queries 150 --test-queries 100 --positives 40
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

import numpy as np

from distill import data, metrics, models, retrieval


def widen(qrels, corpus, doc_ids, emb, positives):
    """{qid: {did: grade}}: gold docs at grade 2, their nearest documents at grade 1, taken
    alternately from the dense and the BM25 neighbours of the gold documents."""
    row = {d: i for i, d in enumerate(doc_ids)}
    gold = {q: [d for d, g in docs.items() if g > 0 and d in row] for q, docs in qrels.items()}
    lexical = retrieval.bm25_search(
        corpus, {q: " ".join(corpus[d].full_text for d in g) for q, g in gold.items()}, positives
    )
    out = {}
    for qid, docs in gold.items():
        dense = [doc_ids[i] for i in np.argsort(-(emb @ emb[[row[d] for d in docs]].mean(axis=0)))]
        bm25 = sorted(lexical[qid], key=lexical[qid].get, reverse=True)
        merged = [d for pair in zip(dense, bm25, strict=False) for d in pair]
        extra = [d for d in dict.fromkeys(merged) if d not in docs][: positives - len(docs)]
        out[qid] = {**dict.fromkeys(docs, 2), **dict.fromkeys(extra, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--output", required=True)
    parser.add_argument("--train-queries", type=int, default=150)
    parser.add_argument("--test-queries", type=int, default=100)
    parser.add_argument("--positives", type=int, default=40)
    parser.add_argument(
        "--title-queries",
        type=int,
        default=0,
        help="more train queries, each a document's title with that document as its gold "
        "(SciFact has 809 train queries; a stand-in of 2.5k queries needs these)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default="runs/cache")
    args = parser.parse_args()

    ds = data.open_dataset(args.data)
    corpus = ds.corpus
    rng = random.Random(args.seed)
    model_path = models.resolve_model("bundled")
    model = models.load_bi_encoder(model_path)
    doc_ids, emb = retrieval.encode_corpus(
        model, corpus, model_path=model_path, cache_dir=args.cache_dir
    )
    out = Path(args.output)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    shutil.copy(ds.corpus_path, out / ds.corpus_path.name)
    queries = {}
    for split, n in (("train", args.train_queries), ("test", args.test_queries)):
        full = ds.qrels(split)
        keep = sorted(rng.sample(sorted(full), min(n, len(full))))
        texts = {q: ds.queries[q] for q in keep}
        gold = {q: full[q] for q in keep}
        if split == "train" and args.title_queries:
            titled = [d for d in doc_ids if corpus[d].title.strip()]
            for d in rng.sample(titled, min(args.title_queries, len(titled))):
                texts[f"title-{d}"], gold[f"title-{d}"] = corpus[d].title, {d: 1}
            keep = sorted(texts)
        wide = widen(gold, corpus, doc_ids, emb, args.positives)
        data.write_qrels(wide, out / "qrels" / f"{split}.tsv")
        queries.update(texts)
        bm25 = retrieval.bm25_search(corpus, texts, 30)
        dense = retrieval.dense_search(
            model, corpus, texts, 30, model_path=model_path, cache_dir=args.cache_dir
        )
        for name, run in (("bm25", bm25), ("base", dense)):
            found = sum(len(set(run[q]) & set(wide[q])) for q in keep)
            total = sum(len(wide[q]) for q in keep)
            ndcg = metrics.summarize(wide, run, ["ndcg@10"])["ndcg@10"]
            print(
                f"{split}: {len(keep)} queries, {total / len(keep):.1f} positives each; "
                f"{name} top-30 holds {found / total:.0%} of them; {name} NDCG@10 {ndcg:.4f}"
            )
    data.write_jsonl(
        ({"_id": q, "text": t} for q, t in sorted(queries.items())), out / "queries.jsonl"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
