"""``distill queries``: pseudo-queries from the documents, for corpora without queries.

Methods:

* ``generator``: a seq2seq query generator (doc2query-style, e.g. a hub id such as
  ``doc2query/msmarco-t5-base-v1`` for users who are online, or a local folder), sampled with
  top-k so that several queries per document differ;
* ``sentence`` (offline, the default): inverse-cloze style, a sentence drawn from the document
  (at least ``min_words`` words) stands for a query about it;
* ``cloze`` (offline): inverse cloze task proper, the sentence is also *removed* from its
  document. The output then holds ``data/``, a copy of the BEIR folder (queries and qrels
  byte-identical) whose corpus lacks those sentences, for ``mine``, ``label`` and
  ``train-student`` to read instead of the original (the pipeline does so by itself). A query
  no longer finds its own words in its source: on SciFact BM25 finds the source at MRR@10
  0.736, against 0.995 for ``sentence`` and 0.666 for real queries (README: ``distill queries``);
* ``title`` (offline): the document's title, where titles state what the document says (as
  SciFact's paper titles often state a claim).

Output: a queries JSONL (``_id``, ``text``, ``metadata.source``, ``metadata.method``) for
``distill mine --queries FILE`` and ``distill label --queries FILE``, and ``qrels.tsv`` pairing
each pseudo-query with its source document (useful to measure the method, not needed to train:
the teacher labels the candidates).
"""

from __future__ import annotations

import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import click

from distill import artifacts, data
from distill.errors import InputError

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")


@dataclass
class QueriesConfig:
    """Config of ``distill queries``."""

    data: str = field(metadata={"help": "BEIR folder or beir:NAME (its corpus)"})
    output: str = field(default="runs/queries", metadata={"help": "output folder"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "write into a non-empty --output folder distill did not make (its other files are kept)"
        },
    )
    method: Literal["sentence", "cloze", "title", "generator"] = field(
        default="sentence",
        metadata={
            "help": "how queries are made; cloze also removes each sentence from its document "
            "(in a copy of the dataset under OUTPUT/data)"
        },
    )
    generator: str | None = field(
        default=None, metadata={"help": "seq2seq model (hub id or folder) for method=generator"}
    )
    per_doc: int = field(default=1, metadata={"help": "queries per document", "range": "[1, inf)"})
    max_docs: int | None = field(
        default=None,
        metadata={"help": "use a seeded sample of this many documents", "range": "[1, inf)"},
    )
    min_words: int = field(
        default=5, metadata={"help": "sentence: shortest usable sentence", "range": "[1, inf)"}
    )
    max_new_tokens: int = field(
        default=32, metadata={"help": "generator: longest query", "range": "[1, inf)"}
    )
    batch_size: int = field(
        default=16, metadata={"help": "generator batch size", "range": "[1, inf)"}
    )
    seed: int = field(default=42, metadata={"help": "seed", "range": "(-inf, inf)"})

    def validate(self) -> None:
        if self.method == "generator" and not self.generator:
            raise InputError(
                "method 'generator' needs a generator model (--generator NAME)", field="generator"
            )


def sentences(text: str, min_words: int) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(s.split()) >= min_words]


def offline_candidates(doc: data.Document, method: str, min_words: int) -> list[str]:
    """The texts an offline method may pick from one document: its title (at least 2 words)
    for ``title``, its sentences of at least ``min_words`` words for ``sentence``."""
    if method == "title":
        return [doc.title] if doc.title and len(doc.title.split()) >= 2 else []
    return sentences(doc.text, min_words)


def cloze(
    doc: data.Document, per_doc: int, min_words: int, rng: random.Random
) -> tuple[list[str], data.Document]:
    """Up to ``per_doc`` sentences of at least ``min_words`` words drawn from the document, and
    the document without them. The document keeps at least one sentence: one with a single
    sentence gives no query."""
    parts = [s.strip() for s in _SENTENCE.split(doc.text) if s.strip()]
    usable = [i for i, s in enumerate(parts) if len(s.split()) >= min_words]
    picked = sorted(rng.sample(usable, max(0, min(per_doc, len(usable), len(parts) - 1))))
    if not picked:
        return [], doc
    rest = " ".join(s for i, s in enumerate(parts) if i not in picked)
    return [parts[i] for i in picked], data.Document(doc.title, rest)


def write_cloze_dataset(dataset: data.BeirDataset, masked: dict[str, data.Document], folder: Path):
    """``folder`` as a BEIR folder: the corpus with ``masked``'s documents replaced, the
    queries and qrels copied as they are."""
    folder.mkdir()
    corpus = dataset.corpus
    data.write_jsonl(
        (
            {"_id": did, "title": masked.get(did, doc).title, "text": masked.get(did, doc).text}
            for did, doc in corpus.items()
        ),
        folder / "corpus.jsonl",
    )
    shutil.copyfile(dataset.root / "queries.jsonl", folder / "queries.jsonl")
    (folder / "qrels").mkdir()
    for split in dataset.splits():
        shutil.copyfile(dataset.qrels_path(split), folder / "qrels" / f"{split}.tsv")


def generate(
    model_name: str, texts: list[str], per_doc: int, config: QueriesConfig
) -> list[list[str]]:
    """``per_doc`` sampled queries per text from a seq2seq model."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from distill.models import resolve_model

    path = resolve_model(model_name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    except OSError as exc:
        raise InputError(
            f"cannot load the query generator ({str(exc).splitlines()[0]})", path=model_name
        ) from None
    torch.manual_seed(config.seed)
    out: list[list[str]] = []
    for start in tqdm(
        range(0, len(texts), config.batch_size), desc="generating queries", disable=len(texts) < 100
    ):
        batch = tokenizer(
            texts[start : start + config.batch_size],
            truncation=True,
            max_length=384,
            padding=True,
            return_tensors="pt",
        )
        batch = {
            k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")
        }  # no token_type_ids for seq2seq
        with torch.inference_mode():
            ids = model.generate(
                **batch,
                do_sample=True,
                top_k=10,
                max_new_tokens=config.max_new_tokens,
                num_return_sequences=per_doc,
            )
        decoded = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        out.extend(decoded[i : i + per_doc] for i in range(0, len(decoded), per_doc))
    return out


def run(config: QueriesConfig, echo=click.echo) -> Path:
    started = time.time()
    dataset = data.open_dataset(config.data)
    out = artifacts.claim_output(
        config.output, stage="queries", inputs=[dataset.root], overwrite=config.overwrite
    )
    corpus = dataset.corpus
    rng = random.Random(config.seed)
    doc_ids = sorted(corpus)
    if config.max_docs is not None and config.max_docs < len(doc_ids):
        doc_ids = sorted(rng.sample(doc_ids, config.max_docs))
    made: list[tuple[str, str]] = []  # (source did, query text)
    masked: dict[str, data.Document] = {}  # cloze: source documents without their sentences
    if config.method == "generator":
        for did, queries in zip(
            doc_ids,
            generate(
                config.generator, [corpus[d].full_text for d in doc_ids], config.per_doc, config
            ),
            strict=True,
        ):
            made += [(did, q) for q in dict.fromkeys(queries) if q]
    elif config.method == "cloze":
        for did in doc_ids:
            picked, masked[did] = cloze(corpus[did], config.per_doc, config.min_words, rng)
            made += [(did, q) for q in picked]
    else:
        for did in doc_ids:
            candidates = offline_candidates(corpus[did], config.method, config.min_words)
            made += [(did, q) for q in rng.sample(candidates, min(config.per_doc, len(candidates)))]
    if not made:
        raise InputError(
            f"method {config.method!r} made no queries from this corpus (no titles or sentences long enough)",
            path=dataset.corpus_path,
        )
    with artifacts.atomic_path(out, stage="queries", overwrite=config.overwrite) as tmp:
        tmp.mkdir(parents=True)
        data.write_jsonl(
            (
                {
                    "_id": f"pq{i}",
                    "text": text,
                    "metadata": {"source": did, "method": config.method},
                }
                for i, (did, text) in enumerate(made)
            ),
            tmp / "queries.jsonl",
        )
        data.write_qrels({f"pq{i}": {did: 1} for i, (did, _) in enumerate(made)}, tmp / "qrels.tsv")
        if config.method == "cloze":
            write_cloze_dataset(dataset, masked, tmp / "data")
    figures = {"queries": len(made), "documents": len(doc_ids)}
    artifacts.write_manifest(
        out,
        stage="queries",
        config=asdict(config),
        inputs={"corpus": dataset.corpus_path},
        figures=figures,
        started=started,
    )
    echo(
        f"made {len(made):,} pseudo-queries ({config.method}) from {len(doc_ids):,} documents; wrote {out / 'queries.jsonl'}"
        + (
            f" and {out / 'data'}, the corpus without their sentences, to mine, label and train on"
            if config.method == "cloze"
            else ""
        )
    )
    return out
