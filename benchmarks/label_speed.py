"""Labelling speed: `distill label` (exact and each faster precision) against
`CrossEncoder.predict`, side by side, at the default thread count and at 1 thread.

Same pairs, same model, same batch size, in one process. The paths alternate over
``--repeats`` rounds (a neighbour's load hits all of them alike) and each figure is the median.
The teacher is the SciFact run's cross-encoder member when there is one
(``runs/scifact/teacher/members/teacher``), else the demo's (``runs/quickstart/...``), else a
mean-pooled cross-encoder on the bundled MiniLM with an untrained head (same cost, but its
fidelity figures mean little). The machine's load average is printed before and after, and
the share of CPU other processes took during the run: ratios from a busy machine are wrong, so
the script says so.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/label_speed.py --queries 100 --k 50

Prints one Markdown table per thread count: seconds, pairs/s, ratio to CrossEncoder.predict,
max |diff| and Spearman against predict's fp32 scores.

``--short`` cuts every document to its first ``--short`` words, so that every pair fits the
teacher's max_length: the check that windowed scoring costs nothing where no window is
needed. A mode may name a pooling after a colon (``torch:max``: torch scoring, documents
longer than max_length scored as windows pooled by max).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/label_speed.py --short 40 \
        --modes torch,torch:max,exact,exact:max
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distill import artifacts, data, label, mine, retrieval
from teachers.precision import spearman
from teachers.recipe import build_mean_pool

TEACHERS = ("runs/scifact/teacher/members/teacher", "runs/quickstart/teacher/members/teacher")


def _busy_jiffies() -> int:
    """CPU time (jiffies) all processes spent not idle, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # minus idle and iowait


class Quiet:
    """How much CPU other processes took while the benchmark ran (Linux; else unknown)."""

    def __enter__(self):
        self.load_before = os.getloadavg()
        self.wall, self.own = time.perf_counter(), sum(os.times()[:4])
        self.busy = _busy_jiffies() if Path("/proc/stat").is_file() else None
        return self

    def __exit__(self, *exc) -> None:
        self.load_after = os.getloadavg()
        wall = time.perf_counter() - self.wall
        own = sum(os.times()[:4]) - self.own
        self.others = None
        if self.busy is not None:
            busy = (_busy_jiffies() - self.busy) / os.sysconf("SC_CLK_TCK")
            self.others = max(0.0, busy - own) / (wall * (os.cpu_count() or 1))

    def report(self) -> str:
        line = (
            f"load average before {self.load_before[0]:.2f}, after {self.load_after[0]:.2f}; "
            + (
                "other processes' CPU share unknown"
                if self.others is None
                else f"other processes took {self.others:.0%} of the machine's CPU during the run"
            )
        )
        # the load average lags (it still counts a run that just ended, this script's own
        # included); the CPU others took during the run is the figure that decides
        busy = self.load_before[0] > 0.5 if self.others is None else self.others > 0.05
        if busy:
            line += "\nWARNING: the machine was not quiet; these ratios are not to be quoted."
        return line


def _short_copy(args, work: Path) -> str:
    """A BEIR folder in ``work`` whose documents keep their first ``args.short`` words."""
    ds = data.BeirDataset(args.data)
    folder = work / "short"
    (folder / "qrels").mkdir(parents=True)
    data.write_jsonl(
        (
            {"_id": d, "title": "", "text": " ".join(doc.full_text.split()[: args.short])}
            for d, doc in ds.corpus.items()
        ),
        folder / "corpus.jsonl",
    )
    data.write_jsonl(
        ({"_id": q, "text": t} for q, t in ds.queries.items()), folder / "queries.jsonl"
    )
    shutil.copy(Path(args.data) / "qrels" / "train.tsv", folder / "qrels" / "train.tsv")
    return str(folder)


def _setup(args, work: Path):
    """(pairs as texts, candidates file, queries file, teacher folder, teacher description)."""
    if args.short:
        args.data = _short_copy(args, work)
    ds = data.BeirDataset(args.data)
    qids = sorted(ds.qrels("train"))[: args.queries]
    queries = {q: ds.queries[q] for q in qids}
    mine.write_candidates(
        retrieval.bm25_search(ds.corpus, queries, args.k), "bm25", work / "candidates.parquet"
    )
    qfile = work / "queries.jsonl"
    qfile.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    teacher = args.teacher or next((t for t in TEACHERS if Path(t, "config.json").is_file()), None)
    if teacher is None:
        teacher, what = work / "teacher", "untrained mean-pool head on the bundled MiniLM"
        build_mean_pool("bundled", args.max_length or 256, seed=0).save(str(teacher))
    else:
        what = teacher
    pair_ids = label.pair_list(label.read_ranked(work / "candidates.parquet"), None, False)
    pairs = [(queries[q], ds.corpus[d].full_text) for q, d in pair_ids]
    return pairs, qfile, Path(teacher), what


def _time_label(args, work: Path, qfile: Path, teacher: Path, mode: str, n: int):
    precision, _, windows = mode.partition(":")
    out = work / f"labels-{mode.replace(':', '-')}"
    shutil.rmtree(out, ignore_errors=True)
    config = label.LabelConfig(
        data=args.data,
        candidates=str(work / "candidates.parquet"),
        teacher=str(teacher),
        queries=str(qfile),
        output=str(out),
        batch_size=args.batch_size,
        precision=precision,
        fidelity_sample=0,
        shard_size=n,
        max_length=args.max_length,
        windows=windows or "teacher",
    )
    start = time.perf_counter()
    label.run(config, echo=lambda *a, **k: None)
    seconds = time.perf_counter() - start
    backend = (artifacts.read_manifest(out) or {}).get("figures", {}).get("backends", [{}])
    scores = np.asarray(label.read_labels(out).column("score").to_numpy())
    return seconds, scores, backend[0].get("backend", precision) if backend else precision


def _round(args, work, qfile, teacher, pairs, ce, modes) -> dict:
    """One timed pass of every path, in order: {path: (seconds, scores, backend)}."""
    start = time.perf_counter()
    ref = ce.predict(
        pairs,
        batch_size=args.batch_size,
        activation_fn=torch.nn.Identity(),
        show_progress_bar=False,
    )
    out = {"predict": (time.perf_counter() - start, np.asarray(ref), "torch")}
    for mode in modes:
        out[mode] = _time_label(args, work, qfile, teacher, mode, len(pairs))
    return out


def _table(pairs, rounds, modes) -> str:
    seconds = {p: statistics.median(r[p][0] for r in rounds) for p in ["predict", *modes]}
    ref = rounds[0]["predict"][1]
    lines = [
        "| path | backend | seconds | pairs/s | vs predict | max abs diff | Spearman vs predict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in ["predict", *modes]:
        scores, backend = rounds[-1][path][1], rounds[-1][path][2]
        name = "`CrossEncoder.predict`" if path == "predict" else f"`distill label` ({path})"
        lines.append(
            f"| {name} | {backend} | {seconds[path]:.1f} | {len(pairs) / seconds[path]:.1f} | "
            f"{seconds['predict'] / seconds[path]:.2f}x | {np.abs(scores - ref).max():.1e} | "
            f"{spearman(ref, scores):.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/scifact")
    ap.add_argument("--queries", type=int, default=100, help="train queries used")
    ap.add_argument("--k", type=int, default=50, help="BM25 candidates per query")
    ap.add_argument("--max-length", type=int, default=None, help="default: the teacher's own")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds (median)")
    ap.add_argument("--modes", default="exact,onnx-int8")
    ap.add_argument("--threads", default=f"{torch.get_num_threads()},1")
    ap.add_argument("--teacher", default=None, help="a cross-encoder folder (default: see above)")
    ap.add_argument(
        "--short", type=int, default=0, help="cut documents to their first N words (0: whole)"
    )
    args = ap.parse_args()

    from sentence_transformers import CrossEncoder

    work = Path(tempfile.mkdtemp(prefix="label-bench-"))
    modes = [m for m in args.modes.split(",") if m]
    try:
        pairs, qfile, teacher, what = _setup(args, work)
        ce = CrossEncoder(str(teacher), max_length=args.max_length)
        fits = sum(len(ce.tokenizer(q, d)["input_ids"]) <= ce.max_length for q, d in pairs)
        print(
            f"{len(pairs)} pairs ({args.queries} SciFact train queries x BM25 top {args.k}; "
            f"{fits / len(pairs):.0%} fit max_length), "
            f"teacher {what} (max_length {ce.max_length}), batch {args.batch_size}, "
            f"{args.repeats} alternating rounds, {os.cpu_count()} CPUs"
        )
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            with Quiet() as quiet:
                rounds = [
                    _round(args, work, qfile, teacher, pairs, ce, modes)
                    for _ in range(args.repeats)
                ]
            print(f"\n{threads} thread(s): {quiet.report()}\n")
            print(_table(pairs, rounds, modes))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
