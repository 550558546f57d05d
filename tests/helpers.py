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
