"""The faiss HNSW index distill mines with, at scale (a measurement, not a test).

``distill.retrieval.build_index(x, "hnsw")`` (M = 32, efSearch 128) on N random unit 384-d
vectors (all-MiniLM-L6-v2's width): build seconds, the search of 300 queries for their top
100, and peak RSS. The encoder's cost is measured by ``benchmarks/mine_scale.py``.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/hnsw_scale.py 1000000
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np

from distill.retrieval import build_index


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 384), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    started = time.time()
    index = build_index(x, "hnsw", gpu=False)
    build = time.time() - started
    queries = x[:300] + 0.1 * rng.standard_normal((300, 384), dtype=np.float32)
    started = time.time()
    index.search(queries, 100)
    search = time.time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"{n:,} vectors: build {build:.1f} s, 300 queries top 100 in {search:.2f} s, peak RSS {peak:.2f} GB"
    )


if __name__ == "__main__":
    main()
