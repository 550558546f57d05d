"""What a teacher learns and is validated on, built once per ``distill teach`` run.

:func:`prepare` splits the queries by query, mines negatives for the training queries from
the first stage (skipping its top ranks), takes the first stage's top-k as each validation
query's candidates (no positive injected) and makes the title -> abstract warm-up lists;
:func:`listnet_lists` turns the training rows into one ListNet list per query.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import click

from distill.pairs import is_binary, load_labeled
from distill.querysets import split_queries
from teachers.teach_config import TeachConfig


@dataclass
class TeachData:
    """Everything a member is trained and validated on (text joined from ids)."""

    queries: dict[str, str]
    documents: dict[str, str]
    qrels: dict[str, dict[str, int]]
    train_rows: list[tuple[str, str, float]]  # (qid, did, target in [0, 1])
    val_candidates: dict[str, list[str]]  # the first stage's top-k, no positive injected
    negative_pools: dict[str, list[str]]  # per training query: unlabeled first-stage ranks
    graded: bool
    figures: dict[str, Any]
    corpus_texts: list[str]  # every document, for first-stage members (BM25 statistics)
    warmup: list[tuple[str, list[str]]] = field(
        default_factory=list
    )  # (title, [abstract, negatives])


def _first_stage(config: TeachConfig, corpus, queries) -> dict[str, dict[str, float]]:
    from distill.retrieval import first_stage

    depth = max(config.mine_depth, config.val_candidates)
    return first_stage(
        corpus,
        queries,
        config.negatives_from,
        depth,
        model=config.miner,
        cache_dir=config.cache_dir,
    )


def prepare(config: TeachConfig, echo=click.echo) -> TeachData:
    """Split by query, mine negatives for training queries, build validation candidate lists."""
    from distill.metrics import trec_order

    labeled = load_labeled(config.data, config.split)
    queries, corpus, qrels = labeled.queries, labeled.corpus, labeled.qrels
    grades = [g for docs in qrels.values() for g in docs.values()]
    graded = config.loss == "graded-bce" or (config.loss == "auto" and not is_binary(grades))
    top = max(grades) if graded else 1
    # validation is capped so that evaluating stays a small share of training time
    fraction = min(config.val_fraction, config.val_max_queries / max(1, len(queries)))
    parts = split_queries(queries, fraction, config.seed)
    first = _first_stage(config, corpus, queries)
    rng = random.Random(config.seed)
    rows: list[tuple[str, str, float]] = []
    pools: dict[str, list[str]] = {}  # unlabeled first-stage ranks a list samples negatives from
    mined = 0
    for qid in sorted(parts.train):
        labeled = qrels[qid]
        rows += [(qid, d, min(g / top, 1.0)) for d, g in labeled.items()]
        if any(g == 0 for g in labeled.values()):
            continue  # the data brings its own negatives
        ranked = trec_order(first.get(qid, {}))[config.skip_top : config.mine_depth]
        pools[qid] = [d for d in ranked if d not in labeled]
        for d in rng.sample(pools[qid], min(config.negatives, len(pools[qid]))):
            rows.append((qid, d, 0.0))
            mined += 1
    rng.shuffle(rows)
    # Honest validation, the protocol of use: rerank the first stage's top-k as it is. Gold
    # positives are never injected: on data whose positives the first stage mostly misses,
    # injected positives reward "unlike a first-stage hit", which is garbage when every
    # candidate is a first-stage hit (as in `evaluate` and in real use).
    val = {q: trec_order(first.get(q, {}))[: config.val_candidates] for q in sorted(parts.val)}
    found = sum(sum(1 for x in val[q] if qrels[q].get(x, 0) > 0) for q in val) / max(
        1, sum(sum(1 for g in qrels[q].values() if g > 0) for q in val)
    )
    used = {d for _, d, _ in rows} | {d for ds in val.values() for d in ds}
    used |= {d for ds in pools.values() for d in ds}
    warmup = _warmup_lists(config, corpus, {d for docs in qrels.values() for d in docs}, rng)
    figures = {
        "train_queries": len(parts.train),
        "val_queries": len(parts.val),
        "train_pairs": len(rows),
        "mined_negatives": mined,
        "val_pairs": sum(map(len, val.values())),
        "val_positives_in_candidates": round(found, 4),
        "labels": "graded" if graded else "binary",
        "warmup_lists": len(warmup),
    }
    echo(
        f"teaching on {figures['train_queries']} queries ({figures['train_pairs']} pairs, {mined} mined negatives), "
        f"validating on {figures['val_queries']} queries by reranking the first stage's top "
        f"{config.val_candidates} ({figures['val_pairs']} candidates, {found:.0%} of their positives)"
    )
    return TeachData(
        queries,
        {d: corpus[d].full_text for d in used},
        qrels,
        rows,
        val,
        pools,
        graded,
        figures,
        [doc.full_text for doc in corpus.values()],
        warmup,
    )


def _warmup_lists(config: TeachConfig, corpus, skip: set[str], rng: random.Random):
    """Weak in-domain lists the corpus gives for free: a document's title as the query, its
    body as the positive, ``negatives`` of the title's first-stage ranks 2..mine_depth as
    negatives. Documents that are labeled anywhere in the qrels are not used (no leakage of
    validation positives into training)."""
    from distill.metrics import trec_order
    from distill.models import model_kind

    if config.warmup_pairs is not None:
        n = config.warmup_pairs
    else:  # the default warm-up is for fresh heads: skip the retrieval when no start needs it
        starts = [m.model for m in config.members if m.train] or [config.model]
        n = 400 if any(model_kind(s) != "cross" for s in starts) else 0
    titled = sorted(d for d, doc in corpus.items() if doc.title and doc.text and d not in skip)
    if n <= 0 or not titled:
        return []
    chosen = rng.sample(titled, min(n, len(titled)))
    titles = {f"title:{d}": corpus[d].title for d in chosen}
    first = _first_stage(config, corpus, titles)
    lists = []
    for d in chosen:
        ranked = [
            x for x in trec_order(first.get(f"title:{d}", {}))[1 : config.mine_depth] if x != d
        ]
        negatives = rng.sample(ranked, min(config.negatives, len(ranked)))
        if negatives:
            lists.append((corpus[d].title, [corpus[d].text] + [corpus[x].text for x in negatives]))
    return lists


def rows_by_query(d: TeachData) -> dict[str, list[tuple[str, float]]]:
    """{qid: [(did, target), ...]} of the training rows, in row order."""
    by_query: dict[str, list[tuple[str, float]]] = {}
    for q, doc, y in d.train_rows:
        by_query.setdefault(q, []).append((doc, y))
    return by_query


def listnet_lists(d: TeachData, config: TeachConfig) -> list[tuple[str, list[str], list[float]]]:
    """One ListNet list per training query: ``(qid, [dids], [targets])``.

    A list carries up to ``list_positives`` of the query's positives (sampled) and
    ``negatives`` negatives sampled for this list from the query's pool of unlabeled
    first-stage ranks, so the cost grows with the number of queries, not of positives, and
    a query with 40 positives no longer repeats one fixed set of negatives 40 times.
    ListNet's target spreads over every positive of the list (graded by their targets).
    """
    rng = random.Random(config.seed)
    by_query = rows_by_query(d)
    lists = []
    for q in sorted(by_query):
        positives = sorted((doc, y) for doc, y in by_query[q] if y > 0)
        pool = d.negative_pools.get(q) or [doc for doc, y in by_query[q] if y == 0]
        if not positives or not pool:
            continue
        chosen = rng.sample(positives, min(config.list_positives, len(positives)))
        negatives = rng.sample(pool, min(config.negatives, len(pool)))
        lists.append(
            (
                q,
                [doc for doc, _ in chosen] + negatives,
                [float(y) for _, y in chosen] + [0.0] * len(negatives),
            )
        )
    rng.shuffle(lists)
    return lists
