"""A teacher must be a teacher: a bi-encoder or a headless transformer given as --teacher is
refused before any work, by every stage that scores with a teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli

from distill.models import not_a_cross_encoder


@pytest.fixture(scope="module")
def mined(scifact_slice, tmp_path_factory):
    from distill.cli import main

    out = tmp_path_factory.mktemp("mine")
    try:
        main(["mine", str(scifact_slice), "--queries", "test", "--k", "5", "--output", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return out / "candidates.parquet"


def _refused(code: int, err: str, folder: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "not a teacher" in lines[0] and folder in lines[0], err
    assert "distill teach" in lines[0]


def test_folder_kinds_are_told_apart(tiny_models):
    """Prevents the check refusing real teachers or passing bi-encoders: each fixture's kind
    is known by how it was built (conftest), not by the code under test."""
    raw = str(Path(tiny_models["bert-bi"]).parent / "bert-raw")
    assert not_a_cross_encoder(tiny_models["bert-cross"]) is None
    assert not_a_cross_encoder(tiny_models["deberta-cross"]) is None
    assert "bi-encoder" in not_a_cross_encoder(tiny_models["bert-bi"])
    assert "bi-encoder" in not_a_cross_encoder(tiny_models["deberta-bi"])
    assert "no scoring head" in not_a_cross_encoder(raw)


def test_bundled_bi_encoder_is_not_a_teacher():
    """Prevents the reported case: the real all-MiniLM-L6-v2 folder accepted as --teacher, its
    scores coming from a randomly initialised head (std 0.01, Spearman -0.02)."""
    assert "bi-encoder" in not_a_cross_encoder(
        __import__("distill.models", fromlist=["x"]).bundled_model_path()
    )


@pytest.mark.parametrize("which", ["bert-bi", "bert-raw"])
def test_label_refuses_a_bi_encoder_teacher(
    scifact_slice, mined, tiny_models, tmp_path, capsys, which
):
    """Prevents `label --teacher BI_ENCODER` exiting 0 with meaningless scores."""
    teacher = tiny_models.get(which) or str(Path(tiny_models["bert-bi"]).parent / which)
    out = tmp_path / "labels"
    code, _, err = run_cli(
        [
            "label",
            scifact_slice,
            "--candidates",
            mined,
            "--teacher",
            teacher,
            "--queries",
            "test",
            "--output",
            out,
        ],
        capsys,
    )
    _refused(code, err, teacher)
    assert not out.exists()


def test_evaluate_and_audit_refuse_a_bi_encoder_teacher(
    scifact_slice, tiny_models, tmp_path, capsys
):
    """Prevents evaluate reporting, and audit trusting, a teacher that was never trained."""
    teacher = tiny_models["bert-bi"]
    code, _, err = run_cli(
        [
            "evaluate",
            scifact_slice,
            "--teacher",
            teacher,
            "--base",
            tiny_models["bert-bi"],
            "--output",
            tmp_path / "report",
        ],
        capsys,
    )
    _refused(code, err, teacher)
    assert not (tmp_path / "report").exists()
    code, _, err = run_cli(
        ["audit", scifact_slice, "--teacher", teacher, "--output", tmp_path / "audit.csv"], capsys
    )
    _refused(code, err, teacher)
    assert not (tmp_path / "audit.csv").exists()
