"""How do `distill mine`'s time and memory grow with the corpus? (a measurement, not a test)

Builds a synthetic BEIR corpus of N passages (each a random run of 40-120 words from SciFact
abstracts, so its words and lengths are real text's) and mines the top k for SciFact's 300
test queries, each run in its own process under ``/usr/bin/time -v`` (wall time, peak RSS):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/mine_scale.py --docs 20000,100000 \
        --methods bm25,dense --index hnsw --output runs/mine-scale

Dense mining encodes every passage with the bi-encoder (the bundled MiniLM by default), then
builds the faiss index; the encoding dominates on a CPU. ``--model`` takes any bi-encoder
folder (a tiny one measures the index and the rest without the encoder's cost). Each run uses
a fresh embedding cache, so the encoding is measured, not read back.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from distill import data


def write_corpus(source: Path, out: Path, docs: int, seed: int = 0) -> None:
    """A BEIR folder of ``docs`` synthetic passages and SciFact's test queries (no qrels)."""
    words = [d.full_text.split() for d in data.BeirDataset(source).corpus.values()]
    words = [w for w in words if len(w) >= 40]
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(docs):
            doc = rng.choice(words)
            n = rng.randint(40, min(120, len(doc)))
            at = rng.randint(0, len(doc) - n)
            text = " ".join(doc[at : at + n])
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    test = data.load_qrels(source / "qrels" / "test.tsv")
    with (
        open(source / "queries.jsonl", encoding="utf-8") as f,
        open(out / "test-queries.jsonl", "w", encoding="utf-8") as q,
    ):
        for line in f:
            if json.loads(line)["_id"] in test:
                q.write(line)


def measure(folder: Path, method: str, index: str, k: int, model: str, work: Path) -> dict:
    """One `distill mine` run in its own process: wall seconds and peak RSS."""
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    out = work / f"mine-{method}"
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        "/usr/bin/time", "-v", sys.executable, "-c", "from distill.cli import main; main()",
        "mine", str(folder), "--queries", str(folder / "test-queries.jsonl"), "--method", method,
        "--index", index, "--k", str(k), "--model", model, "--output", str(out),
        "--cache-dir", str(cache),
    ]  # fmt: skip
    started = time.time()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"mine failed ({method}): {done.stderr[-2000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return {"seconds": round(seconds, 1), "peak_gb": round(int(rss.group(1)) / 2**20, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/scifact")
    ap.add_argument("--docs", default="20000", help="comma list of corpus sizes")
    ap.add_argument("--methods", default="bm25,dense")
    ap.add_argument("--index", default="hnsw")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--output", default="runs/mine-scale")
    args = ap.parse_args()
    rows = []
    for docs in (int(n) for n in args.docs.split(",")):
        folder = Path(args.output) / f"corpus-{docs}"
        if not (folder / "corpus.jsonl.gz").is_file():
            write_corpus(Path(args.data), folder, docs)
        for method in args.methods.split(","):
            got = measure(folder, method, args.index, args.k, args.model, Path(args.output))
            rows.append({"docs": docs, "method": method, "index": args.index, **got})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| documents | method | index | seconds | docs/s | peak RSS GB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        rate = r["docs"] / r["seconds"]
        print(
            f"| {r['docs']:,} | {r['method']} | {r['index']} | {r['seconds']:,} | {rate:,.0f} | {r['peak_gb']} |"
        )


if __name__ == "__main__":
    main()
