"""Long documents: a trained cross-encoder reading the first 128 tokens, the first 256, or
windows of 128 pooled by max / softmax, on a teacher's honest validation (the first stage's
top-k of the validation queries `distill teach` split off train, no positive injected).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/windows.py \\
        --teacher runs/scifact/teacher/members/teacher --config configs/scifact.yaml

The validation split and candidates are rebuilt with the teach stage's own code and config
(same seed), so the figures are comparable with the teacher's validation NDCG@10 in its
manifest. Prints NDCG@10, pairs (windows) scored and seconds per setting; the settings run one
after another on the same pairs.

With ``--ensemble FOLDER`` (the teacher folder holding ``ensemble.json`` and ``members/``), each
setting's cross-encoder scores are also fused with the folder's BM25 and bi-encoder members as
``distill teach`` fuses them (each member's scores divided by their spread, weights on a 0.1
grid of the simplex), the weights fitted on one half of the queries and scored on the other
(2-fold, seeded), so that no setting is scored on the queries its weights were fitted on.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
from torch.nn import Identity

from distill import config as cfg
from distill import metrics
from teachers.precision import apply_precision
from teachers.scoring import load_teacher
from teachers.teach_config import TeachConfig
from teachers.teach_data import prepare
from teachers.windows import Windows, pool, score_windowed

SETTINGS = (("first", 128), ("first", 256), ("max", 128))  # windows scored once, pooled twice


def _ndcg(values, owners, qrels) -> float:
    run: dict[str, dict[str, float]] = {q: {} for q in qrels}  # every candidate of each
    for (qid, did), s in zip(owners, values, strict=True):
        run[qid][did] = float(s)
    return metrics.summarize(qrels, run, ["ndcg@10"])["ndcg@10"]


def _first_stage_scores(folder: str, pairs) -> dict[str, np.ndarray]:
    """Unit-spread scores of the ensemble's BM25 and bi-encoder members on ``pairs``."""
    from pathlib import Path

    out = {}
    for name in ("bm25", "bi-encoder"):
        if (Path(folder) / "members" / name).is_dir():
            values = np.asarray(load_teacher(f"{folder}/members/{name}").score(pairs), float)
            out[name] = values / (values.std() or 1.0)
    return out


class _Fold:
    """The ``evaluate_scores`` of teachers.fusion's weight search, on one fold of the queries."""

    def __init__(self, owners, qrels, part) -> None:
        self.mask = np.array([q in part for q, _ in owners])
        self.owners = [o for o, m in zip(owners, self.mask, strict=True) if m]
        self.qrels = {q: qrels[q] for q in part}

    def evaluate_scores(self, scores) -> dict[str, float]:
        return {"ndcg@10": _ndcg(np.asarray(scores)[self.mask], self.owners, self.qrels)}


def _fused_cv(ce, others, owners, qrels, seed: int = 0) -> tuple[float, list]:
    """NDCG@10 of the fusion with weights fitted (by ``distill teach``'s own grid search) on
    the other half of the queries (2-fold)."""
    from teachers.fusion import fit_weights

    members = {"cross-encoder": ce / (ce.std() or 1.0), **others}
    qids = sorted(qrels)
    random.Random(seed).shuffle(qids)
    folds = [set(qids[::2]), set(qids[1::2])]
    chosen, total = [], 0.0
    for fit, score in ((folds[0], folds[1]), (folds[1], folds[0])):
        weights = fit_weights(members, _Fold(owners, qrels, fit))
        fused = sum(w * members[n] for n, w in weights.items())
        total += _Fold(owners, qrels, score).evaluate_scores(fused)["ndcg@10"] * len(score)
        chosen.append(weights)
    return total / len(qids), chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="a cross-encoder folder (a member)")
    parser.add_argument("--config", required=True, help="the pipeline config it was taught with")
    parser.add_argument("--data", default=None, help="override the config's data")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--max-queries", type=int, default=None, help="a seeded sample of the validation queries"
    )
    parser.add_argument(
        "--ensemble",
        default=None,
        help="the teacher folder: also fuse with its first-stage members",
    )
    args = parser.parse_args()
    raw, _ = cfg.read_yaml(args.config)
    section = dict(raw.get("teach") or {})
    section["data"] = args.data or raw["data"]
    section.pop("output", None)
    teach = cfg.from_mapping(TeachConfig, section)
    d = prepare(teach, echo=lambda *a, **k: None)
    chosen = sorted(d.val_candidates)
    if args.max_queries and args.max_queries < len(chosen):
        chosen = sorted(random.Random(0).sample(chosen, args.max_queries))
    pairs, owners = [], []
    for qid, docs in ((q, d.val_candidates[q]) for q in chosen):
        for did in docs:
            pairs.append((d.queries[qid], d.documents[did]))
            owners.append((qid, did))
    qrels = {q: d.qrels[q] for q in chosen}
    print(f"{len(chosen)} validation queries, {len(pairs):,} (query, candidate) pairs")
    others = _first_stage_scores(args.ensemble, pairs) if args.ensemble else {}
    fused_rows = []
    print("| setting | NDCG@10 | pairs longer than max_length | pairs scored | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for pooling, length in SETTINGS:
        teacher = load_teacher(args.teacher, max_length=length, windows=Windows(pooling))
        apply_precision(teacher, "exact", pairs[:64], lambda *a, **k: None)
        started = time.time()
        groups: list = []
        stats: dict[str, int] = {}
        scores = score_windowed(
            lambda batch, t=teacher: np.asarray(
                t.model.predict(batch, batch_size=args.batch_size, activation_fn=Identity())
            ),
            teacher.tokenizer,
            pairs,
            length,
            Windows(pooling),
            stats,
            groups,
        )
        seconds = time.time() - started
        pooled = {pooling: scores}
        if pooling == "max":
            pooled["softmax"] = np.array([pool(g, "softmax") for g in groups])
        for how, values in pooled.items():
            name = f"first {length} tokens" if how == "first" else f"windows of {length}, {how}"
            print(
                f"| {name} | {_ndcg(values, owners, qrels):.4f} | {stats['long_pairs']:,} | "
                f"{stats['windows']:,} | {seconds:.0f} |",
                flush=True,
            )
            if others:
                fused_rows.append((name, *_fused_cv(values, others, owners, qrels)))
    if fused_rows:
        print(f"\nfused with {', '.join(others)} (weights fitted on the other half, 2-fold):")
        print("| cross-encoder setting | ensemble NDCG@10 | weights (fold 1; fold 2) |")
        print("| --- | --- | --- |")
        for name, value, weights in fused_rows:
            shown = "; ".join(", ".join(f"{k} {v:.1f}" for k, v in w.items()) for w in weights)
            print(f"| {name} | {value:.4f} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
