"""Shared fixtures: tiny random models built locally, and slices of the real SciFact data.

Nothing here touches a model hub: the tiny models use the bundled all-MiniLM-L6-v2 tokenizer
and random weights (2 layers, hidden size 32), and are built once per test session.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    """The real SciFact folder (../shared/data/scifact beside the checkout)."""
    if not (SCIFACT / "queries.jsonl").exists():
        pytest.fail(
            f"SciFact not found at {SCIFACT}; CI and dev machines have ../shared beside the repo"
        )
    return SCIFACT


@pytest.fixture(scope="session")
def bundled_tokenizer():
    from distill.models import load_tokenizer

    return load_tokenizer("bundled")


def _save_tiny(model, tokenizer, path: Path) -> str:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, bundled_tokenizer) -> dict[str, str]:
    """Paths of tiny random models: ``bert-cross``, ``deberta-cross``, ``bert-bi``, ``deberta-bi``.

    Cross-encoders are ``*ForSequenceClassification`` with one label (CrossEncoder loads them);
    bi-encoders are SentenceTransformer folders with mean pooling.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        DebertaV2Model,
    )

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-models")
    tok = bundled_tokenizer
    common = {
        **TINY,
        "vocab_size": len(tok),
        "max_position_embeddings": 512,
        "pad_token_id": tok.pad_token_id,
    }
    paths = {
        "bert-cross": _save_tiny(
            BertForSequenceClassification(BertConfig(**common, num_labels=1)),
            tok,
            root / "bert-cross",
        ),
        "deberta-cross": _save_tiny(
            DebertaV2ForSequenceClassification(DebertaV2Config(**common, num_labels=1)),
            tok,
            root / "deberta-cross",
        ),
    }
    for name, model in (
        ("bert", BertModel(BertConfig(**common))),
        ("deberta", DebertaV2Model(DebertaV2Config(**common))),
    ):
        raw = _save_tiny(model, tok, root / f"{name}-raw")
        transformer = Transformer(raw, max_seq_length=128)
        bi = SentenceTransformer(modules=[transformer, Pooling(TINY["hidden_size"], "mean")])
        bi.save(str(root / f"{name}-bi"))
        paths[f"{name}-bi"] = str(root / f"{name}-bi")
    return paths


def write_beir(root: Path, corpus: dict, queries: dict, qrels: dict[str, dict]) -> Path:
    """Write a BEIR folder: corpus {id: (title, text)}, queries {id: text}, qrels {split: {q: {d: g}}}."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        for did, (title, text) in corpus.items():
            f.write(json.dumps({"_id": did, "title": title, "text": text}) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, rows in qrels.items():
        with open(root / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q, docs in rows.items():
                for d, g in docs.items():
                    f.write(f"{q}\t{d}\t{g}\n")
    return root


@pytest.fixture(scope="session")
def scifact_slice(tmp_path_factory, scifact_dir) -> Path:
    """A small real BEIR folder: 40 train and 20 test SciFact queries, their relevant
    abstracts and the first 300 other abstracts of the corpus (same order as the original)."""
    from distill.data import load_qrels

    qrels = {s: load_qrels(scifact_dir / "qrels" / f"{s}.tsv") for s in ("train", "test")}
    qrels = {
        "train": dict(list(qrels["train"].items())[:40]),
        "test": dict(list(qrels["test"].items())[:20]),
    }
    wanted_docs = {d for rows in qrels.values() for docs in rows.values() for d in docs}
    wanted_queries = {q for rows in qrels.values() for q in rows}
    corpus, queries = {}, {}
    with gzip.open(scifact_dir / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            doc = json.loads(line)
            if i < 300 or doc["_id"] in wanted_docs:
                corpus[doc["_id"]] = (doc["title"], doc["text"])
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in wanted_queries:
                queries[q["_id"]] = q["text"]
    return write_beir(tmp_path_factory.mktemp("scifact-slice"), corpus, queries, qrels)


@pytest.fixture(scope="module")
def bm25_train_candidates(scifact_slice, tmp_path_factory) -> Path:
    """`distill mine` BM25 top-10 for the slice's 40 train queries (candidates.parquet)."""
    from distill.cli import main

    out = tmp_path_factory.mktemp("mine")
    try:
        main(["mine", str(scifact_slice), "--queries", "train", "--method", "bm25", "--k", "10",
              "--output", str(out)])  # fmt: skip
    except SystemExit as exc:
        assert exc.code in (0, None)
    return out / "candidates.parquet"
