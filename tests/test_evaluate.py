"""`distill evaluate`: systems side by side, significance, cost, judge mode and the report."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pytest
from conftest import TINY
from helpers import run_cli

from distill import metrics, retrieval
from distill.data import BeirDataset
from distill.metrics import kendall_tau, randomization_test
from distill.rerank import judge_qrels
from teachers.calibration import Calibration
from teachers.scoring import CrossEncoderTeacher


@pytest.fixture(scope="module")
def full_report(scifact_slice, tiny_models, tmp_path_factory):
    """One evaluation of every system on the SciFact slice with tiny models."""
    out = tmp_path_factory.mktemp("eval")
    from distill.cli import main

    argv = [
        "evaluate",
        str(scifact_slice),
        "--base",
        tiny_models["bert-bi"],
        "--student",
        tiny_models["deberta-bi"],
        "--supervised",
        tiny_models["bert-bi"],
        "--teacher",
        tiny_models["bert-cross"],
        "--cost-queries",
        "3",
        "--serving",
        "--output",
        str(out),
        "--cache-dir",
        str(out / "cache"),
    ]
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None)
    return out, json.loads((out / "report.json").read_text())


def _exact_sign_flip_p(diff: np.ndarray) -> float:
    """Two-sided p of a paired sign-flip test by full enumeration of the 2**m sign vectors of
    the m non-zero differences (zeros are the same under either sign)."""
    d = diff[diff != 0]
    observed = abs(d.sum())
    hits = 0
    for start in range(0, 2**d.size, 2**16):
        idx = np.arange(start, min(start + 2**16, 2**d.size))
        signs = 1 - 2 * ((idx[:, None] >> np.arange(d.size)) & 1)
        hits += int(np.sum(np.abs(signs @ d) >= observed - 1e-9))
    return hits / 2**d.size


def test_every_system_reported_with_exact_metrics(full_report, scifact_slice):
    """Prevents a report whose numbers differ from a direct pytrec_eval computation, and a
    p-value other than the paired sign-flip test's on the per-query NDCG@10 (checked against
    an exact enumeration of every sign vector), against base and for the student against the
    supervised baseline."""
    _, report = full_report
    assert report["systems"] == ["bm25", "base", "student", "supervised", "teacher", "cascade"]
    ds = BeirDataset(scifact_slice)
    qrels = ds.qrels("test")
    bm25 = retrieval.bm25_search(ds.corpus, {q: ds.queries[q] for q in qrels}, 100)
    assert report["metrics"]["bm25"] == {
        k: pytest.approx(v, abs=1e-4) for k, v in metrics.summarize(qrels, bm25).items()
    }
    assert len(report["per_query"]["student"]["ndcg@10"]) == 20
    # the teacher reranks the base top-100: the same documents, so the same recall@100
    assert report["metrics"]["teacher"]["recall@100"] == report["metrics"]["base"]["recall@100"]
    assert set(report["significance_vs_base"]) == {
        "bm25", "student", "supervised", "teacher", "cascade"
    }  # fmt: skip
    base = report["per_query"]["base"]["ndcg@10"]
    tests = [(s, "base", r) for s, r in report["significance_vs_base"].items()]
    tests.append(("student", "supervised", report["student_vs_supervised"]))
    for system, against, reported in tests:
        per_query = report["per_query"][system]["ndcg@10"]
        other = report["per_query"][against]["ndcg@10"]
        diff = np.array([per_query[q] - other[q] for q in base])
        exact = _exact_sign_flip_p(diff)
        assert reported["delta"] == pytest.approx(diff.mean(), abs=6e-5), system
        # the report samples 10,000 sign vectors: within 4 standard errors of the exact p
        error = 4 * math.sqrt(max(exact * (1 - exact), 1e-4) / 10_000) + 1e-4
        assert reported["p_value"] == pytest.approx(exact, abs=error), system


def test_cost_is_measured_and_labelled(full_report):
    """Prevents a report without speed figures or without the machine they came from (its
    name, processor and architecture, as platform and torch report them here)."""
    _, report = full_report
    cost = report["cost"]
    for system in ("base", "student"):
        assert cost[system]["latency_ms_p50"] > 0 and cost[system]["corpus_docs_per_s"] > 0
        assert cost[system]["latency_ms_p95"] >= cost[system]["latency_ms_p50"]
        assert cost[system]["index_mb"] == pytest.approx(340 * 32 * 4 / 2**20, rel=0.1)
    assert cost["teacher"]["pairs_per_s"] > 0 and cost["teacher"]["rerank_k"] == 100
    assert cost["student"]["speedup_vs_teacher"] == pytest.approx(
        cost["teacher"]["latency_ms_p50"] / cost["student"]["latency_ms_p50"], rel=0.05
    )
    import os
    import platform

    import torch

    machine = report["machine"]
    assert machine.startswith(f"{platform.node()}: ") and machine.endswith(
        f", {platform.machine()}"
    )
    if torch.cuda.is_available():
        assert torch.cuda.get_device_name(0) in machine
    else:
        assert f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads" in machine


def test_serving_table_of_the_student(full_report, scifact_slice):
    """Prevents a serving table that measures something else than the student: the ONNX fp32
    encoder must score what torch scores; the index sizes must be those of fp32 (4 bytes per
    dimension), int8 (1 byte) and binary (1 bit) vectors of the slice's 340 documents."""
    _, report = full_report
    rows = {(r["encoder"], r["embeddings"]): r for r in report["serving"]}
    assert set(rows) == {
        ("torch fp32", "fp32"),
        ("ONNX fp32", "fp32"),
        ("ONNX int8", "fp32"),
        ("torch fp32", "int8"),
        ("torch fp32", "binary"),
    }
    torch_fp32 = rows["torch fp32", "fp32"]
    assert torch_fp32["ndcg@10"] == pytest.approx(report["metrics"]["student"]["ndcg@10"], abs=1e-4)
    assert rows["ONNX fp32", "fp32"]["ndcg@10"] == pytest.approx(torch_fp32["ndcg@10"], abs=2e-3)
    vectors = 340 * 32  # documents x dimensions
    assert torch_fp32["index_bytes"] == pytest.approx(4 * vectors, rel=0.05)
    assert rows["torch fp32", "int8"]["index_bytes"] == pytest.approx(vectors, rel=0.1)
    assert rows["torch fp32", "binary"]["index_bytes"] == pytest.approx(vectors / 8, rel=0.2)
    assert all(r["latency_ms_p50"] > 0 for r in rows.values())
    md = (full_report[0] / "report.md").read_text()
    assert "| ONNX int8 | fp32 |" in md and "| torch fp32 | binary |" in md


def test_markdown_and_html_written(full_report):
    """Prevents a report missing its table or its plots."""
    out, _ = full_report
    md = (out / "report.md").read_text()
    assert "| distilled student |" in md and "| teacher (rerank) |" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert (out / "manifest.json").is_file()


def test_html_renders_in_headless_chromium(full_report, tmp_path):
    """Prevents a report that a browser shows blank (broken HTML or images)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip(
            "Debian's chromium is not installed (.ci/run installs it; `apt-get install chromium`)"
        )
    out, _ = full_report
    page = (out / "report.html").read_text()
    stripped = tmp_path / "no-figures.html"
    stripped.write_text(page.split("<figure>")[0] + "</body></html>")

    def screenshot(html_path, name):
        shot = tmp_path / f"{name}.png"
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1300,1400",
            html_path.resolve().as_uri(),
        ]
        subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        assert shot.is_file(), "chromium wrote no screenshot"
        import matplotlib.image as mpimg

        return (mpimg.imread(shot)[..., :3] < 0.9).any(axis=2).mean()  # share of non-white pixels

    with_plots, without = screenshot(out / "report.html", "report"), screenshot(stripped, "bare")
    assert without > 0.005  # the table and text are drawn
    assert with_plots > without + 0.01  # and the two plots add visibly to the page


@pytest.mark.parametrize(("kind", "role"), [("bert-cross", "teacher"), ("bert-bi", "student")])
def test_verification_command(kind, role, scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents the guide's verification command from needing a config file, and a
    cross-encoder being evaluated as a retriever (or the reverse)."""
    argv = [
        "evaluate",
        "--model",
        tiny_models[kind],
        "--dataset",
        scifact_slice,
        "--metric",
        "ndcg",
        "--no-cost",
        "--output",
        tmp_path / "v",
        "--cache-dir",
        tmp_path / "cache",
        "--base",
        tiny_models["bert-bi"],
    ]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    assert report["systems"] == [role]
    assert list(report["metrics"][role]) == ["ndcg@10"]
    assert "ndcg@10" in out


class KeywordModel:
    """A stand-in cross-encoder model: logit +3 when the document says 'relevant', else -3."""

    def predict(self, pairs, **kwargs):
        return np.array([3.0 if "relevant" in d else -3.0 for _, d in pairs])


def test_judge_grades_by_thresholds_and_calibration():
    """Prevents judged grades that ignore the thresholds or the stored calibration, and a
    pool that misses any system's top documents."""
    from distill.data import Document

    corpus = {
        "a": Document("", "relevant text"),
        "b": Document("", "other"),
        "c": Document("", "relevant too"),
    }
    queries = {"q": "query"}
    runs = {"s1": {"q": {"a": 2.0, "b": 1.0}}, "s2": {"q": {"c": 5.0, "b": 1.0}}}
    judge = CrossEncoderTeacher(KeywordModel())
    qrels, info = judge_qrels(judge, queries, corpus, runs, 1, [0.5, 0.9], 8)
    assert qrels == {"q": {"a": 2, "c": 2}}  # depth 1: a from s1, c from s2; sigmoid(3)=0.95
    assert info["pooled_pairs"] == 2 and "uncalibrated" in info["probabilities"]
    judge = CrossEncoderTeacher(
        KeywordModel(), Calibration(temperature=10.0, bias=0.0, method="platt")
    )
    qrels, info = judge_qrels(judge, queries, corpus, runs, 2, [0.5, 0.9], 8)
    assert qrels == {"q": {"a": 1, "b": 0, "c": 1}}  # sigmoid(0.3)=0.57, sigmoid(-0.3)=0.43
    assert info["probabilities"].startswith("calibrated")


def test_judge_mode_on_queries_without_qrels(scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents --judge from needing human qrels, and its figures passing for real ones."""
    qfile = tmp_path / "log.jsonl"
    qfile.write_text(
        "".join(
            json.dumps({"_id": f"u{i}", "text": t}) + "\n"
            for i, t in enumerate(["cancer risk", "vitamin D"])
        )
    )
    argv = [
        "evaluate",
        scifact_slice,
        "--split",
        qfile,
        "--judge",
        tiny_models["bert-cross"],
        "--no-cost",
        "--base",
        tiny_models["bert-bi"],
        "--output",
        tmp_path / "j",
        "--cache-dir",
        tmp_path / "cache",
    ]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "TEACHER-JUDGED" in out
    report = json.loads((tmp_path / "j" / "report.json").read_text())
    assert report["judge"]["pool_depth"] == 10 and report["judge_agreement"] is None


def test_randomization_test_and_kendall():
    """Prevents a significance test that calls identical systems different (or the reverse),
    or that is one-sided: one system better by 0.1 on each of 5 queries has exact two-sided
    p = 2 / 2**5 (only the all-plus and all-minus sign vectors reach |mean| 0.1)."""
    a = np.linspace(0, 1, 50)
    assert randomization_test(a, a) == 1.0
    five = np.array([0.3, 0.5, 0.2, 0.9, 0.4])
    # 10,000 sampled sign vectors: 0.0625 +- 4 standard errors (0.0024 each)
    assert randomization_test(five + 0.1, five) == pytest.approx(2 / 32, abs=0.01)
    assert randomization_test(five, five + 0.1) == pytest.approx(2 / 32, abs=0.01)
    assert randomization_test(a + 0.2, a) < 0.001
    rng = np.random.default_rng(1)
    noisy = rng.normal(0, 1, 50)
    assert randomization_test(noisy, noisy + rng.normal(0, 0.01, 50)) > 0.05  # no real difference
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [30, 20, 10]) == -1.0
    assert math.isclose(kendall_tau([1, 2, 3], [10, 30, 20]), 1 / 3)


def test_missing_model_for_system_is_input_error(scifact_slice, tmp_path, capsys):
    """Prevents a traceback when a system is asked for without its model."""
    code, _, err = run_cli(
        ["evaluate", scifact_slice, "--systems", "bm25,student", "--output", tmp_path / "x"], capsys
    )
    assert code == 2 and "--student" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_ensemble_members_reported_alone(scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents an ensemble teacher hiding its members: each member's own reranking is
    reported, equal to evaluating that member as the teacher."""
    from teachers.calibration import Calibration
    from teachers.scoring import save_ensemble

    ens = tmp_path / "ens"
    for name in ("bert-cross", "deberta-cross"):
        shutil.copytree(tiny_models[name], ens / "members" / name)
    save_ensemble(
        ens,
        [("bert", "members/bert-cross", 0.5), ("deberta", "members/deberta-cross", 0.5)],
        Calibration(),
    )
    common = [
        "--systems",
        "teacher",
        "--no-cost",
        "--base",
        tiny_models["bert-bi"],
        "--cache-dir",
        tmp_path / "cache",
        "--rerank-k",
        "20",
    ]
    code, out, err = run_cli(
        ["evaluate", scifact_slice, "--teacher", ens, "--output", tmp_path / "e", *common], capsys
    )
    assert code == 0, err
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["systems"] == ["teacher", "teacher:bert", "teacher:deberta"]
    # members named by what they are, read from their folders
    layers = TINY["num_hidden_layers"]
    assert f"member: cross-encoder (bert, {layers} layers, classification head)" in out
    assert f"member: cross-encoder (deberta-v2, {layers} layers, classification head)" in out
    code, _, err = run_cli(
        [
            "evaluate",
            scifact_slice,
            "--teacher",
            tiny_models["bert-cross"],
            "--output",
            tmp_path / "b",
            *common,
        ],
        capsys,
    )
    assert code == 0, err
    alone = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["metrics"]["teacher:bert"] == pytest.approx(alone["metrics"]["teacher"], abs=1e-4)


def test_rerank_depth_fits_the_budget():
    """Prevents an evaluation whose teacher cost grows without bound with the test queries
    (1,000 queries x 100 candidates at 45 pairs/s is 37 minutes). By hand: 50 pairs/s for
    10 min is 30,000 pairs; over 1,000 rankings that is 30 each; over 300, all 100; over
    100,000 rankings the floor of 10 (NDCG@10 needs ten)."""
    from distill.evaluate import rerank_depth

    assert rerank_depth(100, 1000, 50.0, 10) == 30
    assert rerank_depth(100, 300, 50.0, 10) == 100
    assert rerank_depth(100, 100_000, 50.0, 10) == 10
    assert rerank_depth(100, 1000, 50.0, None) == 100
    assert rerank_depth(100, 1000, None, 10) == 100


def test_budget_cut_rerank_reads_only_the_top_it_says(scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents a budget cut that is said but not applied (or applied but not said): with a
    budget far below one pair, the teacher reranks base's top 10 only, so its recall@100 is
    base's recall@10 on every query, its latency is timed at that depth, and the report says
    the depth was cut."""
    out = tmp_path / "e"
    code, md, err = run_cli(
        ["evaluate", scifact_slice, "--teacher", tiny_models["bert-cross"], "--base",
         tiny_models["bert-bi"], "--systems", "base,teacher", "--cost-queries", "2", "--rerank-k", "40",
         "--time-budget", "1e-7", "--measures", "ndcg@10,recall.10,recall@100",
         "--cache-dir", tmp_path / "cache", "--output", out],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["teacher_rerank_depth"] == 10
    assert report["cost"]["teacher"]["rerank_k"] == 10  # its latency timed at that depth too
    assert report["per_query"]["teacher"]["recall@100"] == report["per_query"]["base"]["recall.10"]
    assert "cut from 40" in err and "reranked the top 10 of each query, not 40" in md
