"""``distill label``: teacher soft labels for (query, candidate) pairs, sharded and resumable.

Output folder:

* ``shard-NNNNN.parquet``: one row per distinct (query, candidate) pair, in a fixed order
  (queries sorted, then candidates by first-stage rank, then gold positives not mined):

  ============  ========  ===============================================================
  column        type      meaning
  ============  ========  ===============================================================
  qid           string    query id
  did           string    document id
  score         float32   the teacher's raw score: a cross-encoder's logit (NOT a
                          probability), or an ensemble's weighted calibrated logit
  score_<name>  float32   each ensemble member's raw logit (ensembles only; a member whose
                          fitted weight is 0 is not scored, it cannot change ``score``)
  prob          float32   calibrated probability, ``teacher.probability(score)``
  gold          int16     the qrels grade, or -1 where the pair has no label
  ============  ========  ===============================================================

* ``progress.json``: the job key and, per finished shard, its row count and sha256. A shard
  is written to a temporary name and renamed, then recorded; a run killed at any moment and
  restarted with the same command skips exactly the recorded shards whose checksum still
  matches and recomputes the rest, so the result has the same rows as an uninterrupted run.
* ``manifest.json`` when every shard is done.

The job key fingerprints the teacher, the candidates, the queries, the pair list itself and the
scoring settings: when any of them changes, old shards are discarded instead of mixed in, and
a restart whose pairs are the same keeps them, whichever version of distill wrote them. With several
processes (``accelerate launch -m distill.cli label ...``) process r takes shards r, r+n, ...;
each shard's rows do not depend on who computed it.

Writing a shard and reading ``progress.json`` back: :mod:`distill.label_shards`; the plan
(shards done and owned, the time estimate, the time budget, a current run):
:mod:`distill.label_plan`; the check of the teacher against the first stage:
:mod:`distill.label_guard`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import click

from distill import artifacts, data
from distill.candidates import read_candidates
from distill.errors import InputError
from distill.label_guard import teacher_vs_first_stage
from distill.label_plan import (
    Plan,
    budget_note,
    is_current,
    pair_list,
    plan_shards,
)
from distill.label_shards import label_shard
from distill.labels_io import PROGRESS, read_labels
from distill.progress import progress as progress_bar
from distill.querysets import load_query_set
from teachers.members import use_cached_corpus
from teachers.precision import apply_precision, first_stage_rates, pairs_per_second, spearman
from teachers.scoring import window_line, window_stats


@dataclass
class LabelConfig:
    """Config of ``distill label``."""

    data: str = field(metadata={"help": "BEIR folder or beir:NAME (corpus and queries)"})
    candidates: str = field(
        default="runs/mine/candidates.parquet", metadata={"help": "distill mine output"}
    )
    teacher: str = field(
        default="runs/teacher", metadata={"help": "teacher folder (single or ensemble)"}
    )
    queries: str = field(
        default="train", metadata={"help": "qrels split, 'all', or a queries JSONL file"}
    )
    output: str = field(default="runs/labels", metadata={"help": "output folder"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "write into a non-empty --output folder distill did not make (its other files are kept)"
        },
    )
    include_positives: bool = field(
        default=True, metadata={"help": "add gold positives that mining missed"}
    )
    max_added_positives: int = field(
        default=4,
        metadata={
            "help": "gold positives added a query at most (a seeded sample of those mining missed): with 40 positives a query, adding all doubled the pairs, and the student samples 4 a query",
            "range": "[0, inf)",
        },
    )
    shard_size: int = field(
        default=10_000, metadata={"help": "pairs per shard", "range": "[1, inf)"}
    )
    batch_size: int = field(
        default=32, metadata={"help": "scoring batch size", "range": "[1, inf)"}
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "teacher max_length [default: the teacher's]", "range": "[1, inf)"},
    )
    windows: Literal["teacher", "first", "max", "softmax"] = field(
        default="teacher",
        metadata={
            "help": "documents longer than the teacher's max_length: as the teacher folder says (windows.json; else truncated), first (truncate), or windows pooled by max / softmax"
        },
    )
    precision: Literal["exact", "torch", "int8", "onnx", "onnx-int8", "bf16"] = field(
        default="exact",
        metadata={
            "help": "exact (fp32; on CPU via onnxruntime when it matches torch to 1e-4, else torch); "
            "torch (fp32 CrossEncoder.predict); int8 (torch dynamic int8, CPU); onnx (onnxruntime fp32); "
            "onnx-int8 (onnxruntime, per-channel int8, CPU); bf16 (GPU)"
        },
    )
    allow_worse: bool = field(
        default=False,
        metadata={"help": "keep labels from a teacher that ranks worse than the first stage"},
    )
    time_budget: float | None = field(
        default=12.0,
        metadata={
            "help": "minutes of scoring at most: shards stop being started once it is spent; the queries come in a seeded random order, so what is labelled is a random sample of them, and a run with a larger budget labels the rest (null in a config: no limit)",
            "range": "(0, inf)",
        },
    )
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "corpus embeddings that mine or teach cached [default: distill's cache]: an "
            "ensemble's bi-encoder member reads its documents' vectors there instead of "
            "encoding each shard's documents (nothing is encoded into it here)"
        },
    )
    fidelity_sample: int = field(
        default=300,
        metadata={
            "help": "pairs scored both ways to report a faster mode's Spearman",
            "range": "[0, inf)",
        },
    )


def read_ranked(path: str | Path) -> dict[str, list[str]]:
    """{qid: [did by rank]} from a candidates.parquet (kept for benchmarks/label_speed.py)."""
    return read_candidates(path).ranked


def job_key(
    config: LabelConfig, teacher_path: str, queries_fp: str, pairs: list[tuple[str, str]]
) -> str:
    """Fingerprint of everything the rows depend on (not of output-only settings). The pair
    list itself is part of it: shards hold pairs by position, so a list that changed in order or
    content (other candidates, qrels, or a new rule for added positives) must not reuse them,
    and one that did not change keeps them, whatever code wrote it."""
    digest = hashlib.sha256()
    teacher = Path(teacher_path)
    digest.update((artifacts.fingerprint(teacher) if teacher.exists() else teacher_path).encode())
    digest.update(artifacts.fingerprint(Path(config.candidates)).encode())
    digest.update(queries_fp.encode())
    for pair in pairs:  # pair by pair: one string of millions of pairs would take gigabytes
        digest.update(json.dumps(pair).encode())
    settings = {k: getattr(config, k) for k in ("shard_size", "max_length", "precision")}
    if config.windows != "teacher":  # the teacher folder's own setting is in its fingerprint
        settings["windows"] = config.windows
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


@dataclass
class _Inputs:
    """What labelling reads: queries, qrels, candidates, the pair list and the teacher."""

    queries: dict[str, str]
    qrels: dict | None
    query_files: list[Path]
    ranked: dict[str, list[str]]
    corpus: dict
    pairs: list[tuple[str, str]]
    teacher_path: str


def _read_inputs(config: LabelConfig, dataset) -> _Inputs:
    """Read the queries and candidates, check them against the corpus, list the pairs."""
    from distill.models import resolve_model
    from teachers.scoring import check_teacher

    queries, qrels, query_files = load_query_set(dataset, config.queries)
    ranked = read_candidates(config.candidates).ranked
    unknown = sorted(set(ranked) - set(queries))
    if unknown:
        raise InputError(
            f"candidates name query {unknown[0]!r}, which is not in --queries {config.queries!r}",
            path=config.candidates,
        )
    corpus = dataset.corpus
    stray = next(((q, d) for q, docs in ranked.items() for d in docs if d not in corpus), None)
    if stray:
        raise InputError(
            f"candidates name document {stray[1]!r} (query {stray[0]!r}), which is not in the "
            f"corpus of {config.data} (mined from another dataset?)",
            path=config.candidates,
            field="did",
        )
    pairs = pair_list(ranked, qrels, config.include_positives, config.max_added_positives)
    teacher_path = resolve_model(config.teacher)
    check_teacher(config.teacher)
    return _Inputs(queries, qrels, query_files, ranked, corpus, pairs, teacher_path)


def _prepare_teacher(config: LabelConfig, state, inputs: _Inputs, plan: Plan, echo):
    """Load the teacher at --precision (checking fidelity on the main process); its figures."""
    from teachers.scoring import load_teacher, pooling_of, windows_per_pair
    from teachers.windows import Windows

    queries, corpus, pairs = inputs.queries, inputs.corpus, inputs.pairs
    windows = None if config.windows == "teacher" else Windows(config.windows)
    teacher = load_teacher(config.teacher, max_length=config.max_length, windows=windows)
    # the pairs exact mode checks onnxruntime on, and times it against torch with
    check = [(queries[q], corpus[d].full_text) for q, d in pairs[:64]] if plan.owned_shards else []
    backends = apply_precision(teacher, config.precision, check, echo)
    reused = use_cached_corpus(teacher, corpus, config.cache_dir or data.cache_dir() / "embeddings")
    backends += first_stage_rates(teacher, check, skip_zero=True)
    figures: dict = {
        "pairs": len(pairs),
        "shards": plan.n_shards,
        "queries": len(inputs.ranked),
        "precision": config.precision,
        "backends": backends,
        "cached_document_vectors": reused,
        "score_kind": teacher.score_kind,  # what `score` is: a logit, fused calibrated logits, ...
        "job_key": plan.key,
        "windows_pooling": pooling_of(teacher),
        # pairs/s is timed on whole pairs; a windowed teacher scores more than one for a long one
        "windows_per_pair": windows_per_pair(
            teacher, [(queries[q], corpus[d].full_text) for q, d in pairs[:2000]]
        ),
    }
    if (
        config.precision not in ("exact", "torch")
        and state.is_main_process
        and config.fidelity_sample > 0
    ):
        exact = load_teacher(config.teacher, max_length=config.max_length, windows=windows)
        sample = [(queries[q], corpus[d].full_text) for q, d in pairs[: config.fidelity_sample]]
        rho = spearman(
            exact.score(sample, config.batch_size), teacher.score(sample, config.batch_size)
        )
        figures["fidelity_spearman"] = round(rho, 4)
        echo(
            f"{config.precision} fidelity: Spearman {rho:.4f} against exact fp32 on {len(sample)} pairs"
            + ("" if rho >= 0.99 else " (below 0.99: consider --precision exact)")
        )
    return teacher, figures


def _label_owned(config: LabelConfig, state, teacher, inputs: _Inputs, plan: Plan, rate, echo):
    """Label this process's shards, recording each one in the progress file as it is done,
    until the time budget is spent."""
    pairs, out, progress = inputs.pairs, plan.out, plan.progress
    names = [m.name for m in teacher.members if m.weight != 0]
    todo = sum(
        min(config.shard_size, len(pairs) - i * config.shard_size) for i in plan.owned_shards
    )
    echo(
        f"plan: {len(pairs):,} pairs of {len(inputs.ranked):,} queries in {plan.n_shards} shards; "
        f"{len(plan.done)} done before, {todo:,} pairs to score here"
        + budget_note(config, todo, rate),
        err=True,
    )
    # the ETA is for every pair: say where the budget will stop it
    desc = "labelling" + (
        "" if config.time_budget is None else f" (stops at {config.time_budget:g} min)"
    )
    bar = progress_bar(todo, desc, "pairs", disable=not plan.owned_shards)
    clock = last = time.time()
    for n, index in enumerate(plan.owned_shards):
        # a shard is whole or not at all: none is started that would end past the budget,
        # judging by the last one's time
        ends = time.time() - clock + (time.time() - last if n else 0)
        if n and config.time_budget is not None and ends > 60 * config.time_budget:
            echo(
                f"time budget of {config.time_budget:g} min: {len(plan.owned_shards) - n} "
                "shards left unlabelled (a run with a larger --time-budget labels them)",
                err=True,
            )
            break
        last = time.time()
        chunk = pairs[index * config.shard_size : (index + 1) * config.shard_size]
        file = f"shard-{index:05d}.parquet"
        before = window_stats(teacher)
        label_shard(
            teacher,
            names,
            chunk,
            inputs.queries,
            inputs.corpus,
            inputs.qrels,
            config.batch_size,
            out / file,
        )
        progress["shards"][str(index)] = {
            "file": file,
            "rows": len(chunk),
            "sha256": artifacts.fingerprint(out / file),
            "windows": {k: v - before[k] for k, v in window_stats(teacher).items()},
        }
        if state.num_processes == 1:
            artifacts.write_json(out / PROGRESS, progress)
        else:
            artifacts.write_json(out / f".progress-{state.process_index}.json", progress)
        bar.update(len(chunk))
    bar.close()


def _finish(
    config: LabelConfig, state, dataset, inputs: _Inputs, plan: Plan, figures: dict, started, echo
) -> None:
    """Finish (main process): merge the progress files, validate, write the manifest."""
    out, progress = plan.out, plan.progress
    if state.num_processes > 1:
        for part in out.glob(".progress-*.json"):
            progress["shards"].update(json.loads(part.read_text())["shards"])
            part.unlink()
        artifacts.write_json(out / PROGRESS, progress)
    shards = [
        progress["shards"][str(i)] for i in range(plan.n_shards) if str(i) in progress["shards"]
    ]
    figures["shards_labelled"] = len(shards)
    figures["pairs_labelled"] = sum(s["rows"] for s in shards)
    if inputs.qrels:
        figures["validation"] = teacher_vs_first_stage(
            read_labels(out), inputs.ranked, inputs.qrels, config.allow_worse, echo
        )
    windows = {"pooling": figures.pop("windows_pooling", "first")}
    for key in ("pairs", "long_pairs", "windows"):  # shards of earlier runs may not say
        windows[key] = sum((s.get("windows") or {}).get(key, 0) for s in shards)
    figures["windows"] = windows
    if windows["pairs"]:
        echo(window_line(windows, windows["pooling"]), err=True)
    figures["checksums"] = {s["file"]: s["sha256"] for s in shards}
    figures["seconds_this_run"] = round(time.time() - started, 1)
    sources = {"candidates": Path(config.candidates), "corpus": dataset.corpus_path}
    if Path(inputs.teacher_path).exists():
        sources["teacher"] = Path(inputs.teacher_path)
    artifacts.write_manifest(
        out,
        stage="label",
        config=asdict(config),
        inputs=sources,
        figures=figures,
        started=started,
    )
    of = "" if len(shards) == plan.n_shards else f" of {len(inputs.pairs):,} (time budget)"
    echo(
        f"labelled {figures['pairs_labelled']:,} pairs{of} in {len(shards)} shards "
        f"({len(plan.done)} already done) in {time.time() - started:.1f}s; wrote {out}"
    )


def run(config: LabelConfig, echo=click.echo) -> Path:
    from accelerate import PartialState

    from distill.env import several_cpu_processes

    started = time.time()
    state = PartialState(cpu=several_cpu_processes())
    dataset = data.open_dataset(config.data)
    inputs = _read_inputs(config, dataset)
    key = job_key(
        config,
        inputs.teacher_path,
        ",".join(artifacts.fingerprint(f) for f in inputs.query_files),
        inputs.pairs,
    )
    out = artifacts.claim_output(
        config.output,
        stage="label",
        inputs=[dataset.root, config.candidates, inputs.teacher_path, *inputs.query_files],
        overwrite=config.overwrite,
    )
    artifacts.mark_output(out, "label")
    plan = plan_shards(config, state, out, key, len(inputs.pairs), echo)
    if is_current(out, config, plan, key):
        echo(
            f"labels in {out} are current ({len(plan.done):,} of {plan.n_shards} shards); nothing to do"
        )
        return out  # its manifest is left as the run that made the rows wrote it
    teacher, figures = _prepare_teacher(config, state, inputs, plan, echo)
    rate = pairs_per_second(figures["backends"], figures.pop("windows_per_pair"))
    _label_owned(config, state, teacher, inputs, plan, rate, echo)
    state.wait_for_everyone()
    if state.is_main_process:
        _finish(config, state, dataset, inputs, plan, figures, started, echo)
    return out
