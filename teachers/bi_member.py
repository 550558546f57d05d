"""The ensemble's bi-encoder member, fine-tuned on the teacher's own training split.

Without ``tune_bi_encoder`` the bi-encoder fused with the cross-encoder and BM25 is a generic
embedder (``bi_encoder``, else the miner) as it came. With it, a copy of that model is trained
here first, with sentence-transformers' ``MultipleNegativesRankingLoss`` on the training
queries' gold positives (at most ``list_positives`` a query, each with one negative from the
query's first-stage pool, the negatives the cross-encoder trains on) and in-batch negatives.
It is validated like every member, on the same held-out queries (the first stage's top-k,
ranked by similarity), and the best epoch is kept. The validation queries never reach its
training, so the fusion weights fitted on them stay honest: a tuned member that does not
generalise gets a low weight there, or none.
"""

from __future__ import annotations

import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from teachers.evaluator import RerankEvaluator
from teachers.teach_config import TeachConfig
from teachers.teach_data import TeachData, rows_by_query


class SimilarityEvaluator(RerankEvaluator):
    """:class:`RerankEvaluator` for a bi-encoder: each candidate scored by the dot product of
    its query's and its own embedding (the member's score in the ensemble)."""

    def _scores(self, model) -> np.ndarray:
        queries = list(dict.fromkeys(q for q, _ in self.pairs))
        docs = list(dict.fromkeys(d for _, d in self.pairs))
        kw = {"batch_size": self.batch_size, "convert_to_numpy": True, "show_progress_bar": False}
        qv = dict(zip(queries, model.encode(queries, **kw), strict=True))
        dv = dict(zip(docs, model.encode(docs, **kw), strict=True))
        self.scored = len(queries) + len(docs)
        return np.array([float(qv[q] @ dv[d]) for q, d in self.pairs])


def training_rows(d: TeachData, config: TeachConfig) -> list[dict[str, str]]:
    """(anchor, positive, negative) texts: up to ``list_positives`` positives of each training
    query (sampled), each with one negative from its pool; deterministic in ``seed``."""
    rng = random.Random(config.seed)
    by_query = rows_by_query(d)
    rows = []
    for q in sorted(by_query):
        positives = sorted(doc for doc, y in by_query[q] if y > 0)
        pool = d.negative_pools.get(q) or sorted(doc for doc, y in by_query[q] if y == 0)
        if not positives or not pool:
            continue
        for pos in rng.sample(positives, min(config.list_positives, len(positives))):
            negative = rng.choice(pool)
            rows.append(
                {
                    "anchor": d.queries[q],
                    "positive": d.documents[pos],
                    "negative": d.documents[negative],
                }
            )
    rng.shuffle(rows)
    return rows


def _arguments(config: TeachConfig, ckpt: Path):
    """The Trainer's arguments: validation and a checkpoint every epoch, the best one kept;
    batches without a repeated text, so no row meets another row of its own query, or its own
    positive, as an in-batch negative (sentence-transformers' advice for
    ``MultipleNegativesRankingLoss``)."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    return SentenceTransformerTrainingArguments(
        output_dir=str(ckpt),
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        num_train_epochs=config.bi_epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.bi_lr,
        warmup_steps=0.1,  # a share of the steps in transformers v5
        dataloader_pin_memory=False,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_val_ndcg@10",
        greater_is_better=True,
        seed=config.seed,
        report_to="none",
        disable_tqdm=not sys.stderr.isatty(),
    )


def planned_steps(
    rows: int,
    batch_size: int,
    epochs: float,
    step_s: float,
    eval_s: float,
    budget_min: float | None,
) -> tuple[int, int]:
    """(steps to train, steps of the full run): the full run is ``epochs`` passes over ``rows``
    in batches of ``batch_size``; with a time budget it is cut to what fits PLAN_SHARE of it
    after one validation per epoch (``eval_s`` each), so that the learning-rate schedule ends
    where training ends instead of being stopped halfway down by the clock. At least 1."""
    from teachers.member_training import PLAN_SHARE

    full = max(1, int(-(-rows // batch_size) * epochs + 0.999))
    if budget_min is None:
        return full, full
    validations = max(1, int(epochs + 0.999))
    fit = int((PLAN_SHARE * 60 * budget_min - validations * eval_s) / max(step_s, 1e-9))
    return max(1, min(full, fit)), full


def _probe_step_seconds(model, rows: list[dict[str, str]], batch_size: int) -> float:
    """Seconds of one training step, from timing the encoding of one batch's texts (anchor,
    positive, negative): a step costs ``distill.models.step_passes`` times that (3 for
    forward, backward and update, doubled on CPU by attention dropout)."""
    from distill.models import step_passes

    texts = [row[k] for row in rows[:batch_size] for k in ("anchor", "positive", "negative")]
    started = time.time()
    model.encode(texts, batch_size=len(texts), show_progress_bar=False)
    return step_passes(model) * (time.time() - started) * batch_size / max(1, len(texts) // 3)


def _plan(model, rows, config: TeachConfig, eval_s: float, budget_min: float | None):
    """(steps, full steps, probed seconds a step) of the tuning run: :func:`planned_steps`
    from a probe step, capped by ``max_steps``."""
    step_s = 0.0 if budget_min is None else _probe_step_seconds(model, rows, config.batch_size)
    steps, full = planned_steps(
        len(rows), config.batch_size, config.bi_epochs, step_s, eval_s, budget_min
    )
    cap = config.max_steps
    return (min(steps, cap), min(full, cap), step_s) if cap else (steps, full, step_s)


def tune_bi_encoder(
    start: str, d: TeachData, config: TeachConfig, out: Path, budget_min: float | None, echo
) -> dict[str, Any]:
    """Train ``start`` on the training split into ``out``; its figures (``model``: the folder)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    from distill import console
    from distill.models import attention_dropout_kwargs, load_bi_encoder
    from distill.progress import trainer_callbacks

    rows = training_rows(d, config)
    if not rows:
        echo(
            "note: no training query has a positive and a negative; the bi-encoder member is not tuned",
            err=True,
        )
        return {"model": start, "start": start, "rows": 0, "steps": 0}
    model = load_bi_encoder(start, **attention_dropout_kwargs(config.attention_dropout))
    evaluator = SimilarityEvaluator(
        d.queries, d.documents, d.val_candidates, d.qrels, batch_size=64
    )
    started = time.time()
    before = {k.removeprefix("val_"): v for k, v in evaluator(model).items()}
    eval_s = time.time() - started
    # the model card's example, set here: the Trainer's own search for one draws a stray bar
    first = rows[0]
    model.model_card_data.widget = [
        {"source_sentence": first["anchor"], "sentences": [first["positive"], first["negative"]]}
    ]
    ckpt = out.parent / f".{out.name}-checkpoints"
    args = _arguments(config, ckpt)
    steps, full, step_s = _plan(model, rows, config, eval_s, budget_min)
    if steps < full:
        args.max_steps = steps  # the schedule then ends at the planned last step
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=MultipleNegativesRankingLoss(model),
        evaluator=evaluator,
        callbacks=trainer_callbacks(
            "tuning the bi-encoder member", None if budget_min is None else 60 * budget_min
        ),
    )
    console.trainer_printer_off(trainer)
    echo(
        f"bi-encoder member: tuning {start} on {len(rows)} (query, positive, negative) rows, "
        f"{config.bi_epochs:g} epoch(s), lr {config.bi_lr:g}, {steps:,} steps"
        + (f" (cut from {full:,} to fit the time budget)" if steps < full else "")
        + (
            ""
            if budget_min is None
            else f", about {steps * step_s / 60:.1f} of {budget_min:.1f} min"
        )
    )
    trainer.train()
    shutil.rmtree(ckpt, ignore_errors=True)
    after = {k.removeprefix("val_"): v for k, v in evaluator(model).items()}
    model.save(str(out))
    echo(
        f"bi-encoder member: validation NDCG@10 {before['ndcg@10']:.4f} -> {after['ndcg@10']:.4f} "
        f"(start -> tuned, {trainer.state.global_step} steps)"
    )
    return {
        "model": str(out),
        "start": start,
        "rows": len(rows),
        "steps": trainer.state.global_step,
        "planned_steps": steps,
        "full_steps": full,
        "before": before,
        "tuned": after,
    }
