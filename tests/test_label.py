"""`distill label`: exact scores, gold positives, crash-safe resume, invalidation, unlabeled queries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.stats
import torch
from helpers import run_cli
from sentence_transformers import CrossEncoder

from distill.labels_io import read_labels


@pytest.fixture(scope="module")
def mined(scifact_slice, tmp_path_factory):
    """BM25 top-20 candidates for the slice's 20 test queries (400 pairs)."""
    from distill.cli import main

    out = tmp_path_factory.mktemp("mine")
    try:
        main(
            [
                "mine",
                str(scifact_slice),
                "--queries",
                "test",
                "--method",
                "bm25",
                "--k",
                "20",
                "--output",
                str(out),
            ]
        )
    except SystemExit as exc:
        assert exc.code in (0, None)
    return out / "candidates.parquet"


def _label(capsys, data, cands, teacher, out, *extra):
    return run_cli(
        [
            "label",
            data,
            "--candidates",
            cands,
            "--teacher",
            teacher,
            "--queries",
            "test",
            "--output",
            out,
            "--allow-worse",  # random tiny teachers: worse than BM25, used for the mechanics
            *extra,
        ],
        capsys,
    )


def _direct(teacher, data, rows):
    from distill.data import BeirDataset

    ds = BeirDataset(data)
    pairs = [(ds.queries[r["qid"]], ds.corpus[r["did"]].full_text) for r in rows]
    return CrossEncoder(teacher).predict(pairs, activation_fn=torch.nn.Identity(), batch_size=32)


def test_scores_equal_direct_predict(scifact_slice, mined, tiny_models, tmp_path, capsys):
    """Prevents stored labels that differ from what the teacher says (wrong pair, order or
    activation), gold positives missing from the labels, and a manifest silent about how many
    pairs the teacher truncated."""
    code, _out, err = _label(
        capsys,
        scifact_slice,
        mined,
        tiny_models["bert-cross"],
        tmp_path / "l",
        "--shard-size",
        "150",
    )
    assert code == 0, err
    rows = read_labels(tmp_path / "l").to_pylist()
    direct = _direct(tiny_models["bert-cross"], scifact_slice, rows)
    np.testing.assert_allclose([r["score"] for r in rows], direct, rtol=1e-4, atol=1e-5)
    assert len({(r["qid"], r["did"]) for r in rows}) == len(rows)
    from distill.data import BeirDataset

    qrels = BeirDataset(scifact_slice).qrels("test")
    labelled = {(r["qid"], r["did"]): r["gold"] for r in rows}
    assert all(labelled.get((q, d)) == g for q, docs in qrels.items() for d, g in docs.items())
    assert sum(1 for r in rows if r["gold"] == -1) == len(rows) - sum(map(len, qrels.values()))
    assert len(list((tmp_path / "l").glob("shard-*.parquet"))) == -(-len(rows) // 150)
    manifest = json.loads((tmp_path / "l" / "manifest.json").read_text())
    assert manifest["figures"]["pairs"] == len(rows)
    # exact mode on CPU times onnxruntime fp32 against torch after checking their scores agree
    chosen = manifest["figures"]["backends"][0]
    assert chosen["backend"] in ("onnxruntime fp32", "torch")
    assert chosen["max_abs_diff"] <= 1e-4
    assert set(chosen["pairs_per_s"]) == {"onnxruntime", "torch"}
    # how many pairs the teacher had to truncate, counted here with its own tokenizer
    model = CrossEncoder(tiny_models["bert-cross"])
    ds = BeirDataset(scifact_slice)
    long_pairs = sum(
        len(model.tokenizer(ds.queries[r["qid"]], ds.corpus[r["did"]].full_text)["input_ids"])
        > model.max_length
        for r in rows
    )
    assert manifest["figures"]["windows"] == {
        "pooling": "first",
        "pairs": len(rows),
        "long_pairs": long_pairs,
        "windows": len(rows),
    }


def _slowed(cls, seconds: float):
    """``cls.predict``, made ``seconds`` slower per call."""
    original = cls.predict

    def predict(self, *args, **kwargs):
        time.sleep(seconds)
        return original(self, *args, **kwargs)

    return predict


@pytest.mark.parametrize("slow", ["onnxruntime", "torch"])
def test_exact_keeps_the_faster_backend(
    scifact_slice, mined, tiny_models, tmp_path, capsys, monkeypatch, slow
):
    """Prevents `exact` from running onnxruntime where it is slower than the library call it
    replaces (it was 0.76x CrossEncoder.predict on a quiet 2-core machine), and from keeping
    torch where onnxruntime is faster: each backend in turn is made slow on purpose."""
    from teachers.onnx import OnnxCrossEncoder

    cls = OnnxCrossEncoder if slow == "onnxruntime" else CrossEncoder
    monkeypatch.setattr(cls, "predict", _slowed(cls, 1.0))  # far past load noise
    code, _out, err = _label(
        capsys, scifact_slice, mined, tiny_models["bert-cross"], tmp_path / "l"
    )
    assert code == 0, err
    chosen = json.loads((tmp_path / "l" / "manifest.json").read_text())["figures"]["backends"][0]
    assert chosen["backend"] == ("torch" if slow == "onnxruntime" else "onnxruntime fp32")
    rows = read_labels(tmp_path / "l").to_pylist()
    direct = _direct(tiny_models["bert-cross"], scifact_slice, rows)
    np.testing.assert_allclose([r["score"] for r in rows], direct, rtol=1e-4, atol=1e-5)


def test_torch_precision_is_crossencoder_predict(
    scifact_slice, mined, tiny_models, tmp_path, capsys
):
    """Prevents `--precision torch` (the reference path) from running anything but torch."""
    code, _out, err = _label(
        capsys,
        scifact_slice,
        mined,
        tiny_models["bert-cross"],
        tmp_path / "t",
        "--precision",
        "torch",
    )
    assert code == 0, err
    rows = read_labels(tmp_path / "t").to_pylist()
    direct = _direct(tiny_models["bert-cross"], scifact_slice, rows)
    np.testing.assert_allclose([r["score"] for r in rows], direct, rtol=1e-5, atol=1e-6)
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert manifest["figures"]["backends"] == [{"backend": "torch"}]


def _ensemble_with_bi_member(tiny_models, folder):
    """A cross-encoder and a bi-encoder member, both with weight 0.5."""
    import shutil

    from teachers.calibration import Calibration
    from teachers.members import BiEncoderScorer
    from teachers.scoring import save_ensemble

    shutil.copytree(tiny_models["deberta-cross"], folder / "members" / "cross")
    (folder / "members" / "bi").mkdir(parents=True)
    BiEncoderScorer(tiny_models["bert-bi"]).save(folder / "members" / "bi")
    save_ensemble(
        folder,
        [("cross", "members/cross", 0.5), ("bi-encoder", "members/bi", 0.5)],
        Calibration(),
    )
    return folder


def test_killed_run_resumes_to_identical_shards(
    scifact_slice, mined, tiny_models, tmp_path, capsys
):
    """Prevents lost or duplicated rows after a SIGKILL mid-run and a restart, and labels that
    depend on how the work was split (a bi-encoder member's embedding cache carried across
    shards made 15 scores differ after a resume): the shards must be byte-identical to an
    uninterrupted run's, and a no-op third run must not rewrite the manifest. The backend is
    pinned (`torch`): `exact` times torch against onnxruntime on each start, and two starts
    under different load may pick different ones, whose scores agree within 1e-4 only."""
    teacher = _ensemble_with_bi_member(tiny_models, tmp_path / "ens")
    argv = [
        sys.executable,
        "-m",
        "distill.cli",
        "label",
        str(scifact_slice),
        "--candidates",
        str(mined),
        "--teacher",
        str(teacher),
        "--queries",
        "test",
        "--output",
        str(tmp_path / "killed"),
        "--shard-size",
        "10",
        "--precision",
        "torch",
        "--batch-size",
        "2",
        "--allow-worse",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((tmp_path / "killed").glob("shard-*.parquet"))) < 3:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "manifest.json").exists(), (
        "the run finished before it could be killed"
    )
    assert subprocess.run(argv, env=env, capture_output=True, check=False).returncode == 0
    code, _, err = _label(
        capsys,
        scifact_slice,
        mined,
        teacher,
        tmp_path / "whole",
        "--shard-size",
        "10",
        "--precision",
        "torch",
        "--batch-size",
        "2",
    )
    assert code == 0, err
    resumed = sorted((tmp_path / "killed").glob("shard-*.parquet"))
    whole = sorted((tmp_path / "whole").glob("shard-*.parquet"))
    assert [p.name for p in resumed] == [p.name for p in whole]
    for a, b in zip(resumed, whole, strict=True):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs after the resume"
    assert "score_bi-encoder" in read_labels(tmp_path / "whole").column_names
    manifest = (tmp_path / "killed" / "manifest.json").read_bytes()
    assert subprocess.run(argv, env=env, capture_output=True, check=False).returncode == 0
    assert (tmp_path / "killed" / "manifest.json").read_bytes() == manifest


def test_bi_encoder_member_reads_the_cached_corpus_vectors(
    scifact_slice, mined, tiny_models, tmp_path, capsys, monkeypatch
):
    """Prevents an ensemble's bi-encoder member re-encoding documents whose vectors `distill
    mine` already cached (half of SciFact's labelling time), and cached vectors that give other
    scores: with the cache no document text is encoded, and the member's column equals the
    dot product of `SentenceTransformer.encode` vectors of each query and document."""
    from sentence_transformers import SentenceTransformer

    from distill.data import BeirDataset

    cache = tmp_path / "cache"
    code, _, err = run_cli(
        ["mine", scifact_slice, "--queries", "test", "--method", "dense", "--model",
         tiny_models["bert-bi"], "--k", "5", "--cache-dir", cache, "--output", tmp_path / "m"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    teacher = _ensemble_with_bi_member(tiny_models, tmp_path / "ens")
    ds = BeirDataset(scifact_slice)
    doc_texts = {doc.full_text for doc in ds.corpus.values()}
    encoded: list[str] = []
    real_encode = SentenceTransformer.encode

    def recording(self, sentences, *args, **kwargs):
        encoded.extend([sentences] if isinstance(sentences, str) else sentences)
        return real_encode(self, sentences, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", recording)
    code, _, err = _label(
        capsys, scifact_slice, mined, teacher, tmp_path / "l", "--cache-dir", cache
    )
    assert code == 0, err
    assert encoded and not doc_texts.intersection(encoded)
    manifest = json.loads((tmp_path / "l" / "manifest.json").read_text())
    assert manifest["figures"]["cached_document_vectors"] == ["bi-encoder"]
    rows = read_labels(tmp_path / "l").to_pylist()[:40]
    monkeypatch.undo()
    model = SentenceTransformer(tiny_models["bert-bi"], device="cpu")
    q = model.encode([ds.queries[r["qid"]] for r in rows])
    d = model.encode([ds.corpus[r["did"]].full_text for r in rows])
    np.testing.assert_allclose(
        [r["score_bi-encoder"] for r in rows], (q * d).sum(axis=1), rtol=1e-4, atol=1e-5
    )


def test_changed_teacher_invalidates_old_shards(
    scifact_slice, mined, tiny_models, tmp_path, capsys
):
    """Prevents mixing labels of an old teacher with a new one's."""
    out = tmp_path / "l"
    assert (
        _label(capsys, scifact_slice, mined, tiny_models["bert-cross"], out, "--shard-size", "100")[
            0
        ]
        == 0
    )
    code, _, err = _label(
        capsys, scifact_slice, mined, tiny_models["bert-cross"], out, "--shard-size", "100"
    )
    assert code == 0 and "discarded" not in err
    before = len(list(out.glob("shard-*.parquet")))
    code, _stdout, err = _label(
        capsys, scifact_slice, mined, tiny_models["deberta-cross"], out, "--shard-size", "100"
    )
    assert code == 0
    assert before == 5 and f"discarded {before} old shards" in err  # 401 pairs, 100 a shard
    rows = read_labels(out).to_pylist()
    np.testing.assert_allclose(
        [r["score"] for r in rows],
        _direct(tiny_models["deberta-cross"], scifact_slice, rows),
        rtol=1e-4,
        atol=1e-5,
    )


def test_a_changed_pair_list_invalidates_old_shards(
    scifact_slice, mined, tiny_models, tmp_path, capsys, monkeypatch
):
    """Prevents reusing shards for pairs they do not hold. Shards keep pairs by position, so when
    the pair list changes order or content while every input file stays the same (new code that
    orders queries or picks added positives differently), an old shard's rows would be kept
    under another job's pairs: the new run must discard them and label the new list."""
    import distill.label as label_module

    out = tmp_path / "l"
    teacher = tiny_models["bert-cross"]
    code, _, err = _label(capsys, scifact_slice, mined, teacher, out, "--shard-size", "100")
    assert code == 0, err
    first = [(r["qid"], r["did"]) for r in read_labels(out).to_pylist()]
    real = label_module.pair_list
    monkeypatch.setattr(label_module, "pair_list", lambda *a, **k: real(*a, **k)[::-1])
    code, _, err = _label(capsys, scifact_slice, mined, teacher, out, "--shard-size", "100")
    assert code == 0, err
    assert "discarded 5 old shards" in err  # 401 pairs, 100 a shard
    rows = read_labels(out).to_pylist()
    assert [(r["qid"], r["did"]) for r in rows] == first[::-1]
    np.testing.assert_allclose(
        [r["score"] for r in rows], _direct(teacher, scifact_slice, rows), rtol=1e-4, atol=1e-5
    )


def test_queries_without_qrels(scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents labelling from requiring qrels (search logs, pseudo-queries)."""
    qfile = tmp_path / "log.jsonl"
    qfile.write_text(
        "".join(
            json.dumps({"_id": f"u{i}", "text": t}) + "\n"
            for i, t in enumerate(["cancer risk", "vitamin D bone"])
        )
    )
    assert (
        run_cli(
            [
                "mine",
                scifact_slice,
                "--queries",
                qfile,
                "--method",
                "bm25",
                "--k",
                "5",
                "--output",
                tmp_path / "m",
            ],
            capsys,
        )[0]
        == 0
    )
    code, _, err = run_cli(
        [
            "label",
            scifact_slice,
            "--candidates",
            tmp_path / "m" / "candidates.parquet",
            "--teacher",
            tiny_models["bert-cross"],
            "--queries",
            qfile,
            "--output",
            tmp_path / "l",
        ],
        capsys,
    )
    assert code == 0, err
    table = pq.read_table(tmp_path / "l" / "shard-00000.parquet").to_pylist()
    assert len(table) == 10 and {r["gold"] for r in table} == {-1}
    assert all(0 < r["prob"] < 1 for r in table)


def test_ensemble_member_columns(scifact_slice, mined, tiny_models, tmp_path, capsys):
    """Prevents an ensemble's member scores being dropped from the labels."""
    import shutil

    from teachers.calibration import Calibration
    from teachers.scoring import save_ensemble

    ens = tmp_path / "ens"
    for name in ("bert-cross", "deberta-cross"):
        shutil.copytree(tiny_models[name], ens / "members" / name)
    Calibration(temperature=2.0, bias=1.0, method="platt").save(ens / "members" / "bert-cross")
    save_ensemble(
        ens,
        [("bert", "members/bert-cross", 0.25), ("deberta", "members/deberta-cross", 0.75)],
        Calibration(),
    )
    code, _, err = _label(capsys, scifact_slice, mined, ens, tmp_path / "l")
    assert code == 0, err
    manifest = json.loads((tmp_path / "l" / "manifest.json").read_text())
    assert manifest["figures"]["score_kind"] == "weighted calibrated logit"  # not a probability
    rows = read_labels(tmp_path / "l").to_pylist()[:50]
    bert = _direct(tiny_models["bert-cross"], scifact_slice, rows)
    deberta = _direct(tiny_models["deberta-cross"], scifact_slice, rows)
    np.testing.assert_allclose([r["score_bert"] for r in rows], bert, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        [r["score"] for r in rows], 0.25 * (bert / 2 + 1) + 0.75 * deberta, rtol=1e-4, atol=1e-5
    )


def test_fidelity_spearman_gives_ties_their_average_rank():
    """Prevents a fidelity figure that depends on the order of tied scores: Spearman's rho
    ranks ties by their average rank (the definition scipy follows)."""
    from teachers.precision import spearman

    exact, fast = [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]
    # ranks of fast: [1.5, 1.5, 3.5, 3.5]; deviations [-1, -1, 1, 1] against [-1.5, -0.5, 0.5,
    # 1.5] of exact: 4 / sqrt(4 * 5) = 2 / sqrt(5) = 0.894427
    assert scipy.stats.spearmanr(exact, fast).statistic == pytest.approx(0.894427, abs=1e-6)
    assert spearman(np.array(exact), np.array(fast)) == pytest.approx(0.894427, abs=1e-6)


def test_int8_mode_reports_fidelity(scifact_slice, mined, tiny_models, tmp_path, capsys):
    """Prevents a faster, approximate mode that does not tell the user how approximate it is,
    or reports a fidelity other than the Spearman correlation of its scores with exact fp32
    scores on the first --fidelity-sample pairs."""
    code, out, err = _label(
        capsys,
        scifact_slice,
        mined,
        tiny_models["bert-cross"],
        tmp_path / "q",
        "--precision",
        "int8",
        "--fidelity-sample",
        "100",
    )
    assert code == 0, err
    assert "int8 fidelity: Spearman" in out
    rho = json.loads((tmp_path / "q" / "manifest.json").read_text())["figures"]["fidelity_spearman"]
    assert f"int8 fidelity: Spearman {rho:.4f} against exact fp32 on 100 pairs" in out
    # independently: the first 100 pairs scored by fp32 CrossEncoder.predict and by a copy
    # quantized here with torch's own dynamic int8 (batch 32, as the label command scores)
    rows = read_labels(tmp_path / "q").to_pylist()[:100]
    exact = _direct(tiny_models["bert-cross"], scifact_slice, rows)
    quantized = CrossEncoder(tiny_models["bert-cross"])
    torch.ao.quantization.quantize_dynamic(
        quantized, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
    )
    from distill.data import BeirDataset

    ds = BeirDataset(scifact_slice)
    pairs = [(ds.queries[r["qid"]], ds.corpus[r["did"]].full_text) for r in rows]
    int8 = quantized.predict(pairs, activation_fn=torch.nn.Identity(), batch_size=32)
    # the manifest rounds to 4 places: within 5e-5 of scipy's value
    assert rho == pytest.approx(scipy.stats.spearmanr(exact, int8).statistic, abs=6e-5)


@pytest.mark.parametrize(
    "precision",
    ["onnx", "onnx-int8"],
)
def test_onnx_modes(scifact_slice, mined, tiny_models, tmp_path, capsys, precision):
    """Prevents the ONNX fast path from scoring other pairs than the exact path (fp32 must
    match closely; int8 must run and report as its fidelity the Spearman correlation of its
    scores with exact fp32 scores on the first --fidelity-sample pairs)."""
    code, _, err = _label(
        capsys,
        scifact_slice,
        mined,
        tiny_models["bert-cross"],
        tmp_path / "o",
        "--precision",
        precision,
        "--fidelity-sample",
        "200",
        "--shard-size",
        "200",  # the first shard holds the fidelity sample's pairs, scored in the same batches
    )
    assert code == 0, err
    rows = read_labels(tmp_path / "o").to_pylist()
    direct = _direct(tiny_models["bert-cross"], scifact_slice, rows)
    if precision == "onnx":
        np.testing.assert_allclose([r["score"] for r in rows], direct, rtol=1e-3, atol=1e-4)
    rho = json.loads((tmp_path / "o" / "manifest.json").read_text())["figures"]["fidelity_spearman"]
    # int8 fidelity is measured on the real MiniLM by benchmarks/label_speed.py; a tiny random
    # model's scores differ too little for quantization noise to keep their order, so rho is
    # checked against scipy's Spearman of the stored scores and exact fp32 ones, not a floor.
    # exact scores of the sample alone: fp32 noise depends on what shares a batch, and this
    # model's scores differ by ~1e-5, so the 200 pairs are scored as the label command does
    exact = _direct(tiny_models["bert-cross"], scifact_slice, rows[:200])
    expected = scipy.stats.spearmanr(exact, [r["score"] for r in rows[:200]]).statistic
    assert rho == pytest.approx(expected, abs=6e-5)  # the manifest rounds to 4 places
    if precision == "onnx":
        assert rho > 0.999
