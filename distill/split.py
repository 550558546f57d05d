"""``distill data split``: split labeled pairs or a BEIR split by query, without leakage.

Validation queries that also appear in training inflate every validation figure (a named
failure in the guides this project follows). So the split is by *query*: every row of a query
lands on one side. Exact duplicate rows are removed first, and queries that are equal after
normalising case, whitespace and punctuation form one group that is kept on one side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from distill import artifacts, data
from distill.pairs import Pair, load_pairs, write_pairs_jsonl
from distill.querysets import split_queries


@dataclass
class SplitConfig:
    """Config of ``distill data split``."""

    data: str = field(metadata={"help": "labeled pairs file or BEIR folder (or beir:NAME)"})
    output: str = field(default="runs/split", metadata={"help": "output folder"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "write into a non-empty --output folder distill did not make (its other files are kept)"
        },
    )
    split: str = field(default="train", metadata={"help": "BEIR qrels split to divide"})
    val_fraction: float = field(
        default=0.2, metadata={"help": "share of queries for validation", "range": "(0, 1)"}
    )
    seed: int = field(default=42, metadata={"help": "random seed", "range": "(-inf, inf)"})


def run(config: SplitConfig, echo=click.echo) -> Path:
    """Split ``config.data`` into ``<output>/train`` and ``<output>/val`` parts; return output."""
    started = time.time()
    out = artifacts.claim_output(
        config.output, stage="split", inputs=[config.data], overwrite=config.overwrite
    )
    figures: dict[str, int | float] = {}
    if data.is_beir(config.data):
        dataset = data.open_dataset(config.data)
        qrels = dataset.qrels(config.split)
        queries = {qid: dataset.queries[qid] for qid in qrels}
        parts = split_queries(queries, config.val_fraction, config.seed)
        figures["exact_duplicate_rows"] = 0  # load_qrels keeps one copy of a repeated row
        inputs = {
            "queries": dataset.root / "queries.jsonl",
            "qrels": dataset.qrels_path(config.split),
        }
        with artifacts.atomic_path(out, stage="split", overwrite=config.overwrite) as tmp:
            (tmp / "qrels").mkdir(parents=True)
            for name, qids in (("train", parts.train), ("val", parts.val)):
                data.write_qrels(
                    {q: d for q, d in qrels.items() if q in qids}, tmp / "qrels" / f"{name}.tsv"
                )
            rows = {
                name: sum(len(qrels[q]) for q in ids)
                for name, ids in (("train", parts.train), ("val", parts.val))
            }
    else:
        pairs = load_pairs(config.data)
        unique: dict[tuple, Pair] = {}
        for pair in pairs:
            unique.setdefault((pair.qid, pair.did, pair.query, pair.text, pair.label), pair)
        figures["exact_duplicate_rows"] = len(pairs) - len(unique)
        pairs = list(unique.values())
        queries = {p.qid: p.query for p in pairs}
        parts = split_queries(queries, config.val_fraction, config.seed)
        inputs = {"pairs": Path(config.data)}
        with artifacts.atomic_path(out, stage="split", overwrite=config.overwrite) as tmp:
            tmp.mkdir(parents=True)
            for name, qids in (("train", parts.train), ("val", parts.val)):
                write_pairs_jsonl([p for p in pairs if p.qid in qids], tmp / f"{name}.jsonl")
            rows = {
                name: sum(p.qid in ids for p in pairs)
                for name, ids in (("train", parts.train), ("val", parts.val))
            }
    figures.update(
        near_duplicate_groups=parts.near_duplicate_groups,
        near_duplicate_queries=parts.near_duplicate_queries,
        train_queries=len(parts.train),
        val_queries=len(parts.val),
        train_rows=rows["train"],
        val_rows=rows["val"],
    )
    artifacts.write_manifest(
        out, stage="split", config=config, inputs=inputs, figures=figures, started=started
    )
    echo(
        f"split {len(queries)} queries by query: train {len(parts.train)} queries / {rows['train']} rows, "
        f"val {len(parts.val)} queries / {rows['val']} rows (seed {config.seed})"
    )
    echo(
        f"exact duplicate rows removed: {figures['exact_duplicate_rows']}; near-duplicate queries "
        f"(same text up to case, whitespace, punctuation): {parts.near_duplicate_queries} in "
        f"{parts.near_duplicate_groups} groups, each kept on one side"
    )
    echo(f"wrote {out}")
    return out
