"""``distill train-student``: a bi-encoder trained on the teacher's soft labels with Accelerate.

The whole loop is here: build, ``accelerator.prepare``, ``accelerator.accumulate`` +
``backward``, ``save_state`` every ``checkpoint_steps`` and ``load_state`` on restart, so a
killed run resumes from its last checkpoint and ends with the same weights as an
uninterrupted one (data order and negatives are functions of seed and epoch, and Accelerate
restores the RNG states). The same function runs under ``accelerate launch`` for DDP.

Training examples, per query of the labels:

* positives: the gold positives (``gold > 0``) when known, else the teacher's top candidate;
* negatives: ``negatives`` candidates drawn from the teacher's ranking (ranks below
  ``negative_depth``), never one whose teacher score is within ``false_negative_margin`` of
  the positive's (a likely unlabeled positive: the most common distillation failure);
* labels: the teacher's scores of (positive, negatives) for ``kl`` and ``margin-mse``; none
  for ``mnrl``, the supervised baseline, which uses gold positives and first-stage negatives.

Texts are joined from ids when the examples are built, not stored with the labels.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
import numpy as np

from distill import artifacts, data
from distill.errors import InputError, Refused
from distill.progress import progress
from students.validation import retrieval_ndcg, retrieval_pool, split_validation


@dataclass
class StudentConfig:
    """Config of ``distill train-student``."""

    data: str = field(
        metadata={"help": "BEIR folder or beir:NAME (texts of queries and documents)"}
    )
    labels: str = field(default="runs/labels", metadata={"help": "distill label output folder"})
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "a teacher folder: with no --labels, mine candidates for --queries and label them with it first (into OUTPUT-work/, reused when current)"
        },
    )
    output: str = field(default="runs/student", metadata={"help": "student folder"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "write into a non-empty --output folder distill did not make (its other files are kept)"
        },
    )
    model: str = field(default="bundled", metadata={"help": "starting bi-encoder"})
    queries: str = field(
        default="train",
        metadata={"help": "qrels split, 'all' or a queries JSONL (the labels' queries)"},
    )
    loss: Literal["kl", "margin-mse", "mnrl"] = field(
        default="kl", metadata={"help": "kl, margin-mse, or mnrl (supervised baseline, no teacher)"}
    )
    in_batch: float = field(
        default=1.0,
        metadata={
            "help": "weight of an added in-batch-negatives term on the gold positives (0 = off; best on validation: 1)",
            "range": "[0, inf)",
        },
    )
    negatives: int = field(default=4, metadata={"help": "negatives per query", "range": "[1, inf)"})
    negative_depth: int = field(
        default=30,
        metadata={"help": "negatives come from the teacher's top-N", "range": "[1, inf)"},
    )
    false_negative_margin: float = field(
        default=1.0,
        metadata={
            "help": "skip negatives scored within this of the positive (teacher scores / teacher_temperature)",
            "range": "[0, inf)",
        },
    )
    scale: float = field(
        default=20.0,
        metadata={"help": "student similarity scale (inverse temperature)", "range": "(0, inf)"},
    )
    teacher_temperature: float | None = field(
        default=None,
        metadata={
            "help": "teacher scores are divided by this [default: auto, their spread over a query's candidates matched to the start student's]",
            "range": "(0, inf)",
        },
    )
    lr: float = field(
        default=1.2e-4,
        metadata={
            "help": "learning rate (SciFact validation, 1 epoch: 2e-5 0.6735, 6e-5 0.7358, 1.2e-4 0.7629)",
            "range": "(0, inf)",
        },
    )
    batch_size: int = field(
        default=16, metadata={"help": "queries per batch (per process)", "range": "[1, inf)"}
    )
    grad_accum: int = field(
        default=1, metadata={"help": "gradient accumulation steps", "range": "[1, inf)"}
    )
    epochs: int = field(default=1, metadata={"help": "epochs", "range": "[1, inf)"})
    warmup: float = field(
        default=0.1, metadata={"help": "share of steps with linear warm-up", "range": "[0, 1)"}
    )
    max_query_length: int = field(
        default=64, metadata={"help": "query max tokens", "range": "[1, inf)"}
    )
    max_doc_length: int = field(
        default=256, metadata={"help": "document max tokens", "range": "[1, inf)"}
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = field(
        default="auto", metadata={"help": "auto: bf16 on a GPU that has it, else no"}
    )
    checkpoint_steps: int = field(
        default=100, metadata={"help": "save_state every N optimizer steps", "range": "[1, inf)"}
    )
    seed: int = field(default=42, metadata={"help": "seed", "range": "(-inf, inf)"})
    onnx: bool = field(
        default=False,
        metadata={"help": "also export an ONNX model (sentence-transformers' exporter)"},
    )
    max_positives: int = field(
        default=4,
        metadata={
            "help": "examples per query and epoch at most: its positives are sampled (a query with 40 positives must not outweigh 40 others)",
            "range": "[1, inf)",
        },
    )
    val_fraction: float = field(
        default=0.1,
        metadata={
            "help": "share of the labelled queries with gold positives held out to validate the student against its start (0 = off)",
            "range": "[0, 1)",
        },
    )
    val_max_queries: int = field(
        default=500, metadata={"help": "validation queries at most", "range": "[1, inf)"}
    )
    val_docs: int = field(
        default=20000,
        metadata={
            "help": "validation retrieves from the whole corpus up to this many documents (else a sample holding the validation queries' candidates)",
            "range": "[1, inf)",
        },
    )
    allow_worse: bool = field(
        default=False,
        metadata={"help": "keep a student that is worse than its start on validation"},
    )
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "reuse the start model's corpus embeddings for validation (the folder mine and evaluate cache them in)"
        },
    )
    max_steps: int | None = field(
        default=None,
        metadata={"help": "stop after this many optimizer steps", "range": "[1, inf)"},
    )
    time_budget: float | None = field(
        default=None,
        metadata={
            "help": "minutes of training at most (then the student is saved as it is)",
            "range": "(0, inf)",
        },
    )

    @property
    def in_batch_weight(self) -> float:
        """The in-batch term's weight as trained: 0 for MNRL, an in-batch loss already."""
        return 0.0 if self.loss == "mnrl" else self.in_batch


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


def group_labels(table) -> dict[str, QueryLabels]:
    """{qid: QueryLabels} from a labels table (columns qid, did, score, gold)."""
    cols = table.select(["qid", "did", "score", "gold"]).to_pydict()
    grouped: dict[str, tuple[list, list, list]] = {}
    for q, d, s, g in zip(cols["qid"], cols["did"], cols["score"], cols["gold"], strict=True):
        entry = grouped.setdefault(q, ([], [], []))
        entry[0].append(d)
        entry[1].append(s)
        entry[2].append(g)
    return {
        q: QueryLabels(d, np.asarray(s, dtype=np.float32), np.asarray(g))
        for q, (d, s, g) in grouped.items()
    }


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
        chosen = sorted(rng.sample(positives, min(config.max_positives, len(positives))))
        tally["positives_not_sampled"] += len(positives) - len(chosen)
        for pos in chosen:
            if config.loss == "mnrl":
                if unlabeled:
                    tally["dropped_no_gold"] += 1
                    continue  # the supervised baseline uses gold labels only
                pool = [
                    i for i in range(3, min(len(lab.dids), config.negative_depth)) if i not in gold
                ]  # first-stage ranks, skip the top 3
                negs = rng.sample(pool, min(1, len(pool)))
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


def _accelerator(config: StudentConfig, ckpt_dir: Path):
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


def _prepare(
    config: StudentConfig, accelerator, model, labels, labels_dir: Path, log_with
) -> _Prepared:
    """Set-up: loss, epoch-0 examples, optimizer, scheduler and index loader, all prepared."""
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
    total = optimizer_steps(
        len(examples_0),
        config.batch_size,
        accelerator.num_processes,
        config.grad_accum,
        config.epochs,
        config.max_steps,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    # accelerate's prepared scheduler steps num_processes times per optimizer step (unless
    # split_batches): size it in those steps, or warm-up and decay end 1/N of the way through
    scheduler = get_linear_schedule_with_warmup(
        optimizer,
        int(config.warmup * total) * accelerator.num_processes,
        total * accelerator.num_processes,
    )
    index_loader = torch.utils.data.DataLoader(
        range(len(examples_0)), batch_size=config.batch_size, shuffle=True
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
        model, optimizer, scheduler, index_loader, loss_fn, len(examples_0), counts, total
    )


def _resume(
    accelerator, ckpt_dir: Path, grad_accum: int, index_loader, echo
) -> tuple[int, int, int]:
    """Resume: load the latest finished checkpoint, if any; returns (step, epoch, batches to skip)."""
    step, start_epoch, skip = 0, 0, 0
    latest = _latest_checkpoint(ckpt_dir)
    if latest is not None:
        accelerator.load_state(str(latest))
        step = int(latest.name.split("-")[1])
        start_epoch, skip = divmod(step * grad_accum, len(index_loader))
        echo(f"resuming from {latest} (step {step})", err=True)
    return step, start_epoch, skip


def _featurizer(student, accelerator):
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


def run(config: StudentConfig, echo=click.echo) -> Path:
    from accelerate.utils import set_seed

    from distill.models import load_bi_encoder, resolve_model
    from distill.querysets import load_query_set

    started = time.time()
    dataset = data.open_dataset(config.data)
    queries, qrels, _ = load_query_set(dataset, config.queries)
    corpus = dataset.corpus
    labels_dir = Path(config.labels)
    labels_all, labels, held = _load(config, dataset, queries, qrels, labels_dir, echo)
    out = Path(config.output)
    ckpt_dir = out.parent / f".{out.name}-checkpoints"
    accelerator, log_with = _accelerator(config, ckpt_dir)
    set_seed(config.seed)
    model = load_bi_encoder(config.model)
    validation = None
    if held and accelerator.is_main_process:
        validation = _Validation(held, labels_all, queries, qrels, corpus, config)
        validation.measure("start", model, echo, model_path=str(resolve_model(config.model)))
    elif not held:
        echo(
            "note: the student is not validated against its start (fewer than 10 labelled "
            "queries with gold positives to hold out, or val_fraction 0)",
            err=True,
        )
    temperature, labels = _teacher_units(labels, model, queries, corpus, config, echo)
    t = _prepare(config, accelerator, model, labels, labels_dir, log_with)
    position = _resume(accelerator, ckpt_dir, config.grad_accum, t.index_loader, echo)
    features = _featurizer(accelerator.unwrap_model(t.model), accelerator)
    counts, total = t.counts, t.total
    echo(
        f"plan: {t.examples:,} examples/epoch ({counts['positives_not_sampled']:,} positives "
        f"not sampled, {counts['dropped_too_few_negatives'] + counts['dropped_no_gold']:,} "
        f"dropped), {total:,} optimizer steps of {config.batch_size * accelerator.num_processes * config.grad_accum} "
        f"queries x {2 if config.loss == 'mnrl' else config.negatives + 1} documents"
        + ("" if config.time_budget is None else f", at most {config.time_budget:g} min"),
        err=True,
    )
    bar = progress(
        total, "training student", "steps", initial=position[0],
        disable=not accelerator.is_local_main_process,
    )  # fmt: skip
    losses = _loop(
        accelerator, t.model, t.optimizer, t.scheduler, t.index_loader, t.loss_fn, features, bar,
        labels, queries, corpus, config, ckpt_dir, log_with, total, position,
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
            "steps": step,
            "final_loss": losses[-1] if losses else None,
            "teacher_temperature": temperature,
            "examples_epoch_0": counts,
            "queries": query_counts(labels),
            "validation": None if validation is None else validation.figures(),
        }
        _save(final, config, figures, losses, ckpt_dir, started, echo)
    return out


def _loop(
    accelerator, model, optimizer, scheduler, index_loader, loss_fn, features, bar,
    labels, queries, corpus, config: StudentConfig, ckpt_dir: Path, log_with, total: int,
    position: tuple[int, int, int],
) -> list[float]:  # fmt: skip
    """Phase 3: the optimizer steps from ``position`` (step, epoch, batches to skip) on, with
    checkpoints, until ``total`` steps or the time budget; returns the loss of each step."""
    import torch
    from sentence_transformers.base.losses.merged_forward import embed_columns

    step, start_epoch, skip = position
    model.train()
    losses: list[float] = []
    budget_end = None if config.time_budget is None else time.time() + 60 * config.time_budget
    for epoch in range(start_epoch, config.epochs):
        if step >= total or _out_of_time(budget_end, accelerator):
            break
        examples = build_examples(labels, config, epoch)
        index_loader.set_epoch(epoch)
        loader = (
            accelerator.skip_first_batches(index_loader, skip)
            if epoch == start_epoch and skip
            else index_loader
        )
        for batch in loader:
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
                loss = loss_fn.compute_loss_from_embeddings(embed_columns(model, columns), target)
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
                        (target_dir / "done").write_text("ok")
                if step >= total or _out_of_time(budget_end, accelerator):
                    break
        skip = 0
    return losses


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
    )
    labels = {q: lab for q, lab in labels.items() if q not in held}
    return labels_all, labels, held


def _teacher_units(labels, model, queries, corpus, config: StudentConfig, echo):
    """Phase 2: the teacher's scores divided by the (auto) temperature; (temperature, labels)."""
    temperature = config.teacher_temperature
    if config.loss != "mnrl":
        if temperature is None:
            spreads: dict[str, float] = {}
            temperature = auto_temperature(labels, model, queries, corpus, config, spreads=spreads)
            echo(
                f"teacher temperature {temperature:.4g} (auto: teacher spread / student spread)",
                err=True,
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
        _card(tmp, config, figures, losses, time.time() - started)
        if config.onnx:
            _export_onnx(tmp, echo)
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


class _Validation:
    """The start and the trained student, each retrieving for the held-out queries."""

    def __init__(self, held, labels, queries, qrels, corpus, config: StudentConfig) -> None:
        keep = {d for q in held for d in labels[q].dids} | {d for q in held for d in qrels[q]}
        self.pool = retrieval_pool(corpus, keep & set(corpus), config.val_docs, config.seed)
        self.queries = {q: queries[q] for q in sorted(held)}
        self.qrels = {q: qrels[q] for q in held}
        self.config = config
        self.ndcg: dict[str, float] = {}

    def measure(self, name: str, model, echo, model_path: str | None = None) -> None:
        """NDCG@10 of ``model``; ``model_path`` (an unchanged model's folder) lets the
        corpus embeddings come from ``cache_dir``."""
        self.ndcg[name] = retrieval_ndcg(
            model,
            self.pool,
            self.queries,
            self.qrels,
            query_length=self.config.max_query_length,
            doc_length=self.config.max_doc_length,
            cache_dir=self.config.cache_dir if model_path else None,
            model_path=model_path,
        )
        echo(
            f"{name}: validation NDCG@10 {self.ndcg[name]:.4f} ({len(self.queries)} held-out "
            f"queries retrieving from {len(self.pool):,} documents)",
            err=True,
        )

    def figures(self) -> dict:
        return {"queries": len(self.queries), "documents": len(self.pool), "ndcg@10": self.ndcg}

    def guard(self, allow_worse: bool, echo) -> None:
        start, student = self.ndcg["start"], self.ndcg["student"]
        if student >= start:
            return
        message = (
            f"the student is worse than its start on validation (full retrieval, NDCG@10 "
            f"student {student:.4f} vs start {start:.4f} on {len(self.queries)} held-out queries)."
        )
        if not allow_worse:
            raise Refused(f"{message} Nothing was saved; pass --allow-worse to keep it anyway.")
        echo(f"warning: {message} Kept because of --allow-worse.", err=True)


def query_counts(labels: dict[str, QueryLabels]) -> dict[str, int]:
    """Training queries with gold positives, and those the teacher alone labelled."""
    labelled = sum(1 for lab in labels.values() if (np.asarray(lab.gold) > 0).any())
    return {"labelled": labelled, "teacher_labelled": len(labels) - labelled}


def teacher_summary(labels_dir: Path) -> str:
    """Who labelled the data, and how that teacher did on its honest validation: read from
    the labels' manifest and the teacher's own (``distill teach``) manifest."""
    labels = artifacts.read_manifest(labels_dir) or {}
    teacher = (labels.get("config") or {}).get("teacher")
    if not teacher:
        return f"labels in `{labels_dir}` (teacher unknown)"
    figures = (artifacts.read_manifest(teacher) or {}).get("figures") or {}
    ensemble = (figures.get("ensemble") or {}).get("validation") or {}
    members = figures.get("members") or {}
    member = next(iter(members.values()), {}).get("after", {}) if len(members) == 1 else {}
    ndcg = ensemble.get("ndcg@10", member.get("ndcg@10"))
    if ndcg is None:
        return f"`{teacher}` (no `distill teach` manifest: its validation figures are unknown)"
    first = (figures.get("first_stage") or {}).get("ndcg@10")
    versus = "" if first is None else f" against the first stage's {first:.4f}"
    return f"`{teacher}`, validation NDCG@10 {ndcg:.4f}{versus} (reranking, no injected positives)"


def _card(
    folder: Path,
    config: StudentConfig,
    figures: dict,
    losses: list[float],
    seconds: float,
) -> None:
    """The model card: start, teacher and its validation, data, loss and its settings, run."""
    teacher = (
        "none (supervised baseline on gold qrels)"
        if config.loss == "mnrl"
        else teacher_summary(Path(config.labels))
    )
    text = (
        (folder / "README.md").read_text(encoding="utf-8")
        if (folder / "README.md").exists()
        else "# student\n"
    )
    queries = figures.get("queries") or {}
    validation = figures.get("validation") or {}
    ndcg = validation.get("ndcg@10") or {}
    text += (
        "\n\n## distill student\n\n"
        f"- start: `{config.model}`\n- teacher: {teacher}\n"
        f"- data: `{config.data}` ({config.queries}): {queries.get('labelled', 0)} labelled queries "
        f"(gold positives), {queries.get('teacher_labelled', 0)} teacher-labelled queries (no "
        f"gold: the teacher's top candidate is the positive), {figures['examples']} examples/epoch\n"
        f"- loss: {config.loss}"
        + (
            f" + in-batch negatives (weight {config.in_batch_weight})"
            if config.in_batch_weight
            else ""
        )
        + f"; scale {config.scale}, teacher temperature {figures.get('teacher_temperature') or 1:.4g}; "
        f"{config.negatives} negatives from the teacher's top {config.negative_depth}, "
        f"false-negative margin {config.false_negative_margin}\n"
        f"- {figures['steps']} steps, lr {config.lr}, batch {config.batch_size} x {config.grad_accum}, "
        f"{config.epochs} epoch(s), documents {config.max_doc_length} tokens, {seconds:.0f}s\n"
        f"- final training loss: {losses[-1] if losses else float('nan'):.4f}\n"
        + (
            f"- validation (full retrieval, {validation.get('queries')} held-out queries): "
            f"NDCG@10 {ndcg.get('start', float('nan')):.4f} at the start, "
            f"{ndcg.get('student', float('nan')):.4f} trained\n"
            if ndcg
            else "- validation: none (too few labelled queries to hold out)\n"
        )
        + "- test figures: `distill evaluate` (report.md in the evaluation's folder)\n"
    )
    artifacts.write_text(folder / "README.md", text)


def _export_onnx(folder: Path, echo) -> None:
    """ONNX export with sentence-transformers' own exporter (needs optimum + onnxruntime)."""
    try:
        from sentence_transformers import SentenceTransformer

        SentenceTransformer(
            str(folder), backend="onnx"
        )  # exports model.onnx into folder/onnx on first load
        onnx = Path(folder) / "onnx"
        echo(
            f"exported ONNX to {onnx}"
            if onnx.exists()
            else "note: ONNX export did not write a file",
            err=True,
        )
    except Exception as exc:  # the exporter raises many kinds (missing optimum, unsupported op)
        raise InputError(
            f"ONNX export failed ({str(exc).splitlines()[0]}); install sentence-transformers[onnx] or drop --onnx"
        ) from None
