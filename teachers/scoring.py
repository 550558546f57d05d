"""One small interface over every teacher: ``score(pairs) -> raw scores`` and
``probability(scores)`` (calibrated).

``score`` returns **raw scores**: for a single cross-encoder its logit (no sigmoid); for an
ensemble the weighted sum of its members' *calibrated* logits. ``probability`` maps raw scores
to calibrated probabilities with the teacher's stored calibration. A teacher folder is either
a CrossEncoder folder (with an optional ``calibration.json``) or an ensemble folder
(``ensemble.json`` + ``members/<name>/``), and :func:`load_teacher` loads both. Ensemble
members may also be first-stage scorers (BM25, a bi-encoder; see :mod:`teachers.members`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from teachers.base import Pair, SingleTeacher
from teachers.calibration import Calibration
from teachers.members import BI_FILE, BM25_FILE, BiEncoderScorer, BM25Scorer
from teachers.windows import Windows, score_windowed
from teachers.windows import load as load_windows

ENSEMBLE_FILE = "ensemble.json"


class CrossEncoderTeacher(SingleTeacher):
    """A CrossEncoder plus its calibration."""

    score_kind = "logit"

    def __init__(
        self,
        model,
        calibration: Calibration | None = None,
        path: str | None = None,
        windows: Windows | None = None,
    ) -> None:
        self.model = model
        self.calibration = calibration or Calibration()
        self.path = path
        self.windows = windows or Windows()
        # kept here: a faster backend (teachers.precision) may replace ``model`` later
        self.tokenizer = getattr(model, "tokenizer", None)
        self.max_length = getattr(model, "max_length", None)
        self.window_stats: dict[str, int] = {}  # pairs, long_pairs, windows scored

    def score(
        self, pairs: Sequence[Pair], batch_size: int = 32, show_progress_bar: bool | None = None
    ) -> np.ndarray:
        import torch

        if not pairs:
            return np.zeros(0, dtype=np.float32)
        if show_progress_bar is None:  # a bar on a terminal; in a log, one unreadable line
            show_progress_bar = len(pairs) > 2000 and sys.stderr.isatty()

        def predict(batch) -> np.ndarray:
            out = self.model.predict(
                list(batch),
                batch_size=batch_size,
                activation_fn=torch.nn.Identity(),
                show_progress_bar=show_progress_bar,
            )
            return np.asarray(out, dtype=np.float32)

        if self.tokenizer is None or not self.max_length:
            return predict(pairs)
        return score_windowed(
            predict, self.tokenizer, pairs, self.max_length, self.windows, self.window_stats
        )


@dataclass
class Member:
    name: str
    teacher: Any  # CrossEncoderTeacher, or a first-stage scorer from teachers.members
    weight: float


class EnsembleTeacher:
    """Members' calibrated logits, combined by weights; calibrated again as a whole."""

    score_kind = "weighted calibrated logit"

    def __init__(
        self, members: list[Member], calibration: Calibration | None = None, path: str | None = None
    ) -> None:
        self.members = members
        self.calibration = calibration or Calibration()
        self.path = path

    def member_scores(
        self, pairs: Sequence[Pair], batch_size: int = 32, *, skip_zero: bool = False
    ) -> dict[str, np.ndarray]:
        """Each member's raw logit for each pair (``skip_zero``: not the members whose fitted
        weight is 0, which cannot change the ensemble's score; labelling skips them)."""
        return {
            m.name: m.teacher.score(pairs, batch_size)
            for m in self.members
            if m.weight != 0 or not skip_zero
        }

    def combine(self, member_scores: dict[str, np.ndarray]) -> np.ndarray:
        total = sum(
            m.weight * m.teacher.calibration.logit(member_scores[m.name])
            for m in self.members
            if m.weight != 0
        )
        return np.asarray(total, dtype=np.float32)

    def score(
        self, pairs: Sequence[Pair], batch_size: int = 32, show_progress_bar: bool | None = None
    ) -> np.ndarray:
        return self.combine(self.member_scores(pairs, batch_size))

    def probability(self, scores: np.ndarray) -> np.ndarray:
        return self.calibration.probability(scores)


def save_ensemble(
    folder: str | Path,
    members: list[tuple[str, str, float]],
    calibration: Calibration,
    extra: dict | None = None,
) -> Path:
    """Write ``ensemble.json``: members as (name, folder relative to ``folder``, weight)."""
    from distill.artifacts import write_json

    calibration.save(folder)
    data = {
        "members": [{"name": n, "path": p, "weight": w} for n, p, w in members],
        **(extra or {}),
    }
    return write_json(Path(folder) / ENSEMBLE_FILE, data)


def load_teacher(
    name: str,
    *,
    max_length: int | None = None,
    trust_remote_code: bool = False,
    windows: Windows | None = None,
):
    """A single CrossEncoder teacher or an ensemble, from a folder (or a hub id). Long
    documents are scored as the folder's ``windows.json`` says (teachers.windows), unless
    ``windows`` overrides it."""
    from distill.models import load_cross_encoder, resolve_model

    path = Path(resolve_model(name))
    if (path / ENSEMBLE_FILE).is_file():
        spec = json.loads((path / ENSEMBLE_FILE).read_text())
        members = [
            Member(
                m["name"],
                load_teacher(
                    str(path / m["path"]),
                    max_length=max_length,
                    trust_remote_code=trust_remote_code,
                    windows=windows,
                ),
                float(m["weight"]),
            )
            for m in spec["members"]
        ]
        return EnsembleTeacher(members, Calibration.load(path), str(path))
    if (path / BM25_FILE).is_file():
        return BM25Scorer.load(path)
    if (path / BI_FILE).is_file():
        return BiEncoderScorer.load(path)
    kwargs = {"max_length": max_length} if max_length else {}
    model = load_cross_encoder(name, trust_remote_code=trust_remote_code, **kwargs)
    return CrossEncoderTeacher(
        model,
        Calibration.load(path) if path.exists() else None,
        str(path),
        windows or (load_windows(path) if path.is_dir() else None),
    )


def read_ensemble(folder: str | Path) -> dict:
    """``ensemble.json`` of ``folder``, checked: valid JSON with a non-empty ``members`` list
    of ``{name, path, weight}``, each path an existing folder. Errors are one-line InputErrors."""
    from distill.errors import InputError

    file = Path(folder) / ENSEMBLE_FILE
    try:
        spec = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg})", path=file, line=exc.lineno) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise InputError(f"cannot read ({exc})", path=file) from None
    members = spec.get("members") if isinstance(spec, dict) else None
    if not isinstance(members, list) or not members:
        raise InputError(
            "missing or empty: an ensemble needs a list of members {name, path, weight} "
            "(re-run `distill teach`)",
            path=file,
            field="members",
        )
    for i, member in enumerate(members):
        where = f"members[{i}]"
        if not isinstance(member, dict):
            raise InputError("must be an object {name, path, weight}", path=file, field=where)
        for key in ("name", "path", "weight"):
            if key not in member:
                raise InputError("missing", path=file, field=f"{where}.{key}")
        if not isinstance(member["weight"], int | float) or isinstance(member["weight"], bool):
            raise InputError("must be a number", path=file, field=f"{where}.weight")
        if not isinstance(member["path"], str) or not (Path(folder) / member["path"]).is_dir():
            raise InputError(
                f"no such member folder {member['path']!r}", path=file, field=f"{where}.path"
            )
    return spec


def check_teacher(name: str, *, trust_remote_code: bool = False) -> None:
    """Refuse, before any model loads, a local teacher folder that cannot be a teacher: an
    empty folder, an ensemble whose ``ensemble.json`` (or a member's) is broken, or a model
    that needs its own code to run when ``trust_remote_code`` is off."""
    from distill.errors import InputError
    from distill.models import REFUSED_CODE, custom_code, not_a_cross_encoder, resolve_model

    path = Path(resolve_model(name))
    if not path.is_dir():
        return  # a hub id (or a file): the loader says what is wrong
    if (path / ENSEMBLE_FILE).is_file():
        for member in read_ensemble(path)["members"]:
            check_teacher(str(path / member["path"]), trust_remote_code=trust_remote_code)
        return
    if not any(not p.name.startswith(".") for p in path.iterdir()):
        raise InputError(
            "empty folder: no teacher here (run `distill teach`, or give a cross-encoder folder)",
            path=path,
        )
    needs = custom_code(path)
    if needs and not trust_remote_code:
        raise InputError(REFUSED_CODE.format(needs), path=path)
    if (path / BM25_FILE).is_file() or (path / BI_FILE).is_file():
        return
    reason = not_a_cross_encoder(path)
    if reason:
        raise InputError(
            f"not a teacher: {reason}; train one with `distill teach`", path=path, field="teacher"
        )


def describe(folder: str | Path) -> str:
    """What a single teacher folder holds, in words, read from its files (nothing loads):
    ``BM25``, ``bi-encoder (all-MiniLM-L6-v2)``, ``cross-encoder (bert, 6 layers, mean pooling)``."""
    path = Path(folder)
    if (path / BM25_FILE).is_file():
        return "BM25"
    if (path / BI_FILE).is_file():
        spec = json.loads((path / BI_FILE).read_text(encoding="utf-8"))
        if spec.get("relative"):
            return "bi-encoder (tuned by teach, in the teacher's folder)"
        name = str(spec.get("name") or spec.get("model") or "?")
        shown = "all-MiniLM-L6-v2, bundled" if name == "bundled" else Path(name).name
        return f"bi-encoder ({shown})"
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return f"cross-encoder ({path.name})"
    pooling = sorted(path.glob("*_Pooling/config.json"))
    if pooling:
        modes = json.loads(pooling[0].read_text(encoding="utf-8"))
        mode = modes.get("pooling_mode")  # sentence-transformers v6; older: one flag per mode
        if not isinstance(mode, str):
            on = [k[13:] for k, v in modes.items() if k.startswith("pooling_mode_") and v is True]
            mode = "/".join(m.replace("_tokens", "") for m in on) or "custom"
        head = f"{mode} pooling"
    else:
        head = "classification head"
    layers = config.get("num_hidden_layers", "?")
    return f"cross-encoder ({config.get('model_type', '?')}, {layers} layers, {head})"


def describe_members(folder: str | Path) -> dict[str, str]:
    """{member name: description} of an ensemble folder; {} for a single teacher."""
    path = Path(folder)
    if not (path / ENSEMBLE_FILE).is_file():
        return {}
    spec = json.loads((path / ENSEMBLE_FILE).read_text(encoding="utf-8"))
    return {m["name"]: describe(path / m["path"]) for m in spec.get("members", [])}


def window_stats(teacher) -> dict[str, int]:
    """Pairs scored, pairs longer than the cross-encoder's max_length, and windows scored,
    summed over the teacher's cross-encoders (an ensemble's members; BM25 and bi-encoder
    members read whole documents and add nothing)."""
    parts = [m.teacher for m in teacher.members] if teacher.members else [teacher]
    total = {"pairs": 0, "long_pairs": 0, "windows": 0}
    for part in parts:
        for key, value in getattr(part, "window_stats", {}).items():
            total[key] += value
    return total


def windows_per_pair(teacher, pairs: Sequence[Pair]) -> float:
    """How many pairs the teacher's slowest-reading cross-encoder scores for each of ``pairs``
    (1.0 unwindowed; more when long documents are read as windows): a measured pairs/s, timed
    on whole pairs, is this many times too fast for a windowed teacher."""
    from teachers.windows import cut

    parts = [m.teacher for m in teacher.members] if teacher.members else [teacher]
    most = 1.0
    for part in parts:
        windows, tokenizer = getattr(part, "windows", None), getattr(part, "tokenizer", None)
        if not pairs or windows is None or windows.pooling == "first" or tokenizer is None:
            continue
        flat, _, _ = cut(tokenizer, list(pairs), part.max_length, windows)
        most = max(most, len(flat) / len(pairs))
    return most


def window_line(stats: dict[str, int], pooling: str) -> str:
    """One line: how many pairs were too long for the teacher, and what was done with them."""
    if not stats.get("pairs"):
        return ""
    share = stats["long_pairs"] / stats["pairs"]
    how = (
        "truncated (windows: first)"
        if pooling == "first"
        else f"read as {stats['windows'] - stats['pairs'] + stats['long_pairs']:,} windows "
        f"({pooling} pooling)"
    )
    return (
        f"long documents: {stats['long_pairs']:,} of {stats['pairs']:,} pairs ({share:.1%}) "
        f"are longer than the teacher's max_length, {how}; {stats['windows']:,} pairs scored"
    )


def pooling_of(teacher) -> str:
    parts = [m.teacher for m in teacher.members] if teacher.members else [teacher]
    found = {p.windows.pooling for p in parts if hasattr(p, "windows")}
    return found.pop() if len(found) == 1 else ("/".join(sorted(found)) or "first")
