"""A loaded teacher's numeric precision and backend, for scoring speed: ``distill label``
sets the precision it was asked for, ``distill evaluate`` always ``exact``.

* ``exact``: fp32; on CPU through onnxruntime when its scores equal torch's to
  ``EXACT_ATOL`` on a few pairs, else torch;
* ``torch``: fp32 ``CrossEncoder.predict``; ``int8``: torch dynamic int8 (CPU);
* ``onnx`` / ``onnx-int8``: onnxruntime fp32 / per-channel int8 (CPU); ``bf16``: GPU.

:func:`spearman` measures how far a faster mode's scores are from exact fp32 (fidelity).
"""

from __future__ import annotations

import click
import numpy as np

from distill import data
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


def _exact_backend(member, check_pairs, echo) -> str:
    """On CPU, swap ``member``'s torch model for onnxruntime fp32 (the same network, fused
    kernels, ~1.5x faster at 1 thread) when its scores on ``check_pairs`` equal torch's to
    ``EXACT_ATOL``; otherwise keep torch. Returns the backend used."""
    import torch

    from teachers.onnx import OnnxCrossEncoder

    if torch.cuda.is_available() or not check_pairs:
        return "torch"
    try:
        fast = OnnxCrossEncoder(member.model, data.cache_dir() / "onnx", quantize=False)
    except Exception as exc:  # exporters fail in many ways on unusual architectures
        echo(f"note: exact labelling stays on torch (ONNX export failed: {exc!s:.80})", err=True)
        return "torch"
    ref = member.model.predict(check_pairs, activation_fn=torch.nn.Identity())
    got = fast.predict(check_pairs, activation_fn=torch.nn.Identity())
    worst = float(np.max(np.abs(np.asarray(ref) - np.asarray(got))))
    if worst > EXACT_ATOL:
        echo(f"note: exact labelling stays on torch (onnxruntime differs by {worst:.2e})", err=True)
        return "torch"
    member.model = fast
    return f"onnxruntime fp32 (max |diff| {worst:.1e} vs torch on {len(check_pairs)} pairs)"


def apply_precision(teacher, precision: str, check_pairs=(), echo=click.echo) -> list[str]:
    """Put every cross-encoder of ``teacher`` in the requested precision; return the backend
    of each cross-encoder member."""
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
        backends.append(precision)
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


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])
