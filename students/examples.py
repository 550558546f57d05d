"""The student's training examples, built from the teacher's labels, and the temperature that
puts the teacher's scores in the student's units.

Training examples, per query of the labels:

* positives: the gold positives (``gold > 0``) when known, else the teacher's top candidate;
  a query's examples are anchored on up to ``max_positives`` of them (``positive_grades``);
* negatives: ``negatives`` candidates drawn from the teacher's ranking (ranks below
  ``negative_depth``), never one whose teacher score is within ``false_negative_margin`` of
  the positive's (a likely unlabeled positive: the most common distillation failure);
* labels: the teacher's scores of (positive, negatives) for ``kl`` and ``margin-mse``; none
  for ``mnrl``, the supervised baseline, which uses gold positives and first-stage negatives.

Texts are joined from ids when the examples are built, not stored with the labels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from distill.querysets import highest_grades_first
from students.config import StudentConfig

# The auto temperature is teacher spread / student spread. A ratio 100x away from 1 in either
# direction means one of them hardly separates the candidates (seen: 0.0057 from a teacher that
# had learned a shortcut, against 0.41 on SciFact), so it is reported, not silently used.
TEMPERATURE_BOUNDS = (0.01, 100.0)


@dataclass
class QueryLabels:
    """One query's labelled candidates, in first-stage order."""

    dids: list[str]
    scores: np.ndarray
    gold: np.ndarray
    prob: np.ndarray | None = None  # the teacher's calibrated probabilities, when labelled


def group_labels(table) -> dict[str, QueryLabels]:
    """{qid: QueryLabels} from a labels table (columns qid, did, score, gold; prob if any)."""
    names = ["qid", "did", "score", "gold"] + (["prob"] if "prob" in table.column_names else [])
    cols = table.select(names).to_pydict()
    probs = cols.get("prob") or [float("nan")] * len(cols["qid"])
    grouped: dict[str, tuple[list, list, list, list]] = {}
    rows = zip(cols["qid"], cols["did"], cols["score"], cols["gold"], probs, strict=True)
    for q, d, s, g, p in rows:
        entry = grouped.setdefault(q, ([], [], [], []))
        for column, value in zip(entry, (d, s, g, p), strict=True):
            column.append(value)
    return {
        q: QueryLabels(
            d,
            np.asarray(s, dtype=np.float32),
            np.asarray(g),
            np.asarray(p, dtype=np.float32) if "prob" in cols else None,
        )
        for q, (d, s, g, p) in grouped.items()
    }


def confident(
    labels: dict[str, QueryLabels], threshold: float
) -> tuple[dict[str, QueryLabels], int]:
    """Drop the teacher-labelled queries (no gold positive) whose top candidate's calibrated
    probability is below ``threshold``: their positive is likely wrong. On SciFact, 609 train
    queries with their qrels hidden and a teacher taught on 200 others, the top candidate was
    right for 38% of the 177 queries under probability 0.1, 56-59% between 0.1 and 0.4 and
    73-84% above (README, "Few labels").
    Returns (kept labels, number dropped); labels without probabilities are all kept."""
    if threshold <= 0:
        return labels, 0
    kept = {}
    for qid, lab in labels.items():
        gold = (np.asarray(lab.gold) > 0).any()
        top = int(np.argmax(lab.scores))
        if gold or lab.prob is None or lab.prob[top] >= threshold:
            kept[qid] = lab
    return kept, len(labels) - len(kept)


def auto_temperature(
    labels: dict[str, QueryLabels],
    model,
    queries: dict[str, str],
    corpus,
    config: StudentConfig,
    sample: int = 24,
    spreads: dict[str, float] | None = None,
) -> float:
    """The teacher temperature that puts the teacher's scores in the student's units.

    Teacher scores come in any unit (logits, fused z-scores, BM25); the student's are
    ``scale * cos``. Dividing teacher scores by (median spread of the teacher's scores over a
    query's top ``negative_depth`` candidates) / (the same spread of the start student's),
    measured on ``sample`` queries, makes a softmax over the teacher as sharp as the
    student's, a margin mean the same in both, and ``false_negative_margin`` a margin in
    student logits. Without it a KL target far flatter than the student teaches it to stop
    discriminating, and Margin-MSE on unscaled margins pulls every similarity together."""
    import torch

    rng = random.Random(config.seed)
    qids = [q for q in sorted(labels) if len(labels[q].dids) > 1]
    qids = rng.sample(qids, min(sample, len(qids)))
    teacher_spread, student_spread = [], []
    with torch.inference_mode():
        for q in qids:
            lab = labels[q]
            top = np.argsort(-lab.scores, kind="stable")[: config.negative_depth]
            teacher_spread.append(float(np.std(lab.scores[top])))
            model.max_seq_length = config.max_query_length
            qv = model.encode([queries[q]], convert_to_numpy=True, show_progress_bar=False)
            model.max_seq_length = config.max_doc_length
            dv = model.encode(
                [corpus[lab.dids[i]].full_text for i in top],
                convert_to_numpy=True,
                show_progress_bar=False,
                batch_size=32,
            )
            student_spread.append(float(np.std(config.scale * (dv @ qv[0]))))
    t, s = float(np.median(teacher_spread)), float(np.median(student_spread))
    if spreads is not None:
        spreads.update(teacher=t, student=s)
    return t / s if t > 0 and s > 0 else 1.0


def select_negatives(
    scores: np.ndarray,
    positive: int,
    exclude: set[int],
    k: int,
    depth: int,
    margin: float,
    rng: random.Random,
) -> list[int]:
    """Indices of up to ``k`` negatives among the ``depth`` best-scored eligible candidates:
    not in ``exclude`` (the query's positives) and not within ``margin`` of the positive's
    score (likely unlabeled positives). When the teacher's top ranks are all positives, the
    negatives come from deeper ranks instead of none at all."""
    order = np.argsort(-scores, kind="stable")
    pool = [
        int(i) for i in order if int(i) not in exclude and scores[i] < scores[positive] - margin
    ][:depth]
    return rng.sample(pool, min(k, len(pool)))


def anchor_positives(grades, gold: list[int], which: str, k: int, rng: random.Random) -> list[int]:
    """Up to ``k`` of a query's gold positives (indices) to anchor its examples on:
    a sample of all of them (``all``), of those of its highest grade only (``top``), or whole
    grades from the highest down (``graded``). With graded qrels of many positives a query (a
    few grade-2 documents, dozens of grade-1 ones), ``all`` leaves a query's one grade-2
    document out 9 epochs in 10 (4 of 40 sampled) and anchors on grade-1 ones instead; ``top``
    never anchors a grade-1 one, which costs their recall. Lower grades stay positives either
    way (never negatives, left out of the in-batch softmax)."""
    if which == "graded":
        return highest_grades_first(gold, {i: int(grades[i]) for i in gold}, k, rng)
    if which == "top" and gold:
        best = max(int(grades[i]) for i in gold)
        gold = [i for i in gold if int(grades[i]) == best]
    return sorted(rng.sample(gold, min(k, len(gold))))


def build_examples(
    labels: dict[str, QueryLabels],
    config: StudentConfig,
    epoch: int,
    counts: dict[str, int] | None = None,
) -> list[tuple[str, list[str], list[float]]]:
    """(qid, [positive did, negative dids...], teacher scores) for one epoch; deterministic
    in (seed, epoch). Each query gives at most ``max_positives`` examples (its positives
    sampled). ``counts`` receives how many were built and how many dropped, and why."""
    rng = random.Random(config.seed * 1000 + epoch)
    out = []
    tally = dict.fromkeys(
        ("built", "positives_not_sampled", "dropped_no_gold", "dropped_too_few_negatives"), 0
    )
    for qid in sorted(labels):
        lab = labels[qid]
        gold = [i for i, g in enumerate(lab.gold) if g > 0]
        unlabeled = not gold
        positives = gold or [int(np.argmax(lab.scores))]
        which = config.positive_grades if gold else "all"  # the teacher's top: one positive
        chosen = anchor_positives(lab.gold, positives, which, config.max_positives, rng)
        tally["positives_not_sampled"] += len(positives) - len(chosen)
        for pos in chosen:
            if config.loss == "mnrl":
                if unlabeled:
                    tally["dropped_no_gold"] += 1
                    continue  # the supervised baseline uses gold labels only
                deeper = [i for i in range(3, len(lab.dids)) if i not in gold]
                # first-stage ranks, skip the top 3; deeper when the top is all positives
                pool = [i for i in deeper if i < config.negative_depth] or deeper
                if not pool:  # a row without its negative broke the batch's columns
                    tally["dropped_too_few_negatives"] += 1
                    continue
                negs = rng.sample(pool, 1)
            else:
                negs = select_negatives(
                    lab.scores,
                    pos,
                    set(positives),
                    config.negatives,
                    config.negative_depth,
                    config.false_negative_margin,
                    rng,
                )
                if len(negs) < config.negatives:
                    tally["dropped_too_few_negatives"] += 1
                    continue
            idx = [pos, *negs]
            out.append((qid, [lab.dids[i] for i in idx], [float(lab.scores[i]) for i in idx]))
    tally["built"] = len(out)
    if counts is not None:
        counts.update(tally)
    rng.shuffle(out)
    return out


def known_positives(labels: dict[str, QueryLabels]) -> dict[str, list[str]]:
    """{qid: the query's positives as :func:`build_examples` takes them}: its gold positives,
    else the teacher's top candidate."""
    out = {}
    for qid, lab in labels.items():
        gold = [d for d, g in zip(lab.dids, lab.gold, strict=True) if g > 0]
        out[qid] = gold or [lab.dids[int(np.argmax(lab.scores))]]
    return out


def batch_ids(
    rows: list[tuple[str, list[str], list[float]]],
    positives: dict[str, list[str]],
    doc_index: dict[str, int],
) -> tuple[np.ndarray, np.ndarray]:
    """The in-batch loss's document ids of a batch of examples: (B, columns) each row's
    documents, and (B, P) its query's known positives padded with -1."""
    candidates = np.array([[doc_index[d] for d in dids] for _, dids, _ in rows], dtype=np.int64)
    known = [[doc_index[d] for d in positives[q]] for q, _, _ in rows]
    padded = np.full((len(rows), max(map(len, known))), -1, dtype=np.int64)
    for i, ids in enumerate(known):
        padded[i, : len(ids)] = ids
    return candidates, padded


def query_counts(labels: dict[str, QueryLabels]) -> dict[str, int]:
    """Training queries with gold positives, and those the teacher alone labelled."""
    labelled = sum(1 for lab in labels.values() if (np.asarray(lab.gold) > 0).any())
    return {"labelled": labelled, "teacher_labelled": len(labels) - labelled}
