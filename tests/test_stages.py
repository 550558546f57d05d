"""The table of stages (distill.stages) is the one list of stages: the CLI's commands and the
pipeline's stages are built from it and must not drift apart from it."""

from __future__ import annotations

import dataclasses
import inspect

import click

from distill import pipeline, stages
from distill.cli import cli

NOT_STAGES = {"pipeline", "env"}  # commands that run no stage module


def _command(path: str) -> click.Command | None:
    group: click.Command | None = cli
    for part in path.split():
        group = group.commands.get(part) if isinstance(group, click.Group) else None
    return group


def _leaf_commands(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            out += _leaf_commands(command, path + " ")
        else:
            out.append(path)
    return out


def test_every_stage_of_the_table_has_its_command():
    """Prevents a stage (a pipeline stage above all) that the pipeline runs but no command
    does, or a command whose options are not its stage's config."""
    for stage in stages.TABLE:
        command = _command(stage.command)
        assert command is not None, f"stage {stage.name!r}: no command {stage.command!r}"
        params = {p.name for p in command.params}
        fields = {
            f.name for f in dataclasses.fields(stage.config_class()) if f.metadata.get("cli", True)
        }  # a field marked cli=False is set in the --config file only
        assert fields - {"data"} <= params, (stage.name, sorted(fields - params))
        assert "config_path" in params and "data" in params


def test_every_stage_command_is_in_the_table():
    """Prevents a stage command added to the CLI by hand and missing from the table (so from
    the pipeline's list, the import checks, and this file's checks)."""
    in_table = {s.command for s in stages.TABLE}
    for path in _leaf_commands(cli):
        assert path in in_table or path in NOT_STAGES, f"command {path!r} is not in distill.stages"


def test_the_pipeline_is_built_from_the_table():
    """Prevents the pipeline running a stage list of its own: its order, folders, config
    classes, run functions and inputs are the table's, and a stage reads only earlier ones."""
    assert tuple(s.name for s in stages.PIPELINE) == pipeline.STAGES
    built = pipeline._stages()
    assert list(built) == list(pipeline.STAGES)
    for position, stage in enumerate(stages.PIPELINE):
        got = built[stage.name]
        assert (got.folder, got.reads) == (stage.folder, stage.reads)
        assert got.config_cls is stage.config_class() and got.run is stage.run_function()
        assert set(stage.reads) <= set(pipeline.STAGES[:position]), stage.name
    start = next(p for p in _command("pipeline").params if p.name == "start")
    assert ", ".join(pipeline.STAGES) in start.help


def test_stage_names_and_folders_are_unique():
    """Prevents two stages sharing a config section, or two pipeline stages one output folder."""
    names = [s.name for s in stages.TABLE]
    folders = [s.folder for s in stages.PIPELINE]
    assert len(set(names)) == len(names) and len(set(folders)) == len(folders)


def test_first_stage_defaults_are_mines():
    """Prevents ``distill teach`` mining its negatives with other settings than ``distill
    mine``'s defaults: it calls distill.retrieval.first_stage, whose defaults must be
    MineConfig's (teach used to build a MineConfig)."""
    from distill.mine import MineConfig
    from distill.retrieval import first_stage

    defaults = {f.name: f.default for f in dataclasses.fields(MineConfig)}
    for name, parameter in inspect.signature(first_stage).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            assert defaults[name] == parameter.default, name
