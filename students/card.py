"""The student's model card: its start, its teacher and how that teacher validated, the data,
the loss and its settings, and the run's figures (appended to the README.md that
sentence-transformers writes)."""

from __future__ import annotations

from pathlib import Path

from distill import artifacts
from students.config import StudentConfig


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


def card(
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
        f"{figures.get('epochs', config.epochs)} epoch(s), documents {config.max_doc_length} tokens, {seconds:.0f}s\n"
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
