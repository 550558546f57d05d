"""Long documents read whole: a (query, document) pair longer than the teacher's ``max_length``
is scored as overlapping windows of the document, each paired with the query, and the window
scores are pooled into one score.

* ``first``: today's behaviour, the document truncated (one window; nothing extra is scored);
* ``max``: the best window's score (the relevant passage may sit anywhere);
* ``softmax``: the windows' scores weighted by their softmax (between max and mean).

Only pairs that do not fit get extra windows. A window holds as many document tokens as fit
beside the query and the special tokens; the next one starts ``stride`` tokens later (default:
half a window, so each passage is read whole by some window). Windows are cut at the
tokenizer's character offsets, so each window is the document's own text.

Training can match that scoring (:func:`best_windows`, ``distill teach --train-windows best``):
each long training document is replaced by its window that a cheap judge (BM25 with the
corpus statistics) ranks best for the query, the window max pooling would most likely read,
instead of its first window.

The setting lives in the teacher folder (``windows.json`` beside a cross-encoder's weights,
written by :func:`save`), so label, evaluate and audit score the way the teacher was set up;
``load_teacher(..., windows=...)`` overrides it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

FILE = "windows.json"
Pooling = Literal["first", "max", "softmax"]


@dataclass(frozen=True)
class Windows:
    pooling: Pooling = "first"
    stride: int | None = None  # tokens between window starts; None = half a window

    def __post_init__(self) -> None:
        if self.pooling not in ("first", "max", "softmax"):
            raise ValueError(f"windows pooling must be first, max or softmax, not {self.pooling!r}")
        if self.stride is not None and self.stride < 1:
            raise ValueError("windows stride must be at least 1 token")


def save(folder: str | Path, windows: Windows) -> None:
    from distill.artifacts import write_json

    write_json(Path(folder) / FILE, asdict(windows))


def load(folder: str | Path) -> Windows:
    path = Path(folder) / FILE
    if not path.is_file():
        return Windows()
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Windows(raw.get("pooling", "first"), raw.get("stride"))


def _windows(document: str, offsets, room: int, stride: int | None) -> list[str]:
    """The document cut into windows of ``room`` tokens, ``stride`` tokens apart."""
    step = stride or max(1, room // 2)
    out = []
    for start in range(0, len(offsets), step):
        end = min(start + room, len(offsets))
        out.append(document[offsets[start][0] : offsets[end - 1][1]])
        if end == len(offsets):
            break
    return out


def _room(tokenizer, queries: Sequence[str], max_length: int) -> dict[str, int]:
    """Document tokens that fit beside each query (one batched tokenizer call)."""
    special = tokenizer.num_special_tokens_to_add(pair=True)
    ids = tokenizer(list(queries), add_special_tokens=False)["input_ids"]
    return {q: max_length - special - len(x) for q, x in zip(queries, ids, strict=True)}


def pool(scores: np.ndarray, pooling: Pooling) -> float:
    if pooling == "first" or len(scores) == 1:
        return float(scores[0])
    if pooling == "max":
        return float(scores.max())
    weights = np.exp(scores - scores.max())
    return float((weights * scores).sum() / weights.sum())


def cut(
    tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, windows: Windows
) -> tuple[list[tuple[str, str]], list[int], int]:
    """What scoring ``pairs`` costs: the (query, window) pairs to score, how many windows each
    pair has, and how many pairs are longer than ``max_length`` (tokenizing only)."""
    queries = list(dict.fromkeys(q for q, _ in pairs))
    documents = list(dict.fromkeys(d for _, d in pairs))
    room = _room(tokenizer, queries, max_length)
    windowed = windows.pooling != "first"  # offsets only when windows are cut
    encoded = tokenizer(documents, add_special_tokens=False, return_offsets_mapping=windowed)
    index = {d: i for i, d in enumerate(documents)}
    flat: list[tuple[str, str]] = []
    counts: list[int] = []
    long_pairs = 0
    for query, document in pairs:
        i = index[document]
        long = 0 < room[query] < len(encoded["input_ids"][i])
        long_pairs += long
        parts = (
            _windows(document, encoded["offset_mapping"][i], room[query], windows.stride)
            if long and windowed
            else [document]  # fits, or truncated by the model as without windows
        )
        flat += [(query, p) for p in parts]
        counts.append(len(parts))
    return flat, counts, long_pairs


def score_windowed(
    score: Callable[[list[tuple[str, str]]], np.ndarray],
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    max_length: int,
    windows: Windows,
    stats: dict[str, int],
    groups_out: list | None = None,
) -> np.ndarray:
    """Scores of ``pairs`` with long documents read as windows; ``stats`` accumulates
    ``pairs``, ``long_pairs`` (longer than ``max_length``) and ``windows`` (pairs scored);
    ``groups_out`` (if given) receives each pair's window scores."""
    flat, counts, long_pairs = cut(tokenizer, pairs, max_length, windows)
    raw = np.asarray(score(flat), dtype=np.float32)
    stats["pairs"] = stats.get("pairs", 0) + len(pairs)
    stats["long_pairs"] = stats.get("long_pairs", 0) + long_pairs
    stats["windows"] = stats.get("windows", 0) + len(flat)
    groups = np.split(raw, np.cumsum(counts)[:-1]) if counts else []
    if groups_out is not None:  # each pair's window scores, for pooling them other ways
        groups_out.extend(groups)
    return np.array([pool(g, windows.pooling) for g in groups], dtype=np.float32)


def best_windows(
    judge: Callable[[list[tuple[str, str]]], np.ndarray],
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    max_length: int,
    stride: int | None = None,
) -> tuple[list[str], int]:
    """For each (query, document) pair, the document's window that ``judge`` scores highest
    with the query (the document itself when it fits in ``max_length``), and how many pairs
    were long. Ties keep the earlier window."""
    flat, counts, long_pairs = cut(tokenizer, pairs, max_length, Windows("max", stride))
    scores = np.asarray(judge(flat), dtype=np.float64) if flat else np.zeros(0)
    out, at = [], 0
    for n in counts:
        out.append(flat[at + int(np.argmax(scores[at : at + n]))][1])
        at += n
    return out, long_pairs
