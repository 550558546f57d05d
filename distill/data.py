"""Data layer: BEIR folders, and strict validation with one-line errors.

**BEIR folders**: ``corpus.jsonl`` or ``corpus.jsonl.gz`` (``_id``, ``title``, ``text``),
``queries.jsonl`` (``_id``, ``text``) and ``qrels/<split>.tsv`` with the header
``query-id  corpus-id  score`` (tab-separated; graded scores allowed). ``beir:NAME`` fetches a
public BEIR dataset into ``$DISTILL_CACHE`` (default ``~/.cache/distill``) when online.
Labeled pairs files (JSONL, CSV, TSV, Parquet) are read by :mod:`distill.pairs`, with the
checks defined here (:func:`require_file`, :func:`string_field`, :func:`parse_grade`).

Files are read line by line (gzip too), each line decoded on its own so that a bad byte is
reported with its line number. A corpus is parsed once per process (:func:`load_corpus` is
memoised on path, size and modification time).
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import shutil
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import InputError

QRELS_HEADER = ("query-id", "corpus-id", "score")
MAX_GRADE = 4
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"


@dataclass(frozen=True)
class Document:
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title and text joined by a space, as BEIR's sentence-transformers baselines do."""
        return f"{self.title} {self.text}".strip()


def require_file(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file", path=path)
    if not path.is_file():
        raise InputError("expected a file, found a directory", path=path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path=path, line=1)


def read_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) for each non-blank line; gzip by suffix."""
    p = Path(path)
    require_file(p)
    opener = gzip.open if p.suffix == ".gz" else open
    seen = False
    try:
        with opener(p, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise InputError(
                        f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)",
                        path=p,
                        line=number,
                    ) from None
                if number == 1:
                    line = line.removeprefix("\ufeff")
                if line.strip():
                    seen = True
                    yield number, line
    except (OSError, EOFError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot read file ({exc})", path=p) from None
    if not seen:
        raise InputError("file has no data rows", path=p, line=1)


def string_field(row: dict[str, Any], name: str, where: dict[str, Any], *, required=True) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if required:
            raise InputError("missing", field=name, **where)
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InputError(f"must be text, got {type(value).__name__}", field=name, **where)
    value = value.strip()
    if required and not value:
        raise InputError("is empty", field=name, **where)
    return value


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each line of a JSONL file; bad JSON is a located error."""
    for number, line in read_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON ({exc.msg})", path=path, line=number) from None
        if not isinstance(obj, dict):
            raise InputError("each line must be a JSON object", path=path, line=number)
        yield number, obj


def _load_corpus(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    first_line: dict[str, int] = {}
    for number, obj in read_jsonl(path):
        where = {"path": path, "line": number}
        did = string_field(obj, "_id", where)
        text = string_field(obj, "text", where, required=False)
        title = string_field(obj, "title", where, required=False)
        if not text and not title:
            raise InputError("is empty (and so is 'title')", field="text", **where)
        if did in corpus:
            raise InputError(
                f"duplicate id {did!r} (first at line {first_line[did]})", field="_id", **where
            )
        corpus[did] = Document(title=title, text=text)
        first_line[did] = number
    return corpus


@functools.lru_cache(maxsize=4)
def _load_corpus_cached(path: str, size: int, mtime: float) -> dict[str, Document]:
    return _load_corpus(Path(path))


def load_corpus(path: str | os.PathLike[str]) -> dict[str, Document]:
    """Document id -> Document, parsed once per process for an unchanged file."""
    p = Path(path).resolve()
    require_file(p)
    st = p.stat()
    return _load_corpus_cached(str(p), st.st_size, st.st_mtime)


def load_queries(path: str | os.PathLike[str]) -> dict[str, str]:
    """Query id -> query text from a BEIR ``queries.jsonl``."""
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, obj in read_jsonl(path):
        where = {"path": path, "line": number}
        qid = string_field(obj, "_id", where)
        text = string_field(obj, "text", where)
        if qid in queries:
            raise InputError(
                f"duplicate id {qid!r} (first at line {first_line[qid]})", field="_id", **where
            )
        queries[qid] = text
        first_line[qid] = number
    return queries


def parse_grade(value: Any, field: str, where: dict[str, Any]) -> float:
    """A relevance label: a finite number in [0, MAX_GRADE]."""
    if isinstance(value, bool):
        raise InputError(f"must be a number, got {value!r}", field=field, **where)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InputError(f"must be a number, got {value!r}", field=field, **where) from None
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        raise InputError(f"must be a number, got {value!r}", field=field, **where)
    if not 0 <= value <= MAX_GRADE or math.isinf(value):
        raise InputError(f"must be between 0 and {MAX_GRADE}, got {value}", field=field, **where)
    return float(value)


def load_qrels(
    path: str | os.PathLike[str],
    *,
    queries: dict[str, str] | None = None,
    corpus: dict[str, Document] | None = None,
) -> dict[str, dict[str, int]]:
    """``{query id: {doc id: grade}}`` from a BEIR qrels TSV, checked against known ids.

    An exact repeat of a row is tolerated; the same pair with two grades is an error.
    """
    qrels: dict[str, dict[str, int]] = {}
    lines = read_lines(path)
    number, header = next(lines)
    if tuple(c.strip() for c in header.split("\t")) != QRELS_HEADER:
        raise InputError(
            f"header must be {'<TAB>'.join(QRELS_HEADER)!r}, got {header!r}", path=path, line=number
        )
    for number, line in lines:
        where = {"path": path, "line": number}
        cells = line.split("\t")
        if len(cells) != 3:
            raise InputError(f"expected 3 tab-separated fields, got {len(cells)}", **where)
        qid, did, raw = (c.strip() for c in cells)
        for name, value in (("query-id", qid), ("corpus-id", did)):
            if not value:
                raise InputError("is empty", field=name, **where)
        grade = parse_grade(raw, "score", where)
        if grade != int(grade):
            raise InputError(f"must be a whole number, got {raw!r}", field="score", **where)
        if queries is not None and qid not in queries:
            raise InputError(
                f"unknown query id {qid!r} (not in queries.jsonl)", field="query-id", **where
            )
        if corpus is not None and did not in corpus:
            raise InputError(
                f"unknown document id {did!r} (not in the corpus)", field="corpus-id", **where
            )
        previous = qrels.setdefault(qid, {}).get(did)
        if previous is not None and previous != int(grade):
            raise InputError(
                f"pair ({qid}, {did}) graded {previous} earlier and {int(grade)} here",
                field="score",
                **where,
            )
        qrels[qid][did] = int(grade)
    if not qrels:
        raise InputError("split has no qrels (only a header)", path=path, line=number)
    return qrels


class BeirDataset:
    """A BEIR folder; corpus, queries and qrels are loaded on first use and kept."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise InputError("no such dataset folder", path=self.root)
        if not self.root.is_dir():
            raise InputError("a BEIR dataset must be a folder", path=self.root)
        self._queries: dict[str, str] | None = None
        self._qrels: dict[str, dict[str, dict[str, int]]] = {}

    @property
    def corpus_path(self) -> Path:
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (self.root / name).exists():
                return self.root / name
        raise InputError("no corpus.jsonl or corpus.jsonl.gz in the dataset folder", path=self.root)

    @property
    def corpus(self) -> dict[str, Document]:
        return load_corpus(self.corpus_path)

    @property
    def queries(self) -> dict[str, str]:
        if self._queries is None:
            self._queries = load_queries(self.root / "queries.jsonl")
        return self._queries

    def splits(self) -> list[str]:
        folder = self.root / "qrels"
        return sorted(p.stem for p in folder.glob("*.tsv")) if folder.is_dir() else []

    def qrels_path(self, split: str) -> Path:
        path = self.root / "qrels" / f"{split}.tsv"
        if not path.exists():
            have = ", ".join(self.splits()) or "none"
            raise InputError(f"no qrels for split {split!r} (available: {have})", path=path)
        return path

    def qrels(self, split: str) -> dict[str, dict[str, int]]:
        if split not in self._qrels:
            self._qrels[split] = load_qrels(
                self.qrels_path(split), queries=self.queries, corpus=self.corpus
            )
        return self._qrels[split]


def cache_dir() -> Path:
    return Path(os.environ.get("DISTILL_CACHE", Path.home() / ".cache" / "distill"))


def fetch_beir(name: str) -> Path:
    """Download and unpack a public BEIR dataset once; return its folder.

    Needs network access; an offline machine gets a one-line error that says what to do.
    """
    target = cache_dir() / "beir" / name
    if (target / "queries.jsonl").exists():
        return target
    from tqdm.auto import tqdm

    from distill.artifacts import atomic_path

    url = BEIR_URL.format(name=name)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(target) as tmp:
            tmp.mkdir()
            archive = tmp / f"{name}.zip"
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"beir:{name}") as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
                        bar.update(len(block))
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp / "unpacked")
            inner = tmp / "unpacked" / name
            for item in (inner if inner.is_dir() else tmp / "unpacked").iterdir():
                shutil.move(str(item), tmp / item.name)
            archive.unlink()
            shutil.rmtree(tmp / "unpacked", ignore_errors=True)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"could not fetch beir:{name} from {url} ({exc}); download it and pass its folder"
        ) from None
    return target


def open_dataset(spec: str | os.PathLike[str]) -> BeirDataset:
    """A BEIR folder path, or ``beir:NAME`` for a public BEIR dataset (fetched once)."""
    text = str(spec)
    if text.startswith("beir:"):
        return BeirDataset(fetch_beir(text.removeprefix("beir:")))
    return BeirDataset(text)


def is_beir(spec: str | os.PathLike[str]) -> bool:
    text = str(spec)
    return text.startswith("beir:") or Path(text).is_dir()


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """One JSON object per line, UTF-8; the caller makes it atomic."""
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_qrels(qrels: dict[str, dict[str, int]], path: str | os.PathLike[str]) -> None:
    """Write qrels in BEIR TSV layout; the caller makes it atomic."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(QRELS_HEADER) + "\n")
        for qid, docs in qrels.items():
            for did, grade in docs.items():
                out.write(f"{qid}\t{did}\t{grade}\n")
