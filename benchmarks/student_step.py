"""Student training-step time on CPU: fp32 against bf16 autocast, side by side.

One batch of SciFact texts (16 queries x 5 documents at 256 tokens, as the default recipe
trains), the bundled all-MiniLM-L6-v2, KL + in-batch loss. Steps alternate between the two
precisions; medians are printed, then the time to encode 80 documents each way. On CPUs with
avx512_bf16 (or AMX) bf16 is much faster; elsewhere it may be slower.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/student_step.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns

from distill import data
from distill.models import resolve_model
from students.losses import build_loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/scifact")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = data.BeirDataset(args.data)
    docs = [d.full_text for d in list(ds.corpus.values())[:80]]
    queries = list(ds.queries.values())[:16]
    model = SentenceTransformer(str(resolve_model("bundled")))
    loss_fn = build_loss("kl", model, scale=20.0, in_batch=1.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-9)  # the weights barely move

    def features(texts: list[str], length: int):
        model.max_seq_length = length
        return model.preprocess(texts)

    columns = [features(queries, 64)] + [features(docs[i::5], 256) for i in range(5)]
    target = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))

    def step(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn.compute_loss_from_embeddings(embed_columns(model, columns), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start

    model.train()
    steps: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for bf16 in (False, True):
            steps[bf16].append(step(bf16))
    fp32, bf16 = statistics.median(steps[False]), statistics.median(steps[True])
    print(
        f"{args.threads} thread(s): training step fp32 {fp32:.1f} s, bf16 {bf16:.1f} s ({fp32 / bf16:.2f}x)"
    )
    model.eval()
    encode: dict[bool, list[float]] = {False: [], True: []}
    with torch.inference_mode():
        for _ in range(2):
            for flag in (False, True):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=flag):
                    model.encode(docs, batch_size=32)
                encode[flag].append(time.perf_counter() - start)
    a, b = min(encode[False]), min(encode[True])
    print(f"encode 80 documents: fp32 {a:.1f} s, bf16 {b:.1f} s ({a / b:.2f}x)")


if __name__ == "__main__":
    main()
