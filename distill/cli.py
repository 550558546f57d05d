"""The ``distill`` command: a click group; each command is a thin shell over a stage's ``run``.

Bad input ends in one line on stderr (``error: path:line: field 'x': ...``) and exit code 2.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import click

from distill import __version__, console
from distill import config as cfg
from distill.errors import EXIT_BAD_INPUT, InputError
from distill.models import model_kind
from distill.stages import PIPELINE, Stage, commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="distill")
@click.option(
    "--verbose", is_flag=True, help="also show the libraries' own bars, reports and warnings"
)
def cli(verbose: bool) -> None:
    """Distill a fine-tuned cross-encoder reranker into a fast bi-encoder retriever."""
    if verbose:
        os.environ[console.VERBOSE_ENV] = "1"
    console.quiet_libraries()


@cli.group("data")
def data_group() -> None:
    """Inspect and split datasets (BEIR folders or labeled pairs)."""


def _overrides(kwargs: dict) -> tuple[str | None, dict]:
    return kwargs.pop("config_path", None), kwargs


def _evaluate_verify(
    overrides: dict, verify_model: str | None, verify_dataset: str | None, verify_metric: str | None
) -> None:
    """``evaluate --model/--dataset/--metric``: the guide's one-model verification command."""
    if verify_dataset:
        overrides["data"] = verify_dataset
    if verify_metric:
        short = {"ndcg": "ndcg@10", "mrr": "mrr@10", "recall": "recall@100"}
        overrides["measures"] = [short.get(verify_metric, verify_metric)]
    if verify_model:
        role = (
            "teacher"
            if (Path(verify_model) / "ensemble.json").is_file()
            or model_kind(verify_model) == "cross"
            else "student"
        )
        overrides[role] = verify_model
        overrides["systems"] = [role]


# Options a stage's command has beyond its config's: (flag, parameter, help) each, and the
# function that folds their values into the config overrides.
_EXTRA_OPTIONS = {
    "evaluate": (
        (
            (
                "--model",
                "verify_model",
                "evaluate this one model (cross-encoder: reranks the base top-k; bi-encoder: retrieves)",
            ),
            ("--dataset", "verify_dataset", "alias of DATA, for the guide's verification command"),
            ("--metric", "verify_metric", "ndcg, mrr, recall, or a pytrec_eval measure"),
        ),
        _evaluate_verify,
    ),
}


def _stage_command(stage: Stage) -> click.Command:
    """A thin shell over ``stage``'s ``run``: options from its config class (and any extra
    ones), a ``--config`` file read at the stage's section, the stage module used on run."""
    config_cls = stage.config_class()
    extra, adjust = _EXTRA_OPTIONS.get(stage.command, ((), None))

    def command(**kwargs) -> None:
        given = {dest: kwargs.pop(dest) for _, dest, _ in extra}
        path, overrides = _overrides(kwargs)
        if adjust is not None:
            adjust(overrides, **given)
        config = cfg.load(config_cls, path, section=stage.name, overrides=overrides)
        if stage.command == "train-student":  # may mine and label first: an orchestration
            from distill.pipeline import train_student

            train_student(config)
        else:
            stage.run_function()(config)

    for flag, dest, text in reversed(extra):
        command = click.option(flag, dest, default=None, help=text)(command)
    command = cfg.options(config_cls, arguments=("data",))(command)
    return click.command(stage.command.split()[-1], help=stage.help)(command)


def _register_stages() -> None:
    """One command per stage of distill.stages' table; ``data X`` ones under ``data``."""
    for name, stage in commands().items():
        (data_group if name.startswith("data ") else cli).add_command(_stage_command(stage))


_register_stages()


@cli.command("pipeline")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.option(
    "--from",
    "start",
    default=None,
    help=f"force a re-run from this stage on ({', '.join(s.name for s in PIPELINE)})",
)
@click.option("--to", "stop", default=None, help="stop after this stage")
@click.option("--dry-run", is_flag=True, help="only say which stages would run")
def pipeline_command(config_file: str, start: str | None, stop: str | None, dry_run: bool) -> None:
    """Run every stage of CONFIG_FILE in its run folder; stages whose output is current are skipped."""
    from distill import pipeline

    pipeline.run(config_file, start=start, stop=stop, dry_run=dry_run)


@cli.command("env")
def env_command() -> None:
    """Versions of the libraries, the device, and where the default model lives."""
    from distill.env import report

    click.echo(report())


# The disk or the folder refused a write (full, read-only, no permission, file size limit):
# one line, like bad input, since the fix is on the user's side.
_WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EFBIG}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: one-line errors, exit code 2 for bad input."""
    try:
        cli.main(args=argv, prog_name="distill", standalone_mode=False)
    except InputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except OSError as exc:
        if exc.errno not in _WRITE_ERRORS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}cannot write: {exc.strerror}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        click.echo(f"error: {exc.format_message()}{hint}".replace("\n", " "), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # `accelerate launch -m distill.cli label ...`
    main()
