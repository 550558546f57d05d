"""Labelling speed: `distill label` (each precision) against `CrossEncoder.predict`, side by side.

Same pairs, same model, same batch size, in one process. The teacher body is the real bundled
all-MiniLM-L6-v2: by default a mean-pooled cross-encoder built from it with an untrained head
(the cost is the same), or with ``--teacher`` a trained one (``distill teach``'s cross-encoder
member), whose fidelity figures are the ones that matter.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/label_speed.py --queries 100 --k 50 --max-length 256

Prints a Markdown table: pairs/s, ratio to CrossEncoder.predict, Spearman against fp32.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distill import data, label, mine, retrieval
from teachers.train import build_mean_pool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/scifact")
    ap.add_argument("--queries", type=int, default=100, help="train queries used")
    ap.add_argument("--k", type=int, default=50, help="BM25 candidates per query")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--repeats", type=int, default=2, help="timed runs of the exact path and predict (median)"
    )
    ap.add_argument("--modes", default="torch,onnx-int8,int8")
    ap.add_argument(
        "--teacher",
        default=None,
        help="a trained cross-encoder folder (its body must be the bundled MiniLM) instead of the untrained mean-pool head",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="label-bench-"))
    ds = data.BeirDataset(args.data)
    qrels = ds.qrels("train")
    qids = sorted(qrels)[: args.queries]
    queries = {q: ds.queries[q] for q in qids}
    run = retrieval.bm25_search(ds.corpus, queries, args.k)
    mine.write_candidates(run, "bm25", work / "candidates.parquet")
    qfile = work / "queries.jsonl"
    qfile.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    teacher_dir = work / "teacher"
    if args.teacher:
        from sentence_transformers import CrossEncoder as _CE

        _CE(args.teacher, max_length=args.max_length).save(str(teacher_dir))
    else:
        build_mean_pool("bundled", args.max_length, seed=0).save(str(teacher_dir))
    pairs_ids = label.pair_list(label.read_ranked(work / "candidates.parquet"), None, False)
    pairs = [(queries[q], ds.corpus[d].full_text) for q, d in pairs_ids]
    print(
        f"{len(pairs)} pairs, max_length {args.max_length}, batch {args.batch_size}, torch threads {torch.get_num_threads()}"
    )

    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(teacher_dir))
    exact_scores = None

    def time_predict() -> float:
        nonlocal exact_scores
        start = time.perf_counter()
        exact_scores = ce.predict(
            pairs,
            batch_size=args.batch_size,
            activation_fn=torch.nn.Identity(),
            show_progress_bar=False,
        )
        return time.perf_counter() - start

    def time_label(precision: str) -> tuple[float, np.ndarray]:
        out = work / f"labels-{precision}"
        shutil.rmtree(out, ignore_errors=True)
        config = label.LabelConfig(
            data=args.data,
            candidates=str(work / "candidates.parquet"),
            teacher=str(teacher_dir),
            queries=str(qfile),
            output=str(out),
            batch_size=args.batch_size,
            precision=precision,
            fidelity_sample=0,
            shard_size=len(pairs),
        )
        start = time.perf_counter()
        label.run(config, echo=lambda *a, **k: None)
        seconds = time.perf_counter() - start
        return seconds, np.asarray(label.read_labels(out).column("score").to_numpy())

    predict_s, exact_s = [], []
    for _ in range(args.repeats):  # alternate, so drift on a shared machine hits both
        predict_s.append(time_predict())
        seconds, label_scores = time_label("exact")
        exact_s.append(seconds)
    rows = [("CrossEncoder.predict", statistics.median(predict_s), 1.0)]
    print(f"exact mode max |diff| vs predict: {np.abs(label_scores - exact_scores).max():.2e}")
    rows.append(
        (
            "distill label (exact)",
            statistics.median(exact_s),
            label.spearman(exact_scores, label_scores),
        )
    )
    for mode in [m for m in args.modes.split(",") if m]:
        seconds, scores = time_label(mode)
        rows.append((f"distill label ({mode})", seconds, label.spearman(exact_scores, scores)))
        if mode == "torch":
            print(f"torch mode max |diff| vs predict: {np.abs(scores - exact_scores).max():.2e}")
    base = rows[0][1]
    print(
        "\n| path | seconds | pairs/s | speed vs predict | Spearman vs fp32 |\n| --- | --- | --- | --- | --- |"
    )
    for name, seconds, rho in rows:
        print(
            f"| {name} | {seconds:.1f} | {len(pairs) / seconds:.1f} | {base / seconds:.2f}x | {rho:.4f} |"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
