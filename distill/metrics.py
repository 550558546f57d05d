"""IR metrics with trec_eval semantics (pytrec_eval), graded relevance, per query.

``ndcg@10`` is trec_eval's ``ndcg_cut.10`` (gain = the grade), ``recall@100`` is ``recall.100``
and ``mrr@10`` is ``recip_rank`` over the top 10 of each ranking. Ties in score are broken as
trec_eval breaks them (by document id, descending), so a run scores the same here as in
trec_eval and BEIR. A query with no retrieved documents scores 0; a query without relevant
documents in the qrels is left out, as trec_eval does. Any other pytrec_eval measure may be
asked for by its own name (``map``, ``P.5``, ``ndcg_cut.20``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

ALIASES = {
    "ndcg@10": "ndcg_cut.10",
    "recall@100": "recall.100",
}
DEFAULT_MEASURES = ("ndcg@10", "mrr@10", "recall@100")


# pytrec_eval families that need one cutoff (``P.5``); their bare name yields only cut keys.
CUT_MEASURES = ("P", "recall", "ndcg_cut", "map_cut", "success", "relative_P")
# families whose value is one number per query under their own name (no cutoff)
PLAIN_MEASURES = (
    "map", "ndcg", "recip_rank", "bpref", "Rprec", "infAP", "ndcg_rel", "Rndcg", "11pt_avg",
    "gm_map", "gm_bpref", "binG", "G", "set_P", "set_recall", "set_F", "set_map",
    "set_relative_P", "num_ret", "num_rel", "num_rel_ret", "num_nonrel_judged_ret", "utility",
)  # fmt: skip


def accepted_measures() -> str:
    """The measure forms :func:`per_query` accepts, for error messages."""
    cuts = ", ".join(f"{m}.N" for m in CUT_MEASURES)
    return (
        f"{', '.join(ALIASES)}, mrr@N, {cuts} (N a whole number >= 1), {', '.join(PLAIN_MEASURES)}"
    )


def check_measure(name: str) -> None:
    """Raise ValueError unless ``name`` is a measure :func:`per_query` computes correctly
    (an unchecked one can score 0 silently, or crash trec_eval on a cutoff below 1)."""
    if name in ALIASES or name in PLAIN_MEASURES:
        return
    family, sep, depth = name.partition("@" if name.startswith("mrr@") else ".")
    if (family == "mrr" or family in CUT_MEASURES) and sep and depth.isdigit() and int(depth) >= 1:
        return
    raise ValueError(f"unknown measure {name!r}; accepted: {accepted_measures()}")


def trec_order(docs: Mapping[str, float]) -> list[str]:
    """Document ids in trec_eval's order: score descending, then id descending."""
    return [d for d, _ in sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def _cut(run: Run, depth: int) -> dict[str, dict[str, float]]:
    return {q: {d: float(docs[d]) for d in trec_order(docs)[:depth]} for q, docs in run.items()}


def per_query(
    qrels: Qrels, run: Run, measures: Iterable[str] = DEFAULT_MEASURES
) -> dict[str, dict[str, float]]:
    """``{measure: {query id: value}}`` for every query that has a relevant document."""

    judged = {
        q: {d: int(g) for d, g in docs.items()}
        for q, docs in qrels.items()
        if any(g > 0 for g in docs.values())
    }
    full_run = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in judged}
    out: dict[str, dict[str, float]] = {}
    for name in measures:
        if name.startswith("mrr@"):
            depth = int(name.split("@")[1])
            values = _evaluate(judged, _cut(full_run, depth), "recip_rank")
        else:
            trec = ALIASES.get(name, name)
            values = _evaluate(judged, full_run, trec)
        out[name] = values
    return out


def _evaluate(qrels: dict, run: dict, measure: str) -> dict[str, float]:
    import pytrec_eval

    family = measure.split(".")[0]
    key = measure.replace(".", "_")
    # pytrec_eval skips queries without a ranking; trec_eval -c counts them as 0.
    filled = {q: docs if docs else {"__none__": 0.0} for q, docs in run.items()}
    results = pytrec_eval.RelevanceEvaluator(
        qrels, {measure if "." in measure else family}
    ).evaluate(filled)
    return {q: float(results.get(q, {}).get(key, 0.0)) for q in qrels}


def mean(values: Mapping[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else 0.0


def summarize(
    qrels: Qrels, run: Run, measures: Iterable[str] = DEFAULT_MEASURES
) -> dict[str, float]:
    """Mean of each measure over the judged queries."""
    return {name: mean(values) for name, values in per_query(qrels, run, measures).items()}


def randomization_test(
    a: np.ndarray, b: np.ndarray, *, trials: int = 10_000, seed: int = 0
) -> float:
    """Two-sided paired randomisation (sign-flip) test of mean(a - b) = 0; returns the p-value."""
    diff = np.asarray(a) - np.asarray(b)
    if not diff.any():
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(trials, diff.size))
    null = np.abs((signs * diff).mean(axis=1))
    return float((np.sum(null >= abs(diff.mean()) - 1e-12) + 1) / (trials + 1))


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a between two score lists over the same systems."""
    n, s = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(s / (n * (n - 1) / 2)) if n > 1 else 1.0


def paired(a: dict[str, float], b: dict[str, float], seed: int) -> dict[str, float]:
    """Mean per-query difference a - b over b's queries, and its randomisation-test p."""
    x = np.array([a[q] for q in b])
    y = np.array(list(b.values()))
    return {
        "p_value": round(randomization_test(x, y, seed=seed), 4),
        "delta": round(float((x - y).mean()), 4),
    }
