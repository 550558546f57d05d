"""``distill teach``: fine-tune, validate, calibrate and save a cross-encoder teacher (or an
ensemble of them) with sentence-transformers' ``CrossEncoderTrainer``.

* The validation part is split off the training data by query (``distill data split``'s
  rules); a test split is refused.
* BEIR qrels hold only positives: negatives are mined with the first stage (BM25, the base
  bi-encoder, or both), skipping the top ``skip_top`` ranks, where unlabeled positives sit.
* Loss: binary labels use BCE with ``pos_weight`` = negatives / positives (one positive
  against several negatives must not teach "always no"); graded labels (0-4) use BCE on
  ``grade / 4``: it keeps the grades' order and spacing, needs no list layout, and reduces to
  the binary loss on binary data.
* Validation NDCG@10 / MRR@10 (pytrec_eval) every ``eval_steps``; the best checkpoint is kept
  and training stops early when it stops improving. The start and the tuned model are both
  evaluated; a tuned model that is not better is refused unless ``allow_worse``.
* Platt calibration on the validation candidates, stored with the teacher, with ECE before
  and after and a reliability plot.

The stage is built from :mod:`teachers.teach_config` (its config), :mod:`teachers.teach_data`
(split, mined negatives, validation candidates, warm-up and ListNet lists),
:mod:`teachers.recipe` (how a member is trained), :mod:`teachers.member_training` (train,
validate, calibrate and save one member) and :mod:`teachers.fusion` (the ensemble).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from distill import artifacts
from distill.pairs import load_labeled
from teachers import fusion
from teachers.member_training import TeacherNotBetter, member_share, train_member
from teachers.teach_config import MemberConfig, TeachConfig
from teachers.teach_data import prepare


def guard(teacher: float, baselines: dict[str, float], allow_worse: bool, echo) -> None:
    """Refuse a teacher that does not beat every baseline on honest validation."""
    best = max(baselines, key=baselines.get)
    figures = ", ".join(f"{n} {v:.4f}" for n, v in baselines.items())
    if teacher > baselines[best]:
        echo(f"teacher: validation NDCG@10 {teacher:.4f} beats {figures}")
        return
    message = (
        f"the teacher does not beat {best} on validation (first stage's top-k reranked, NDCG@10 "
        f"teacher {teacher:.4f}; {figures}). Nothing was saved; pass --allow-worse to keep it anyway."
    )
    if not allow_worse:
        raise TeacherNotBetter(message)
    echo(f"warning: {message.split('. Nothing')[0]}; kept because of --allow-worse", err=True)


def _bi_encoder_member(
    config: TeachConfig, d, tmp: Path, budget_min: float | None, figures: dict, echo
) -> str:
    """The model of the fused bi-encoder member: ``bi_encoder`` (else the miner), or, with
    ``tune_bi_encoder``, that model tuned on the training split into the member's folder, its
    corpus embeddings cached for label and evaluate when there is a ``cache_dir``."""
    start = config.bi_encoder or config.miner
    if not config.tune_bi_encoder:
        return start
    from teachers.bi_member import tune_bi_encoder

    target = tmp / "members" / "bi-encoder" / "model"
    figures["bi_encoder_tuning"] = tune_bi_encoder(start, d, config, target, budget_min, echo)
    if figures["bi_encoder_tuning"]["model"] != str(target):
        return start  # nothing to tune on
    if config.cache_dir:
        from distill.models import load_bi_encoder
        from distill.retrieval import encode_corpus

        corpus = load_labeled(config.data, config.split).corpus
        encode_corpus(
            load_bi_encoder(str(target)), corpus, model_path=str(target), cache_dir=config.cache_dir
        )
    return str(target)


def run(config: TeachConfig, echo=click.echo) -> Path:
    from distill.models import model_kind, resolve_model
    from teachers.evaluator import RerankEvaluator

    started = time.time()
    starts = [resolve_model(m.model) for m in config.members] or [resolve_model(config.model)]
    out = artifacts.claim_output(
        config.output, stage="teach", inputs=[config.data, *starts], overwrite=config.overwrite
    )
    d = prepare(config, echo)
    members = config.members or [MemberConfig(name="teacher", model=config.model)]
    fuse = (
        config.fuse
        if config.fuse is not None
        else (not config.members and model_kind(config.model) != "cross")
    )
    single = not config.members and not fuse
    evaluator = RerankEvaluator(d.queries, d.documents, d.val_candidates, d.qrels)
    first = fusion.first_stage_order(evaluator)
    echo(f"first stage alone ({config.negatives_from}): validation NDCG@10 {first['ndcg@10']:.4f}")
    results: dict[str, dict[str, Any]] = {}
    figures: dict[str, Any] = {"data": d.figures, "first_stage": first}
    with artifacts.atomic_path(out, stage="teach", overwrite=config.overwrite) as tmp:
        tmp.mkdir(parents=True)
        to_train = sum(1 for m in members if m.train) + bool(fuse and config.tune_bi_encoder)
        for m in members:
            target = tmp if single else tmp / "members" / m.name
            share = member_share(config.time_budget, time.time() - started, to_train)
            to_train -= bool(m.train)
            results[m.name] = train_member(
                m.name,
                m.model,
                d,
                config,
                target,
                train=m.train,
                max_length=m.max_length,
                lr=m.lr,
                epochs=m.epochs,
                budget_min=share if m.train else None,
                echo=echo,
            )
        baselines = {f"first stage ({config.negatives_from})": first["ndcg@10"]}
        baselines.update(
            {f"{n}'s start": r["before"]["ndcg@10"] for n, r in results.items() if r.get("loss")}
        )
        if fuse:
            share = member_share(config.time_budget, time.time() - started, to_train)
            bi_encoder = _bi_encoder_member(config, d, tmp, share, figures, echo)
            for kind in ("bm25", "bi-encoder"):
                results[kind] = fusion.first_stage_member(
                    kind, d, config, tmp / "members" / kind, evaluator, echo, bi_encoder=bi_encoder
                )
                baselines[kind] = results[kind]["after"]["ndcg@10"]
        if single:
            teacher = results[members[0].name]["after"]["ndcg@10"]
        else:
            figures["ensemble"] = fusion.fuse(results, tmp, config, evaluator, echo)
            teacher = figures["ensemble"]["validation"]["ndcg@10"]
        guard(teacher, baselines, config.allow_worse, echo)
        for r in results.values():
            r.pop("val_scores", None)
        figures["members"] = results
        figures["baselines"] = baselines
    inputs = {"data": load_labeled(config.data, config.split).source}
    artifacts.write_manifest(
        out, stage="teach", config=asdict(config), inputs=inputs, figures=figures, started=started
    )
    echo(f"wrote {out} in {time.time() - started:.0f}s")
    return out
