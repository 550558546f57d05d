"""The design card's workflow in two commands: `distill teach`, then `distill train-student
--teacher` (which mines and labels on its own, and reuses that work when it is current)."""

from __future__ import annotations

import json

from helpers import run_cli


def test_teach_then_train_student_with_teacher(scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents the reported dead end: `train-student DATA` after `teach` failed with 'no
    finished labels here (run distill label first)'."""
    teacher = tmp_path / "t"
    code, _, err = run_cli(
        ["teach", scifact_slice, "--model", tiny_models["bert-cross"], "--output", teacher,
         "--max-steps", "4", "--eval-steps", "2", "--max-length", "64", "--batch-size", "8",
         "--negatives", "3", "--val-candidates", "10", "--negatives-from", "bm25",
         "--allow-worse"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    student = tmp_path / "s"
    argv = ["train-student", scifact_slice, "--teacher", teacher, "--output", student,
            "--model", tiny_models["bert-bi"], "--negatives", "2", "--false-negative-margin",
            "0", "--max-doc-length", "48", "--batch-size", "8", "--allow-worse"]  # fmt: skip
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert (student / "model.safetensors").is_file()
    work = tmp_path / "s-work"
    labels = json.loads((work / "labels" / "manifest.json").read_text())
    assert labels["config"]["teacher"] == str(teacher)
    trained = json.loads((student / "manifest.json").read_text())
    assert trained["inputs"]["labels"]["path"] == str(work / "labels" / "manifest.json")
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "are current; reused" in err and "nothing to do" in out
