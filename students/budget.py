"""The student's time budget: a measured probe of one training step sizes the run before it
starts, so that the learning-rate schedule ends where training ends (a run cut by a clock
mid-schedule stops at a high learning rate).

The planned number of steps is written next to the checkpoints, so a killed run resumes with
the schedule it started with, whatever the probe would say on the second try.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

# The plan fills this share of the budget; the clock (``time_budget``) stops the rest.
PLAN_SHARE = 0.9


def probe_step_seconds(model, loss_fn, rows, queries, corpus, config) -> float:
    """Seconds of one optimizer step on ``rows`` (one batch of examples): a forward and a
    backward pass in training mode, leaving no trace (``distill.models.traceless_training``).
    Eval mode timed about half a real step: attention dropout doubles its cost on CPU (32
    texts of 256 tokens, 2 threads: 4.7 s in eval mode, 8.8 s in training, 4.4 s in training
    with attention dropout off; SciFact: 15.1 s probed in eval mode, 23.4 s a step trained)."""
    import torch
    from sentence_transformers.base.losses.merged_forward import embed_columns

    from distill.models import traceless_training

    def features(texts, max_length):
        model.max_seq_length = max_length
        return model.tokenize(texts)

    length = model.max_seq_length
    with traceless_training(model):
        started = time.perf_counter()
        columns = [features([queries[q] for q, _, _ in rows], config.max_query_length)]
        for c in range(len(rows[0][1])):
            docs = [corpus[dids[c]].full_text for _, dids, _ in rows]
            columns.append(features(docs, config.max_doc_length))
        target = torch.tensor([s for _, _, s in rows])
        loss = loss_fn.compute_loss_from_embeddings(embed_columns(model, columns), target)
        loss.backward()
        seconds = time.perf_counter() - started
    model.max_seq_length = length
    return seconds


def training_minutes(budget_min: float | None, spent_s: float, reserve_s: float) -> float | None:
    """Minutes of the stage's time budget left for training, once ``spent_s`` went to reading
    the labels, loading and validating the start, and ``reserve_s`` is kept for the trained
    student's validation (on the many-positive stand-in the stage took 20 min of a 15-min
    budget that counted training alone); never under a tenth of the budget. None: no budget."""
    if budget_min is None:
        return None
    return max(budget_min / 10, budget_min - (spent_s + reserve_s) / 60)


def validation_seconds(docs: int, step_seconds: float, texts_per_step: int, passes: int) -> float:
    """What encoding ``docs`` documents for the final validation costs, from the probe: a
    training step costs ``passes`` inference passes of its texts (``distill.models.step_passes``:
    3 for forward, backward and update, doubled on CPU by attention dropout)."""
    return docs * step_seconds / max(1, passes * texts_per_step)


def steps_within(total: int, step_seconds: float, budget_minutes: float | None) -> int:
    """The most steps of ``step_seconds`` that fit in PLAN_SHARE of the budget (at least 1),
    never more than ``total``."""
    if budget_minutes is None or step_seconds <= 0:
        return total
    fit = int(PLAN_SHARE * 60 * budget_minutes / step_seconds)
    return max(1, min(total, fit))


def planned_total(ckpt_dir: Path, compute, write: bool = True) -> tuple[int, float | None]:
    """(steps, probe seconds per step): read from ``ckpt_dir/plan.json`` when a run is resumed,
    else ``compute()`` and written there (by the main process only: ``write``)."""
    path = ckpt_dir / "plan.json"
    if path.is_file():
        plan = json.loads(path.read_text())
        return int(plan["total"]), plan.get("step_seconds")
    total, seconds = compute()
    if write:
        from distill.artifacts import write_json

        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, {"total": total, "step_seconds": seconds})
    return total, seconds
