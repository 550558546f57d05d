"""Metrics follow trec_eval: graded gains, ties by document id, missing rankings count as 0."""

from __future__ import annotations

import math

import pytest

from distill import metrics


def test_graded_example_by_hand():
    """Prevents wrong NDCG gains (binary or exponential instead of trec_eval's linear grade),
    MRR cut at the wrong depth, and queries without a ranking being dropped from the mean."""
    qrels = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d4": 1}}
    run = {"q1": {"d3": 0.9, "d1": 0.8, "d5": 0.7, "d2": 0.6}}  # q2 retrieves nothing
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    per = metrics.per_query(qrels, run)
    assert per["ndcg@10"]["q1"] == pytest.approx(dcg / idcg, abs=1e-4)
    assert per["mrr@10"]["q1"] == pytest.approx(0.5)
    assert per["recall@100"]["q1"] == pytest.approx(1.0)
    assert per["ndcg@10"]["q2"] == 0.0
    summary = metrics.summarize(qrels, run)
    assert summary["ndcg@10"] == pytest.approx(dcg / idcg / 2, abs=1e-4)
    assert summary["mrr@10"] == pytest.approx(0.25)
    assert summary["recall@100"] == pytest.approx(0.5)


def test_ties_break_by_doc_id_descending():
    """Prevents a tie-break that differs from trec_eval (and so from BEIR's numbers)."""
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 0.5, "b": 0.5}}  # trec_eval puts "b" first
    per = metrics.per_query(qrels, run)
    assert per["mrr@10"]["q"] == pytest.approx(0.5)
    assert per["ndcg@10"]["q"] == pytest.approx(1 / math.log2(3), abs=1e-4)
    assert metrics.trec_order({"a": 0.5, "b": 0.5, "c": 0.9}) == ["c", "b", "a"]


def test_mrr_cut_at_10():
    """Prevents MRR@10 counting a first relevant document at rank 11."""
    docs = {f"d{i:02d}": 1.0 - i / 100 for i in range(1, 12)}
    per = metrics.per_query({"q": {"d11": 1}}, {"q": docs})
    assert per["mrr@10"]["q"] == 0.0
    per = metrics.per_query({"q": {"d10": 1}}, {"q": docs})
    assert per["mrr@10"]["q"] == pytest.approx(0.1)


def test_other_trec_measures_and_unjudged_queries():
    """Prevents named pytrec_eval measures being ignored, and queries with no relevant
    document (which trec_eval skips) pulling the mean down."""
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 0}}
    run = {"q1": {"d1": 1.0, "d2": 0.5}, "q2": {"d2": 1.0}}
    summary = metrics.summarize(qrels, run, ["P.2", "map"])
    assert summary == {"P.2": pytest.approx(0.5), "map": pytest.approx(1.0)}
