"""The config of ``distill teach``: :class:`TeachConfig`, with one :class:`MemberConfig` per
ensemble member.

It lives apart from the stage (:mod:`teachers.train`) so that the modules the stage is built
from (:mod:`teachers.teach_data`, :mod:`teachers.recipe`, :mod:`teachers.member_training`,
:mod:`teachers.fusion`) can take it without importing the stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from distill.errors import InputError


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
    bi_encoder: str | None = field(
        default=None,
        metadata={
            "help": "the bi-encoder member fused with the cross-encoder and BM25 [default: the miner]; a bi-encoder fine-tuned on this training split (never on its validation queries) makes the ensemble carry what it learnt"
        },
    )
    tune_bi_encoder: bool = field(
        default=False,
        metadata={
            "help": "fine-tune the fused bi-encoder member (MNRL on this training split's positives and mined negatives, best epoch on validation) before fusion; it shares the time budget with the trained members"
        },
    )
    bi_epochs: float = field(
        default=3, metadata={"help": "epochs of the tuned bi-encoder member", "range": "(0, inf)"}
    )
    bi_lr: float = field(
        default=1.2e-4,
        metadata={"help": "learning rate of the tuned bi-encoder member", "range": "(0, inf)"},
    )
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
    attention_dropout: float | None = field(
        default=None,
        metadata={
            "help": "dropout on attention probabilities while a member trains [default: the model's own]; at the bi-encoder start's 128 tokens, 0 saved no time on CPU (SciFact warm-up: 384 s against 387 s), unlike the student's 256",
            "range": "[0, 1)",
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
    windows: Literal["first", "max", "softmax"] = field(
        default="first",
        metadata={
            "help": "documents longer than max_length, at validation, calibration and fusion, and then in label / evaluate (windows.json): first (truncated), or overlapping windows pooled by max or softmax (training reads first windows)"
        },
    )
    train_windows: Literal["first", "best"] = field(
        default="first",
        metadata={
            "help": "what the cross-encoder trains on of a document longer than max_length: its first window (truncated), or its window BM25 ranks best for the query (the one max pooling would read)"
        },
    )
    max_steps: int | None = field(
        default=None,
        metadata={
            "help": "stop after this many optimizer steps (overrides epochs)",
            "range": "[1, inf)",
        },
    )
    time_budget: float | None = field(
        default=20.0,
        metadata={
            "help": "minutes for the whole stage (data preparation, validations and every trained member; members share what is left equally): each member's plan cuts its steps to fit, the clock stops the rest, and the best checkpoint so far is kept (null in a config: no limit)",
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
