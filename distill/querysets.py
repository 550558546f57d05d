"""Query sets shared by the stages: which queries a stage works on, and how queries are split.

* :func:`load_query_set`: the queries (and qrels, when there are any) named by a stage's
  ``--queries`` / ``--split`` value: a qrels split, ``all``, a queries JSONL file, or several
  of these joined by ``,`` (a few labelled queries plus many unlabelled ones).
* :func:`split_queries`: a train / validation split by *query*, keeping near-duplicate
  queries on one side (``distill data split``, ``distill teach`` and ``distill
  train-student``'s validation all split this way).
* :func:`highest_grades_first`: ``k`` of a query's positives, whole grades from the highest
  down (label's added positives, the student's example anchors).
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from distill import data
from distill.errors import InputError

_SPACE = re.compile(r"\s+")


def load_query_set(
    dataset: data.BeirDataset, spec: str
) -> tuple[dict[str, str], dict[str, dict[str, int]] | None, list[Path]]:
    """(queries, qrels or None, files to fingerprint) for a qrels split name, 'all', a queries
    JSONL file, or several of those joined by ',' (labelled and unlabelled queries together,
    for example ``train,logs.jsonl``: the qrels are those of the parts that have them)."""
    parts = [p.strip() for p in spec.split(",")] if "," in spec else [spec]
    if any(not p for p in parts):
        raise InputError(f"--queries {spec!r} has an empty part")
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] | None = None
    files: list[Path] = []
    for part in parts:
        q, r, f = _one_query_set(dataset, part)
        clash = next((k for k in q if k in queries and queries[k] != q[k]), None)
        if clash is not None:
            raise InputError(f"query {clash!r} has two different texts in --queries {spec!r}")
        queries.update(q)
        files.append(f)
        if r is not None:
            qrels = {**(qrels or {}), **r}
    return queries, qrels, files


def _one_query_set(dataset: data.BeirDataset, spec: str):
    if spec == "all":
        return dict(dataset.queries), None, dataset.root / "queries.jsonl"
    if spec.endswith((".jsonl", ".jsonl.gz")) or Path(spec).is_file():
        return data.load_queries(spec), None, Path(spec)
    qrels = dataset.qrels(spec)
    return {q: dataset.queries[q] for q in qrels}, qrels, dataset.qrels_path(spec)


def normalize_query(text: str) -> str:
    """Case-folded, punctuation removed, whitespace collapsed: the near-duplicate key."""
    kept = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return _SPACE.sub(" ", kept.casefold()).strip()


@dataclass
class QuerySplit:
    """Which query ids went where, and what the split found on the way."""

    train: set[str]
    val: set[str]
    near_duplicate_groups: int  # groups of 2+ distinct query ids with one normalised text
    near_duplicate_queries: int  # query ids in such groups


def split_queries(queries: Mapping[str, str], val_fraction: float, seed: int) -> QuerySplit:
    """Split query ids so that queries with one normalised text stay on one side.

    Deterministic for a given set of queries, fraction and seed.
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for qid, text in queries.items():
        groups[normalize_query(text)].append(qid)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = round(val_fraction * len(queries))
    val: set[str] = set()
    train: set[str] = set()
    for key in keys:
        (val if len(val) < target else train).update(groups[key])
    if not train or not val:
        raise InputError(
            f"{len(queries)} distinct queries cannot be split {1 - val_fraction:.0%}/"
            f"{val_fraction:.0%} with both parts non-empty; add queries or change val_fraction"
        )
    dup_groups = [g for g in groups.values() if len(g) > 1]
    return QuerySplit(train, val, len(dup_groups), sum(len(g) for g in dup_groups))


def highest_grades_first(docs: list, grades: Mapping, k: int, rng: random.Random) -> list:
    """``k`` of ``docs`` (sorted): whole grades from the highest down, the last one sampled
    with ``rng``. A query with 3 grade-2 and 37 grade-1 positives keeps its grade-2 ones,
    all three of which a plain sample of 4 keeps 0.04% of the time; with one grade this is
    a plain seeded sample (``rng.sample(docs, k)``, the same draws)."""
    kept: list = []
    for grade in sorted({grades[d] for d in docs}, reverse=True):
        tier = [d for d in docs if grades[d] == grade]
        room = k - len(kept)
        kept += rng.sample(tier, min(room, len(tier)))  # one grade: exactly rng.sample(docs, k)
        if len(kept) >= k:
            break
    return sorted(kept)
