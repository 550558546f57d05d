"""``distill data sample``: a small BEIR folder cut from a large one, for the demo and quick tries.

A seeded sample of the queries of each split, every document their qrels name, the BM25
top-``neighbours`` of each sampled query (so the sample keeps the hard distractors a real
corpus has around a query, not only easy random ones), then random documents up to ``docs``.
Scores on a sample are higher than on the full corpus (fewer distractors); use it to compare
systems with each other, not with published figures.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

from distill import artifacts, data
from distill.errors import InputError


@dataclass
class SampleConfig:
    """Config of ``distill data sample``."""

    data: str = field(metadata={"help": "BEIR folder or beir:NAME"})
    output: str = field(default="runs/sample", metadata={"help": "output BEIR folder"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "write into a non-empty --output folder distill did not make (its other files are kept)"
        },
    )
    train_queries: int = field(
        default=300, metadata={"help": "train queries kept", "range": "[1, inf)"}
    )
    test_queries: int = field(
        default=100, metadata={"help": "test queries kept", "range": "[1, inf)"}
    )
    docs: int = field(
        default=1500,
        metadata={"help": "documents kept (at least the qrels' own)", "range": "[1, inf)"},
    )
    neighbours: int = field(
        default=10,
        metadata={
            "help": "BM25 top-N of each sampled query kept as distractors",
            "range": "[0, inf)",
        },
    )
    seed: int = field(default=42, metadata={"help": "seed", "range": "(-inf, inf)"})


def run(config: SampleConfig, echo=click.echo) -> Path:
    from distill.retrieval import bm25_search

    started = time.time()
    ds = data.open_dataset(config.data)
    out = artifacts.claim_output(
        config.output, stage="sample", inputs=[ds.root], overwrite=config.overwrite
    )
    corpus = ds.corpus
    rng = random.Random(config.seed)
    wanted = {"train": config.train_queries, "test": config.test_queries}
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split, n in wanted.items():
        if split not in ds.splits():
            raise InputError(f"has no qrels split {split!r}", path=ds.root)
        full = ds.qrels(split)
        keep = sorted(rng.sample(sorted(full), min(n, len(full))))
        qrels[split] = {q: full[q] for q in keep}
    queries = {q: ds.queries[q] for split in qrels.values() for q in split}
    keep_docs = dict.fromkeys(
        d for split in qrels.values() for docs in split.values() for d in docs
    )
    if config.neighbours:
        for docs in bm25_search(corpus, queries, config.neighbours).values():
            keep_docs.update(dict.fromkeys(docs))
    rest = sorted(set(corpus) - set(keep_docs))
    fill = max(0, config.docs - len(keep_docs))
    keep_docs.update(dict.fromkeys(sorted(rng.sample(rest, min(fill, len(rest))))))
    with artifacts.atomic_path(out, stage="sample", overwrite=config.overwrite) as tmp:
        (tmp / "qrels").mkdir(parents=True)
        data.write_jsonl(
            (
                {"_id": d, "title": corpus[d].title, "text": corpus[d].text}
                for d in sorted(keep_docs)
            ),
            tmp / "corpus.jsonl",
        )
        data.write_jsonl(
            ({"_id": q, "text": queries[q]} for q in sorted(queries)), tmp / "queries.jsonl"
        )
        for split, rows in qrels.items():
            data.write_qrels(rows, tmp / "qrels" / f"{split}.tsv")
    figures = {
        "documents": len(keep_docs),
        **{f"{split}_queries": len(rows) for split, rows in qrels.items()},
    }
    artifacts.write_manifest(
        out,
        stage="sample",
        config=asdict(config),
        inputs={"corpus": ds.corpus_path},
        figures=figures,
        started=started,
    )
    echo(
        f"sampled {len(keep_docs):,} documents, {figures['train_queries']} train and "
        f"{figures['test_queries']} test queries into {out}"
    )
    return out
