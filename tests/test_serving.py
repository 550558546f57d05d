"""The student as served (distill.serving): ONNX exports that compute what torch computes, and
quantized-embedding indexes that find what exact search finds."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from distill import serving

TEXTS = [
    "zebrafish fin regeneration",
    "a much longer text about osteoblast dedifferentiation in regenerating fins of fish",
    "p53",
]


def test_onnx_encoders_compute_the_torch_embeddings(tiny_models, tmp_path):
    """Prevents a served ONNX model whose embeddings differ from the trained student's (wrong
    pooling, missing normalisation, inputs dropped or mixed up by the export)."""
    model = SentenceTransformer(tiny_models["bert-bi"])
    expected = model.encode(TEXTS, convert_to_numpy=True)
    fp32 = serving.OnnxEncoder(model, serving.export_onnx(model, tmp_path, int8=False))
    np.testing.assert_allclose(fp32.encode(TEXTS, batch_size=2), expected, atol=1e-5)
    int8 = serving.OnnxEncoder(model, serving.export_onnx(model, tmp_path, int8=True))
    got = int8.encode(TEXTS, batch_size=2)
    cosine = (
        (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    )
    assert got.shape == expected.shape and cosine.min() > 0.9
    assert (tmp_path / serving.INT8_FILE).stat().st_size < (
        tmp_path / serving.FP32_FILE
    ).stat().st_size


def test_binary_index_by_hand():
    """Prevents a binary index that ranks by the wrong bits or skips the float rescoring:
    4 documents in 8 dimensions whose order is worked out by hand."""
    docs = np.array(
        [
            [1, 1, 1, 1, -1, -1, -1, -1],  # signs agree with the query's on 7 of 8 dimensions
            [1, 1, 1, -1, -1, -1, -1, -1],  # 6 of 8
            [-1, -1, -1, -1, 1, 1, 1, 1],  # 1 of 8
            [1, 1, 1, 1, -1, -1, -1, 1],  # 8 of 8
        ],
        dtype=np.float32,
    )
    query = np.array([[0.1, 0.1, 0.1, 0.1, -0.1, -0.1, -0.1, 0.9]], dtype=np.float32)
    # rescoring: query . sign(doc) = 0.4 + 0.3 - 0.9 = -0.2 (d0); 0.3 - 0.1 + 0.3 - 0.9 = -0.4
    # (d1); -0.4 - 0.3 + 0.9 = 0.2 (d2); 0.4 + 0.3 + 0.9 = 1.6 (d3). Hamming: d3, d0 first.
    index = serving.BinaryIndex(docs, rescore=1)
    scores, hits = index.search(query, 2)
    assert hits.tolist() == [[3, 0]]  # the two nearest in Hamming distance, rescored
    np.testing.assert_allclose(scores, [[1.6, -0.2]], atol=1e-6)
    index = serving.BinaryIndex(docs, rescore=2)
    _, hits = index.search(query, 4)
    assert hits.tolist() == [[3, 2, 0, 1]]  # every document, by the float rescoring
    assert index.nbytes() < docs.nbytes


def test_int8_index_finds_what_exact_search_finds():
    """Prevents an int8 index that loses the neighbours (ranges untrained, wrong metric)."""
    import faiss

    rng = np.random.default_rng(0)
    docs = rng.normal(size=(500, 32)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[:50] + 0.1 * rng.normal(size=(50, 32)).astype(np.float32)
    exact = faiss.IndexFlatIP(32)
    exact.add(docs)
    _, want = exact.search(queries, 10)
    index = serving.int8_index(docs)
    _, got = index.search(queries, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got, strict=True)])
    assert overlap >= 0.95
    assert serving.index_bytes(index) < docs.nbytes / 3  # one byte per dimension, not four


@pytest.mark.parametrize("dims", [8, 12])
def test_binary_index_handles_dimensions_not_a_multiple_of_8(dims):
    """Prevents padding bits from counting in the rescoring when dimensions % 8 != 0."""
    rng = np.random.default_rng(1)
    docs = np.sign(rng.normal(size=(20, dims))).astype(np.float32)
    query = rng.normal(size=(1, dims)).astype(np.float32)
    scores, hits = serving.BinaryIndex(docs, rescore=100).search(query, 20)
    np.testing.assert_allclose(scores[0], (docs @ query[0])[hits[0]], atol=1e-5)
    assert sorted(scores[0], reverse=True) == list(scores[0])
