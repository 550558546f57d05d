"""Where a labelling job stands and what it will do: its pairs and their order, its shards
(done, and this process's),
the time its plan takes at the measured rate, what the time budget keeps, and whether a
finished run is current."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from distill import artifacts
from distill.label_shards import load_progress
from distill.labels_io import PROGRESS
from distill.querysets import highest_grades_first


def pair_list(
    candidates: dict[str, list[str]],
    qrels: dict[str, dict[str, int]] | None,
    include_positives: bool,
    max_added: int | None = None,
) -> list[tuple[str, str]]:
    """Distinct (qid, did) pairs in the labelling order: queries with gold positives first,
    then the others (unlabelled or pseudo-queries), each group in a seeded random order (so
    that labelling cut short by its time budget holds a random sample, and keeps the labelled
    queries, which carry the gold positives and the label guard's check, before any other);
    candidates by rank, then gold positives the candidates missed (``max_added`` of them at
    most, the highest grades first, a sample seeded by the query id within a grade)."""
    pairs: list[tuple[str, str]] = []
    every = sorted(set(candidates) | (set(qrels or {}) if include_positives else set()))
    gold = {q for q, docs in (qrels or {}).items() if any(g > 0 for g in docs.values())}
    labelled = [q for q in every if q in gold]
    others = [q for q in every if q not in gold]
    random.Random(0).shuffle(labelled)
    random.Random(0).shuffle(others)
    order = labelled + others
    for qid in order:
        docs = list(candidates.get(qid, []))
        if include_positives and qrels:
            known = set(docs)
            grades = qrels.get(qid, {})
            missed = [d for d, g in sorted(grades.items()) if g > 0 and d not in known]
            if max_added is not None and len(missed) > max_added:
                missed = highest_grades_first(missed, grades, max_added, random.Random(qid))
            docs += missed
        pairs.extend((qid, d) for d in dict.fromkeys(docs))
    return pairs


@dataclass
class Plan:
    """Where the job stands: output folder, job key, progress, shards done and shards owned."""

    out: Path
    key: str
    progress: dict
    n_shards: int
    done: set[int]
    owned_shards: list[int]


def plan_shards(config, state, out: Path, key: str, n_pairs: int, echo) -> Plan:
    """Plan shards: load (or reset) the progress; find the shards done and this process's."""
    progress = load_progress(out, key, echo) if state.is_main_process else None
    state.wait_for_everyone()
    if progress is None:
        progress = (
            json.loads((out / PROGRESS).read_text())
            if (out / PROGRESS).is_file()
            else {"key": key, "shards": {}}
        )
    n_shards = max(1, -(-n_pairs // config.shard_size))
    done = {
        int(i)
        for i, meta in progress["shards"].items()
        if (out / meta["file"]).is_file()
        and artifacts.fingerprint(out / meta["file"]) == meta["sha256"]
    }
    owned_shards = [
        i
        for i in range(n_shards)
        if i % state.num_processes == state.process_index and i not in done
    ]
    return Plan(out, key, progress, n_shards, done, owned_shards)


def budget_note(config, todo: int, rate: float | None) -> str:
    """The plan's time estimate at the measured rate, and what the time budget keeps."""
    if not rate:
        return ""
    note = f"; about {todo / rate / 60:.0f} min at {rate:.0f} pairs/s"
    if config.time_budget is not None and todo / rate > 60 * config.time_budget:
        kept = min(todo, int(rate * 60 * config.time_budget) + config.shard_size)
        note += (
            f"; the time budget of {config.time_budget:g} min keeps about {kept:,} of them "
            "(whole shards, queries in a seeded random order)"
        )
    return note


def is_current(out: Path, config, plan: Plan, key: str) -> bool:
    """A finished run of the same job: every shard labelled, or as many as the same time
    budget allowed (a larger budget labels more)."""
    finished = artifacts.read_manifest(out)
    if not finished or finished["figures"].get("job_key") != key:
        return False
    if len(plan.done) == plan.n_shards:
        return True
    return finished.get("config", {}).get("time_budget") == config.time_budget
