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
"""

from __future__ import annotations

import itertools
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
import numpy as np

from distill import artifacts, data
from distill.errors import InputError, Refused
from distill.progress import trainer_callbacks
from distill.querysets import split_queries
from teachers.calibration import fit_platt, reliability_plot
from teachers.scoring import save_ensemble

GUIDE_LR = (1e-5, 1e-4)


class TeacherNotBetter(Refused):
    """The tuned teacher does not beat its start, or the first stage, on honest validation."""


@dataclass
class MemberConfig:
    """One member of an ensemble teacher."""

    name: str
    model: str
    train: bool = True
    max_length: int | None = field(default=None, metadata={"range": "[1, inf)"})
    lr: float | None = field(default=None, metadata={"range": "(0, inf)"})
    epochs: float | None = field(default=None, metadata={"range": "(0, inf)"})


@dataclass
class TeachConfig:
    """Config of ``distill teach``."""

    data: str = field(metadata={"help": "BEIR folder (or beir:NAME) or labeled pairs file"})
    split: str = field(
        default="train", metadata={"help": "BEIR qrels split to learn from (never test)"}
    )
    output: str = field(default="runs/teacher", metadata={"help": "teacher folder"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "write into a non-empty --output folder distill did not make (its other files are kept)"
        },
    )
    model: str = field(default="bundled", metadata={"help": "starting model (single teacher)"})
    members: list[MemberConfig] = field(
        default_factory=list, metadata={"help": "ensemble members (YAML only)", "cli": False}
    )
    combine: Literal["mean", "weights"] = field(
        default="weights", metadata={"help": "ensemble: mean, or weights fitted on validation"}
    )
    val_fraction: float = field(
        default=0.2, metadata={"help": "share of queries for validation", "range": "(0, 1)"}
    )
    seed: int = field(default=42, metadata={"help": "random seed", "range": "(-inf, inf)"})
    negatives: int = field(
        default=7, metadata={"help": "mined negatives per query", "range": "[1, inf)"}
    )
    negatives_from: Literal["bm25", "dense", "hybrid"] = field(
        default="hybrid", metadata={"help": "first stage for mining"}
    )
    miner: str = field(default="bundled", metadata={"help": "bi-encoder for dense mining"})
    skip_top: int = field(
        default=3,
        metadata={"help": "first-stage ranks never used as negatives", "range": "[0, inf)"},
    )
    mine_depth: int = field(
        default=30,
        metadata={
            "help": "negatives come from ranks skip_top+1 .. mine_depth",
            "range": "[1, inf)",
        },
    )
    val_candidates: int = field(
        default=30,
        metadata={
            "help": "first-stage candidates reranked per validation query",
            "range": "[1, inf)",
        },
    )
    lr: float | None = field(
        default=None,
        metadata={
            "help": "learning rate [default: 3e-5 from a cross-encoder, 2e-4 from a bi-encoder]",
            "range": "(0, inf)",
        },
    )
    batch_size: int = field(
        default=16, metadata={"help": "training batch size", "range": "[1, inf)"}
    )
    epochs: float | None = field(
        default=None,
        metadata={
            "help": "epochs [default: 1 from a cross-encoder, 2 from a bi-encoder]",
            "range": "(0, inf)",
        },
    )
    warmup_pairs: int | None = field(
        default=None,
        metadata={
            "help": "title -> abstract lists trained on before the labeled data [default: 400 from a bi-encoder, 0 from a cross-encoder]",
            "range": "[0, inf)",
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "max tokens of query + document [default: 256 from a cross-encoder, 128 from a bi-encoder]",
            "range": "[1, inf)",
        },
    )
    eval_steps: int = field(
        default=50, metadata={"help": "validate every N steps", "range": "[1, inf)"}
    )
    patience: int = field(
        default=3,
        metadata={"help": "early stopping: evaluations without improvement", "range": "[1, inf)"},
    )
    loss: Literal["auto", "bce", "graded-bce", "listnet"] = field(
        default="auto",
        metadata={
            "help": "auto: listnet from a bi-encoder; else bce (binary) or graded-bce (grades)"
        },
    )
    head: Literal["auto", "classifier", "mean-pool"] = field(
        default="auto",
        metadata={
            "help": "score head; auto: mean-pool from a bi-encoder, the model's classifier otherwise"
        },
    )
    list_positives: int = field(
        default=4,
        metadata={"help": "listnet: positives per query's list (sampled)", "range": "[1, inf)"},
    )
    list_batch: int = field(
        default=4, metadata={"help": "listnet: queries per batch", "range": "[1, inf)"}
    )
    fuse: bool | None = field(
        default=None,
        metadata={
            "help": "fuse with BM25 and the miner bi-encoder by weights fitted on validation [default: on from a bi-encoder]"
        },
    )
    allow_worse: bool = field(
        default=False, metadata={"help": "keep a tuned teacher that does not beat its start"}
    )
    max_steps: int | None = field(
        default=None,
        metadata={
            "help": "stop after this many optimizer steps (overrides epochs)",
            "range": "[1, inf)",
        },
    )
    time_budget: float | None = field(
        default=None,
        metadata={
            "help": "minutes of training per member at most; the best checkpoint so far is kept",
            "range": "(0, inf)",
        },
    )
    val_max_queries: int = field(
        default=300,
        metadata={"help": "validation queries at most (a sample)", "range": "[1, inf)"},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "let the model run its own code"}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "corpus embedding cache"})

    def validate(self) -> None:
        if self.split == "test":
            raise InputError(
                "the test split is for final figures only; teach on train (validation is split off it)",
                field="split",
            )
        if self.skip_top >= self.mine_depth:
            raise InputError(f"must be below mine_depth ({self.mine_depth})", field="skip_top")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise InputError("member names must be unique", field="members")


@dataclass
class TeachData:
    """Everything a member is trained and validated on (text joined from ids)."""

    queries: dict[str, str]
    documents: dict[str, str]
    qrels: dict[str, dict[str, int]]
    train_rows: list[tuple[str, str, float]]  # (qid, did, target in [0, 1])
    val_candidates: dict[str, list[str]]  # the first stage's top-k, no positive injected
    negative_pools: dict[str, list[str]]  # per training query: unlabeled first-stage ranks
    graded: bool
    figures: dict[str, Any]
    corpus_texts: list[str]  # every document, for first-stage members (BM25 statistics)
    warmup: list[tuple[str, list[str]]] = field(
        default_factory=list
    )  # (title, [abstract, negatives])


def _first_stage(config: TeachConfig, corpus, queries) -> dict[str, dict[str, float]]:
    from distill.retrieval import first_stage

    depth = max(config.mine_depth, config.val_candidates)
    return first_stage(
        corpus,
        queries,
        config.negatives_from,
        depth,
        model=config.miner,
        cache_dir=config.cache_dir,
    )


def prepare(config: TeachConfig, echo=click.echo) -> TeachData:
    """Split by query, mine negatives for training queries, build validation candidate lists."""
    from distill.metrics import trec_order

    labeled = data.load_labeled(config.data, config.split)
    queries, corpus, qrels = labeled.queries, labeled.corpus, labeled.qrels
    grades = [g for docs in qrels.values() for g in docs.values()]
    graded = config.loss == "graded-bce" or (config.loss == "auto" and not data.is_binary(grades))
    top = max(grades) if graded else 1
    # validation is capped so that evaluating stays a small share of training time
    fraction = min(config.val_fraction, config.val_max_queries / max(1, len(queries)))
    parts = split_queries(queries, fraction, config.seed)
    first = _first_stage(config, corpus, queries)
    rng = random.Random(config.seed)
    rows: list[tuple[str, str, float]] = []
    pools: dict[str, list[str]] = {}  # unlabeled first-stage ranks a list samples negatives from
    mined = 0
    for qid in sorted(parts.train):
        labeled = qrels[qid]
        rows += [(qid, d, min(g / top, 1.0)) for d, g in labeled.items()]
        if any(g == 0 for g in labeled.values()):
            continue  # the data brings its own negatives
        ranked = trec_order(first.get(qid, {}))[config.skip_top : config.mine_depth]
        pools[qid] = [d for d in ranked if d not in labeled]
        for d in rng.sample(pools[qid], min(config.negatives, len(pools[qid]))):
            rows.append((qid, d, 0.0))
            mined += 1
    rng.shuffle(rows)
    # Honest validation, the protocol of use: rerank the first stage's top-k as it is. Gold
    # positives are never injected: on data whose positives the first stage mostly misses,
    # injected positives reward "unlike a first-stage hit", which is garbage when every
    # candidate is a first-stage hit (as in `evaluate` and in real use).
    val = {q: trec_order(first.get(q, {}))[: config.val_candidates] for q in sorted(parts.val)}
    found = sum(sum(1 for x in val[q] if qrels[q].get(x, 0) > 0) for q in val) / max(
        1, sum(sum(1 for g in qrels[q].values() if g > 0) for q in val)
    )
    used = {d for _, d, _ in rows} | {d for ds in val.values() for d in ds}
    used |= {d for ds in pools.values() for d in ds}
    warmup = _warmup_lists(config, corpus, {d for docs in qrels.values() for d in docs}, rng)
    figures = {
        "train_queries": len(parts.train),
        "val_queries": len(parts.val),
        "train_pairs": len(rows),
        "mined_negatives": mined,
        "val_pairs": sum(map(len, val.values())),
        "val_positives_in_candidates": round(found, 4),
        "labels": "graded" if graded else "binary",
        "warmup_lists": len(warmup),
    }
    echo(
        f"teaching on {figures['train_queries']} queries ({figures['train_pairs']} pairs, {mined} mined negatives), "
        f"validating on {figures['val_queries']} queries by reranking the first stage's top "
        f"{config.val_candidates} ({figures['val_pairs']} candidates, {found:.0%} of their positives)"
    )
    return TeachData(
        queries,
        {d: corpus[d].full_text for d in used},
        qrels,
        rows,
        val,
        pools,
        graded,
        figures,
        [doc.full_text for doc in corpus.values()],
        warmup,
    )


def _warmup_lists(config: TeachConfig, corpus, skip: set[str], rng: random.Random):
    """Weak in-domain lists the corpus gives for free: a document's title as the query, its
    body as the positive, ``negatives`` of the title's first-stage ranks 2..mine_depth as
    negatives. Documents that are labeled anywhere in the qrels are not used (no leakage of
    validation positives into training)."""
    from distill.metrics import trec_order
    from distill.models import model_kind

    if config.warmup_pairs is not None:
        n = config.warmup_pairs
    else:  # the default warm-up is for fresh heads: skip the retrieval when no start needs it
        starts = [m.model for m in config.members if m.train] or [config.model]
        n = 400 if any(model_kind(s) != "cross" for s in starts) else 0
    titled = sorted(d for d, doc in corpus.items() if doc.title and doc.text and d not in skip)
    if n <= 0 or not titled:
        return []
    chosen = rng.sample(titled, min(n, len(titled)))
    titles = {f"title:{d}": corpus[d].title for d in chosen}
    first = _first_stage(config, corpus, titles)
    lists = []
    for d in chosen:
        ranked = [
            x for x in trec_order(first.get(f"title:{d}", {}))[1 : config.mine_depth] if x != d
        ]
        negatives = rng.sample(ranked, min(config.negatives, len(ranked)))
        if negatives:
            lists.append((corpus[d].title, [corpus[d].text] + [corpus[x].text for x in negatives]))
    return lists


@dataclass
class Recipe:
    """How a member is trained, resolved from the config and the kind of its start."""

    head: str
    loss: str
    lr: float
    max_length: int
    epochs: float
    warmup: bool


def recipe(
    config: TeachConfig, start_kind: str, graded: bool, *, lr=None, max_length=None, epochs=None
) -> Recipe:
    """The guide's recipe for a trained cross-encoder; for a bi-encoder start (no trained
    classification head) a mean-pooled score head, a listwise loss, a higher learning rate and
    shorter inputs: the combination that learns (see the README's teacher section)."""
    from_bi = start_kind != "cross"
    head = config.head if config.head != "auto" else ("mean-pool" if from_bi else "classifier")
    loss = (
        config.loss
        if config.loss != "auto"
        else ("listnet" if from_bi else ("graded-bce" if graded else "bce"))
    )
    lr = (
        lr
        if lr is not None
        else config.lr
        if config.lr is not None
        else (2e-4 if from_bi else 3e-5)
    )
    max_length = max_length or config.max_length or (128 if from_bi else 256)
    epochs = epochs or config.epochs or (2.0 if from_bi else 1.0)
    warmup = (
        config.warmup_pairs > 0 if config.warmup_pairs is not None else from_bi
    ) and loss == "listnet"
    return Recipe(head, loss, lr, max_length, epochs, warmup)


def build_mean_pool(start: str, max_length: int, seed: int):
    """A CrossEncoder scoring the mean of the start's token embeddings with a linear head.

    The bi-encoder's own training shaped its mean-pooled embeddings; its [CLS] token and the
    classifier a plain ``CrossEncoder(start)`` adds were never trained.
    """
    import torch
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from distill.models import resolve_model

    torch.manual_seed(seed)
    transformer = Transformer(
        resolve_model(start), transformer_task="feature-extraction", max_seq_length=max_length
    )
    dim = transformer.get_embedding_dimension()
    head = Dense(
        dim,
        1,
        activation_function=torch.nn.Identity(),
        module_input_name="sentence_embedding",
        module_output_name="scores",
    )
    return CrossEncoder(modules=[transformer, Pooling(dim, pooling_mode="mean"), head])


def listnet_lists(d: TeachData, config: TeachConfig) -> list[tuple[str, list[str], list[float]]]:
    """One ListNet list per training query: ``(qid, [dids], [targets])``.

    A list carries up to ``list_positives`` of the query's positives (sampled) and
    ``negatives`` negatives sampled for this list from the query's pool of unlabeled
    first-stage ranks, so the cost grows with the number of queries, not of positives, and
    a query with 40 positives no longer repeats one fixed set of negatives 40 times.
    ListNet's target spreads over every positive of the list (graded by their targets).
    """
    rng = random.Random(config.seed)
    by_query: dict[str, list[tuple[str, float]]] = {}
    for q, doc, y in d.train_rows:
        by_query.setdefault(q, []).append((doc, y))
    lists = []
    for q in sorted(by_query):
        positives = sorted((doc, y) for doc, y in by_query[q] if y > 0)
        pool = d.negative_pools.get(q) or [doc for doc, y in by_query[q] if y == 0]
        if not positives or not pool:
            continue
        chosen = rng.sample(positives, min(config.list_positives, len(positives)))
        negatives = rng.sample(pool, min(config.negatives, len(pool)))
        lists.append(
            (
                q,
                [doc for doc, _ in chosen] + negatives,
                [float(y) for _, y in chosen] + [0.0] * len(negatives),
            )
        )
    rng.shuffle(lists)
    return lists


def _training_set(d: TeachData, r: Recipe, config: TeachConfig, model):
    """(dataset, loss, loss description, per-device batch size) for the recipe."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, ListNetLoss

    if r.loss == "listnet":
        lists = listnet_lists(d, config)
        dataset = Dataset.from_dict(
            {
                "query": [d.queries[q] for q, _, _ in lists],
                "docs": [[d.documents[x] for x in docs] for _, docs, _ in lists],
                "labels": [labels for _, _, labels in lists],
            }
        )
        return (
            dataset,
            ListNetLoss(model),
            f"ListNet (one list per query: up to {config.list_positives} positives and "
            f"{config.negatives} negatives sampled for that list)",
            config.list_batch,
        )
    dataset = Dataset.from_dict(
        {
            "query": [d.queries[q] for q, _, _ in d.train_rows],
            "document": [d.documents[doc] for _, doc, _ in d.train_rows],
            "label": [float(y) for _, _, y in d.train_rows],
        }
    )
    if r.loss == "graded-bce":
        return dataset, BinaryCrossEntropyLoss(model), "BCE on grade/4", config.batch_size
    pos = sum(1 for _, _, y in d.train_rows if y > 0)
    weight = (len(d.train_rows) - pos) / max(pos, 1)
    return (
        dataset,
        BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(weight)),
        f"BCE, pos_weight {weight:.2f}",
        config.batch_size,
    )


def _print_plan(name: str, trainer, model, evaluator, batch_size: int, echo) -> None:
    """Steps, validations and a time estimate, from timing the model on 32 validation pairs
    (a training step costs about 3 forward passes of its texts: forward, backward, update)."""
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
    seconds = steps * batch_size * texts * per_pair * 3
    evals = steps // args.eval_steps + 1
    seconds += evals * len(evaluator.pairs) * per_pair
    echo(
        f"plan for {name}: {len(trainer.train_dataset):,} training examples, {steps:,} steps "
        f"({batch_size} x {texts} texts each), {evals} validations of {len(evaluator.pairs):,} "
        f"pairs; about {seconds / 60:.0f} min on this machine (probe: {per_pair * 1000:.0f} ms "
        "per pair forward)"
    )


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
        model=model, args=args, train_dataset=dataset, loss=ListNetLoss(model)
    )
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
    if r.head == "mean-pool":
        model = build_mean_pool(start, r.max_length, config.seed)
    else:
        model = load_cross_encoder(
            start, num_labels=1, max_length=r.max_length, trust_remote_code=config.trust_remote_code
        )
    return kind, r, model


def _fit_member(
    name: str, model, evaluator, d: TeachData, r: Recipe, config: TeachConfig, out: Path, echo
) -> dict[str, Any]:
    """Fit: train the model on the labeled data, keeping the best checkpoint; its figures."""
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
                None if config.time_budget is None else 60 * config.time_budget,
            ),
        ],
    )
    _print_plan(name, trainer, model, evaluator, batch_size, echo)
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
    reliability_plot(evaluator.last_scores, labels, cal, out / "reliability.png")
    _append_card(out, name, config, d, figures)


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
    echo=click.echo,
) -> dict[str, Any]:
    """Train (or just load) one cross-encoder; save it, calibrated, into ``out``."""
    from teachers.evaluator import RerankEvaluator

    kind, r, model = _build_member(
        start, d, config, max_length=max_length, lr=lr, epochs=epochs, echo=echo
    )
    evaluator = RerankEvaluator(d.queries, d.documents, d.val_candidates, d.qrels, batch_size=32)
    before = {k.removeprefix("val_"): v for k, v in evaluator(model).items()}
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
        figures.update(_fit_member(name, model, evaluator, d, r, config, out, echo))
    after = {k.removeprefix("val_"): v for k, v in evaluator(model).items()}
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


def _fit_weights(scores: dict[str, np.ndarray], evaluator, step: float = 0.1) -> dict[str, float]:
    """Weights on the simplex (grid of ``step``) maximising validation NDCG@10."""
    names = list(scores)
    ticks = round(1 / step)
    best, best_w = -1.0, None
    for combo in itertools.product(range(ticks + 1), repeat=len(names)):
        if sum(combo) != ticks:
            continue
        w = [c / ticks for c in combo]
        value = evaluator.evaluate_scores(
            sum(wi * scores[n] for wi, n in zip(w, names, strict=True))
        )["ndcg@10"]
        if value > best + 1e-9:
            best, best_w = value, w
    return dict(zip(names, best_w, strict=True))


def _first_stage_member(
    kind: str, d: TeachData, config: TeachConfig, target: Path, evaluator, echo
) -> dict[str, Any]:
    """BM25 or the miner bi-encoder as a calibrated ensemble member, validated like the others."""
    from teachers.members import BiEncoderScorer, BM25Scorer

    scorer = BM25Scorer.fit(d.corpus_texts) if kind == "bm25" else BiEncoderScorer(config.miner)
    scores = np.asarray(scorer.score(evaluator.pairs, 64), dtype=np.float64)
    result = evaluator.evaluate_scores(scores)
    scorer.calibration = fit_platt(scores, evaluator.labels())
    target.mkdir(parents=True, exist_ok=True)
    scorer.save(target)
    echo(
        f"{kind}: validation NDCG@10 {result['ndcg@10']:.4f}, MRR@10 {result['mrr@10']:.4f} (first-stage member)"
    )
    cal = scorer.calibration
    return {
        "start": config.miner if kind == "bi-encoder" else "bm25",
        "after": result,
        "val_scores": scores,
        "calibration": {
            "temperature": round(cal.temperature, 4),
            "bias": round(cal.bias, 4),
            "ece_after": round(cal.ece_after, 4),
        },
    }


def _fuse(
    results: dict[str, dict[str, Any]], tmp: Path, config: TeachConfig, evaluator, echo
) -> dict[str, Any]:
    """Combine the members' calibrated logits on one scale and save ``ensemble.json``.

    Each member's logits are divided by their spread on validation before weights are
    fitted, so a weight means the same for every member (raw logits of different scales let
    a 0.10 weight decide the whole ranking). The stored weights include that division. The
    grid holds every member alone, so the fused teacher is never below its best member on
    validation.
    """
    from teachers.calibration import Calibration

    logits = {
        n: Calibration.load(tmp / "members" / n).logit(r["val_scores"]) for n, r in results.items()
    }
    spread = {n: float(np.std(v)) or 1.0 for n, v in logits.items()}
    if config.combine == "mean":
        weights = {n: 1 / len(logits) for n in logits}
    else:
        weights = _fit_weights({n: v / spread[n] for n, v in logits.items()}, evaluator)
    stored = {n: weights[n] / spread[n] for n in logits}
    combined = sum(stored[n] * logits[n] for n in logits)
    ens = evaluator.evaluate_scores(combined)
    cal = fit_platt(combined, evaluator.labels())
    save_ensemble(
        tmp,
        [(n, f"members/{n}", stored[n]) for n in logits],
        cal,
        {"combine": config.combine, "validation": ens, "weights_on_unit_spread": weights},
    )
    reliability_plot(combined, evaluator.labels(), cal, tmp / "reliability.png")
    echo(
        f"ensemble ({config.combine}; weights on unit-spread scores "
        f"{', '.join(f'{n} {w:.2f}' for n, w in weights.items())}): "
        f"validation NDCG@10 {ens['ndcg@10']:.4f}, MRR@10 {ens['mrr@10']:.4f}"
    )
    return {
        "weights": weights,
        "stored_weights": stored,
        "validation": ens,
        "ece_after": round(cal.ece_after, 4),
    }


def _first_stage_order(evaluator) -> dict[str, float]:
    """Validation figures of the candidates in the first stage's own order (no teacher)."""
    rank: dict[str, int] = {}
    scores = []
    for q, _ in evaluator.owners:
        rank[q] = rank.get(q, 0) + 1
        scores.append(-rank[q])
    return evaluator.evaluate_scores(np.asarray(scores, dtype=np.float64))


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
    first = _first_stage_order(evaluator)
    echo(f"first stage alone ({config.negatives_from}): validation NDCG@10 {first['ndcg@10']:.4f}")
    results: dict[str, dict[str, Any]] = {}
    figures: dict[str, Any] = {"data": d.figures, "first_stage": first}
    with artifacts.atomic_path(out, stage="teach", overwrite=config.overwrite) as tmp:
        tmp.mkdir(parents=True)
        for m in members:
            target = tmp if single else tmp / "members" / m.name
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
                echo=echo,
            )
        baselines = {f"first stage ({config.negatives_from})": first["ndcg@10"]}
        baselines.update(
            {f"{n}'s start": r["before"]["ndcg@10"] for n, r in results.items() if r.get("loss")}
        )
        if fuse:
            for kind in ("bm25", "bi-encoder"):
                results[kind] = _first_stage_member(
                    kind, d, config, tmp / "members" / kind, evaluator, echo
                )
                baselines[kind] = results[kind]["after"]["ndcg@10"]
        if single:
            teacher = results[members[0].name]["after"]["ndcg@10"]
        else:
            figures["ensemble"] = _fuse(results, tmp, config, evaluator, echo)
            teacher = figures["ensemble"]["validation"]["ndcg@10"]
        guard(teacher, baselines, config.allow_worse, echo)
        for r in results.values():
            r.pop("val_scores", None)
        figures["members"] = results
        figures["baselines"] = baselines
    inputs = {"data": data.load_labeled(config.data, config.split).source}
    artifacts.write_manifest(
        out, stage="teach", config=asdict(config), inputs=inputs, figures=figures, started=started
    )
    echo(f"wrote {out} in {time.time() - started:.0f}s")
    return out
