"""``distill train-student``: a bi-encoder trained on the teacher's soft labels with Accelerate.

The stage's phases: load the labels and hold out validation queries, put the teacher's scores
in the student's units, train, save the student with its card and manifest. The parts:

* :mod:`students.config`: the config, :class:`StudentConfig`;
* :mod:`students.examples`: the training examples built from the labels, and the teacher
  temperature;
* :mod:`students.loop`: the Accelerate loop (resumable from checkpoints, DDP under
  ``accelerate launch``);
* :mod:`students.validation`: the student against its start on held-out queries;
* :mod:`students.card`: the model card;
* :mod:`students.losses`: the losses.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np

from distill import artifacts, console, data
from distill.errors import InputError
from distill.progress import progress
from students import loop
from students.card import card
from students.config import StudentConfig
from students.examples import (
    TEMPERATURE_BOUNDS,
    QueryLabels,
    auto_temperature,
    confident,
    group_labels,
    query_counts,
)
from students.validation import Validation, split_validation


def run(config: StudentConfig, echo=click.echo) -> Path:
    from accelerate.utils import set_seed

    from distill.models import attention_dropout_kwargs, load_bi_encoder, resolve_model
    from distill.querysets import load_query_set

    started = time.time()
    dataset = data.open_dataset(config.data)
    queries, qrels, _ = load_query_set(dataset, config.queries)
    corpus = dataset.corpus
    labels_dir = Path(config.labels)
    labels_all, labels, held = _load(config, dataset, queries, qrels, labels_dir, echo)
    out = Path(config.output)
    ckpt_dir = out.parent / f".{out.name}-checkpoints"
    accelerator, log_with = loop.accelerator(config, ckpt_dir)
    set_seed(config.seed)
    model = load_bi_encoder(config.model, **attention_dropout_kwargs(config.attention_dropout))
    validation = None
    if held and accelerator.is_main_process:
        validation = Validation(held, labels_all, queries, qrels, corpus, config)
        validation.measure("start", model, echo, model_path=str(resolve_model(config.model)))
    elif not held:
        echo(
            "note: the student is not validated against its start (fewer than 10 labelled "
            "queries with gold positives to hold out, or val_fraction 0)",
            err=True,
        )
    temperature, labels = _teacher_units(labels, model, queries, corpus, config, echo)
    t = loop.prepare(
        config, accelerator, model, labels, labels_dir, log_with, (queries, corpus), ckpt_dir,
        started, 0 if validation is None else len(validation.pool),
    )  # fmt: skip
    position = loop.resume(accelerator, ckpt_dir, config.grad_accum, t.index_loader, echo)
    features = loop.featurizer(accelerator.unwrap_model(t.model), accelerator)
    counts, total = t.counts, t.total
    echo(
        f"plan: {t.examples:,} examples/epoch ({counts['positives_not_sampled']:,} positives "
        f"not sampled, {counts['dropped_too_few_negatives'] + counts['dropped_no_gold']:,} "
        f"dropped), {total:,} optimizer steps of {config.batch_size * accelerator.num_processes * config.grad_accum} "
        f"queries x {2 if config.loss == 'mnrl' else config.negatives + 1} documents"
        + _budget_note(config, t),
        err=True,
    )
    bar = progress(
        total, "training student", "steps", initial=position[0],
        disable=not accelerator.is_local_main_process,
    )  # fmt: skip
    losses = loop.loop(
        accelerator, t.model, t.optimizer, t.scheduler, t.index_loader, t.loss_fn, features, bar,
        labels, queries, corpus, config, ckpt_dir, log_with, total, position, t.train_minutes,
    )  # fmt: skip
    step = position[0] + len(losses)
    bar.close()
    accelerator.wait_for_everyone()
    if log_with:
        accelerator.end_training()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(t.model)
        if validation is not None:
            validation.measure("student", final, echo)
            validation.guard(config.allow_worse, echo)
        figures = {
            "examples": t.examples,
            "epochs": t.epochs,
            "steps": step,
            "final_loss": losses[-1] if losses else None,
            "loss_per_step": {"first_step": position[0] + 1, "loss": [round(x, 5) for x in losses]},
            "teacher_temperature": temperature,
            "examples_epoch_0": counts,
            "queries": query_counts(labels),
            "validation": None if validation is None else validation.figures(),
        }
        _save(final, config, figures, losses, ckpt_dir, started, echo)
    return out


def _budget_note(config: StudentConfig, t) -> str:
    """The plan's time estimate: steps x the probe step, and the budget that sized them."""
    if t.step_seconds is None:
        return ""
    cut = "" if t.total == t.uncut else f", cut from {t.uncut:,} to fit it"
    return (
        f"; about {t.total * t.step_seconds / 60:.0f} min on this machine (probe: "
        f"{t.step_seconds:.1f} s a step; time budget {config.time_budget:g} min for the stage, "
        f"{t.train_minutes:.1f} of them for training{cut})"
    )


def _load(config: StudentConfig, dataset, queries, qrels, labels_dir: Path, echo):
    """Phase 1: claim the output, read the labels, keep the --queries ones, hold out the
    validation queries. Returns (all labels, training labels, held-out query ids)."""
    from distill.labels_io import read_labels
    from distill.models import resolve_model

    artifacts.claim_output(
        config.output,
        stage="train-student",
        inputs=[dataset.root, labels_dir, resolve_model(config.model)],
        overwrite=config.overwrite,
    )
    if not (labels_dir / "manifest.json").is_file():
        raise InputError("no finished labels here (run `distill label` first)", path=labels_dir)
    labels = group_labels(read_labels(labels_dir))
    labels_all = labels
    outside = sorted(set(labels) - set(queries))
    if len(outside) == len(labels):
        raise InputError(
            f"no labelled query is in --queries {config.queries!r} (the labels name {outside[0]!r}, ...)",
            path=labels_dir,
        )
    if outside:
        echo(
            f"note: training on the {len(labels) - len(outside)} labelled queries in --queries {config.queries!r}; "
            f"{len(outside)} others ignored",
            err=True,
        )
        labels = {q: lab for q, lab in labels.items() if q in queries}
    held = split_validation(
        {q: queries[q] for q in labels},
        qrels,
        config.val_fraction,
        config.val_max_queries,
        config.seed,
        floor=config.val_min_queries,
    )
    labels = {q: lab for q, lab in labels.items() if q not in held}
    labels, dropped = confident(labels, config.min_confidence)
    if dropped:
        echo(
            f"dropped {dropped} teacher-labelled queries whose top candidate's probability is "
            f"under {config.min_confidence:g} (--min-confidence)",
            err=True,
        )
    return labels_all, labels, held


def _teacher_units(labels, model, queries, corpus, config: StudentConfig, echo):
    """Phase 2: the teacher's scores divided by the (auto) temperature; (temperature, labels)."""
    temperature = config.teacher_temperature
    if config.loss != "mnrl":
        if temperature is None:
            spreads: dict[str, float] = {}
            temperature = auto_temperature(labels, model, queries, corpus, config, spreads=spreads)
            console.detail(  # recorded in the manifest and the model card
                echo,
                f"teacher temperature {temperature:.4g} (auto: teacher spread / student spread)",
            )
            if not TEMPERATURE_BOUNDS[0] <= temperature <= TEMPERATURE_BOUNDS[1]:
                echo(
                    f"warning: teacher temperature {temperature:.4g} is outside "
                    f"{TEMPERATURE_BOUNDS[0]}..{TEMPERATURE_BOUNDS[1]}: the teacher's scores spread "
                    f"{spreads.get('teacher', 0):.4g} over a query's top {config.negative_depth}, "
                    f"the start student's {spreads.get('student', 0):.4g}. A teacher that barely "
                    "separates the candidates (or separates them wildly) teaches little; check "
                    "its validation figures.",
                    err=True,
                )
        labels = {
            q: QueryLabels(lab.dids, lab.scores / np.float32(temperature), lab.gold)
            for q, lab in labels.items()
        }
    return temperature, labels


def _save(final, config: StudentConfig, figures: dict, losses, ckpt_dir: Path, started, echo):
    """Phase 4: the student folder (atomic), its card and manifest; checkpoints removed."""
    import shutil

    from distill.models import resolve_model

    out = Path(config.output)
    labels_dir = Path(config.labels)
    examples, step = figures["examples"], figures["steps"]
    figures["train_seconds"] = round(time.time() - started, 1)
    final.max_seq_length = config.max_doc_length
    with artifacts.atomic_path(out, stage="train-student", overwrite=config.overwrite) as tmp:
        final.save(str(tmp), safe_serialization=True)
        card(tmp, config, figures, losses, time.time() - started)
        if config.onnx or config.onnx_int8:
            _export_onnx(final, tmp / "onnx", config.onnx_int8, echo)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    inputs = {"labels": labels_dir / "manifest.json"}
    start = Path(resolve_model(config.model))
    if start.exists():
        inputs["start"] = start
    artifacts.write_manifest(
        out,
        stage="train-student",
        config=asdict(config),
        inputs=inputs,
        figures=figures,
        started=started,
    )
    echo(
        f"trained {config.loss} student: {examples} examples/epoch, {step} steps in {time.time() - started:.0f}s; wrote {out}"
    )


def _export_onnx(model, folder: Path, int8: bool, echo) -> None:
    """``student.onnx`` (and ``student-int8.onnx``) into ``folder``: see distill.serving for
    why this is torch's exporter and not sentence-transformers' (optimum needs transformers 4)."""
    from distill.serving import export_onnx

    written = export_onnx(model, folder, int8=int8)
    echo(f"exported ONNX: {', '.join(sorted(p.name for p in written.parent.glob('*.onnx')))}")
