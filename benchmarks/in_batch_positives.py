"""How often an in-batch negative is a known positive of the row's query (a measurement aid).

Rows as the student builds them from gold qrels: each query gives up to ``--max-positives``
rows (query, one of its positives), shuffled into batches of ``--batch-size``. A row is hit
when another row of its batch holds one of its query's positives (positives columns only, so
a lower bound: the rows' hard negatives can hold more).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/in_batch_positives.py ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import random

from distill import data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--split", default="train")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-positives", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    qrels = data.open_dataset(args.data).qrels(args.split)
    positives = {q: {d for d, g in docs.items() if g > 0} for q, docs in qrels.items()}
    positives = {q: p for q, p in positives.items() if p}
    rng = random.Random(args.seed)
    hit = rows_seen = 0
    for _ in range(args.epochs):
        rows = [
            (q, d)
            for q in sorted(positives)
            for d in rng.sample(sorted(positives[q]), min(args.max_positives, len(positives[q])))
        ]
        rng.shuffle(rows)
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start : start + args.batch_size]
            for i, (q, _) in enumerate(batch):
                hit += any(d in positives[q] for j, (_, d) in enumerate(batch) if j != i)
                rows_seen += 1
    per_query = sum(map(len, positives.values())) / len(positives)
    print(
        f"{args.data}: {len(positives)} queries, {per_query:.1f} positives each; "
        f"rows with a known positive among the batch's other positives: {hit / rows_seen:.1%}"
    )


if __name__ == "__main__":
    main()
