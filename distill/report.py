"""The evaluation report: ``report.json`` (everything), ``report.md`` (the table) and
``report.html`` (the table and plots, self-contained: images are embedded)."""

from __future__ import annotations

import base64
import html
import io
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
    notes = []
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


def write(result: dict[str, Any], out: Path, teacher_dir: str | None = None) -> Path:
    """Write report.json, report.md and report.html into ``out``; return the HTML path."""
    artifacts.write_json(out / "report.json", result)
    md = markdown(result)
    artifacts.write_text(out / "report.md", md)
    header, rows = _rows(result)
    images = plots(result)
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
</body></html>
"""
    return artifacts.write_text(out / "report.html", page)
