"""The candidates artifact, ``candidates.parquet``: written by ``distill mine``, read by
``distill label`` (and by anyone checking a mining run). One writer, one reader.

Its columns (``COLUMNS``) are described in :mod:`distill.mine`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill import artifacts, metrics
from distill.errors import InputError
from distill.retrieval import Ranking

COLUMNS = ("qid", "did", "rank", "source", "score")


def write_candidates(ranking: Ranking, source: str, path: Path) -> int:
    """Write a ranking as ``candidates.parquet``; return the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list] = {"qid": [], "did": [], "rank": [], "source": [], "score": []}
    for qid, docs in ranking.items():
        for rank, did in enumerate(metrics.trec_order(docs), 1):
            cols["qid"].append(qid)
            cols["did"].append(did)
            cols["rank"].append(rank)
            cols["source"].append(source)
            cols["score"].append(docs[did])
    schema = pa.schema(
        [
            ("qid", pa.string()),
            ("did", pa.string()),
            ("rank", pa.int32()),
            ("source", pa.string()),
            ("score", pa.float32()),
        ]
    )
    with artifacts.atomic_path(path) as tmp:
        pq.write_table(pa.table(cols, schema=schema), tmp)
    return len(cols["qid"])


@dataclass
class Candidates:
    """What :func:`read_candidates` returns. Queries are in the order of their first row."""

    ranked: dict[str, list[str]]  # {qid: [did by rank]}, rank ties by did, every row kept
    scores: Ranking | None  # {qid: {did: score}}, dids in row order; None unless asked for


def _read_columns(path: str | Path, columns: list[str]) -> dict[str, list]:
    """``columns`` of a ``candidates.parquet`` as lists, after checking it is one: a readable
    Parquet file with those columns (ids as text, rank an integer, score a number) and rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise InputError("no such candidates file (run `distill mine` first)", path=p)
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several unrelated types for a non-Parquet file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"not a readable Parquet file ({first}); expected `distill mine` output", path=p
        ) from None
    expected = {
        "qid": (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer),
        "did": (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer),
        "rank": (pa.types.is_integer,),
        "score": (pa.types.is_floating, pa.types.is_integer),
    }
    for name in columns:
        if name not in table.column_names:
            raise InputError(
                f"missing column (a candidates file has {', '.join(COLUMNS)}; "
                f"this one has {', '.join(table.column_names) or 'none'})",
                path=p,
                field=name,
            )
        kind = table.schema.field(name).type
        if not any(check(kind) for check in expected.get(name, (lambda _: True,))):
            raise InputError(
                f"has type {kind}, expected {'text' if name in ('qid', 'did') else 'a number'}",
                path=p,
                field=name,
            )
        if table.column(name).null_count:
            raise InputError("has empty (null) values", path=p, field=name)
    if table.num_rows == 0:
        raise InputError("has no rows: no candidates (did `distill mine` find any?)", path=p)
    cols = {}
    for name in columns:
        column = table.column(name)
        if name in ("qid", "did"):
            column = column.cast(pa.string())
        cols[name] = column.to_pylist()
    return cols


def read_candidates(path: str | Path, *, with_scores: bool = False) -> Candidates:
    """The ranking in a ``candidates.parquet``, checked (one-line InputErrors). The ``score``
    column is read, and required, only ``with_scores``: labelling needs the rank order alone."""
    table = _read_columns(path, ["qid", "did", "rank", *(["score"] if with_scores else [])])
    ranked: dict[str, list[tuple[int, str]]] = {}
    for q, d, r in zip(table["qid"], table["did"], table["rank"], strict=True):
        ranked.setdefault(q, []).append((r, d))
    scores: Ranking | None = None
    if with_scores:
        scores = {}
        for q, d, s in zip(table["qid"], table["did"], table["score"], strict=True):
            scores.setdefault(q, {})[d] = float(s)
    return Candidates({q: [d for _, d in sorted(v)] for q, v in ranked.items()}, scores)
