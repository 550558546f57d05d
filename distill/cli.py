"""The ``distill`` command: a click group; each command is a thin shell over a stage's ``run``.

Bad input ends in one line on stderr (``error: path:line: field 'x': ...``) and exit code 2.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import click

from distill import __version__
from distill import config as cfg
from distill.errors import EXIT_BAD_INPUT, InputError
from distill.evaluate import EvaluateConfig
from distill.label import LabelConfig
from distill.mine import MineConfig
from distill.models import model_kind
from distill.queries import QueriesConfig
from distill.sample import SampleConfig
from distill.split import SplitConfig
from distill.stats import StatsConfig
from students.train import StudentConfig
from teachers.audit import AuditConfig
from teachers.train import TeachConfig


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="distill")
def cli() -> None:
    """Distill a fine-tuned cross-encoder reranker into a fast bi-encoder retriever."""


@cli.group("data")
def data_group() -> None:
    """Inspect and split datasets (BEIR folders or labeled pairs)."""


def _overrides(kwargs: dict) -> tuple[str | None, dict]:
    return kwargs.pop("config_path", None), kwargs


@data_group.command("split")
@cfg.options(SplitConfig, arguments=("data",))
def split_command(**kwargs) -> None:
    """Split DATA by query into train and validation parts (no query on both sides)."""
    from distill import split

    path, overrides = _overrides(kwargs)
    split.run(cfg.load(SplitConfig, path, section="split", overrides=overrides))


@data_group.command("sample")
@cfg.options(SampleConfig, arguments=("data",))
def sample_command(**kwargs) -> None:
    """Cut a small BEIR sample (queries, their documents, BM25 neighbours, random fill)."""
    from distill import sample

    path, overrides = _overrides(kwargs)
    sample.run(cfg.load(SampleConfig, path, section="sample", overrides=overrides))


@data_group.command("stats")
@cfg.options(StatsConfig, arguments=("data",))
def stats_command(**kwargs) -> None:
    """Counts, label distribution, token lengths and truncation share of DATA."""
    from distill import stats

    path, overrides = _overrides(kwargs)
    stats.run(cfg.load(StatsConfig, path, section="stats", overrides=overrides))


@cli.command("mine")
@cfg.options(MineConfig, arguments=("data",))
def mine_command(**kwargs) -> None:
    """Top-k candidates per query from BM25, dense retrieval (faiss), or both fused."""
    from distill import mine

    path, overrides = _overrides(kwargs)
    mine.run(cfg.load(MineConfig, path, section="mine", overrides=overrides))


@cli.command("queries")
@cfg.options(QueriesConfig, arguments=("data",))
def queries_command(**kwargs) -> None:
    """Pseudo-queries from the documents (generator, sentence or title), for unlabeled corpora."""
    from distill import queries

    path, overrides = _overrides(kwargs)
    queries.run(cfg.load(QueriesConfig, path, section="queries", overrides=overrides))


@cli.command("label")
@cfg.options(LabelConfig, arguments=("data",))
def label_command(**kwargs) -> None:
    """Teacher soft labels for mined (query, candidate) pairs: sharded, resumable."""
    from distill import label

    path, overrides = _overrides(kwargs)
    label.run(cfg.load(LabelConfig, path, section="label", overrides=overrides))


@cli.command("train-student")
@cfg.options(StudentConfig, arguments=("data",))
def train_student_command(**kwargs) -> None:
    """Train a bi-encoder on the teacher's soft labels (Accelerate loop; resumable)."""
    from students import train

    path, overrides = _overrides(kwargs)
    train.run(cfg.load(StudentConfig, path, section="student", overrides=overrides))


@cli.command("evaluate")
@cfg.options(EvaluateConfig, arguments=("data",))
@click.option(
    "--model",
    "verify_model",
    default=None,
    help="evaluate this one model (cross-encoder: reranks the base top-k; bi-encoder: retrieves)",
)
@click.option(
    "--dataset",
    "verify_dataset",
    default=None,
    help="alias of DATA, for the guide's verification command",
)
@click.option(
    "--metric", "verify_metric", default=None, help="ndcg, mrr, recall, or a pytrec_eval measure"
)
def evaluate_command(verify_model, verify_dataset, verify_metric, **kwargs) -> None:
    """Compare BM25, base, student and teacher on quality and speed; write report.{json,md,html}."""
    from distill import evaluate

    path, overrides = _overrides(kwargs)
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
    evaluate.run(cfg.load(EvaluateConfig, path, section="evaluate", overrides=overrides))


@cli.command("teach")
@cfg.options(TeachConfig, arguments=("data",))
def teach_command(**kwargs) -> None:
    """Fine-tune, validate and calibrate a cross-encoder teacher (or an ensemble)."""
    from teachers import train

    path, overrides = _overrides(kwargs)
    train.run(cfg.load(TeachConfig, path, section="teach", overrides=overrides))


@cli.command("audit")
@cfg.options(AuditConfig, arguments=("data",))
def audit_command(**kwargs) -> None:
    """List training pairs where the calibrated teacher confidently disagrees with the label."""
    from teachers import audit

    path, overrides = _overrides(kwargs)
    audit.run(cfg.load(AuditConfig, path, section="audit", overrides=overrides))


@cli.command("pipeline")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.option(
    "--from",
    "start",
    default=None,
    help="force a re-run from this stage on (teach, mine, label, student, baseline, evaluate)",
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
