"""Training one member of a teacher (:func:`train_member`), step by step.

Build it from its recipe (:mod:`teachers.recipe`), warm it up on the title -> abstract lists,
fit it on the labeled data with sentence-transformers' ``CrossEncoderTrainer`` (validation
NDCG@10 every ``eval_steps``, best checkpoint kept, early stopping), refuse it when it does not
beat its start (:class:`TeacherNotBetter`), then calibrate it (Platt) and save it with its card.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

from distill import artifacts, console
from distill.errors import Refused
from distill.models import attention_dropout_kwargs, traceless_training
from distill.progress import expect_validation, trainer_callbacks
from teachers.calibration import fit_platt, reliability_plot
from teachers.recipe import Recipe, build_mean_pool, recipe
from teachers.teach_config import TeachConfig
from teachers.teach_data import TeachData, listnet_lists

GUIDE_LR = (1e-5, 1e-4)


class TeacherNotBetter(Refused):
    """The tuned teacher does not beat its start, or the first stage, on honest validation."""


def _documents(d: TeachData, config: TeachConfig, model, pairs) -> tuple[list[str], str]:
    """The document text trained on for each (qid, did): whole (the model truncates it), or
    with ``train_windows: best`` its window BM25 ranks best for the query; and a note."""
    texts = [d.documents[doc] for _, doc in pairs]
    if config.train_windows == "first" or not texts:
        return texts, ""
    from teachers.members import BM25Scorer
    from teachers.windows import best_windows

    queries = [d.queries[q] for q, _ in pairs]
    chosen, long = best_windows(
        BM25Scorer.fit(d.corpus_texts).score,
        model.tokenizer,
        list(zip(queries, texts, strict=True)),
        model.max_length,
    )
    return (
        chosen,
        f"; {long:,} of {len(texts):,} documents longer than max_length trained on their best window (BM25)",
    )


def _training_set(d: TeachData, r: Recipe, config: TeachConfig, model):
    """(dataset, loss, loss description, per-device batch size) for the recipe."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, ListNetLoss

    if r.loss == "listnet":
        lists = listnet_lists(d, config)
        flat, note = _documents(d, config, model, [(q, x) for q, docs, _ in lists for x in docs])
        ends = list(itertools.accumulate(len(docs) for _, docs, _ in lists))
        dataset = Dataset.from_dict(
            {
                "query": [d.queries[q] for q, _, _ in lists],
                "docs": [
                    flat[end - len(docs) : end]
                    for end, (_, docs, _) in zip(ends, lists, strict=True)
                ],
                "labels": [labels for _, _, labels in lists],
            }
        )
        return (
            dataset,
            ListNetLoss(model),
            f"ListNet (one list per query: up to {config.list_positives} positives and "
            f"{config.negatives} negatives sampled for that list){note}",
            config.list_batch,
        )
    texts, note = _documents(d, config, model, [(q, doc) for q, doc, _ in d.train_rows])
    dataset = Dataset.from_dict(
        {
            "query": [d.queries[q] for q, _, _ in d.train_rows],
            "document": texts,
            "label": [float(y) for _, _, y in d.train_rows],
        }
    )
    if r.loss == "graded-bce":
        return dataset, BinaryCrossEntropyLoss(model), f"BCE on grade/4{note}", config.batch_size
    pos = sum(1 for _, _, y in d.train_rows if y > 0)
    weight = (len(d.train_rows) - pos) / max(pos, 1)
    return (
        dataset,
        BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(weight)),
        f"BCE, pos_weight {weight:.2f}{note}",
        config.batch_size,
    )


# Validations per member at most, and their share of a time budget at most: evaluating must
# stay a small part of training whatever the number of steps.
MAX_VALIDATIONS = 5
VALIDATION_SHARE = 0.3
PLAN_SHARE = 0.9  # the plan fills this share of the budget; the clock stops the rest


def size_run(
    steps: int, step_s: float, eval_s: float, eval_steps: int, budget_min: float | None
) -> tuple[int, int]:
    """(steps, validate every N steps): ``steps`` cut to what fits PLAN_SHARE of the budget
    after the validations, which are at most MAX_VALIDATIONS and at most VALIDATION_SHARE of
    the budget (never fewer than one, at the end)."""
    evals = MAX_VALIDATIONS
    if budget_min is not None:
        budget = PLAN_SHARE * 60 * budget_min
        evals = max(1, min(evals, int(VALIDATION_SHARE * budget / max(eval_s, 1e-9))))
        steps = max(1, min(steps, int((budget - evals * eval_s) / step_s)))
    return steps, min(max(eval_steps, -(-steps // evals)), steps)


def member_share(budget_min: float | None, spent_s: float, members_left: int) -> float | None:
    """Minutes of the teach stage's time budget for the next trained member: what the stage has
    left after ``spent_s`` (data preparation, earlier members), shared equally by the
    ``members_left`` members still to train; never under a tenth of an equal share. None: no
    budget."""
    if budget_min is None:
        return None
    members_left = max(1, members_left)
    left = budget_min - spent_s / 60
    return max(budget_min / members_left / 10, left / members_left)


def budget_left(budget_min: float | None, spent_s: float) -> float | None:
    """Minutes of a member's time budget left for training once ``spent_s`` went to loading,
    validating the start and the warm-up (on 300 validation queries of a slow model that is
    minutes, which a budget on training alone left out); never under a tenth of the budget,
    so a member still trains some steps. None: no budget."""
    if budget_min is None:
        return None
    return max(budget_min / 10, budget_min - spent_s / 60)


def probe_step_seconds(trainer, model, batch_size: int) -> float:
    """Seconds of one training step, timed: the loss of the first batch and its backward pass,
    in training mode, leaving no trace (``distill.models.traceless_training``). A multiple of
    an inference pass missed either way: what dropout costs depends on the text length and the
    device (SciFact, 128 tokens, 2 threads: a step took 3.7 inference passes of its texts, and
    6 had been assumed)."""
    rows = [trainer.train_dataset[i] for i in range(min(batch_size, len(trainer.train_dataset)))]
    with traceless_training(model):
        started = time.perf_counter()
        trainer.compute_loss(model, trainer.data_collator(rows)).backward()
        seconds = time.perf_counter() - started
    return seconds


def _plan(
    name: str, trainer, model, evaluator, batch_size: int, budget_min: float | None, echo
) -> float:
    """Size the run and print its plan: steps, validations and a time estimate from timing one
    training step (:func:`probe_step_seconds`) and the model on 32 validation pairs. With a
    time budget the steps are cut to fit it, so that the learning-rate schedule ends where
    training ends; validations are spaced so that there are at most MAX_VALIDATIONS of them,
    taking at most VALIDATION_SHARE of the budget. Returns the estimated seconds of one
    validation."""
    import torch

    args = trainer.args
    per_epoch = -(-len(trainer.train_dataset) // batch_size)
    steps = args.max_steps if args.max_steps > 0 else int(per_epoch * args.num_train_epochs + 0.999)
    probe = evaluator.pairs[:32]
    started = time.time()
    model.predict(probe, batch_size=32, activation_fn=torch.nn.Identity(), show_progress_bar=False)
    per_pair = (time.time() - started) / max(1, len(probe))
    first = trainer.train_dataset[0]
    texts = len(first["docs"]) if "docs" in first else 1
    step_s = probe_step_seconds(trainer, model, batch_size)
    eval_s = evaluator.scored * per_pair
    planned, every = size_run(steps, step_s, eval_s, args.eval_steps, budget_min)
    cut = ""
    if planned < steps:
        cut = f", cut from {steps:,} to fit the {budget_min:.0f} min left of the time budget"
        steps = args.max_steps = planned
    args.eval_steps = args.save_steps = every
    evals = -(-steps // every)  # and one at the last step (distill.progress)
    seconds = steps * step_s + evals * eval_s
    echo(
        f"plan for {name}: {len(trainer.train_dataset):,} training examples, {steps:,} steps "
        f"({batch_size} x {texts} texts each{cut}), {evals} validations of "
        f"{len(evaluator.pairs):,} pairs ({evaluator.scored:,} scored); about {seconds / 60:.0f} "
        f"min on this machine (probe: {step_s:.1f} s a step, "
        f"{per_pair * 1000:.0f} ms per pair forward)"
    )
    return eval_s


def _warm_up(model, d: TeachData, r: Recipe, config: TeachConfig, out: Path, echo) -> dict:
    """One pass of ListNet over the title -> abstract lists, before the labeled data: it teaches
    the fresh head what a match looks like on in-domain text, which the labeled data alone (a
    few hundred queries) is too small to do."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import ListNetLoss

    started = time.time()
    dataset = Dataset.from_dict(
        {
            "query": [q for q, _ in d.warmup],
            "docs": [docs for _, docs in d.warmup],
            "labels": [[1.0] + [0.0] * (len(docs) - 1) for _, docs in d.warmup],
        }
    )
    ckpt = out.parent / f".{out.name}-warmup"
    args = CrossEncoderTrainingArguments(
        output_dir=str(ckpt),
        num_train_epochs=1,
        per_device_train_batch_size=config.list_batch,
        learning_rate=r.lr,
        warmup_steps=0.1,
        dataloader_pin_memory=False,
        save_strategy="no",
        logging_steps=25,
        seed=config.seed,
        report_to="none",
        disable_tqdm=not sys.stderr.isatty(),
    )
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=ListNetLoss(model),
        callbacks=trainer_callbacks("warm-up"),
    )
    console.trainer_printer_off(trainer)
    trainer.train()
    shutil.rmtree(ckpt, ignore_errors=True)
    seconds = round(time.time() - started, 1)
    echo(
        f"warm-up: {len(d.warmup)} title -> abstract lists, {trainer.state.global_step} steps, {seconds:.0f}s"
    )
    return {"lists": len(d.warmup), "steps": trainer.state.global_step, "seconds": seconds}


def _build_member(
    start: str, d: TeachData, config: TeachConfig, *, max_length, lr, epochs, echo
) -> tuple[str, Recipe, Any]:
    """Build: pick the recipe for ``start`` (warning on odd settings) and load its model."""
    from distill.models import load_cross_encoder, model_kind

    kind = model_kind(start)
    r = recipe(config, kind, d.graded, lr=lr, max_length=max_length, epochs=epochs)
    if kind != "cross":
        echo(
            f"note: {start} is not a trained cross-encoder (no trained classification head); "
            f"recipe for such a start: {r.head} head, {r.loss} loss, lr {r.lr:g}, max_length {r.max_length}, "
            f"{r.epochs:g} epoch(s)"
            + (f", after {len(d.warmup)} title -> abstract warm-up lists" if r.warmup else ""),
            err=True,
        )
    # the guide's range is for a trained cross-encoder; a fresh head on a bi-encoder tolerates 2x more
    low, high = GUIDE_LR if kind == "cross" else (GUIDE_LR[0], 2 * GUIDE_LR[1])
    if not low <= r.lr <= high:
        echo(
            f"warning: learning rate {r.lr:g} is outside {low:g}..{high:g}; too high forgets pretraining, too low learns nothing",
            err=True,
        )
    dropout = attention_dropout_kwargs(config.attention_dropout)
    if r.head == "mean-pool":
        model = build_mean_pool(start, r.max_length, config.seed, **dropout)
    else:
        model = load_cross_encoder(
            start, num_labels=1, max_length=r.max_length,
            trust_remote_code=config.trust_remote_code, **dropout,
        )  # fmt: skip
    return kind, r, model


def _fit_member(
    name: str,
    model,
    evaluator,
    d: TeachData,
    r: Recipe,
    config: TeachConfig,
    out: Path,
    echo,
    budget_min: float | None = None,
) -> dict[str, Any]:
    """Fit: train the model on the labeled data, keeping the best checkpoint; its figures.
    ``budget_min``: the minutes of the member's time budget left for this (None: no budget)."""
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from transformers import EarlyStoppingCallback

    dataset, loss, loss_name, batch_size = _training_set(d, r, config, model)
    ckpt = out.parent / f".{out.name}-checkpoints"
    args = CrossEncoderTrainingArguments(
        output_dir=str(ckpt),
        num_train_epochs=r.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=batch_size,
        learning_rate=r.lr,
        warmup_steps=0.1,  # a float is a share of the steps in transformers v5
        dataloader_pin_memory=False,
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_val_ndcg@10",
        greater_is_better=True,
        logging_steps=max(1, config.eval_steps // 2),
        seed=config.seed,
        report_to="none",
        disable_tqdm=not sys.stderr.isatty(),
    )
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=[
            EarlyStoppingCallback(early_stopping_patience=config.patience),
            *trainer_callbacks(
                f"teaching {name}",
                None if budget_min is None else 60 * budget_min,
            ),
        ],
    )
    console.trainer_printer_off(trainer)
    validation_s = _plan(name, trainer, model, evaluator, batch_size, budget_min, echo)
    expect_validation(trainer.callback_handler.callbacks, validation_s)
    trainer.train()
    fitted = dict(
        loss=loss_name,
        lr=r.lr,
        epochs=r.epochs,
        steps=trainer.state.global_step,
        best_checkpoint=trainer.state.best_model_checkpoint,
        best_metric=trainer.state.best_metric,
        history=[h for h in evaluator.history[1:]],
    )
    shutil.rmtree(ckpt, ignore_errors=True)
    return fitted


def _calibrate_member(
    name: str, model, evaluator, d: TeachData, config: TeachConfig, out: Path, figures, echo
) -> None:
    """Calibrate: fit Platt scaling on validation, then save the model, calibration and card."""
    labels = evaluator.labels()
    cal = fit_platt(evaluator.last_scores, labels)
    if cal.method == "base-rate":
        echo(
            f"warning: {name}'s scores do not rise with relevance on validation; its probabilities are the base rate",
            err=True,
        )
    figures["calibration"] = {
        "temperature": round(cal.temperature, 4),
        "bias": round(cal.bias, 4),
        "ece_before": round(cal.ece_before, 4),
        "ece_after": round(cal.ece_after, 4),
    }
    model.save(str(out))
    cal.save(out)
    if config.windows != "first":  # label, evaluate and audit then score as validation did
        from teachers.windows import Windows, save

        save(out, Windows(config.windows))
        figures["windows"] = {"pooling": config.windows, **evaluator.window_stats}
    reliability_plot(evaluator.last_scores, labels, cal, out / "reliability.png")
    _append_card(out, name, config, d, figures)


def _validated_best(evaluator, figures: dict) -> dict | None:
    """The figures of the checkpoint training ended on, from the validation that chose it
    (the model reloaded is the one scored then), so it is not scored again; None when
    there is no such validation (not trained, or no checkpoint kept)."""
    best = figures.get("best_checkpoint")
    step = int(best.rsplit("-", 1)[1]) if best and best.rsplit("-", 1)[-1].isdigit() else None
    if step is None or step not in evaluator.scores_at:
        return None
    evaluator.last_scores = evaluator.scores_at[step]
    return evaluator.evaluate_scores(evaluator.last_scores)


def train_member(
    name: str,
    start: str,
    d: TeachData,
    config: TeachConfig,
    out: Path,
    *,
    train: bool = True,
    max_length=None,
    lr=None,
    epochs=None,
    budget_min: float | None = None,
    echo=click.echo,
) -> dict[str, Any]:
    """Train (or just load) one cross-encoder; save it, calibrated, into ``out``.
    ``budget_min``: this member's minutes (:func:`member_share`), loading and validating its
    start included; None: no limit."""
    from teachers.evaluator import RerankEvaluator

    member_started = time.time()  # the time budget covers the start's validation and the warm-up
    kind, r, model = _build_member(
        start, d, config, max_length=max_length, lr=lr, epochs=epochs, echo=echo
    )
    from teachers.windows import Windows

    evaluator = RerankEvaluator(
        d.queries, d.documents, d.val_candidates, d.qrels, batch_size=32,
        windows=Windows(config.windows),
    )  # fmt: skip
    before = {k.removeprefix("val_"): v for k, v in evaluator(model).items()}
    if evaluator.window_stats:  # each validation costs this many scored windows
        from teachers.scoring import window_line

        echo("validation " + window_line(evaluator.window_stats, config.windows))
    figures: dict[str, Any] = {
        "start": start,
        "start_kind": kind,
        "before": before,
        "max_length": r.max_length,
        "head": r.head,
    }
    started = time.time()
    if train and r.warmup and d.warmup:
        figures["warmup"] = _warm_up(model, d, r, config, out, echo)
    if train:
        left = budget_left(budget_min, time.time() - member_started)
        figures.update(_fit_member(name, model, evaluator, d, r, config, out, echo, left))
    after = _validated_best(evaluator, figures) or {
        k.removeprefix("val_"): v for k, v in evaluator(model).items()
    }
    figures.update(after=after, train_seconds=round(time.time() - started, 1))
    echo(
        f"{name}: validation NDCG@10 {before['ndcg@10']:.4f} -> {after['ndcg@10']:.4f}, MRR@10 {before['mrr@10']:.4f} -> {after['mrr@10']:.4f} (start -> tuned)"
    )
    if train and after["ndcg@10"] <= before["ndcg@10"] and not config.allow_worse:
        raise TeacherNotBetter(
            f"{name}: the tuned teacher is not better than its start on validation "
            f"(NDCG@10 {after['ndcg@10']:.4f} vs {before['ndcg@10']:.4f}); the learning rate is likely too high "
            f"or there is too little data. Nothing was saved; pass --allow-worse to keep it anyway."
        )
    _calibrate_member(name, model, evaluator, d, config, out, figures, echo)
    figures["val_scores"] = evaluator.last_scores  # for the ensemble; dropped before writing
    return figures


def _append_card(
    out: Path, name: str, config: TeachConfig, d: TeachData, fig: dict[str, Any]
) -> None:
    card = out / "README.md"
    text = card.read_text(encoding="utf-8") if card.exists() else f"# {name}\n"
    b, a, c = fig["before"], fig["after"], fig["calibration"]
    text += (
        f"\n\n## distill teacher: {name}\n\n"
        f"- data: `{config.data}` split `{config.split}`; {d.figures['train_queries']} training queries "
        f"({d.figures['train_pairs']} pairs, {d.figures['mined_negatives']} mined negatives), "
        f"{d.figures['val_queries']} validation queries (split by query, seed {config.seed})\n"
        f"- start: `{fig['start']}` ({fig['start_kind']}-encoder); loss: {fig.get('loss', 'not trained')}; "
        f"lr {fig.get('lr')}, epochs {fig.get('epochs')}, batch {config.batch_size}, max_length {fig['max_length']}\n"
        f"- validation (rerank top {config.val_candidates}): NDCG@10 {b['ndcg@10']:.4f} -> {a['ndcg@10']:.4f}, "
        f"MRR@10 {b['mrr@10']:.4f} -> {a['mrr@10']:.4f} (start -> tuned)\n"
        f"- calibration (Platt, `calibration.json`): p = sigmoid(logit / {c['temperature']} + {c['bias']}); "
        f"ECE {c['ece_before']} (raw sigmoid) -> {c['ece_after']}\n"
        f"- scores: `CrossEncoder(path).predict(pairs)` gives sigmoid(logit), NOT a calibrated probability.\n"
    )
    artifacts.write_text(card, text)
