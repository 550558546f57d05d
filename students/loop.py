"""The student's Accelerate training loop and its set-up.

Build, ``accelerator.prepare``, ``accelerator.accumulate`` + ``backward``, ``save_state``
every ``checkpoint_steps`` and ``load_state`` on restart, so a killed run resumes from its
last checkpoint and ends with the same weights as an uninterrupted one (data order and
negatives are functions of seed and epoch, and Accelerate restores the RNG states). The same
code runs under ``accelerate launch`` for DDP.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill.errors import InputError
from students.config import StudentConfig
from students.examples import batch_ids, build_examples, known_positives


def optimizer_steps(
    examples: int,
    batch_size: int,
    processes: int,
    grad_accum: int,
    epochs: int,
    max_steps: int | None = None,
) -> int:
    """Optimizer steps of a run: each takes ``batch_size`` examples on each of ``processes``,
    ``grad_accum`` times; capped at ``max_steps``."""
    per_epoch = -(-examples // (batch_size * processes * grad_accum))
    total = per_epoch * epochs
    return min(total, max_steps) if max_steps else total


# With no --epochs, a run takes enough epochs for at least this many optimizer steps. Measured
# on the demo sample (200 queries, 13 steps an epoch at batch 16): one epoch was refused on
# validation (0.7469 vs start 0.7504), two (26 steps) passed (0.7891); SciFact's 647 queries
# give 50 steps in one epoch (validation 0.6417 -> 0.7629), so larger data keeps one epoch.
MIN_STEPS = 25


def epochs_for(examples: int, batch_size: int, processes: int, grad_accum: int, epochs) -> int:
    """``epochs`` when given, else the fewest epochs that make at least MIN_STEPS steps."""
    if epochs:
        return epochs
    per_epoch = optimizer_steps(examples, batch_size, processes, grad_accum, 1)
    return max(1, -(-MIN_STEPS // per_epoch))


def _out_of_time(budget_end: float | None, accelerator) -> bool:
    """True once the time budget is spent on any process (all processes agree, so none waits
    alone at the next collective)."""
    import torch

    if budget_end is None:
        return False
    late = torch.tensor([float(time.time() >= budget_end)], device=accelerator.device)
    return bool(accelerator.reduce(late, reduction="sum").item() > 0)


def _mixed_precision(choice: str) -> str:
    import torch

    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _latest_checkpoint(folder: Path) -> Path | None:
    steps = [
        (int(m.group(1)), p)
        for p in folder.glob("step-*")
        if (m := re.fullmatch(r"step-(\d+)", p.name)) and (p / "done").exists()
    ]
    return max(steps)[1] if steps else None


def accelerator(config: StudentConfig, ckpt_dir: Path):
    """Set-up: the Accelerator (tensorboard logging when installed); returns it and log_with."""
    from accelerate import Accelerator, DataLoaderConfiguration

    try:
        import tensorboard  # noqa: F401

        log_with = "tensorboard"
    except ImportError:
        log_with = None
    from accelerate.utils import DistributedDataParallelKwargs

    from distill.env import several_cpu_processes

    accelerator = Accelerator(
        cpu=several_cpu_processes(),
        # a bi-encoder leaves parts of its backbone unused (BERT's pooler under mean pooling)
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        mixed_precision=_mixed_precision(config.mixed_precision),
        gradient_accumulation_steps=config.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        log_with=log_with,
        project_dir=str(ckpt_dir),
    )
    return accelerator, log_with


@dataclass
class _Prepared:
    """What training runs with, after ``accelerator.prepare``, and the plan's numbers."""

    model: Any
    optimizer: Any
    scheduler: Any
    index_loader: Any
    loss_fn: Any
    examples: int
    counts: dict[str, int]
    total: int
    epochs: int
    step_seconds: float | None
    uncut: int  # the steps of ``epochs`` before the time budget
    train_minutes: float | None  # what the stage's time budget leaves for training


def prepare(
    config: StudentConfig, accelerator, model, labels, labels_dir: Path, log_with,
    texts: tuple[dict, dict], ckpt_dir: Path, stage_started: float, validation_docs: int = 0,
) -> _Prepared:  # fmt: skip
    """Set-up: loss, epoch-0 examples, optimizer, scheduler and index loader, all prepared.
    The time budget is the stage's, from ``stage_started``, keeping room to encode the
    ``validation_docs`` of the final validation."""
    import torch
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    from students.losses import build_loss

    set_seed(config.seed)
    loss_fn = build_loss(config.loss, model, scale=config.scale, in_batch=config.in_batch_weight)
    counts: dict[str, int] = {}
    examples_0 = build_examples(labels, config, 0, counts)
    if not examples_0:
        raise InputError(
            "no usable training examples: too few candidates below the false-negative margin; lower false_negative_margin or negatives",
            path=labels_dir,
        )
    shape = (len(examples_0), config.batch_size, accelerator.num_processes, config.grad_accum)
    epochs = epochs_for(*shape, config.epochs)
    uncut = optimizer_steps(*shape, epochs, config.max_steps)
    total, step_seconds, minutes = _budgeted(
        config, accelerator, model, loss_fn, examples_0, texts, uncut, ckpt_dir,
        (stage_started, validation_docs),
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    # accelerate's prepared scheduler steps num_processes times per optimizer step (unless
    # split_batches): size it in those steps, or warm-up and decay end 1/N of the way through
    scheduler = get_linear_schedule_with_warmup(
        optimizer,
        int(config.warmup * total) * accelerator.num_processes,
        total * accelerator.num_processes,
    )
    # a generator of its own: starting an epoch's iterator draws a seed from it, and from the
    # global RNG without one, which shifted the dropout stream of a run resumed mid-epoch
    index_loader = torch.utils.data.DataLoader(
        range(len(examples_0)),
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    model, optimizer, index_loader, scheduler = accelerator.prepare(
        model, optimizer, index_loader, scheduler
    )
    if log_with:
        accelerator.init_trackers(
            "distill-student",
            config={
                k: v for k, v in asdict(config).items() if isinstance(v, (int, float, str, bool))
            },
        )
    return _Prepared(
        model, optimizer, scheduler, index_loader, loss_fn, len(examples_0), counts, total, epochs,
        step_seconds, uncut, minutes,
    )  # fmt: skip


def _budgeted(
    config, accelerator, model, loss_fn, examples, texts, total: int, ckpt_dir: Path, clock
):
    """(steps, probe seconds per step, training minutes): ``total``, cut to what fits the
    stage's time budget (``clock``: when the stage started, and the documents its final
    validation encodes) as timed by a probe step on the first batch (the slowest process's
    time, so all agree); the plan is kept with the checkpoints so a resumed run keeps its
    schedule."""
    import torch

    from distill.models import step_passes
    from students.budget import (
        planned_total,
        probe_step_seconds,
        steps_within,
        training_minutes,
        validation_seconds,
    )

    if config.time_budget is None:
        return total, None, None
    stage_started, validation_docs = clock
    minutes = training_minutes(config.time_budget, time.time() - stage_started, 0.0)

    def compute():
        nonlocal minutes
        # one micro-batch, times the micro-batches of an optimizer step (a batch of
        # batch_size * grad_accum at once could exceed the memory grad_accum was set to save)
        rows = examples[: config.batch_size]
        seconds = config.grad_accum * probe_step_seconds(model, loss_fn, rows, *texts, config)
        slowest = accelerator.reduce(torch.tensor([seconds], device=accelerator.device), "max")
        seconds = float(slowest.item())
        per_step = config.batch_size * config.grad_accum * (1 + len(rows[0][1]))  # query + docs
        reserve = validation_seconds(validation_docs, seconds, per_step, step_passes(model))
        minutes = training_minutes(config.time_budget, time.time() - stage_started, reserve)
        return steps_within(total, seconds, minutes), round(seconds, 3)

    steps, seconds = planned_total(ckpt_dir, compute, write=accelerator.is_main_process)
    return steps, seconds, minutes


def resume(
    accelerator, ckpt_dir: Path, grad_accum: int, index_loader, echo
) -> tuple[int, int, int]:
    """Resume: load the latest finished checkpoint, if any; returns (step, epoch, batches to skip)."""
    step, start_epoch, skip = 0, 0, 0
    latest = _latest_checkpoint(ckpt_dir)
    if latest is not None:
        accelerator.load_state(str(latest))
        step = int(latest.name.split("-")[1])
        start_epoch, skip = divmod(step * grad_accum, len(index_loader))
        if (latest / "position.json").is_file():
            where = json.loads((latest / "position.json").read_text())
            start_epoch, skip = divmod(
                where["epoch"] * len(index_loader) + where["batches"], len(index_loader)
            )
        echo(f"resuming from {latest} (step {step})", err=True)
    return step, start_epoch, skip


def featurizer(student, accelerator):
    """Returns ``features(texts, max_length)``: the student's inputs, on the accelerator's device."""

    def features(texts: list[str], max_length: int):
        student.max_seq_length = max_length
        feats = (
            student.tokenize(texts)
            if not hasattr(student, "preprocess")
            else student.preprocess(texts)
        )
        return {k: v.to(accelerator.device) if hasattr(v, "to") else v for k, v in feats.items()}

    return features


def batch_ids_for(loss_fn, labels, config: StudentConfig, device):
    """Returns ``ids(rows)``: the keyword arguments that give an in-batch loss its batch's
    document ids (known positives left out of the softmax), or none (no in-batch term, or
    ``mask_positives`` off)."""
    import torch

    from students.losses import BatchIds, InBatchNegatives

    if not (config.mask_positives and isinstance(loss_fn, InBatchNegatives)):
        return lambda rows: {}
    positives = known_positives(labels)
    doc_index = {
        d: i for i, d in enumerate(sorted({d for lab in labels.values() for d in lab.dids}))
    }

    def ids(rows) -> dict:
        candidates, known = batch_ids(rows, positives, doc_index)
        return {
            "ids": BatchIds(
                torch.from_numpy(candidates).to(device), torch.from_numpy(known).to(device)
            )
        }

    return ids


def loop(
    accelerator, model, optimizer, scheduler, index_loader, loss_fn, features, bar,
    labels, queries, corpus, config: StudentConfig, ckpt_dir: Path, log_with, total: int,
    position: tuple[int, int, int], train_minutes: float | None,
) -> list[float]:  # fmt: skip
    """Phase 3: the optimizer steps from ``position`` (step, epoch, batches to skip) on, with
    checkpoints, until ``total`` steps or the time budget; returns the loss of each step."""
    import torch
    from sentence_transformers.base.losses.merged_forward import embed_columns

    step, start_epoch, skip = position
    model.train()
    losses: list[float] = []
    ids = batch_ids_for(loss_fn, labels, config, accelerator.device)
    budget_end = None if train_minutes is None else time.time() + 60 * train_minutes
    for epoch in itertools.count(start_epoch):  # ``total`` (from the epochs) ends the run
        if step >= total or _out_of_time(budget_end, accelerator):
            break
        examples = build_examples(labels, config, epoch)
        index_loader.set_epoch(epoch)
        done = skip if epoch == start_epoch else 0
        # the batches a resumed run already trained on are read and passed over (they are
        # only indices): accelerate's skip_first_batches lost the epoch set above, and replayed
        # epoch 0's order in a later epoch
        for batches, batch in enumerate(index_loader):
            if batches < done:
                continue
            rows = [examples[int(i)] for i in batch if int(i) < len(examples)]
            if not rows:
                continue
            with accelerator.accumulate(model):
                columns = [features([queries[q] for q, _, _ in rows], config.max_query_length)]
                for c in range(len(rows[0][1])):
                    columns.append(
                        features(
                            [corpus[dids[c]].full_text for _, dids, _ in rows],
                            config.max_doc_length,
                        )
                    )
                target = torch.tensor([s for _, _, s in rows], device=accelerator.device)
                # the forward goes through the prepared (DDP-wrapped) model, so that several
                # processes synchronise their gradients; the loss sees only the embeddings
                loss = loss_fn.compute_loss_from_embeddings(
                    embed_columns(model, columns), target, **ids(rows)
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                step += 1
                losses.append(float(accelerator.gather(loss.detach()).mean()))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if log_with:
                    accelerator.log(
                        {"loss": losses[-1], "lr": scheduler.get_last_lr()[0]}, step=step
                    )
                if step % config.checkpoint_steps == 0 and step < total:
                    target_dir = ckpt_dir / f"step-{step}"
                    accelerator.save_state(str(target_dir))
                    if accelerator.is_main_process:
                        # where the data stands: batches without a usable row take no step,
                        # so the step count alone does not say it
                        position_file = target_dir / "position.json"
                        position_file.write_text(
                            json.dumps({"epoch": epoch, "batches": batches + 1})
                        )
                        (target_dir / "done").write_text("ok")
                if step >= total or _out_of_time(budget_end, accelerator):
                    break
        skip = 0
    return losses
