"""The evaluation report: ``report.json`` (everything), ``report.md`` (the table) and
``report.html`` (the table and plots, self-contained: images are embedded)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from distill import artifacts

LABELS = {
    "bm25": "BM25",
    "base": "base bi-encoder",
    "student": "distilled student",
    "supervised": "supervised baseline",
    "teacher": "teacher (rerank)",
    "cascade": "student + teacher rerank",
}


def label(system: str, titles: dict[str, str] | None = None) -> str:
    """A system's name in tables and plots. Ensemble members (``teacher:<member>``) are named
    by what they are, from ``titles`` (the report's ``member_titles``) where it has them."""
    if system.startswith("teacher:"):
        name = system.split(":", 1)[1]
        return f"  member: {(titles or {}).get(name, name)}"
    return LABELS.get(system, system)


COST_COLUMNS = (
    ("latency_ms_p50", "query ms p50"),
    ("latency_ms_p95", "query ms p95"),
    ("batched_ms_per_query", "batched ms/query"),
    ("corpus_docs_per_s", "encode docs/s"),
    ("index_mb", "index MB"),
)


def _rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    measures = list(next(iter(result["metrics"].values())))
    cost = result.get("cost") or {}
    cost_cols = [(k, name) for k, name in COST_COLUMNS if any(k in c for c in cost.values())]
    header = ["system", *measures, "p vs base", *(name for _, name in cost_cols)]
    rows = []
    for system in result["systems"]:
        sig = result["significance_vs_base"].get(system)
        row = [
            label(system, result.get("member_titles")),
            *(f"{result['metrics'][system][m]:.4f}" for m in measures),
        ]
        row.append("" if sig is None else f"{sig['p_value']:.4f}")
        row += [str(cost.get(system, {}).get(k, "")) for k, _ in cost_cols]
        rows.append(row)
    return header, rows


def serving_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The student's serving table (distill.serving): one row per encoder and embeddings."""
    if not rows:
        return []
    return [
        "The student served (each row measured side by side in this run; latency = one query "
        "encoded and searched):",
        "",
        "| encoder | embeddings | NDCG@10 | query ms p50 | index MB |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {r['encoder']} | {r['embeddings']} | {r['ndcg@10']:.4f} | "
            f"{r['latency_ms_p50']} | {r['index_mb']} |"
            for r in rows
        ),
    ]


def markdown(result: dict[str, Any]) -> str:
    header, rows = _rows(result)
    judged = " (TEACHER-JUDGED, not human qrels)" if result.get("judge") else ""
    lines = [
        f"{result['dataset']} / {result['split']}: {result['judged_queries']} queries{judged}; machine: {result['machine']}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    notes = list(result.get("config", {}).get("absent") or [])
    if result.get("student_recovers_teacher_gain") is not None:
        notes.append(
            f"The student recovers {result['student_recovers_teacher_gain']:.0%} of the teacher's NDCG@10 gain over base."
        )
    lead = result.get("student_vs_supervised")
    if lead:
        notes.append(
            f"Student vs supervised baseline: NDCG@10 {lead['delta']:+.4f} per query on average, "
            f"p = {lead['p_value']:.4f} (the same paired test)."
        )
    speed = result.get("cost", {}).get("student", {}).get("speedup_vs_teacher")
    if speed:
        notes.append(
            f"Per query the student is {speed}x faster than the teacher reranking {result['cost']['teacher']['rerank_k']} candidates."
        )
    depth, asked = result.get("teacher_rerank_depth"), result.get("config", {}).get("rerank_k")
    if depth and asked and depth < asked:
        notes.append(
            f"The teacher reranked the top {depth} of each query, not {asked}: the evaluation's "
            f"time budget ({result['config'].get('time_budget')} min) cut it."
        )
    windows = result.get("teacher_windows") or {}
    if windows.get("pairs"):
        notes.append(
            f"Teacher: {windows['long_pairs']:,} of {windows['pairs']:,} reranked pairs were longer "
            f"than its max_length ({windows['pooling']}: "
            + (
                "truncated"
                if windows["pooling"] == "first"
                else f"{windows['windows']:,} windows scored"
            )
            + ")."
        )
    if result.get("judge"):
        j = result["judge"]
        notes.append(
            f"Judged: pool = top {j['pool_depth']} of every system ({j['pooled_pairs']} pairs); grade g = number of thresholds {j['thresholds']} the probability reaches ({j['probabilities']})."
        )
    if result.get("judge_agreement"):
        a = result["judge_agreement"]
        notes.append(
            "Agreement with real qrels (NDCG@10 real / judged): "
            + ", ".join(f"{s} {a['real'][s]:.3f} / {a['judged'][s]:.3f}" for s in a["real"])
            + f"; Kendall tau of the system ranking {a['kendall_tau']}."
        )
    notes.append(
        "p vs base: two-sided paired randomisation test on per-query NDCG@10 (10,000 sign flips)."
    )
    serving = serving_lines(result.get("serving") or [])
    return "\n".join([*lines, "", *notes, *([""] if serving else []), *serving]).rstrip() + "\n"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(result: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs: quality vs latency, and per-query NDCG@10 of student (or best) vs base."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    cost = result.get("cost") or {}
    timed = [s for s in result["systems"] if cost.get(s, {}).get("latency_ms_p50")]
    if timed:
        fig, ax = plt.subplots(figsize=(6, 4))
        for s in timed:
            x, y = cost[s]["latency_ms_p50"], result["metrics"][s]["ndcg@10"]
            ax.scatter(x, y, s=60)
            ax.annotate(label(s), (x, y), textcoords="offset points", xytext=(6, 4))
        ax.set_xscale("log")
        ax.set_xlabel(f"query latency p50, ms (log scale) — {result['machine']}", fontsize=8)
        ax.set_ylabel("NDCG@10")
        ax.set_title("Quality against query latency")
        ax.grid(alpha=0.3)
        out["Quality against query latency"] = _png(fig)
        plt.close(fig)
    per = result["per_query"]
    other = (
        "student" if "student" in per else next((s for s in result["systems"] if s != "base"), None)
    )
    if "base" in per and other:
        base, mine = per["base"]["ndcg@10"], per[other]["ndcg@10"]
        qs = list(base)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter([base[q] for q in qs], [mine[q] for q in qs], s=12, alpha=0.6)
        ax.plot([0, 1], [0, 1], color="grey", lw=1)
        better = sum(mine[q] > base[q] for q in qs)
        worse = sum(mine[q] < base[q] for q in qs)
        ax.set_xlabel("base bi-encoder NDCG@10")
        ax.set_ylabel(f"{label(other)} NDCG@10")
        ax.set_title(f"Per query: {better} better, {worse} worse, {len(qs) - better - worse} equal")
        out[f"Per-query NDCG@10: {label(other)} vs base"] = _png(fig)
        plt.close(fig)
    return out


def training_story(teacher: str | None, student: str | None) -> dict[str, Any]:
    """How the evaluated models were made, read from the stages' manifests: each stage's
    time and config (teach, mine, label, train-student, found by following the student's
    labels back), the teacher members' validation NDCG@10 per evaluation step, the student's
    loss per step. Stages whose manifest is missing are left out."""
    stages: list[dict[str, Any]] = []

    def add(folder) -> dict[str, Any] | None:
        manifest = artifacts.read_manifest(folder) if folder else None
        if manifest is not None:
            seconds = (manifest.get("timings") or {}).get("seconds")
            stages.append(
                {"stage": manifest.get("stage"), "folder": str(folder), "seconds": seconds}
                | {"config": manifest.get("config")}
            )
        return manifest

    teach = add(teacher)
    made = artifacts.read_manifest(student) if student else None
    labels = (made or {}).get("config", {}).get("labels")
    labelled = artifacts.read_manifest(labels) if labels else None
    candidates = (labelled or {}).get("config", {}).get("candidates")
    add(Path(candidates).parent if candidates else None)
    add(labels if labelled else None)
    add(student if made else None)
    members = ((teach or {}).get("figures") or {}).get("members") or {}
    history = {
        name: [[h["steps"], h["ndcg@10"]] for h in m.get("history") or [] if "ndcg@10" in h]
        for name, m in members.items()
        if m.get("history")
    }
    loss = ((made or {}).get("figures") or {}).get("loss_per_step") or {}
    return {"stages": stages, "teacher_history": history, "student_loss": loss}


def training_plots(story: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs: the teacher's validation NDCG@10 per step, the student's loss per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    if story.get("teacher_history"):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, points in story["teacher_history"].items():
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("validation NDCG@10")
        ax.legend()
        ax.grid(alpha=0.3)
        out["Teacher: validation NDCG@10 per step"] = _png(fig)
        plt.close(fig)
    loss = story.get("student_loss") or {}
    if loss.get("loss"):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        first = loss.get("first_step", 1)
        ax.plot(range(first, first + len(loss["loss"])), loss["loss"])
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        out["Student: training loss per step"] = _png(fig)
        plt.close(fig)
    return out


def _stages_html(story: dict[str, Any]) -> str:
    """A table of stage times, and each stage's config folded under it."""
    if not story.get("stages"):
        return ""

    def seconds(value) -> str:
        return "" if value is None else f"{value:,.0f}"

    rows = "".join(
        f"<tr><td>{html.escape(str(s['stage']))}</td><td>{html.escape(s['folder'])}</td>"
        f"<td>{seconds(s['seconds'])}</td></tr>"
        for s in story["stages"]
    )
    configs = "".join(
        f"<details><summary>{html.escape(str(s['stage']))} config</summary><pre>"
        f"{html.escape(json.dumps(s['config'], indent=2, sort_keys=True))}</pre></details>"
        for s in story["stages"]
    )
    return (
        "<h2>How the models were made</h2><table><tr><th>stage</th><th>folder</th>"
        f"<th>seconds</th></tr>{rows}</table>{configs}"
    )


CARD_TEST = "## Test figures (distill evaluate)"


def card_test_figures(student: str | None, result: dict[str, Any]) -> bool:
    """Add (or replace) the test figures in the model card of a student distill made (a
    folder with a train-student manifest); a model distill did not make is left alone."""
    manifest = artifacts.read_manifest(student) if student else None
    card = Path(student or "") / "README.md"
    if manifest is None or manifest.get("stage") != "train-student" or not card.is_file():
        return False
    text = card.read_text(encoding="utf-8").split(f"\n{CARD_TEST}\n")[0].rstrip()
    measures = list(next(iter(result["metrics"].values())))
    shown = [
        s for s in ("student", "base", "bm25", "supervised", "teacher") if s in result["metrics"]
    ]
    rows = [
        f"| {label(s)} | " + " | ".join(f"{result['metrics'][s][m]:.4f}" for m in measures) + " |"
        for s in shown
    ]
    sig = result["significance_vs_base"].get("student")
    lines = [
        CARD_TEST,
        "",
        f"{result['dataset']} / {result['split']}, {result['judged_queries']} queries"
        + (" (TEACHER-JUDGED, not human qrels)" if result.get("judge") else "")
        + (
            f"; student vs base p = {sig['p_value']:.4f} (paired randomisation test)" if sig else ""
        ),
        "",
        "| system | " + " | ".join(measures) + " |",
        "|" + " --- |" * (len(measures) + 1),
        *rows,
    ]
    artifacts.write_text(card, text + "\n\n" + "\n".join(lines) + "\n")
    return True


def write(result: dict[str, Any], out: Path, teacher_dir: str | None = None) -> Path:
    """Write report.json, report.md and report.html into ``out``; return the HTML path."""
    artifacts.write_json(out / "report.json", result)
    md = markdown(result)
    artifacts.write_text(out / "report.md", md)
    header, rows = _rows(result)
    images = plots(result)
    story = result.get("training") or {}
    images.update(training_plots(story))
    reliability = Path(teacher_dir or "") / "reliability.png"
    if teacher_dir and reliability.is_file():
        images["Teacher calibration (reliability)"] = base64.b64encode(
            reliability.read_bytes()
        ).decode()
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    table += (
        "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        + "</table>"
    )
    notes = "".join(
        f"<p>{html.escape(line)}</p>" for line in md.split("\n\n", 2)[-1].strip().splitlines()
    )
    figures = "".join(
        f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b64}"><figcaption>{html.escape(t)}</figcaption></figure>'
        for t, b64 in images.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>distill report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 1em; }} img {{ max-width: 560px; }}
</style></head><body>
<h1>distill evaluation</h1>
<p>{html.escape(md.splitlines()[0])}</p>
{table}
{notes}
{figures}
{_stages_html(story)}
<details><summary>evaluate config</summary><pre>{html.escape(json.dumps(result.get("config"), indent=2, sort_keys=True))}</pre></details>
</body></html>
"""
    return artifacts.write_text(out / "report.html", page)
