"""The files of a labelling run that record its progress: one shard scored and written
atomically (:func:`label_shard`), and ``progress.json`` read back on a restart, or reset when
it is damaged or belongs to another job (:func:`load_progress`). The format of both is in
:mod:`distill.label`'s docstring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from distill import artifacts
from distill.labels_io import PROGRESS, read_progress


def load_progress(out: Path, key: str, echo) -> dict:
    path = out / PROGRESS
    if path.is_file() and read_progress(path) is None:
        stale = list(out.glob("shard-*.parquet"))
        for shard in stale:
            shard.unlink()
        path.unlink()
        (out / artifacts.MANIFEST).unlink(missing_ok=True)
        echo(
            f"warning: {path}: damaged (not the JSON `distill label` writes); discarded it and "
            f"{len(stale)} shard file(s) it vouched for; labelling from the start",
            err=True,
        )
    if path.is_file():
        progress = json.loads(path.read_text())
        if progress.get("key") == key:
            for part in out.glob(
                ".progress-*.json"
            ):  # shards done by processes of a killed multi-process run
                extra = read_progress(part)
                if extra is not None and extra.get("key") == key:
                    progress["shards"].update(extra["shards"])
            return progress
        stale = list(out.glob("shard-*.parquet"))
        for shard in stale:
            shard.unlink()
        (out / artifacts.MANIFEST).unlink(missing_ok=True)
        echo(
            f"teacher, candidates or settings changed: discarded {len(stale)} old shards", err=True
        )
    return {"key": key, "shards": {}}


def label_shard(teacher, names, chunk, queries, corpus, qrels, batch_size: int, path: Path):
    """Score one shard's (qid, did) pairs and write them atomically to ``path``: a function
    of the pairs alone, so a resumed run writes the same bytes as an uninterrupted one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [(queries[q], corpus[d].full_text) for q, d in chunk]
    member_scores = teacher.member_scores(texts, batch_size, skip_zero=True) if names else {}
    scores = teacher.combine(member_scores) if names else teacher.score(texts, batch_size)
    cols = {
        "qid": pa.array([q for q, _ in chunk], pa.string()),
        "did": pa.array([d for _, d in chunk], pa.string()),
        "score": pa.array(np.asarray(scores, dtype=np.float32)),
    }
    for name in names:
        cols[f"score_{name}"] = pa.array(np.asarray(member_scores[name], dtype=np.float32))
    cols["prob"] = pa.array(np.asarray(teacher.probability(scores), dtype=np.float32))
    cols["gold"] = pa.array([(qrels or {}).get(q, {}).get(d, -1) for q, d in chunk], pa.int16())
    with artifacts.atomic_path(path) as tmp:
        pq.write_table(pa.table(cols), tmp)
