"""The student as it would be served: ONNX fp32 and int8 exports of the encoder, and int8 or
binary corpus embeddings, each measured the same way (:func:`serving_table`): NDCG@10 by full
retrieval, p50 latency of one query (encode + search), and the index's size in memory.

Why not sentence-transformers' own exporters: ``SentenceTransformer(..., backend="onnx")`` and
``export_dynamic_quantized_onnx_model`` need optimum-onnx, whose current release (0.1.0)
requires transformers < 4.58, and this project runs transformers 5. So the export is torch's
(``torch.onnx.export``) and the int8 weights come from onnxruntime's dynamic quantizer, as for
the teacher (:mod:`teachers.onnx`). The exported graph holds the whole encoder, pooling and
normalisation included: inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where
the tokenizer makes them), output ``sentence_embedding``.

Embeddings: int8 is faiss' 8-bit scalar quantizer (one byte per dimension, ranges trained on
the corpus); binary is sentence-transformers' ``quantize_embeddings(..., "ubinary")`` in a
faiss binary index, searched by Hamming distance and the top ``4 k`` rescored with the float
query (as ``semantic_search_faiss`` does). Index sizes are those of the serialized faiss
indexes.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from distill import console

FP32_FILE = "student.onnx"
INT8_FILE = "student-int8.onnx"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(model, folder: str | Path, *, int8: bool) -> Path:
    """Write ``folder/student.onnx`` (and ``student-int8.onnx`` with ``int8``); return the
    file asked for. Existing files are reused (their names are per model folder)."""
    import torch

    from distill.artifacts import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / FP32_FILE
    if not fp32.is_file():
        sample = model.preprocess(["a query", "a longer document text"])
        names = [k for k in _INPUTS if k in sample]

        class Embed(torch.nn.Module):
            def __init__(self, st) -> None:
                super().__init__()
                self.st = st

            def forward(self, *tensors):
                features = dict(zip(names, tensors, strict=True)) | {"modality": "text"}
                return self.st(features)["sentence_embedding"]

        axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"sentence_embedding": {0: "batch"}}
        with atomic_path(fp32) as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracing caveats; the result is checked against torch
            torch.onnx.export(
                Embed(model).eval(),
                tuple(sample[n] for n in names),
                str(tmp),
                input_names=names,
                output_names=["sentence_embedding"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
    if not int8:
        return fp32
    path = folder / INT8_FILE
    if not path.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with atomic_path(path) as tmp, console.quiet_root_logger():
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    return path


class OnnxEncoder:
    """``encode(texts)`` of a SentenceTransformer, computed by onnxruntime from an export."""

    def __init__(self, model, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        import torch

        self.model = model
        self.max_seq_length = model.max_seq_length
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: Sequence[str], batch_size: int = 32, **_) -> np.ndarray:
        texts = list(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths together
        out = None
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            features = self.model.preprocess([texts[i] for i in idx])
            feed = {k: features[k].numpy() for k in self.inputs}
            emb = self.session.run(None, feed)[0]
            if out is None:
                out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


class BinaryIndex:
    """Binary embeddings (1 bit per dimension) searched by Hamming distance, the top
    ``rescore * k`` rescored with the float query against the ±1 vectors."""

    def __init__(self, embeddings: np.ndarray, rescore: int = 4) -> None:
        import faiss
        from sentence_transformers.util.quantization import quantize_embeddings

        self.dim = embeddings.shape[1]
        self.codes = quantize_embeddings(embeddings, precision="ubinary")
        self.index = faiss.IndexBinaryFlat(self.codes.shape[1] * 8)
        self.index.add(self.codes)
        self.rescore = rescore

    def search(self, queries: np.ndarray, k: int):
        from sentence_transformers.util.quantization import quantize_embeddings

        deep = min(self.index.ntotal, k * self.rescore)
        _, hits = self.index.search(quantize_embeddings(queries, precision="ubinary"), deep)
        signs = np.unpackbits(self.codes[hits], axis=-1)[..., : self.dim].astype(np.float32)
        scores = np.einsum("qd,qkd->qk", queries, signs * 2 - 1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, 1), np.take_along_axis(hits, best, 1)

    def nbytes(self) -> int:
        import faiss

        return int(faiss.serialize_index_binary(self.index).nbytes)


def int8_index(embeddings: np.ndarray):
    """faiss' 8-bit scalar quantizer (inner product), ranges trained on the corpus."""
    import faiss

    index = faiss.IndexScalarQuantizer(
        embeddings.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    index.train(embeddings)
    index.add(embeddings)
    return index


def index_bytes(index) -> int:
    import faiss

    if isinstance(index, BinaryIndex):
        return index.nbytes()
    return int(faiss.serialize_index(index).nbytes)


def _p50_ms(encoder, index, doc_ids, texts: Sequence[str], k: int) -> float:
    from distill import retrieval

    times = []
    for text in texts:
        started = time.perf_counter()
        retrieval.search_index(encoder, index, doc_ids, {"q": text}, k, batch_size=1)
        times.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(times)), 2)


def serving_table(
    model,
    model_path: str,
    corpus: Mapping,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    k: int,
    timed: int,
    batch_size: int,
    cache_dir: str | Path,
    echo,
) -> list[dict]:
    """One row per way of serving the student: (encoder, embeddings) in torch fp32 / fp32,
    ONNX fp32 / fp32, ONNX int8 / fp32, torch fp32 / int8, torch fp32 / binary. Each row:
    NDCG@10 over ``queries`` by full retrieval, p50 ms of one query (the first ``timed``
    queries, encode + search), the index's MB; rows are timed one after another in one run."""
    from distill import metrics, retrieval
    from distill.artifacts import fingerprint

    local = Path(model_path).exists()  # a hub id is keyed by its name
    key = fingerprint(model_path) if local else hashlib.sha256(model_path.encode()).hexdigest()
    folder = Path(cache_dir) / f"onnx-{key[:20]}"
    encoders = {
        "torch fp32": (model, model_path),
        "ONNX fp32": None,
        "ONNX int8": None,
    }
    for name, int8 in (("ONNX fp32", False), ("ONNX int8", True)):
        path = export_onnx(model, folder, int8=int8)
        encoders[name] = (OnnxEncoder(model, path), str(path))
    rows = []
    plan = [(e, "fp32") for e in encoders] + [("torch fp32", "int8"), ("torch fp32", "binary")]
    sample = list(queries.values())[:timed]
    console.detail(
        echo, f"serving: the student measured {len(plan)} ways (ONNX export, int8, binary)"
    )
    for encoder_name, embeddings in plan:
        encoder, key = encoders[encoder_name]
        doc_ids, emb = retrieval.encode_corpus(
            encoder, corpus, model_path=key, batch_size=batch_size, cache_dir=cache_dir
        )
        index = {
            "fp32": lambda e: retrieval.build_index(e, "flat"),
            "int8": int8_index,
            "binary": BinaryIndex,
        }[embeddings](emb)
        ranking = retrieval.search_index(
            encoder, index, doc_ids, queries, 100, batch_size=batch_size
        )
        ndcg = metrics.summarize(qrels, ranking, ["ndcg@10"])["ndcg@10"]
        rows.append(
            {
                "encoder": encoder_name,
                "embeddings": embeddings,
                "ndcg@10": round(float(ndcg), 4),
                "latency_ms_p50": _p50_ms(encoder, index, doc_ids, sample, k),
                "index_mb": round(index_bytes(index) / 2**20, 3),
                "index_bytes": index_bytes(index),
            }
        )
    return rows
