"""What each system costs on this machine, measured by ``distill evaluate``: query latency
(p50 / p95, one query at a time and batched), corpus encoding docs/s, teacher pairs/s, index
size; and the machine line the report prints beside them."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from distill import retrieval


class Timer:
    """Wall-clock samples in milliseconds."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def __call__(self, fn: Callable, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.samples.append((time.perf_counter() - start) * 1000)
        return out

    def p(self, q: float) -> float:
        return round(float(np.percentile(self.samples, q)), 2)


@dataclass
class BiEncoderSystem:
    model: Any
    doc_ids: list[str]
    index: Any
    embeddings_bytes: int


def measure_cost(
    config: Any,
    queries,
    corpus,
    bi: dict[str, BiEncoderSystem],
    teacher,
    first_stage: str,
) -> dict[str, dict]:
    """Speed of each system on this machine: latency per query (p50/p95, single and batched),
    corpus encoding docs/s, teacher pairs/s, index size."""
    sample = dict(list(queries.items())[: config.cost_queries])
    cost: dict[str, dict] = {}
    for name, system in bi.items():
        single = Timer()
        for text in sample.values():
            single(
                retrieval.search_index,
                system.model,
                system.index,
                system.doc_ids,
                {"q": text},
                config.k,
                batch_size=1,
            )
        batched = Timer()
        batched(
            retrieval.search_index,
            system.model,
            system.index,
            system.doc_ids,
            sample,
            config.k,
            batch_size=config.batch_size,
        )
        docs = [corpus[d].full_text for d in system.doc_ids[:256]]
        enc = Timer()
        enc(system.model.encode, docs, batch_size=config.batch_size)
        cost[name] = {
            "latency_ms_p50": single.p(50),
            "latency_ms_p95": single.p(95),
            "batched_ms_per_query": round(batched.samples[0] / len(sample), 2),
            "corpus_docs_per_s": round(len(docs) / (enc.samples[0] / 1000), 1),
            "index_mb": round(system.embeddings_bytes / 2**20, 2),
        }
    if "bm25" in config.chosen() or first_stage in ("bm25", "hybrid"):
        index = retrieval.BM25Index(corpus)
        single = Timer()
        for text in sample.values():
            single(index.search, {"q": text}, config.k)
        cost["bm25"] = {"latency_ms_p50": single.p(50), "latency_ms_p95": single.p(95)}
    if teacher is not None:
        few = list(sample.items())[:5]
        timer = Timer()
        for _qid, text in few:
            docs = (
                bi["base"].doc_ids[: config.rerank_k]
                if "base" in bi
                else list(corpus)[: config.rerank_k]
            )
            timer(teacher.score, [(text, corpus[d].full_text) for d in docs], config.batch_size)
        rerank_p50 = timer.p(50)
        first = cost.get(first_stage if first_stage != "hybrid" else "base", {}).get(
            "latency_ms_p50", 0.0
        )
        cost["teacher"] = {
            "pairs_per_s": round(config.rerank_k / (rerank_p50 / 1000), 1),
            "rerank_ms_p50": rerank_p50,
            "rerank_ms_p95": timer.p(95),
            "latency_ms_p50": round(first + rerank_p50, 2),
            "latency_ms_p95": round(first + timer.p(95), 2),
            "rerank_k": config.rerank_k,
        }
        if "student" in cost:
            cost["cascade"] = {
                "latency_ms_p50": round(cost["student"]["latency_ms_p50"] + rerank_p50, 2)
            }
            cost["student"]["speedup_vs_teacher"] = round(
                cost["teacher"]["latency_ms_p50"] / cost["student"]["latency_ms_p50"], 1
            )
    return cost


def machine_label() -> str:
    import os

    import torch

    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    )
    return f"{platform.node() or 'this machine'}: {device}, {platform.machine()}"
