"""Atomic writes and manifests: a killed or failed stage never leaves a file that looks whole."""

from __future__ import annotations

import pytest

from distill import artifacts
from distill.errors import InputError


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    """Prevents a crash mid-write from truncating an existing good file."""
    target = tmp_path / "labels.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), artifacts.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.txt"]


def test_atomic_directory_replaces_whole(tmp_path):
    """Prevents a re-run directory mixing files of the old and the new run."""
    out = tmp_path / "out"
    for files in (["a", "b"], ["c"]):
        with artifacts.atomic_path(out, stage="demo") as tmp:
            tmp.mkdir()
            for f in files:
                (tmp / f).write_text(f)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["c"]


def test_atomic_directory_never_replaces_a_folder_it_did_not_write(tmp_path):
    """Prevents the reported data loss at its root: atomic_path used to rmtree any existing
    folder; one not written by this stage now stays byte for byte as it was."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.txt").write_text("mine")
    for stage in (None, "demo"):
        with pytest.raises(InputError), artifacts.atomic_path(out, stage=stage) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("a")
    assert sorted(p.name for p in out.iterdir()) == ["thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_manifest_detects_changed_input_and_config(tmp_path):
    """Prevents a stage being skipped after its input or config changed."""
    src = tmp_path / "in.txt"
    src.write_text("v1")
    out = tmp_path / "stage"
    config = {"lr": 1e-4}
    m = artifacts.write_manifest(
        out, stage="demo", config=config, inputs={"data": src}, figures={"n": 1}, started=0.0
    )
    assert m["versions"]["torch"]
    assert (out / "config.yaml").read_text().strip() == "lr: 0.0001"
    assert artifacts.is_current(out, config=config, inputs={"data": src})
    assert not artifacts.is_current(out, config={"lr": 2e-4}, inputs={"data": src})
    src.write_text("v2")
    assert not artifacts.is_current(out, config=config, inputs={"data": src})


def test_directory_fingerprint_ignores_manifest(tmp_path):
    """Prevents a stage's own manifest from changing the fingerprint of its output."""
    (tmp_path / "a.bin").write_bytes(b"1")
    before = artifacts.fingerprint(tmp_path)
    artifacts.write_json(tmp_path / "manifest.json", {"x": 1})
    assert artifacts.fingerprint(tmp_path) == before
    (tmp_path / "a.bin").write_bytes(b"2")
    assert artifacts.fingerprint(tmp_path) != before
