"""Never ship a model worse than its start: a teacher planted to rank the first stage's hits
backwards is refused by teach (honest validation), label and the pipeline, and a student
trained on its labels is refused by train-student; each with exit code 1 and one line that
carries the figures."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import run_cli

from distill.labels_io import read_labels


def _refusal(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "--allow-worse" in lines[0]
    return lines[0]


@pytest.fixture
def bm25_mined(bm25_train_candidates):
    return bm25_train_candidates


@pytest.fixture(scope="module")
def backwards_teacher(scifact_slice, tmp_path_factory):
    """An ensemble whose one member is BM25 with weight -1: it ranks BM25's hits backwards."""
    from distill.data import BeirDataset
    from teachers.calibration import Calibration
    from teachers.members import BM25Scorer
    from teachers.scoring import save_ensemble

    folder = tmp_path_factory.mktemp("backwards")
    ds = BeirDataset(scifact_slice)
    (folder / "members" / "bm25").mkdir(parents=True)
    BM25Scorer.fit([d.full_text for d in ds.corpus.values()]).save(folder / "members" / "bm25")
    save_ensemble(folder, [("bm25", "members/bm25", -1.0)], Calibration())
    return folder


def _label(scifact_slice, mined, teacher, out, *extra):
    return ["label", scifact_slice, "--candidates", mined, "--teacher", teacher, "--queries",
            "train", "--output", out, *extra]  # fmt: skip


def test_label_refuses_a_backwards_teacher(
    scifact_slice, bm25_mined, backwards_teacher, tmp_path, capsys
):
    """Prevents labels from a teacher worse than the first stage reaching the student: the
    reversed BM25 order must score below BM25's own order (computed here with pytrec_eval)."""
    from distill.candidates import read_candidates
    from distill.data import BeirDataset, load_qrels
    from distill.metrics import summarize

    out = tmp_path / "labels"
    code, _, err = run_cli(_label(scifact_slice, bm25_mined, backwards_teacher, out), capsys)
    line = _refusal(code, err)
    qrels = load_qrels(BeirDataset(scifact_slice).qrels_path("train"))
    ranked = read_candidates(bm25_mined, with_scores=True).scores
    forward = summarize(qrels, ranked, ["ndcg@10"])["ndcg@10"]
    backward = summarize(
        qrels, {q: {d: -s for d, s in docs.items()} for q, docs in ranked.items()}, ["ndcg@10"]
    )["ndcg@10"]
    assert f"{forward:.4f}" in line and f"{backward:.4f}" in line, line
    assert not (out / "manifest.json").exists()
    code, _, err = run_cli(
        _label(scifact_slice, bm25_mined, backwards_teacher, out, "--allow-worse"), capsys
    )
    assert code == 0, err
    assert (out / "manifest.json").is_file()


def test_train_student_refuses_a_student_worse_than_its_start(
    scifact_slice, bm25_mined, backwards_teacher, tmp_path, capsys
):
    """Prevents shipping a student that learnt the backwards teacher: it is validated against
    its start by full retrieval on held-out queries and refused."""
    labels = tmp_path / "labels"
    code, _, err = run_cli(
        _label(scifact_slice, bm25_mined, backwards_teacher, labels, "--allow-worse"), capsys
    )
    assert code == 0, err
    assert read_labels(labels).num_rows > 0
    out = tmp_path / "student"
    code, _, err = run_cli(
        ["train-student", scifact_slice, "--labels", labels, "--output", out, "--model",
         "bundled", "--val-fraction", "0.5", "--epochs", "3", "--lr", "2e-4",
         "--negatives", "3", "--in-batch", "0", "--batch-size", "8"],
        capsys,
    )  # fmt: skip
    line = _refusal(code, err)
    assert "student" in line and "start" in line and "held-out" in line
    figures = [
        float(x) for x in line.split("NDCG@10 student ")[1].split(" on ")[0].split(" vs start ")
    ]
    assert figures[0] < figures[1]
    assert not out.exists()


def _backwards_predict(monkeypatch):
    """Plant a teacher whose score grows with the first-stage rank (exactly backwards: the
    validation pairs of a query are in first-stage order)."""
    import distill.models

    real = distill.models.load_cross_encoder

    def load(name, **kwargs):
        model = real(name, **kwargs)
        model.predict = lambda pairs, **_: np.arange(len(pairs), dtype=np.float32)
        return model

    monkeypatch.setattr(distill.models, "load_cross_encoder", load)


def test_teach_refuses_a_backwards_teacher(
    scifact_slice, tiny_models, tmp_path, capsys, monkeypatch
):
    """Prevents a teacher worse than the first stage passing its own validation (the reported
    case: validation injected gold positives, and said 0.50 -> 0.62 for a teacher that was
    four times worse at test)."""
    _backwards_predict(monkeypatch)
    config = tmp_path / "t.yaml"
    config.write_text(
        f"teach:\n  members:\n    - {{name: backwards, model: {tiny_models['bert-cross']}, train: false}}\n"
    )
    out = tmp_path / "teacher"
    code, _, err = run_cli(
        ["teach", scifact_slice, "--config", config, "--output", out, "--negatives-from", "bm25",
         "--val-fraction", "0.5", "--val-candidates", "10", "--warmup-pairs", "0"],
        capsys,
    )  # fmt: skip
    line = _refusal(code, err)
    assert "first stage (bm25)" in line and "teacher" in line
    assert not out.exists()


def test_pipeline_runs_nothing_that_needs_a_refused_teacher(
    scifact_slice, tiny_models, tmp_path, capsys, monkeypatch
):
    """Prevents a pipeline that labels, trains or reports a student after its teacher was
    refused, or that exits 0 after a refusal."""
    _backwards_predict(monkeypatch)
    run = tmp_path / "run"
    config = tmp_path / "p.yaml"
    config.write_text(
        f"run: {run}\ndata: {scifact_slice}\n"
        "teach:\n  negatives_from: bm25\n  val_fraction: 0.5\n  val_candidates: 10\n"
        f"  warmup_pairs: 0\n  members:\n    - {{name: b, model: {tiny_models['bert-cross']}, train: false}}\n"
        "mine:\n  method: bm25\n  k: 10\n"
        f"evaluate:\n  base: {tiny_models['bert-bi']}\n  cost_queries: 2\n"
    )
    code, _, err = run_cli(["pipeline", config], capsys)
    line = _refusal(code, err)
    assert line.startswith("error: [teach] was refused:") and "first stage (bm25)" in line
    summary = json.loads((run / "pipeline-summary.json").read_text())
    assert summary["teach"] == "refused" and summary["label"] == summary["student"] == "not run"
    assert not (run / "teacher").exists() and not (run / "labels").exists()
    assert json.loads((run / "report" / "report.json").read_text())["systems"] == ["bm25", "base"]


def test_label_keeps_a_teacher_that_beats_the_first_stage(
    scifact_slice, bm25_mined, tmp_path, capsys
):
    """Prevents the guard refusing good teachers: BM25 with weight +1 reproduces the first
    stage's order exactly, which ties it and is kept."""
    from distill.data import BeirDataset
    from teachers.calibration import Calibration
    from teachers.members import BM25Scorer
    from teachers.scoring import save_ensemble

    folder = tmp_path / "forward"
    (folder / "members" / "bm25").mkdir(parents=True)
    ds = BeirDataset(scifact_slice)
    BM25Scorer.fit([d.full_text for d in ds.corpus.values()]).save(folder / "members" / "bm25")
    save_ensemble(folder, [("bm25", "members/bm25", 1.0)], Calibration())
    code, _, err = run_cli(_label(scifact_slice, bm25_mined, folder, tmp_path / "l"), capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "l" / "manifest.json").read_text())
    val = manifest["figures"]["validation"]
    assert val["teacher_ndcg@10"] == pytest.approx(val["first_stage_ndcg@10"], abs=1e-4)
    shutil.rmtree(folder)
