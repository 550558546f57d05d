"""``distill mine``: top-k candidates per query from BM25, dense retrieval, or both fused.

Output ``candidates.parquet`` (one row per (query, candidate); written and read by
:mod:`distill.candidates`):

==========  =======  ==============================================================
column      type     meaning
==========  =======  ==============================================================
qid         string   query id
did         string   document id
rank        int32    1-based rank in this query's candidate list
source      string   ``bm25``, ``dense`` or ``hybrid`` (reciprocal-rank fusion)
score       float32  first-stage score (BM25 score, inner product, or RRF score)
==========  =======  ==============================================================

Queries come from a BEIR split (those with qrels), ``all`` queries of the dataset, a JSONL
file of ``{"_id", "text"}`` rows with no qrels at all (search logs, pseudo-queries), or
several of these joined by ``,``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import click

from distill import artifacts, data, metrics, retrieval
from distill.candidates import write_candidates
from distill.querysets import load_query_set
from distill.retrieval import APPROXIMATE_FROM


@dataclass
class MineConfig:
    """Config of ``distill mine``."""

    data: str = field(metadata={"help": "BEIR folder or beir:NAME (the corpus)"})
    queries: str = field(
        default="train", metadata={"help": "a qrels split, 'all', or a queries JSONL file"}
    )
    output: str = field(default="runs/mine", metadata={"help": "output folder"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "write into a non-empty --output folder distill did not make (its other files are kept)"
        },
    )
    method: Literal["bm25", "dense", "hybrid"] = field(
        default="hybrid", metadata={"help": "retriever"}
    )
    k: int = field(default=100, metadata={"help": "candidates per query", "range": "[1, inf)"})
    model: str = field(default="bundled", metadata={"help": "bi-encoder for dense retrieval"})
    index: Literal["auto", "flat", "ivf", "hnsw"] = field(
        default="auto",
        metadata={"help": f"faiss index; auto = flat below {APPROXIMATE_FROM:,} docs, else hnsw"},
    )
    batch_size: int = field(
        default=64, metadata={"help": "encoding batch size", "range": "[1, inf)"}
    )
    rrf_k: int = field(
        default=60, metadata={"help": "reciprocal-rank fusion constant", "range": "[0, inf)"}
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "corpus embedding cache [default: $DISTILL_CACHE/embeddings]"},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "let the model run its own code"}
    )


def run(config: MineConfig, echo=click.echo) -> Path:
    started = time.time()
    dataset = data.open_dataset(config.data)
    queries, qrels, query_files = load_query_set(dataset, config.queries)
    out = artifacts.claim_output(
        config.output, stage="mine", inputs=[dataset.root, *query_files], overwrite=config.overwrite
    )
    corpus = dataset.corpus
    ranking = retrieval.first_stage(
        corpus,
        queries,
        config.method,
        config.k,
        model=config.model,
        index=config.index,
        batch_size=config.batch_size,
        rrf_k=config.rrf_k,
        cache_dir=config.cache_dir,
        trust_remote_code=config.trust_remote_code,
    )
    artifacts.mark_output(out, "mine")
    rows = write_candidates(ranking, config.method, out / "candidates.parquet")
    figures: dict[str, float | int] = {
        "queries": len(queries),
        "rows": rows,
        "documents": len(corpus),
    }
    if qrels is not None:
        figures[f"recall@{config.k}"] = round(
            metrics.summarize(qrels, ranking, [f"recall.{config.k}"])[f"recall.{config.k}"], 4
        )
    inputs = {"corpus": dataset.corpus_path}
    for n, path in enumerate(query_files):  # one role per --queries part
        inputs["queries" if n == 0 else f"queries{n + 1}"] = path
    artifacts.write_manifest(
        out, stage="mine", config=config, inputs=inputs, figures=figures, started=started
    )
    recall = f"; recall@{config.k} {figures[f'recall@{config.k}']:.3f}" if qrels is not None else ""
    echo(
        f"mined {rows:,} candidates for {len(queries):,} queries ({config.method}, k={config.k})"
        f"{recall} in {time.time() - started:.1f}s; wrote {out / 'candidates.parquet'}"
    )
    return out
