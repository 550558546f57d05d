"""Outputs are never destructive: a stage replaces only its own earlier output, never a user's
folder, never its own input; it refuses up front when the place cannot be written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import write_beir
from helpers import run_cli

PAIRS = [
    {"query": "what causes scurvy", "text": "Scurvy is caused by a lack of vitamin C.", "label": 1},
    {"query": "what causes rickets", "text": "Rickets: a lack of vitamin D.", "label": 1},
    {"query": "is aspirin an nsaid", "text": "Aspirin is an NSAID.", "label": 1},
    {"query": "what is paracetamol", "text": "Paracetamol is not an NSAID.", "label": 1},
]


def _pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PAIRS), encoding="utf-8")
    return path


def _beir(root: Path) -> Path:
    corpus = {
        "d1": ("Scurvy", "Scurvy is a disease from a lack of vitamin C in the diet."),
        "d2": ("Rickets", "Rickets is a disease from a lack of vitamin D in children."),
    }
    queries = {"q1": "what causes scurvy", "q2": "what causes rickets", "q3": "vitamin c"}
    qrels = {
        "train": {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d1": 1}},
        "test": {"q1": {"d1": 1}},
    }
    return write_beir(root, corpus, queries, qrels)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_split_into_a_users_folder_is_refused_and_keeps_the_file(tmp_path, capsys):
    """Prevents the reported data loss: `data split --output precious` deleted precious/thesis.txt."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("four years of work")
    code, _, err = run_cli(["data", "split", _pairs(tmp_path), "--output", precious], capsys)
    line = _one_line_error(code, err)
    assert "--overwrite" in line and "thesis.txt" in line
    assert (precious / "thesis.txt").read_text() == "four years of work"
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.txt"]


def test_overwrite_writes_beside_the_users_files_and_a_rerun_keeps_them(tmp_path, capsys):
    """Prevents --overwrite (or a later plain re-run into that folder) deleting the user's files:
    only the files a run wrote are ever replaced."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("mine")
    pairs = _pairs(tmp_path)
    code, _, err = run_cli(
        ["data", "split", pairs, "--output", precious, "--overwrite", "--val-fraction", "0.5"],
        capsys,
    )
    assert code == 0, err
    assert {"thesis.txt", "train.jsonl", "val.jsonl"} <= {p.name for p in precious.iterdir()}
    code, _, err = run_cli(
        ["data", "split", pairs, "--output", precious, "--val-fraction", "0.25"], capsys
    )
    assert code == 0, err
    assert (precious / "thesis.txt").read_text() == "mine"
    rows = sum(1 for _ in (precious / "val.jsonl").open()) + sum(
        1 for _ in (precious / "train.jsonl").open()
    )
    assert rows == len(PAIRS)


def test_split_into_the_dataset_itself_is_refused(tmp_path, capsys):
    """Prevents `data split DATASET --output DATASET` deleting the corpus, queries and qrels."""
    dataset = _beir(tmp_path / "ds")
    before = _snapshot(dataset)
    code, _, err = run_cli(
        ["data", "split", dataset, "--split", "train", "--output", dataset], capsys
    )
    assert "input" in _one_line_error(code, err)
    assert _snapshot(dataset) == before


def test_queries_into_the_dataset_or_inside_it_is_refused(tmp_path, capsys):
    """Prevents `queries DATASET --output DATASET` (or a folder inside it) wiping the dataset."""
    dataset = _beir(tmp_path / "ds")
    before = _snapshot(dataset)
    for target in (dataset, dataset / "pseudo"):
        code, _, err = run_cli(
            ["queries", dataset, "--method", "title", "--output", target], capsys
        )
        _one_line_error(code, err)
    assert _snapshot(dataset) == before


def test_output_dot_is_refused_and_the_folder_is_kept(tmp_path, capsys, monkeypatch):
    """Prevents `--output .` emptying the current folder, input included."""
    pairs = _pairs(tmp_path)
    (tmp_path / "notes.md").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    code, _, err = run_cli(["data", "split", "pairs.jsonl", "--output", "."], capsys)
    _one_line_error(code, err)
    assert _snapshot(tmp_path) == before
    assert pairs.is_file()


def test_output_that_is_an_existing_file_is_refused(tmp_path, capsys):
    """Prevents a traceback (or a replaced file) when --output names an existing file."""
    target = tmp_path / "report.txt"
    target.write_text("not a folder")
    code, _, err = run_cli(["data", "split", _pairs(tmp_path), "--output", target], capsys)
    assert "is a file" in _one_line_error(code, err)
    assert target.read_text() == "not a folder"


def test_another_stages_output_is_not_replaced(tmp_path, capsys):
    """Prevents one stage replacing another stage's artifact (e.g. split over a mine folder)."""
    pairs = _pairs(tmp_path)
    out = tmp_path / "out"
    code, _, err = run_cli(["data", "split", pairs, "--output", out], capsys)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["stage"] = "mine"
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = _snapshot(out)
    code, _, err = run_cli(["data", "split", pairs, "--output", out], capsys)
    assert "distill mine output" in _one_line_error(code, err)
    assert _snapshot(out) == before


def test_a_rerun_replaces_its_own_output(tmp_path, capsys):
    """Prevents the guard from blocking the normal case: re-running a stage into its output."""
    pairs = _pairs(tmp_path)
    out = tmp_path / "out"
    for fraction in ("0.5", "0.25"):
        code, _, err = run_cli(
            ["data", "split", pairs, "--output", out, "--val-fraction", fraction], capsys
        )
        assert code == 0, err
        assert json.loads((out / "manifest.json").read_text())["config"]["val_fraction"] == float(
            fraction
        )


def test_unwritable_place_is_refused_before_any_work(tmp_path, capsys):
    """Prevents finding out only after hours of work that the output cannot be written."""
    code, _, err = run_cli(
        ["data", "split", _pairs(tmp_path), "--output", "/proc/distill-out"], capsys
    )
    assert "cannot write" in _one_line_error(code, err)


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """Prevents a traceback and a half-written folder when the disk fills up (simulated with a
    file size limit of 0 bytes, which fails every write with EFBIG, as a full disk fails them)."""
    pairs = _pairs(tmp_path)
    out = tmp_path / "out"
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))\n"
        "from distill.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "data", "split", str(pairs), "--output", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )
    _one_line_error(done.returncode, done.stderr)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_audit_output_onto_its_own_data_is_refused(tmp_path, capsys, tiny_models):
    """Prevents `audit pairs.jsonl --output pairs.jsonl` overwriting the user's labeled data
    with the audit CSV."""
    pairs = _pairs(tmp_path)
    before = pairs.read_bytes()
    code, _, err = run_cli(
        ["audit", pairs, "--teacher", tiny_models["bert-cross"], "--output", pairs], capsys
    )
    assert "the input" in _one_line_error(code, err)
    assert pairs.read_bytes() == before
