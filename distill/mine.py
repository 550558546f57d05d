"""``distill mine``: top-k candidates per query from BM25, dense retrieval, or both fused.

Output ``candidates.parquet`` (one row per (query, candidate)):

==========  =======  ==============================================================
column      type     meaning
==========  =======  ==============================================================
qid         string   query id
did         string   document id
rank        int32    1-based rank in this query's candidate list
source      string   ``bm25``, ``dense`` or ``hybrid`` (reciprocal-rank fusion)
score       float32  first-stage score (BM25 score, inner product, or RRF score)
==========  =======  ==============================================================

Queries come from a BEIR split (those with qrels), ``all`` queries of the dataset, or a JSONL
file of ``{"_id", "text"}`` rows with no qrels at all (search logs, pseudo-queries).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import click

from distill import artifacts, data, metrics, retrieval
from distill.errors import InputError

APPROXIMATE_FROM = 200_000  # documents; below this, exact search is fast enough on a CPU


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


def load_query_set(
    dataset: data.BeirDataset, spec: str
) -> tuple[dict[str, str], dict[str, dict[str, int]] | None, Path | None]:
    """(queries, qrels or None, file to fingerprint or None) for a split name, 'all' or a file."""
    if spec == "all":
        return dict(dataset.queries), None, dataset.root / "queries.jsonl"
    if spec.endswith((".jsonl", ".jsonl.gz")) or Path(spec).is_file():
        return data.load_queries(spec), None, Path(spec)
    qrels = dataset.qrels(spec)
    return {q: dataset.queries[q] for q in qrels}, qrels, dataset.qrels_path(spec)


def retrieve(config: MineConfig, corpus, queries) -> retrieval.Ranking:
    """The configured first stage over ``queries``; top ``config.k`` each."""
    runs = []
    if config.method in ("bm25", "hybrid"):
        runs.append(retrieval.bm25_search(corpus, queries, config.k))
    if config.method in ("dense", "hybrid"):
        from distill.models import load_bi_encoder, resolve_model

        model = load_bi_encoder(config.model, trust_remote_code=config.trust_remote_code)
        kind = (
            config.index
            if config.index != "auto"
            else ("flat" if len(corpus) < APPROXIMATE_FROM else "hnsw")
        )
        cache = config.cache_dir or str(data.cache_dir() / "embeddings")
        runs.append(
            retrieval.dense_search(
                model,
                corpus,
                queries,
                config.k,
                model_path=resolve_model(config.model),
                index_kind=kind,
                batch_size=config.batch_size,
                cache_dir=cache,
            )
        )
    return runs[0] if len(runs) == 1 else retrieval.rrf(runs, k=config.rrf_k, depth=config.k)


def write_candidates(ranking: retrieval.Ranking, source: str, path: Path) -> int:
    """Write a ranking as ``candidates.parquet`` (schema above); return the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list] = {"qid": [], "did": [], "rank": [], "source": [], "score": []}
    for qid, docs in ranking.items():
        for rank, did in enumerate(metrics.trec_order(docs), 1):
            cols["qid"].append(qid)
            cols["did"].append(did)
            cols["rank"].append(rank)
            cols["source"].append(source)
            cols["score"].append(docs[did])
    schema = pa.schema(
        [
            ("qid", pa.string()),
            ("did", pa.string()),
            ("rank", pa.int32()),
            ("source", pa.string()),
            ("score", pa.float32()),
        ]
    )
    with artifacts.atomic_path(path) as tmp:
        pq.write_table(pa.table(cols, schema=schema), tmp)
    return len(cols["qid"])


CANDIDATE_COLUMNS = ("qid", "did", "rank", "source", "score")


def read_candidate_columns(path: str | Path, columns: list[str]) -> dict[str, list]:
    """``columns`` of a ``candidates.parquet`` as lists, after checking it is one: a readable
    Parquet file with those columns (ids as text, rank an integer, score a number) and rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise InputError("no such candidates file (run `distill mine` first)", path=p)
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several unrelated types for a non-Parquet file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"not a readable Parquet file ({first}); expected `distill mine` output", path=p
        ) from None
    expected = {
        "qid": (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer),
        "did": (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer),
        "rank": (pa.types.is_integer,),
        "score": (pa.types.is_floating, pa.types.is_integer),
    }
    for name in columns:
        if name not in table.column_names:
            raise InputError(
                f"missing column (a candidates file has {', '.join(CANDIDATE_COLUMNS)}; "
                f"this one has {', '.join(table.column_names) or 'none'})",
                path=p,
                field=name,
            )
        kind = table.schema.field(name).type
        if not any(check(kind) for check in expected.get(name, (lambda _: True,))):
            raise InputError(
                f"has type {kind}, expected {'text' if name in ('qid', 'did') else 'a number'}",
                path=p,
                field=name,
            )
        if table.column(name).null_count:
            raise InputError("has empty (null) values", path=p, field=name)
    if table.num_rows == 0:
        raise InputError("has no rows: no candidates (did `distill mine` find any?)", path=p)
    cols = {}
    for name in columns:
        column = table.column(name)
        if name in ("qid", "did"):
            column = column.cast(pa.string())
        cols[name] = column.to_pylist()
    return cols


def read_candidates(path: str | Path) -> retrieval.Ranking:
    """``{qid: {did: score}}`` from a ``candidates.parquet``."""
    table = read_candidate_columns(path, ["qid", "did", "score"])
    out: retrieval.Ranking = {}
    for q, d, s in zip(table["qid"], table["did"], table["score"], strict=True):
        out.setdefault(q, {})[d] = float(s)
    return out


def run(config: MineConfig, echo=click.echo) -> Path:
    started = time.time()
    dataset = data.open_dataset(config.data)
    queries, qrels, query_file = load_query_set(dataset, config.queries)
    out = artifacts.claim_output(
        config.output, stage="mine", inputs=[dataset.root, query_file], overwrite=config.overwrite
    )
    corpus = dataset.corpus
    ranking = retrieve(config, corpus, queries)
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
    if query_file is not None:
        inputs["queries"] = query_file
    artifacts.write_manifest(
        out, stage="mine", config=config, inputs=inputs, figures=figures, started=started
    )
    recall = f"; recall@{config.k} {figures[f'recall@{config.k}']:.3f}" if qrels is not None else ""
    echo(
        f"mined {rows:,} candidates for {len(queries):,} queries ({config.method}, k={config.k}){recall} in {time.time() - started:.1f}s"
    )
    echo(f"wrote {out / 'candidates.parquet'}")
    return out
