"""`distill mine`: BM25, dense and hybrid mining find a planted relevant document."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import write_beir
from helpers import run_cli

from distill import retrieval
from distill.candidates import read_candidates
from distill.metrics import trec_order


@pytest.fixture()
def planted(tmp_path, scifact_slice):
    """The SciFact slice plus a query whose only relevant document is planted in the corpus."""
    corpus = {}
    with open(scifact_slice / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = (d["title"], d["text"])
    text = "zebrafish fin regeneration requires osteoblast dedifferentiation"
    corpus["planted"] = ("", text)
    return write_beir(tmp_path / "beir", corpus, {"qp": text}, {"test": {"qp": {"planted": 1}}})


@pytest.mark.parametrize("method", ["bm25", "dense", "hybrid"])
def test_planted_document_is_mined(planted, tmp_path, tiny_models, method, capsys):
    """Prevents a retriever that loses the relevant document (nothing downstream can recover it)."""
    out = tmp_path / "mine"
    argv = [
        "mine",
        planted,
        "--queries",
        "test",
        "--method",
        method,
        "--k",
        5,
        "--output",
        out,
        "--model",
        tiny_models["bert-bi"],
        "--cache-dir",
        tmp_path / "cache",
    ]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    table = pq.read_table(out / "candidates.parquet").to_pylist()
    assert len(table) == 5
    assert table[0]["qid"] == "qp" and table[0]["did"] == "planted" and table[0]["rank"] == 1
    assert {r["source"] for r in table} == {method}
    assert [r["rank"] for r in table] == [1, 2, 3, 4, 5]
    assert "recall@5 1.000" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["figures"]["recall@5"] == 1.0


def test_unlabeled_queries_file(planted, tmp_path, capsys):
    """Prevents mining from requiring qrels: search-log queries with no labels work."""
    qfile = tmp_path / "log.jsonl"
    qfile.write_text(
        json.dumps({"_id": "u1", "text": "zebrafish fin regeneration"}) + "\n", encoding="utf-8"
    )
    out = tmp_path / "mine"
    code, _, err = run_cli(
        ["mine", planted, "--queries", qfile, "--method", "bm25", "--k", 3, "--output", out], capsys
    )
    assert code == 0, err
    assert (
        trec_order(read_candidates(out / "candidates.parquet", with_scores=True).scores["u1"])[0]
        == "planted"
    )


def test_corpus_embeddings_are_cached(scifact_slice, tmp_path, tiny_models):
    """Prevents re-encoding the corpus for every stage and query set."""
    from distill.data import BeirDataset
    from distill.models import load_bi_encoder

    corpus = BeirDataset(scifact_slice).corpus
    model = load_bi_encoder(tiny_models["bert-bi"])
    ids, first = retrieval.encode_corpus(
        model, corpus, model_path=tiny_models["bert-bi"], cache_dir=tmp_path
    )
    assert len(list(tmp_path.glob("corpus-*.npy"))) == 1
    calls = []
    original = model.encode
    model.encode = lambda *a, **k: calls.append(1) or original(*a, **k)
    _, second = retrieval.encode_corpus(
        model, corpus, model_path=tiny_models["bert-bi"], cache_dir=tmp_path
    )
    assert calls == [] and (first == second).all() and len(ids) == len(corpus)


def test_a_killed_corpus_encoding_resumes_and_shows_progress(
    scifact_slice, tmp_path, tiny_models, monkeypatch, capsys
):
    """Prevents a long corpus encoding (hours for a million documents on a CPU) that prints
    nothing to a log and starts again from zero when it is killed: chunks are saved as they
    end, a re-run encodes only the rest, and the result equals one encode() of the whole
    corpus."""
    from distill.data import BeirDataset
    from distill.models import load_bi_encoder

    monkeypatch.setattr(retrieval, "CHUNK_DOCS", 100)
    monkeypatch.setenv("DISTILL_PROGRESS_SECONDS", "0")
    corpus = BeirDataset(scifact_slice).corpus
    chunks = -(-len(corpus) // 100)
    assert chunks >= 3
    model = load_bi_encoder(tiny_models["bert-bi"])
    original = model.encode
    calls = []

    def killed_at_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*a, **k)

    model.encode = killed_at_third
    with pytest.raises(KeyboardInterrupt):
        retrieval.encode_corpus(
            model, corpus, model_path=tiny_models["bert-bi"], cache_dir=tmp_path
        )
    assert not list(tmp_path.glob("corpus-*.npy")) and len(list(tmp_path.glob("*/0*.npy"))) == 2
    calls.clear()
    model.encode = lambda *a, **k: calls.append(1) or original(*a, **k)
    ids, emb = retrieval.encode_corpus(
        model, corpus, model_path=tiny_models["bert-bi"], cache_dir=tmp_path
    )
    assert len(calls) == chunks - 2  # the two saved chunks were not encoded again
    whole = original([corpus[d].full_text for d in ids], convert_to_numpy=True)
    np.testing.assert_allclose(emb, whole, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.glob("corpus-*.npy")).name]
    err = capsys.readouterr().err
    assert re.search(rf"encoding the corpus: [\d,]+/{len(corpus):,} docs \(\d+%\).*ETA", err)


def test_rrf_by_hand():
    """Prevents a fusion that adds raw scores (BM25 dwarfs cosine) instead of reciprocal ranks."""
    a = {"q": {"x": 30.0, "y": 20.0}}
    b = {"q": {"y": 0.9, "z": 0.8}}
    fused = retrieval.rrf([a, b], k=60)
    assert fused["q"]["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["q"]["x"] == pytest.approx(1 / 61)
    assert fused["q"]["z"] == pytest.approx(1 / 62)
    assert list(retrieval.rrf([a, b], k=60, depth=1)["q"]) == ["y"]


def test_approximate_indexes_agree_with_exact():
    """Prevents a misconfigured IVF/HNSW index (wrong metric) returning unrelated neighbours."""
    import numpy as np

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((500, 16)).astype("float32")
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    exact = retrieval.build_index(emb, "flat", gpu=False).search(emb[:20], 1)[1][:, 0]
    for kind in ("ivf", "hnsw"):
        approx = retrieval.build_index(emb, kind, gpu=False).search(emb[:20], 1)[1][:, 0]
        assert (approx == exact).mean() >= 0.9, kind


def test_labelled_and_unlabelled_queries_together(planted, tmp_path, capsys):
    """Prevents the few-labels case from being impossible: a qrels split and a file of
    unlabelled queries are mined as one set, the labelled query keeps its qrels (recall is
    computed over it alone) and a query id with two different texts is refused."""
    from distill import data
    from distill.querysets import load_query_set

    qfile = tmp_path / "log.jsonl"
    qfile.write_text(json.dumps({"_id": "u1", "text": "osteoblast dedifferentiation"}) + "\n")
    queries, qrels, files = load_query_set(data.open_dataset(str(planted)), f"test,{qfile}")
    assert queries == {
        "qp": "zebrafish fin regeneration requires osteoblast dedifferentiation",
        "u1": "osteoblast dedifferentiation",
    }
    assert qrels == {"qp": {"planted": 1}}
    assert files == [planted / "qrels" / "test.tsv", qfile]

    out = tmp_path / "mine"
    code, stdout, err = run_cli(
        ["mine", planted, "--queries", f"test,{qfile}", "--method", "bm25", "--k", 3,
         "--output", out], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "for 2 queries" in stdout and "recall@3 1.000" in stdout
    assert set(read_candidates(out / "candidates.parquet", with_scores=True).scores) == {"qp", "u1"}

    clash = tmp_path / "clash.jsonl"
    clash.write_text(json.dumps({"_id": "qp", "text": "another text"}) + "\n")
    code, _, err = run_cli(
        ["mine", planted, "--queries", f"test,{clash}", "--output", tmp_path / "m2"], capsys
    )
    assert code == 2 and "'qp' has two different texts" in err
