"""The config of ``distill evaluate`` (:class:`EvaluateConfig`): which systems, on which split,
measured how; kept beside the stage so that the stage module reads as its phases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from distill import metrics
from distill.errors import InputError

SYSTEMS = ("bm25", "base", "student", "supervised", "teacher", "cascade")


@dataclass
class EvaluateConfig:
    """Config of ``distill evaluate``."""

    data: str = field(metadata={"help": "BEIR folder or beir:NAME"})
    split: str = field(default="test", metadata={"help": "qrels split to score on"})
    output: str = field(default="runs/evaluate", metadata={"help": "report folder"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "write into a non-empty --output folder distill did not make (its other files are kept)"
        },
    )
    systems: list[str] = field(
        default_factory=list,
        metadata={"help": "comma list; empty = every system whose model is given"},
    )
    base: str = field(default="bundled", metadata={"help": "base bi-encoder"})
    student: str | None = field(default=None, metadata={"help": "distilled bi-encoder"})
    supervised: str | None = field(
        default=None, metadata={"help": "supervised baseline bi-encoder"}
    )
    teacher: str | None = field(default=None, metadata={"help": "cross-encoder teacher"})
    absent: list[str] = field(
        default_factory=list,
        metadata={
            "help": "why a system is missing, a line each (set by `distill pipeline` when a stage was refused)",
            "cli": False,
        },
    )
    first_stage: Literal["bm25", "base", "hybrid"] = field(
        default="base", metadata={"help": "what the teacher reranks"}
    )
    rerank_k: int = field(
        default=100, metadata={"help": "candidates the teacher reranks", "range": "[1, inf)"}
    )
    k: int = field(default=100, metadata={"help": "retrieval depth", "range": "[1, inf)"})
    measures: list[str] = field(
        default_factory=lambda: list(metrics.DEFAULT_MEASURES),
        metadata={"help": "pytrec_eval measures or aliases"},
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "teacher max_length [default: the model's]", "range": "[1, inf)"},
    )
    windows: Literal["teacher", "first", "max", "softmax"] = field(
        default="teacher",
        metadata={
            "help": "documents longer than the teacher's max_length: as the teacher folder says, first (truncate), or windows pooled by max / softmax"
        },
    )
    batch_size: int = field(
        default=32, metadata={"help": "batch size for encoding and scoring", "range": "[1, inf)"}
    )
    cost: bool = field(
        default=True, metadata={"help": "measure speed (latency, throughput, index size)"}
    )
    serving: bool = field(
        default=False,
        metadata={
            "help": "the student's serving table (torch / ONNX fp32 / ONNX int8 encoders; fp32, int8, binary embeddings): NDCG@10, p50 latency, index MB (with --cost); it encodes the corpus twice more (ONNX fp32 and int8), so it is off unless asked for"
        },
    )
    time_budget: float | None = field(
        default=10.0,
        metadata={
            "help": "minutes for the teacher's reranking at most, at the rate measured on this machine: the depth reranked is cut to fit (never under 10), and the report says so (null in a config: no limit)",
            "range": "(0, inf)",
        },
    )
    cost_queries: int = field(
        default=50, metadata={"help": "queries timed for latency", "range": "[1, inf)"}
    )
    judge: str | None = field(
        default=None,
        metadata={"help": "cross-encoder that grades the pooled top-k instead of qrels"},
    )
    judge_depth: int = field(
        default=10, metadata={"help": "pool depth per system for --judge", "range": "[1, inf)"}
    )
    judge_thresholds: list[float] = field(
        default_factory=lambda: [0.5, 0.9],
        metadata={"help": "probabilities for grade 1, 2, ...", "range": "(0, 1)"},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "corpus embedding cache"})
    seed: int = field(
        default=0, metadata={"help": "seed of the randomisation test", "range": "(-inf, inf)"}
    )

    def validate(self) -> None:
        unknown = [s for s in self.systems if s not in SYSTEMS]
        if unknown:
            raise InputError(
                f"unknown system {unknown[0]!r} (known: {', '.join(SYSTEMS)})", field="systems"
            )
        if sorted(self.judge_thresholds) != self.judge_thresholds:
            raise InputError("must be increasing probabilities in (0, 1)", field="judge_thresholds")
        for name in ("k", "rerank_k", "batch_size", "judge_depth"):
            if getattr(self, name) < 1:
                raise InputError(f"must be at least 1, got {getattr(self, name)}", field=name)
        for measure in self.measures:
            try:
                metrics.check_measure(measure)
            except ValueError as exc:
                raise InputError(str(exc), field="measures") from None

    @property
    def primary(self) -> str:
        return "ndcg@10"

    @property
    def scored_measures(self) -> list[str]:
        """``measures``, led by the primary measure when it is not among them (the report's
        significance tests and recovered share are computed on it)."""
        measures = list(self.measures)
        return measures if self.primary in measures else [self.primary, *measures]

    def chosen(self) -> list[str]:
        if self.systems:
            return list(self.systems)
        have = {"student": self.student, "supervised": self.supervised, "teacher": self.teacher}
        out = ["bm25", "base"] + [s for s in ("student", "supervised", "teacher") if have[s]]
        if self.teacher and self.student:
            out.append("cascade")
        return out
