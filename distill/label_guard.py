"""The guard of ``distill label``: the teacher reranking the mined candidates must beat the
candidates' own first-stage order on the queries with qrels, or its labels are refused."""

from __future__ import annotations


def teacher_vs_first_stage(table, ranked, qrels, allow_worse: bool, echo) -> dict:
    """NDCG@10 of the teacher reranking the mined candidates against the candidates' own
    first-stage order, for the labelled queries that have qrels (gold positives the miner
    missed are not added: the protocol of use). These are usually the teacher's own training
    queries, so a teacher that loses here is certainly broken: it is refused (exit 1)."""
    from distill.errors import Refused
    from distill.metrics import summarize

    cols = table.select(["qid", "did", "score"]).to_pydict()
    labelled = set(cols["qid"])  # a run cut by its time budget labelled a sample of queries
    judged = {q: qrels[q] for q in ranked if q in qrels and q in labelled}
    teacher: dict[str, dict[str, float]] = {}
    for q, d, s in zip(cols["qid"], cols["did"], cols["score"], strict=True):
        if q in judged and d in ranked[q]:
            teacher.setdefault(q, {})[d] = float(s)
    first = {q: {d: -float(i) for i, d in enumerate(ranked[q])} for q in judged}
    result = {
        "queries": len(judged),
        "teacher_ndcg@10": round(summarize(judged, teacher, ["ndcg@10"])["ndcg@10"], 4),
        "first_stage_ndcg@10": round(summarize(judged, first, ["ndcg@10"])["ndcg@10"], 4),
    }
    line = (
        f"teacher reranking the candidates: NDCG@10 {result['teacher_ndcg@10']:.4f} vs "
        f"{result['first_stage_ndcg@10']:.4f} in the first stage's order ({len(judged)} queries "
        "with qrels)"
    )
    if result["teacher_ndcg@10"] >= result["first_stage_ndcg@10"]:
        echo(line)
    elif not allow_worse:
        raise Refused(
            f"the teacher ranks the candidates worse than the first stage did ({line}). The "
            "shards are kept but not marked finished; pass --allow-worse to use them anyway."
        )
    else:
        echo(f"warning: {line}; used anyway because of --allow-worse", err=True)
    return result
