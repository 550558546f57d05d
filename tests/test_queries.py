"""`distill queries`: pseudo-queries from documents, offline and with a seq2seq generator."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli

from distill.candidates import read_candidates
from distill.data import BeirDataset, load_qrels, load_queries


@pytest.mark.parametrize("method", ["sentence", "title"])
def test_offline_methods(scifact_slice, tmp_path, capsys, method):
    """Prevents pseudo-queries that are not from their source document, or a file that
    `distill mine --queries` cannot read (or mines other queries from: every pseudo-query
    gets its 5 candidates, and BM25 finds the document its words were taken from)."""
    out = tmp_path / "q"
    code, _, err = run_cli(
        ["queries", scifact_slice, "--method", method, "--max-docs", "30", "--output", out], capsys
    )
    assert code == 0, err
    queries = load_queries(out / "queries.jsonl")
    qrels = load_qrels(out / "qrels.tsv")
    corpus = BeirDataset(scifact_slice).corpus
    assert 20 <= len(queries) <= 30
    for qid, text in queries.items():
        (source,) = qrels[qid]
        doc = corpus[source]
        assert text == doc.title if method == "title" else text in doc.text
    rows = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    assert {r["metadata"]["method"] for r in rows} == {method}
    code, _, err = run_cli(
        [
            "mine",
            scifact_slice,
            "--queries",
            out / "queries.jsonl",
            "--method",
            "bm25",
            "--k",
            "5",
            "--output",
            tmp_path / "m",
        ],
        capsys,
    )
    assert code == 0, err
    ranked = read_candidates(tmp_path / "m" / "candidates.parquet").ranked
    assert set(ranked) == set(queries) and all(len(d) == 5 for d in ranked.values())
    # each query's words are its source document's (its only qrel): BM25 must rank that
    # document in the top 5 (on this slice it is first for all 30, by either method)
    missed = [qid for qid, docs in ranked.items() if next(iter(qrels[qid])) not in docs]
    assert not missed, missed


def test_cloze_removes_each_query_from_its_source(scifact_slice, tmp_path, capsys):
    """Prevents inverse-cloze queries that still sit word for word in their source (as easy as
    `sentence`'s), a corpus copy that changes anything but those sentences, or queries and
    qrels that differ from the original's. BM25 (bm25s, whole slice) must then miss some
    sources at rank 1 that it finds with the sentence in place."""
    import bm25s

    out = tmp_path / "q"
    code, _, err = run_cli(
        ["queries", scifact_slice, "--method", "cloze", "--max-docs", "30", "--output", out],
        capsys,
    )
    assert code == 0, err
    original, copy = BeirDataset(scifact_slice), BeirDataset(out / "data")
    assert (out / "data" / "queries.jsonl").read_bytes() == (
        original.root / "queries.jsonl"
    ).read_bytes()
    assert copy.splits() == original.splits()
    for split in original.splits():
        assert copy.qrels_path(split).read_bytes() == original.qrels_path(split).read_bytes()
    queries, qrels = load_queries(out / "queries.jsonl"), load_qrels(out / "qrels.tsv")
    assert 20 <= len(queries) <= 30
    sources = {next(iter(qrels[q])): t for q, t in queries.items()}
    before, after = original.corpus, copy.corpus
    assert before.keys() == after.keys()
    for did, doc in before.items():
        if did not in sources:
            assert after[did] == doc
            continue
        sentence, masked = sources[did], after[did]
        assert sentence in doc.text and sentence not in masked.text and masked.text.strip()
        assert masked.title == doc.title
        assert sorted((masked.text + " " + sentence).split()) == sorted(doc.text.split())

    def top1(corpus):
        ids = sorted(corpus)
        index = bm25s.BM25()
        index.index(bm25s.tokenize([corpus[d].full_text for d in ids], stopwords="en"))
        qids = sorted(queries)
        found, _ = index.retrieve(bm25s.tokenize([queries[q] for q in qids], stopwords="en"), k=1)
        return sum(ids[found[i][0]] == next(iter(qrels[q])) for i, q in enumerate(qids))

    assert top1(before) == len(queries)  # the sentence in place: always found first
    assert top1(after) < len(queries)


def test_generator_method(scifact_slice, tmp_path, bundled_tokenizer, capsys):
    """Prevents the doc2query path from breaking (a tiny random T5 stands in for a real one)."""
    from transformers import T5Config, T5ForConditionalGeneration

    tok = bundled_tokenizer
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_ff=64,
        num_layers=1,
        num_heads=2,
        d_kv=16,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    gen = tmp_path / "gen"
    T5ForConditionalGeneration(cfg).save_pretrained(gen)
    tok.save_pretrained(gen)
    out = tmp_path / "q"
    code, _, err = run_cli(
        [
            "queries",
            scifact_slice,
            "--method",
            "generator",
            "--generator",
            gen,
            "--max-docs",
            "6",
            "--per-doc",
            "2",
            "--max-new-tokens",
            "5",
            "--output",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    qrels = load_qrels(out / "qrels.tsv")
    assert 6 <= len(qrels) <= 12 and len({next(iter(d)) for d in qrels.values()}) == 6


def test_generator_needs_a_model(scifact_slice, tmp_path, capsys):
    """Prevents method=generator silently falling back to something else."""
    code, _, err = run_cli(
        ["queries", scifact_slice, "--method", "generator", "--output", tmp_path / "q"], capsys
    )
    assert code == 2 and "--generator" in err
