"""Two CPU processes (torchrun, which Accelerate runs as MULTI_CPU with gloo) against one."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distill.labels_io import read_labels

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv: list[str], processes: int) -> subprocess.CompletedProcess:
    """``distill ARGV`` in ``processes`` CPU processes (or plainly, for one).

    Several processes start with torchrun, which Accelerate reads as MULTI_CPU (gloo):
    ``accelerate launch --cpu --num_processes 2`` starts a single process (its CPU launcher
    is the simple one; multi-CPU there goes through mpirun, which CI does not have)."""
    if processes == 1:
        cmd = [sys.executable, "-m", "distill.cli", *argv]
    else:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
            "--master_port", str(_free_port()), "-m", "distill.cli", *argv,
        ]  # fmt: skip
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def labels(scifact_slice, bm25_train_candidates, tiny_models, tmp_path_factory) -> Path:
    """One-process labels of the slice's train queries by the tiny cross-encoder."""
    out = tmp_path_factory.mktemp("mp") / "labels"
    _launch(_label_argv(scifact_slice, bm25_train_candidates, tiny_models, out), 1)
    return out


def _label_argv(data, cands, tiny_models, out) -> list[str]:
    return [
        "label", str(data), "--candidates", str(cands), "--teacher", tiny_models["bert-cross"],
        "--output", str(out), "--shard-size", "60", "--allow-worse",
    ]  # fmt: skip


def test_two_process_labels_equal_one_process(
    scifact_slice, bm25_train_candidates, tiny_models, labels, tmp_path
):
    """Prevents shards lost, labelled twice or scored differently when `accelerate launch`
    splits labelling across processes: the rows equal a one-process run's."""
    out = tmp_path / "labels2"
    _launch(_label_argv(scifact_slice, bm25_train_candidates, tiny_models, out), 2)
    one, two = read_labels(labels).to_pylist(), read_labels(out).to_pylist()
    assert [(r["qid"], r["did"], r["gold"]) for r in two] == [
        (r["qid"], r["did"], r["gold"]) for r in one
    ]
    np.testing.assert_allclose(
        [r["score"] for r in two], [r["score"] for r in one], rtol=1e-4, atol=1e-5
    )
    assert json.loads((out / "manifest.json").read_text())["figures"]["shards"] > 1


def _no_dropout_student(tiny_models, folder: Path) -> str:
    """The tiny bi-encoder with dropout off, so that runs can be compared weight by weight."""
    shutil.copytree(tiny_models["bert-bi"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def test_two_processes_train_as_one_with_the_same_global_batch(
    scifact_slice, labels, tiny_models, tmp_path
):
    """Prevents multi-process training that is not the same optimisation as one process
    with the same global batch: gradients not synchronised, in-batch negatives taken from
    one process only, or a schedule sized in the wrong steps (the learning rate would decay
    at another pace). Two processes of batch 2 end with the weights of one of batch 4."""
    from safetensors.numpy import load_file

    start = _no_dropout_student(tiny_models, tmp_path / "start")
    common = [
        "train-student", str(scifact_slice), "--labels", str(labels), "--model", start,
        "--negatives", "2", "--false-negative-margin", "0", "--max-doc-length", "48",
        "--max-query-length", "24", "--lr", "1e-3", "--max-steps", "4", "--val-fraction", "0",
        "--in-batch", "1.0",
    ]  # fmt: skip
    _launch([*common, "--batch-size", "4", "--output", str(tmp_path / "one")], 1)
    _launch([*common, "--batch-size", "2", "--output", str(tmp_path / "two")], 2)
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    s = load_file(str(Path(start) / "model.safetensors"))
    moved = max(float(np.abs(a[k] - s[k]).max()) for k in a)
    assert moved > 1e-3  # the runs trained
    # atol 5e-5, not 1e-5: with a batch's known positives masked (this slice has a batch whose
    # two rows share a positive), summation-order noise in a token's near-zero gradient,
    # divided by Adam by its own root mean square, moved 1 weight of 976,704 by 1.5e-5; a
    # process that misses the other's candidates moves weights by lr-sized amounts (1e-3)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=5e-5, err_msg=key)
    for run in ("one", "two"):
        figures = json.loads((tmp_path / run / "manifest.json").read_text())["figures"]
        assert figures["steps"] == 4
