"""``distill data stats``: counts, labels, token lengths and the truncation share.

Silent truncation is a named failure: a cross-encoder sees ``[CLS] query [SEP] doc [SEP]``
cut at ``max_length``, and whatever stands after the cut does not exist for it. This command
says how many (query, document) pairs a given ``max_length`` would cut, for the model's own
tokenizer.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from distill import artifacts, data
from distill.errors import InputError
from distill.models import load_tokenizer
from distill.pairs import is_binary, load_pairs


@dataclass
class StatsConfig:
    """Config of ``distill data stats``."""

    data: str = field(metadata={"help": "BEIR folder (or beir:NAME) or labeled pairs file"})
    model: str = field(default="bundled", metadata={"help": "model whose tokenizer counts tokens"})
    max_length: int = field(
        default=256, metadata={"help": "cross-encoder max_length to check", "range": "[8, inf)"}
    )
    output: str | None = field(default=None, metadata={"help": "also write stats.json here"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "write into a non-empty --output folder distill did not make (its other files are kept)"
        },
    )


def token_lengths(tokenizer, texts: list[str], batch_size: int = 1024) -> np.ndarray:
    """Token counts without special tokens, in batches (fast tokenizers parallelise)."""
    from tqdm.auto import tqdm

    out: list[int] = []
    for start in tqdm(
        range(0, len(texts), batch_size), desc="tokenizing", leave=False, disable=len(texts) < 5000
    ):
        enc = tokenizer(
            texts[start : start + batch_size],
            add_special_tokens=False,
            truncation=False,
            verbose=False,
        )
        out.extend(len(ids) for ids in enc["input_ids"])
    return np.asarray(out, dtype=np.int64)


def _summary(lengths: np.ndarray) -> dict[str, float]:
    if lengths.size == 0:
        return {}
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    return {
        "mean": round(float(lengths.mean()), 1),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": int(lengths.max()),
    }


def compute(config: StatsConfig) -> dict[str, Any]:
    """All figures as a plain dict (what ``stats.json`` holds)."""
    if not str(config.data).startswith("beir:") and not Path(config.data).exists():
        raise InputError("no such file or folder", path=config.data)
    tokenizer = load_tokenizer(config.model)
    special = tokenizer.num_special_tokens_to_add(pair=True)
    stats: dict[str, Any] = {
        "data": config.data,
        "model": config.model,
        "max_length": config.max_length,
    }
    if data.is_beir(config.data):
        dataset = data.open_dataset(config.data)
        corpus, queries = dataset.corpus, dataset.queries
        stats["documents"] = len(corpus)
        stats["queries"] = len(queries)
        splits = {}
        pairs: list[tuple[str, str]] = []
        for split in dataset.splits():
            qrels = dataset.qrels(split)
            grades = Counter(g for docs in qrels.values() for g in docs.values())
            splits[split] = {
                "queries": len(qrels),
                "qrels": sum(len(d) for d in qrels.values()),
                "labels": {str(k): v for k, v in sorted(grades.items())},
            }
            pairs.extend((q, d) for q, docs in qrels.items() for d in docs)
        stats["splits"] = splits
        doc_ids = list(corpus)
        doc_len = dict(
            zip(
                doc_ids,
                token_lengths(tokenizer, [corpus[d].full_text for d in doc_ids]),
                strict=True,
            )
        )
        query_ids = list(queries)
        query_len = dict(
            zip(query_ids, token_lengths(tokenizer, [queries[q] for q in query_ids]), strict=True)
        )
        pair_len = np.asarray([query_len[q] + doc_len[d] + special for q, d in pairs])
        stats["tokens"] = {
            "documents": _summary(np.asarray(list(doc_len.values()))),
            "queries": _summary(np.asarray(list(query_len.values()))),
        }
        stats["truncation"] = {"population": "qrels pairs (all splits)", "pairs": len(pairs)}
    else:
        rows = load_pairs(config.data)
        stats["pairs"] = len(rows)
        stats["queries"] = len({p.qid for p in rows})
        stats["documents"] = len({p.did for p in rows})
        labels = [p.label for p in rows]
        stats["label_kind"] = "binary" if is_binary(labels) else "graded"
        stats["labels"] = {f"{k:g}": v for k, v in sorted(Counter(labels).items())}
        q = token_lengths(tokenizer, [p.query for p in rows])
        d = token_lengths(tokenizer, [p.text for p in rows])
        pair_len = q + d + special
        stats["tokens"] = {"documents": _summary(d), "queries": _summary(q)}
        stats["truncation"] = {"population": "all pairs", "pairs": len(rows)}
    stats["tokens"]["pairs"] = _summary(pair_len)
    cut = int((pair_len > config.max_length).sum())
    stats["truncation"].update(truncated=cut, share=round(cut / max(len(pair_len), 1), 4))
    return stats


def render(stats: dict[str, Any]) -> str:
    """The figures as a short human-readable report."""
    lines = [f"dataset: {stats['data']}"]
    if "splits" in stats:
        lines.append(f"documents: {stats['documents']:,}   queries: {stats['queries']:,}")
        for split, s in stats["splits"].items():
            labels = ", ".join(f"{k}: {v}" for k, v in s["labels"].items())
            lines.append(
                f"  {split:<8} {s['queries']:>6,} queries  {s['qrels']:>7,} qrels   labels {{{labels}}}"
            )
    else:
        labels = ", ".join(f"{k}: {v}" for k, v in stats["labels"].items())
        lines.append(
            f"pairs: {stats['pairs']:,}   queries: {stats['queries']:,}   documents: {stats['documents']:,}"
            f"   labels ({stats['label_kind']}): {{{labels}}}"
        )
    lines.append(
        f"tokens ({stats['model']} tokenizer, without special tokens; mean / p50 / p90 / p99 / max):"
    )
    for kind, s in stats["tokens"].items():
        lines.append(
            f"  {kind:<10} {s['mean']:>7} / {s['p50']:.0f} / {s['p90']:.0f} / {s['p99']:.0f} / {s['max']}"
        )
    t = stats["truncation"]
    lines.append(
        f"truncation at max_length={stats['max_length']}: {t['truncated']:,} of {t['pairs']:,} "
        f"{t['population']} ({t['share']:.1%}) would be cut"
    )
    return "\n".join(lines)


def run(config: StatsConfig, echo=click.echo) -> dict[str, Any]:
    started = time.time()
    if config.output:
        artifacts.claim_output(
            config.output, stage="stats", inputs=[config.data], overwrite=config.overwrite
        )
    stats = compute(config)
    echo(render(stats))
    if config.output:
        out = artifacts.mark_output(config.output, "stats")
        artifacts.write_json(out / "stats.json", stats)
        inputs = {} if str(config.data).startswith("beir:") else {"data": config.data}
        artifacts.write_manifest(
            out, stage="stats", config=config, inputs=inputs, figures=stats, started=started
        )
        echo(f"wrote {out / 'stats.json'}")
    return stats
