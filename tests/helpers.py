"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

import pytest

from distill.cli import main


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the ``distill`` console entry point in-process; return (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


__all__ = ["pytest", "run_cli"]


def tiny_teach_argv(data, model, out, *extra) -> list:
    """``distill teach`` on a tiny cross-encoder in a few steps (BM25 negatives, short texts),
    with ``extra`` options added."""
    return [
        "teach", data, "--model", model, "--output", out, "--max-length", "64",
        "--batch-size", "8", "--negatives", "3", "--val-candidates", "5",
        "--negatives-from", "bm25", "--allow-worse", *extra,
    ]  # fmt: skip
