"""The table of stages: which modules are stages, the command that runs each, and the
pipeline's stages in running order (with their output folder and the stages they read).

A stage is a module with a config dataclass and ``run(config, echo=click.echo)``. Stages
never import each other: what two stages share (query sets, the candidates and labels
artifacts, first-stage retrieval, teacher loading and precision) lives in the data layer
(:mod:`distill.querysets`, :mod:`distill.candidates`, :mod:`distill.labels_io`,
:mod:`distill.retrieval`, :mod:`teachers.scoring`, :mod:`teachers.precision`).

:mod:`distill.cli` registers one command per stage from this table and
:mod:`distill.pipeline` builds its stage list from it; ``tests/test_stages.py`` checks both
against it and ``tests/test_imports.py`` that no stage imports another. Modules are named by
import path and imported on use, so reading the table imports no stage.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str  # --config file section; for pipeline stages also the pipeline YAML section
    command: str  # CLI command; "data split" is subcommand "split" of the group "data"
    module: str  # holds the config class and run(config, echo=...)
    config: str  # the config dataclass's name in ``module``
    help: str  # the command's help line
    folder: str | None = None  # pipeline stages only: output folder inside the run folder
    reads: tuple[str, ...] = ()  # pipeline stages only: stages whose outputs this one uses

    def config_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.config)

    def run_function(self) -> Callable:
        return importlib.import_module(self.module).run


# A command is registered once, from the first row naming it (``baseline`` is a second
# ``train-student`` run inside the pipeline, not a command of its own).
TABLE: tuple[Stage, ...] = (
    Stage(
        "split",
        "data split",
        "distill.split",
        "SplitConfig",
        "Split DATA by query into train and validation parts (no query on both sides).",
    ),
    Stage(
        "sample",
        "data sample",
        "distill.sample",
        "SampleConfig",
        "Cut a small BEIR sample (queries, their documents, BM25 neighbours, random fill).",
    ),
    Stage(
        "stats",
        "data stats",
        "distill.stats",
        "StatsConfig",
        "Counts, label distribution, token lengths and truncation share of DATA.",
    ),
    Stage(
        "queries",
        "queries",
        "distill.queries",
        "QueriesConfig",
        "Pseudo-queries from the documents (generator, sentence, cloze or title), for unlabeled corpora.",
        folder="queries",  # in a pipeline only when its config has a queries section
    ),
    Stage(
        "audit",
        "audit",
        "teachers.audit",
        "AuditConfig",
        "List training pairs where the calibrated teacher confidently disagrees with the label.",
    ),
    # the pipeline, in running order
    Stage(
        "teach",
        "teach",
        "teachers.train",
        "TeachConfig",
        "Fine-tune, validate and calibrate a cross-encoder teacher (or an ensemble).",
        folder="teacher",
    ),
    Stage(
        "mine",
        "mine",
        "distill.mine",
        "MineConfig",
        "Top-k candidates per query from BM25, dense retrieval (faiss), or both fused.",
        folder="mine",
        reads=("queries",),
    ),
    Stage(
        "label",
        "label",
        "distill.label",
        "LabelConfig",
        "Teacher soft labels for mined (query, candidate) pairs: sharded, resumable.",
        folder="labels",
        reads=("teach", "mine"),
    ),
    Stage(
        "student",
        "train-student",
        "students.train",
        "StudentConfig",
        "Train a bi-encoder on the teacher's soft labels (Accelerate loop; resumable).",
        folder="student",
        reads=("label",),
    ),
    Stage(
        "baseline",
        "train-student",
        "students.train",
        "StudentConfig",
        "The supervised baseline: train-student on gold positives alone (loss mnrl).",
        folder="baseline",
        reads=("label",),
    ),
    Stage(
        "evaluate",
        "evaluate",
        "distill.evaluate",
        "EvaluateConfig",
        "Compare BM25, base, student and teacher on quality and speed; write report.{json,md,html}.",
        folder="report",
        reads=("teach", "student", "baseline"),
    ),
)

PIPELINE: tuple[Stage, ...] = tuple(s for s in TABLE if s.folder is not None)


def commands() -> dict[str, Stage]:
    """{command: the stage it runs}, one entry per command (the first row naming it)."""
    out: dict[str, Stage] = {}
    for stage in TABLE:
        out.setdefault(stage.command, stage)
    return out


def stage_modules() -> tuple[str, ...]:
    """Every module that is a stage, once each."""
    return tuple(dict.fromkeys(s.module for s in TABLE))
