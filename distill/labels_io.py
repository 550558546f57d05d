"""Reading the labels artifact, the output folder of ``distill label`` (its format is in
:mod:`distill.label`'s docstring): ``shard-NNNNN.parquet`` files vouched for by
``progress.json`` (row count and sha256 per finished shard)."""

from __future__ import annotations

import json
from pathlib import Path

from distill import artifacts
from distill.errors import InputError

PROGRESS = "progress.json"


def read_progress(path: Path) -> dict | None:
    """A progress file's contents, or None when it is missing or damaged (not JSON, or not
    ``{"key", "shards": {index: {file, rows, sha256}}}``)."""
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        return None
    shards = progress.get("shards") if isinstance(progress, dict) else None
    if not isinstance(shards, dict) or not isinstance(progress.get("key"), str):
        return None
    for index, meta in shards.items():
        if not index.isdigit() or not isinstance(meta, dict):
            return None
        if not all(isinstance(meta.get(k), str) for k in ("file", "sha256")):
            return None
    return progress


def read_labels(folder: str | Path) -> pa.Table:  # noqa: F821
    """All shards of a finished labelling run, in order, as one Arrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    again = "re-run `distill label` into this folder"
    progress = read_progress(folder / PROGRESS)
    if progress is None:
        raise InputError(f"missing or damaged; {again}", path=folder / PROGRESS)
    tables = []
    for index in sorted(progress["shards"], key=int):
        meta = progress["shards"][index]
        shard = folder / meta["file"]
        if not shard.is_file():
            raise InputError(f"shard missing; {again}", path=shard)
        if artifacts.fingerprint(shard) != meta["sha256"]:
            raise InputError(
                f"damaged: its sha256 differs from the one in {PROGRESS}; {again}", path=shard
            )
        try:
            tables.append(pq.read_table(shard))
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise InputError(f"damaged ({str(exc).splitlines()[0]}); {again}", path=shard) from None
    if not tables:
        raise InputError(f"no shards recorded; {again}", path=folder / PROGRESS)
    return pa.concat_tables(tables)
