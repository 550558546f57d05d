"""``distill evaluate``: teacher, student, base and BM25 side by side, on quality and cost.

Systems (each optional):

* ``bm25``: bm25s, stemmed;
* ``base``: the base bi-encoder (default: bundled all-MiniLM-L6-v2), exact faiss search;
* ``student``: the distilled bi-encoder;
* ``supervised``: a bi-encoder trained on the qrels alone (the baseline distillation must beat);
* ``teacher``: the cross-encoder reranking the top ``rerank_k`` of ``first_stage``;
* ``cascade``: the student's top ``rerank_k`` reranked by the teacher.

Quality is computed with pytrec_eval (trec_eval semantics, graded qrels), per query; every
system is compared with ``base`` by a paired randomisation test. ``--judge TEACHER`` replaces
the qrels by the teacher's own graded judgments of the pooled top-k (for data without qrels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import click

from distill import artifacts, console, data, metrics, retrieval
from distill.cost import BiEncoderSystem, machine_label, measure_cost
from distill.errors import InputError
from distill.evaluate_config import EvaluateConfig
from distill.models import load_bi_encoder, resolve_model
from distill.querysets import load_query_set
from distill.rerank import judge_qrels, rerank
from distill.serving import serving_table
from teachers.members import use_cached_corpus
from teachers.precision import apply_precision, first_stage_rates, pairs_per_second
from teachers.scoring import (
    check_teacher,
    describe_members,
    load_teacher,
    pooling_of,
    window_line,
    window_stats,
    windows_per_pair,
)
from teachers.windows import Windows


def _bi_encoder(name: str, corpus, config: EvaluateConfig) -> BiEncoderSystem:
    model = load_bi_encoder(name)
    cache = config.cache_dir or str(data.cache_dir() / "embeddings")
    doc_ids, emb = retrieval.encode_corpus(
        model, corpus, model_path=resolve_model(name), batch_size=config.batch_size, cache_dir=cache
    )
    return BiEncoderSystem(model, doc_ids, retrieval.build_index(emb, "flat"), int(emb.nbytes))


def _plan(config: EvaluateConfig, dataset) -> tuple[dict, dict | None, list[str]]:
    """Plan: load the query set, check every system has its model, and claim the output."""
    queries, real_qrels, _ = load_query_set(dataset, config.split)
    if real_qrels is None and not config.judge:
        raise InputError(
            f"{config.split!r} has no qrels: pass --judge TEACHER to have a cross-encoder grade the results",
            field="split",
        )
    systems = config.chosen()
    for name in ("student", "supervised", "teacher"):
        if (name in systems or (name == "student" and "cascade" in systems)) and not getattr(
            config, name
        ):
            raise InputError(f"system {name!r} needs a model: pass --{name} PATH", field=name)
    if "cascade" in systems and not (config.teacher and config.student):
        raise InputError("system 'cascade' needs --student and --teacher", field="systems")
    for teacher_name in (
        config.teacher if "teacher" in systems or "cascade" in systems else None,
        config.judge,
    ):
        if teacher_name:
            check_teacher(teacher_name)  # an empty folder or broken ensemble.json: say so now
    models = [config.teacher, config.student, config.supervised, config.base, config.judge]
    artifacts.claim_output(
        config.output,
        stage="evaluate",
        inputs=[dataset.root, *(m for m in models if m)],
        overwrite=config.overwrite,
    )
    return queries, real_qrels, systems


def _retrieve(
    config: EvaluateConfig, corpus, queries, systems: list[str], echo
) -> tuple[dict[str, retrieval.Ranking], dict[str, BiEncoderSystem]]:
    """Retrieve: run BM25 and each needed bi-encoder over the corpus (first-stage rankings)."""
    wants_teacher = "teacher" in systems or "cascade" in systems
    runs: dict[str, retrieval.Ranking] = {}
    if "bm25" in systems or (wants_teacher and config.first_stage in ("bm25", "hybrid")):
        runs["bm25"] = retrieval.bm25_search(corpus, queries, config.k)
    bi: dict[str, BiEncoderSystem] = {}
    for name, path in (
        ("base", config.base),
        ("student", config.student),
        ("supervised", config.supervised),
    ):
        needed = (
            name in systems
            or (name == "base" and wants_teacher and config.first_stage in ("base", "hybrid"))
            or (name == "student" and "cascade" in systems)
        )
        if needed:
            console.detail(echo, f"encoding the corpus with {name} ({path})")
            bi[name] = _bi_encoder(path, corpus, config)
            runs[name] = retrieval.search_index(
                bi[name].model,
                bi[name].index,
                bi[name].doc_ids,
                queries,
                config.k,
                batch_size=config.batch_size,
            )
    return runs, bi


def _rerank_systems(
    config: EvaluateConfig,
    corpus,
    queries,
    systems: list[str],
    runs: dict[str, retrieval.Ranking],
    echo,
):
    """Rerank: the teacher (and cascade) rerank their candidates; adds to runs and systems."""
    windows = None if config.windows == "teacher" else Windows(config.windows)
    teacher = load_teacher(config.teacher, max_length=config.max_length, windows=windows)
    first = (
        retrieval.rrf([runs["bm25"], runs["base"]], depth=config.k)
        if config.first_stage == "hybrid"
        else runs[config.first_stage]
    )
    check = [
        (queries[q], corpus[d].full_text)
        for q in list(queries)[:8]
        for d in metrics.trec_order(first.get(q, {}))[:12]
    ]
    backends = apply_precision(teacher, "exact", check, echo)  # fp32, onnxruntime where it matches
    cache = config.cache_dir or data.cache_dir() / "embeddings"
    use_cached_corpus(teacher, corpus, cache, skip_zero=False)  # each member is ranked alone too
    backends += first_stage_rates(teacher, check, skip_zero=False)  # every member is reported
    reranked = ("teacher" in systems) + ("cascade" in systems)  # candidate lists per query
    rate = _rerank_rate(teacher, backends, queries, corpus, first, config)
    depth = rerank_depth(config.rerank_k, reranked * len(queries), rate, config.time_budget)
    if depth < config.rerank_k:
        echo(
            f"teacher reranks the top {depth} (cut from {config.rerank_k} to fit the time budget of "
            f"{config.time_budget:g} min: {reranked * len(queries):,} rankings at "
            f"{rate:.0f} pairs/s)",
            err=True,
        )
    if "teacher" in systems:
        console.detail(echo, f"teacher reranking the top {depth} of {config.first_stage}")
        member_runs: dict[str, retrieval.Ranking] = {}
        runs["teacher"] = rerank(
            teacher, queries, corpus, first, depth, config.batch_size, member_runs
        )
        for name, ranking in member_runs.items():  # each ensemble member alone, same candidates
            runs[f"teacher:{name}"] = ranking
        at = systems.index("teacher") + 1
        systems[at:at] = [f"teacher:{name}" for name in member_runs]
    if "cascade" in systems:
        runs["cascade"] = rerank(
            teacher, queries, corpus, runs["student"], depth, config.batch_size
        )
    line = window_line(window_stats(teacher), pooling_of(teacher))
    if line:
        echo(line, err=True)
    return teacher, depth


def _rerank_rate(teacher, backends, queries, corpus, first, config) -> float | None:
    """Pairs/s the teacher reranks at: its members' timed rates, a windowed cross-encoder's
    divided by the windows a pair costs it, counted (tokenizing only) on the candidates of up
    to 32 queries."""
    sample = [
        (queries[q], corpus[d].full_text)
        for q in list(queries)[:32]
        for d in metrics.trec_order(first.get(q, {}))[: config.rerank_k]
    ]
    return pairs_per_second(backends, windows_per_pair(teacher, sample))


MIN_RERANK = 10  # NDCG@10 needs ten candidates: a cut never goes below this


def rerank_depth(k: int, rankings: int, rate: float | None, budget_min: float | None) -> int:
    """How deep the teacher reranks: ``k``, or what fits ``budget_min`` minutes of scoring
    ``rankings`` candidate lists at ``rate`` pairs/s (never under MIN_RERANK, never over k).
    The cost of reranking grows with the test queries, which a user's data sets, not us."""
    if budget_min is None or not rate or rankings <= 0:
        return k
    fits = int(rate * 60 * budget_min / rankings)
    return min(k, max(MIN_RERANK, fits))


@dataclass
class Comparison:
    """What the compare phase found: per-query and mean metrics, tests, judge agreement."""

    per: dict[str, dict[str, dict[str, float]]]
    summary: dict[str, dict[str, float]]
    significance: dict[str, dict[str, float]]
    recovered: float | None
    judged_info: dict | None
    agreement: dict | None
    lead: dict | None = None  # student vs supervised baseline: paired test


def _compare(
    config: EvaluateConfig, queries, corpus, shown: dict[str, retrieval.Ranking], real_qrels
) -> Comparison:
    """Compare: score every shown system (on qrels or judge grades) and test it against base."""
    judged_info = None
    qrels = real_qrels
    if config.judge:
        judge = load_teacher(config.judge)
        qrels, judged_info = judge_qrels(
            judge,
            queries,
            corpus,
            shown,
            config.judge_depth,
            config.judge_thresholds,
            config.batch_size,
        )
    per = {s: metrics.per_query(qrels, run, config.scored_measures) for s, run in shown.items()}
    summary = {s: {m: round(metrics.mean(v), 4) for m, v in p.items()} for s, p in per.items()}
    primary = config.primary
    significance = {}
    if "base" in per:
        for s in per:
            if s != "base":
                significance[s] = metrics.paired(per[s][primary], per["base"][primary], config.seed)
    recovered = None
    if {"student", "teacher", "base"} <= set(summary):
        gain = summary["teacher"][primary] - summary["base"][primary]
        recovered = (
            round((summary["student"][primary] - summary["base"][primary]) / gain, 3)
            if gain > 0
            else None
        )
    agreement = None
    if judged_info is not None and real_qrels is not None:
        real = {
            s: round(metrics.summarize(real_qrels, run, [primary])[primary], 4)
            for s, run in shown.items()
        }
        names = list(shown)
        agreement = {
            "real": real,
            "judged": {s: summary[s][primary] for s in names},
            "kendall_tau": round(
                metrics.kendall_tau([real[s] for s in names], [summary[s][primary] for s in names]),
                3,
            ),
        }
    lead = None
    if {"student", "supervised"} <= set(per):  # the lead distillation must earn
        lead = metrics.paired(per["student"][primary], per["supervised"][primary], config.seed)
    return Comparison(per, summary, significance, recovered, judged_info, agreement, lead)


def _report(
    config: EvaluateConfig,
    dataset,
    queries,
    systems: list[str],
    found: Comparison,
    cost: dict,
    extras: dict,
    started: float,
    echo,
) -> Path:
    """Report: write the result (HTML report and manifest) and print its markdown summary.
    ``extras``: the student's serving table and how the teacher read long documents."""
    from distill import report

    result = {
        "dataset": config.data,
        "split": config.split,
        "queries": len(queries),
        "judged_queries": len(found.per[systems[0]][config.primary]),
        "machine": machine_label(),
        "systems": systems,
        "metrics": found.summary,
        "per_query": found.per,
        "significance_vs_base": found.significance,
        "student_vs_supervised": found.lead,
        "student_recovers_teacher_gain": found.recovered,
        "cost": cost,
        **extras,
        "training": report.training_story(
            resolve_model(config.teacher) if config.teacher else None, config.student
        ),
        "member_titles": describe_members(resolve_model(config.teacher)) if config.teacher else {},
        "judge": found.judged_info,
        "judge_agreement": found.agreement,
        "config": artifacts._plain(config),
    }
    out = artifacts.mark_output(config.output, "evaluate")
    html = report.write(
        result, out, teacher_dir=resolve_model(config.teacher) if config.teacher else None
    )
    artifacts.write_manifest(
        out,
        stage="evaluate",
        config=config,
        inputs={"corpus": dataset.corpus_path},
        figures={"metrics": found.summary, "cost": cost, "serving": extras["serving"]},
        started=started,
    )
    if report.card_test_figures(config.student, result):
        echo(f"added the test figures to the student's model card ({config.student}/README.md)")
    echo(report.markdown(result))
    echo(f"HTML report: {html.resolve()}")
    return out


def run(config: EvaluateConfig, echo=click.echo) -> Path:
    started = time.time()
    dataset = data.open_dataset(config.data)
    corpus = dataset.corpus
    queries, real_qrels, systems = _plan(config, dataset)
    runs, bi = _retrieve(config, corpus, queries, systems, echo)
    teacher, windows, depth = None, None, None
    if "teacher" in systems or "cascade" in systems:
        teacher, depth = _rerank_systems(config, corpus, queries, systems, runs, echo)
        windows = window_stats(teacher) | {"pooling": pooling_of(teacher)}  # before timing
    shown = {s: runs[s] for s in systems}
    found = _compare(config, queries, corpus, shown, real_qrels)
    cost = (
        measure_cost(  # the teacher timed at the depth it reranked
            config if depth is None else replace(config, rerank_k=depth),
            queries,
            corpus,
            bi,
            teacher,
            config.first_stage,
        )
        if config.cost
        else {}
    )
    extras = {"serving": [], "teacher_windows": windows, "teacher_rerank_depth": depth}
    if config.cost and config.serving and "student" in bi and real_qrels is not None:
        extras["serving"] = serving_table(
            bi["student"].model,
            resolve_model(config.student),
            corpus,
            queries,
            real_qrels,
            k=config.k,
            timed=config.cost_queries,
            batch_size=config.batch_size,
            cache_dir=config.cache_dir or str(data.cache_dir() / "embeddings"),
            echo=echo,
        )
    return _report(config, dataset, queries, systems, found, cost, extras, started, echo)
