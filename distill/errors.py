"""One error type for every bad input a user can hand us.

A :class:`InputError` carries where the problem is (file, line, field) and renders as one
line, ``path:line: field 'name': what is wrong``. The CLI prints that line and exits with
code 2; nothing else (no traceback) reaches the user.
"""

from __future__ import annotations

from os import PathLike

import click

EXIT_BAD_INPUT = 2
EXIT_REFUSED = 1


class Refused(click.ClickException):
    """A stage's result is worse than what the user already had (its start, or the first
    stage) on honest validation: nothing is shipped, exit code 1, the figures in one line.
    Every refusal names the flag that keeps the result anyway (``--allow-worse``)."""

    exit_code = EXIT_REFUSED


class InputError(Exception):
    """Malformed or missing user input, located as precisely as we can."""

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.message}".replace("\n", " ")
