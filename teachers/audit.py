"""``distill audit``: training pairs where the calibrated teacher confidently disagrees with
the human label, worst first, as CSV for re-annotation.

Two kinds of disagreement show up: a labeled positive the teacher finds irrelevant (label
noise) and, for BEIR data where only positives are labeled, a top first-stage candidate the
teacher finds relevant although no label says so (a missed positive).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import click

from distill import artifacts, data
from distill.pairs import load_labeled

COLUMNS = ("qid", "did", "query", "document", "label", "teacher_probability", "disagreement")


@dataclass
class AuditConfig:
    """Config of ``distill audit``."""

    data: str = field(metadata={"help": "labeled pairs file or BEIR folder"})
    teacher: str = field(default="runs/teacher", metadata={"help": "teacher folder (calibrated)"})
    split: str = field(default="train", metadata={"help": "BEIR qrels split"})
    output: str = field(default="runs/audit.csv", metadata={"help": "CSV to write"})
    threshold: float = field(
        default=0.5,
        metadata={
            "help": "list pairs whose |probability - label| is at least this",
            "range": "(0, 1)",
        },
    )
    candidates: int = field(
        default=10,
        metadata={
            "help": "BEIR: unlabeled BM25 top-k per query checked for missed positives",
            "range": "[1, inf)",
        },
    )
    batch_size: int = field(
        default=32, metadata={"help": "scoring batch size", "range": "[1, inf)"}
    )


def audit_rows(
    teacher, rows: list[tuple[str, str, str, str, float]], batch_size: int = 32
) -> list[dict]:
    """Score (qid, did, query, document, label) rows; return them with probability and
    disagreement, worst first. A label > 0 counts as relevant."""
    probs = teacher.probability(teacher.score([(r[2], r[3]) for r in rows], batch_size))
    out = []
    for (qid, did, query, doc, label), p in zip(rows, probs, strict=True):
        target = 1.0 if label > 0 else 0.0
        out.append(
            dict(
                zip(
                    COLUMNS,
                    (
                        qid,
                        did,
                        query,
                        doc,
                        label,
                        round(float(p), 4),
                        round(abs(float(p) - target), 4),
                    ),
                    strict=True,
                )
            )
        )
    out.sort(key=lambda r: (-r["disagreement"], r["qid"], r["did"]))
    return out


def run(config: AuditConfig, echo=click.echo) -> Path:
    from distill import retrieval
    from teachers.scoring import check_teacher, load_teacher

    check_teacher(config.teacher)
    artifacts.claim_file(config.output, inputs=[config.data, config.teacher])
    labeled = load_labeled(config.data, config.split)
    queries, corpus, qrels = labeled.queries, labeled.corpus, labeled.qrels
    rows = [
        (q, d, queries[q], corpus[d].full_text, float(g))
        for q, docs in qrels.items()
        for d, g in docs.items()
    ]
    if data.is_beir(
        config.data
    ):  # only positives are labeled: look for missed ones among the top unlabeled
        top = retrieval.bm25_search(corpus, queries, config.candidates)
        rows += [
            (q, d, queries[q], corpus[d].full_text, 0.0)
            for q, docs in top.items()
            for d in docs
            if d not in qrels[q]
        ]
    teacher = load_teacher(config.teacher)
    if teacher.calibration.method == "identity":
        echo(
            "warning: the teacher has no calibration.json; probabilities are the plain sigmoid of its logits",
            err=True,
        )
    scored = audit_rows(teacher, rows, config.batch_size)
    flagged = [r for r in scored if r["disagreement"] >= config.threshold]
    with (
        artifacts.atomic_path(config.output) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as fh,
    ):
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(flagged)
    echo(
        f"{len(flagged):,} of {len(scored):,} pairs disagree with the teacher by at least {config.threshold}; worst first in {config.output}"
    )
    return Path(config.output)
