"""A loaded teacher's numeric precision and backend, for scoring speed: ``distill label``
sets the precision it was asked for, ``distill evaluate`` always ``exact``.

* ``exact``: fp32; on CPU through onnxruntime when its scores equal torch's to
  ``EXACT_ATOL`` on a few pairs and it scores them faster (timed on this machine), else
  ``CrossEncoder.predict``;
* ``torch``: fp32 ``CrossEncoder.predict``; ``int8``: torch dynamic int8 (CPU);
* ``onnx`` / ``onnx-int8``: onnxruntime fp32 / per-channel int8 (CPU); ``bf16``: GPU.

:func:`spearman` measures how far a faster mode's scores are from exact fp32 (fidelity).
"""

from __future__ import annotations

import time

import click
import numpy as np

from distill import console, data
from distill.errors import InputError

EXACT_ATOL = 1e-4


def quantize_int8(model) -> None:
    """Dynamic int8 quantization of the Linear layers (CPU), in place."""
    import torch

    inner = model[0].model if hasattr(model, "__getitem__") else model.model
    quantized = torch.ao.quantization.quantize_dynamic(inner, {torch.nn.Linear}, dtype=torch.qint8)
    if hasattr(model, "__getitem__"):
        model[0].model = quantized
    else:
        model.model = quantized


def _pairs_per_second(model, pairs, batch_size: int = 32) -> float:
    import torch

    start = time.perf_counter()
    model.predict(
        pairs, batch_size=batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False
    )
    return len(pairs) / max(time.perf_counter() - start, 1e-9)


def _exact_backend(member, check_pairs, echo) -> dict:
    """On CPU, swap ``member``'s torch model for onnxruntime fp32 (the same network, fused
    kernels) only when its scores on ``check_pairs`` equal torch's to ``EXACT_ATOL`` *and* it
    scores them faster on this machine; otherwise keep ``CrossEncoder.predict``. Which
    backend is faster depends on the CPU, the threads and the load, so it is timed here: the
    same pairs both ways, alternated, after one untimed pass each. Returns the record the
    labels manifest keeps: the choice, both speeds, the largest difference."""
    import torch

    from teachers.onnx import OnnxCrossEncoder

    if torch.cuda.is_available() or not check_pairs:
        return {"backend": "torch", "why": "GPU" if check_pairs else "nothing to check"}
    try:
        fast = OnnxCrossEncoder(member.model, data.cache_dir() / "onnx", quantize=False)
    except Exception as exc:  # exporters fail in many ways on unusual architectures
        echo(f"note: exact scoring stays on torch (ONNX export failed: {exc!s:.80})", err=True)
        return {"backend": "torch", "why": f"ONNX export failed: {exc!s:.80}"}
    ref = member.model.predict(check_pairs, activation_fn=torch.nn.Identity())
    got = fast.predict(check_pairs, activation_fn=torch.nn.Identity())
    worst = float(np.max(np.abs(np.asarray(ref) - np.asarray(got))))
    record: dict = {"max_abs_diff": worst, "pairs_timed": len(check_pairs)}
    if worst > EXACT_ATOL:
        echo(f"note: exact scoring stays on torch (onnxruntime differs by {worst:.2e})", err=True)
        return record | {"backend": "torch", "why": f"onnxruntime differs by {worst:.2e}"}
    speeds: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    for _ in range(2):  # alternated, so a neighbour's load hits both alike
        speeds["torch"].append(_pairs_per_second(member.model, check_pairs))
        speeds["onnxruntime"].append(_pairs_per_second(fast, check_pairs))
    best = {k: round(max(v), 1) for k, v in speeds.items()}
    faster = best["onnxruntime"] > best["torch"]
    if faster:
        member.model = fast
    record |= {"backend": "onnxruntime fp32" if faster else "torch", "pairs_per_s": best}
    console.detail(  # recorded in the manifest's backends
        echo,
        f"exact scoring: {record['backend']} (pairs/s on {len(check_pairs)} pairs: onnxruntime "
        f"{best['onnxruntime']:g}, torch {best['torch']:g}; max |diff| {worst:.1e})",
    )
    return record


def pairs_per_second(backends: list[dict], windows_per_pair: float = 1.0) -> float | None:
    """Pairs/s of the whole teacher from its members' measured rates (they score one after
    another), or None when a member was not timed. ``windows_per_pair``: what a pair costs a
    windowed cross-encoder, whose rate was timed on whole pairs (first-stage members, records
    with a ``member`` key, read documents whole)."""
    seconds = 0.0
    for b in backends:
        rate = max(b.get("pairs_per_s", {}).values(), default=0)
        if rate <= 0:
            return None
        seconds += (1.0 if "member" in b else windows_per_pair) / rate
    return 1 / seconds if seconds else None


def first_stage_rates(teacher, check_pairs, *, skip_zero: bool) -> list[dict]:
    """Pairs/s of each ensemble member that is not a cross-encoder (a bi-encoder embeds every
    pair's document, which costs about what a cross-encoder pass does), timed on
    ``check_pairs`` (the better of two, after a small untimed pass that loads the model).
    :func:`pairs_per_second` adds these records to the cross-encoders' own: timing the
    cross-encoders alone put a BM25 + bi-encoder + cross-encoder teacher at 96 pairs/s, and it
    labelled at 32. ``skip_zero``: not members of weight 0 (labelling does not score them)."""
    from teachers.scoring import CrossEncoderTeacher

    out = []
    check = list(check_pairs)
    for member in teacher.members:
        if isinstance(member.teacher, CrossEncoderTeacher) or (skip_zero and member.weight == 0):
            continue
        if not check:
            continue
        member.teacher.score(check[:4])  # loads the model: not part of the rate
        rate = 0.0
        for _ in range(2):  # the better of two, as the cross-encoder's backends are timed
            started = time.perf_counter()
            member.teacher.score(check)
            rate = max(rate, len(check) / max(time.perf_counter() - started, 1e-9))
        out.append(
            {"member": member.name, "backend": member.teacher.score_kind,
             "pairs_per_s": {"score": round(rate, 1)}}
        )  # fmt: skip
    return out


def apply_precision(teacher, precision: str, check_pairs=(), echo=click.echo) -> list[dict]:
    """Put every cross-encoder of ``teacher`` in the requested precision; return the backend
    of each cross-encoder member (for ``exact``, with the timings that chose it)."""
    import torch

    from teachers.scoring import CrossEncoderTeacher

    members = [m.teacher for m in teacher.members] or [teacher]
    backends = []
    for member in members:
        if not isinstance(member, CrossEncoderTeacher):
            continue  # a first-stage member (BM25, bi-encoder) has no cross-encoder to speed up
        if precision == "exact":
            backends.append(_exact_backend(member, list(check_pairs), echo))
            continue
        backends.append({"backend": precision})
        if precision == "int8":
            quantize_int8(member.model)
        elif precision in ("onnx", "onnx-int8"):
            from teachers.onnx import OnnxCrossEncoder

            member.model = OnnxCrossEncoder(
                member.model, data.cache_dir() / "onnx", quantize=precision == "onnx-int8"
            )
        elif precision == "bf16":
            if not torch.cuda.is_available():
                raise InputError(
                    "bf16 labelling needs a GPU; use exact or int8 on CPU", field="precision"
                )
            member.model.to(torch.bfloat16)
    return backends


def _average_ranks(x) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing the mean of their ranks (as Spearman's rho needs)."""
    x = np.asarray(x)
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(len(x))
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two score arrays (ties get their average rank)."""
    return float(np.corrcoef(_average_ranks(a), _average_ranks(b))[0, 1])
