"""Labeled pairs, and one view of labeled data for the stages that learn from it.

* **Labeled pairs**: rows ``(query, text, label)`` as JSONL, CSV, TSV or Parquet; ``label`` is
  binary (0/1) or graded (0-4); optional ``qid``/``did`` columns. Missing ids are derived
  stably from the text (``q-``/``d-`` + 16 hex digits of its sha1). :func:`load_pairs` checks
  every row; a bad one is reported with its file and line (Parquet: its 1-based row number).
* :func:`load_labeled`: queries, documents and graded judgments from a BEIR split (see
  :mod:`distill.data`) or a pairs file, for ``teach`` and ``audit``.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.data import (
    Document,
    is_beir,
    open_dataset,
    parse_grade,
    read_jsonl,
    require_file,
    string_field,
    write_jsonl,
)
from distill.errors import InputError

PAIR_FORMATS = (".jsonl", ".jsonl.gz", ".csv", ".tsv", ".parquet")


@dataclass(frozen=True)
class Pair:
    """One labeled (query, document) pair; ``line`` is where it came from, for messages."""

    qid: str
    did: str
    query: str
    text: str
    label: float
    line: int


def stable_id(prefix: str, text: str) -> str:
    """An id derived from the text alone, identical across runs and machines."""
    return f"{prefix}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:16]}"


def _utf8_error(path: Path) -> InputError:
    """The InputError for the first line of ``path`` that is not UTF-8."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return InputError(
                    f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)",
                    path=path,
                    line=number,
                )
    return InputError("not UTF-8 text", path=path)


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line the record starts on, row) for each record of a CSV/TSV file with a header.

    The csv module reads the file itself, so a quoted field keeps its line breaks (blank lines
    included) exactly; blank lines outside quoted fields (before the header, between records)
    are skipped.
    """
    require_file(path)
    consumed: list[tuple[int, str]] = []  # (line number, text) read for the current record

    def lines(fh) -> Iterator[str]:
        started = False
        for number, line in enumerate(fh, 1):
            if number == 1:
                line = line.removeprefix("\ufeff")
            if not started and not line.strip():
                continue  # blank lines before the header
            started = True
            consumed.append((number, line))
            yield line

    def first_line() -> int:
        """The record's first line: the first non-blank line read since the last record."""
        return next((n for n, text in consumed if text.strip()), consumed[-1][0] if consumed else 1)

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(lines(fh), delimiter=delimiter)
            try:
                if reader.fieldnames is None:
                    raise InputError("file has no data rows", path=path, line=1)
                consumed.clear()
                for row in reader:
                    blank = not any(text.strip() for _, text in consumed)
                    number = first_line()
                    consumed.clear()
                    if blank:
                        continue  # a whitespace-only line between records
                    if None in row:
                        raise InputError(
                            "more fields than the header names", path=path, line=number
                        )
                    yield number, row
            except csv.Error as exc:
                raise InputError(f"malformed CSV ({exc})", path=path, line=first_line()) from None
    except UnicodeDecodeError:
        raise _utf8_error(path) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc})", path=path) from None


def _pair_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        yield from read_jsonl(path)
    elif name.endswith((".csv", ".tsv")):
        yield from _csv_rows(path, "\t" if name.endswith(".tsv") else ",")
    elif name.endswith(".parquet"):
        import pyarrow.parquet as pq

        require_file(path)
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise InputError(f"not a readable Parquet file ({exc})", path=path) from None
        if table.num_rows == 0:
            raise InputError("file has no data rows", path=path)
        yield from enumerate(table.to_pylist(), 1)  # "line": the 1-based row number for Parquet
    else:
        raise InputError(f"unknown pairs format; use one of {', '.join(PAIR_FORMATS)}", path=path)


def load_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    """Labeled pairs from JSONL, CSV, TSV or Parquet, with every row checked.

    Required fields: ``query``, ``text``, ``label`` (a number in 0-4). Optional: ``qid``,
    ``did``. An id must always name the same text; the same pair with two labels is an error
    (aggregate annotators' labels before training). Exact repeats are kept here and removed
    by ``distill data split``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or folder", path=p)
    pairs: list[Pair] = []
    qtext: dict[str, tuple[str, int]] = {}
    dtext: dict[str, tuple[str, int]] = {}
    labels: dict[tuple[str, str], tuple[float, int]] = {}
    for number, row in _pair_rows(p):
        where = {"path": p, "line": number}
        if "query" not in row and "text" not in row and "label" not in row:
            raise InputError("needs the fields 'query', 'text' and 'label'", **where)
        query = string_field(row, "query", where)
        text = string_field(row, "text", where)
        if row.get("label") is None or row.get("label") == "":
            raise InputError("missing", field="label", **where)
        label = parse_grade(row["label"], "label", where)
        qid = string_field(row, "qid", where, required=False) or stable_id("q", query)
        did = string_field(row, "did", where, required=False) or stable_id("d", text)
        for ids, key, value, field in ((qtext, qid, query, "qid"), (dtext, did, text, "did")):
            seen = ids.setdefault(key, (value, number))
            if seen[0] != value:
                raise InputError(
                    f"duplicate id {key!r} names another text at line {seen[1]}",
                    field=field,
                    **where,
                )
        earlier = labels.setdefault((qid, did), (label, number))
        if earlier[0] != label:
            raise InputError(
                f"this pair is labelled {earlier[0]:g} at line {earlier[1]} and {label:g} here",
                field="label",
                **where,
            )
        pairs.append(Pair(qid, did, query, text, label, number))
    return pairs


def is_binary(labels: list[float] | Any) -> bool:
    return all(label in (0.0, 1.0) for label in labels)


def write_pairs_jsonl(pairs: list[Pair], path: str | os.PathLike[str]) -> None:
    """Write pairs (with their ids) as JSONL; the caller makes it atomic."""
    write_jsonl(
        (
            {
                "qid": p.qid,
                "did": p.did,
                "query": p.query,
                "text": p.text,
                "label": int(p.label) if p.label == int(p.label) else p.label,
            }
            for p in pairs
        ),
        path,
    )


@dataclass
class Labeled:
    """Queries, documents and graded judgments from a BEIR split or a labeled pairs file."""

    queries: dict[str, str]
    corpus: dict[str, Document]
    qrels: dict[str, dict[str, int]]
    source: Path  # the corpus file, or the pairs file


def load_labeled(spec: str | os.PathLike[str], split: str = "train") -> Labeled:
    """One view of labeled data for the stages that learn from it (teach, audit).

    For pairs, the corpus is the set of their documents and a grade is the label rounded
    to a whole number.
    """
    if is_beir(spec):
        dataset = open_dataset(spec)
        qrels = dataset.qrels(split)
        return Labeled(
            {q: dataset.queries[q] for q in qrels}, dataset.corpus, qrels, dataset.corpus_path
        )
    pairs = load_pairs(spec)
    qrels: dict[str, dict[str, int]] = {}
    for p in pairs:
        qrels.setdefault(p.qid, {})[p.did] = round(p.label)
    return Labeled(
        {p.qid: p.query for p in pairs},
        {p.did: Document("", p.text) for p in pairs},
        qrels,
        Path(spec),
    )
