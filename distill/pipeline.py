"""``distill pipeline CONFIG``: teach, mine, label, train-student (and an optional supervised
baseline), evaluate, in one run folder; each stage skipped when its output is current.

The config is one YAML file: ``run`` (the run folder), ``data`` (BEIR folder or beir:NAME),
and one section per stage holding that stage's own config keys (``queries``, ``teach``,
``mine``, ``label``, ``student``, ``baseline``, ``evaluate``). ``queries`` and ``baseline``
run only when their section is there; the pseudo-queries of ``queries`` are added to the
queries mined, labelled by the teacher and trained on (the teacher decides their positives). The pipeline fills in the links between
stages (where the teacher, the candidates and the labels are), so a section names only what
differs from the defaults.

A stage is current when it finished (``manifest.json``) and its ``pipeline.json`` key, a
hash of its resolved config, the dataset and the manifests of the stages it reads, is the
same as now. So a changed config re-runs that stage, and every stage after it whose inputs
changed; ``--from STAGE`` forces a re-run from STAGE on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click

from distill import artifacts, data
from distill import config as cfg
from distill.errors import InputError, Refused
from distill.stages import PIPELINE

STAGES = tuple(s.name for s in PIPELINE)  # in running order; see distill.stages
STATE = "pipeline.json"
OPTIONAL = ("queries", "baseline")  # stages that run only when the config has their section


@dataclass
class Stage:
    name: str
    folder: str
    config_cls: type
    run: Callable
    reads: tuple[str, ...]  # stages whose outputs this one uses


def _stages() -> dict[str, Stage]:
    """The pipeline's stages from distill.stages' table, their modules imported."""
    return {
        s.name: Stage(s.name, s.folder, s.config_class(), s.run_function(), s.reads)
        for s in PIPELINE
    }


def _links(raw: dict, folder: dict[str, str]) -> tuple[dict[str, dict[str, Any]], str]:
    """What the pipeline fills in for each stage (where the teacher, the candidates and the
    labels are; which queries are mined, labelled and trained on), and those queries."""
    mine_queries = (raw.get("mine") or {}).get("queries", "train")
    if "queries" in raw:  # pseudo-queries join the mined, labelled and trained queries
        mine_queries = f"{mine_queries},{Path(folder['queries']) / 'queries.jsonl'}"
    links: dict[str, dict[str, Any]] = {
        "queries": {},
        "teach": {},
        "mine": {"queries": mine_queries},
        "label": {
            "candidates": str(Path(folder["mine"]) / "candidates.parquet"),
            "teacher": folder["teach"],
            "queries": mine_queries,
        },
        "student": {"labels": folder["label"], "queries": mine_queries},
        # the baseline is a reference row of the report, never shipped: a worse one is shown
        "baseline": {
            "labels": folder["label"],
            "queries": mine_queries,
            "loss": "mnrl",
            "allow_worse": True,
        },
        "evaluate": {"student": folder["student"], "teacher": folder["teach"]},
    }
    if "baseline" in raw:
        links["evaluate"]["supervised"] = folder["baseline"]
    if (raw.get("mine") or {}).get("cache_dir"):  # a bi-encoder member reads mine's vectors
        links["label"]["cache_dir"] = raw["mine"]["cache_dir"]
    if (raw.get("queries") or {}).get("method") == "cloze":
        # the inverse-cloze queries' sentences are gone from this copy of the corpus; the
        # teacher is taught and the models evaluated on the original
        for name in ("mine", "label", "student", "baseline"):
            links[name]["data"] = str(Path(folder["queries"]) / "data")
    return links, mine_queries


def resolve(path: str | os.PathLike[str]) -> tuple[Path, str, dict[str, Any]]:
    """(run folder, data, {stage: config object}) from a pipeline YAML; errors name file and line."""
    raw, lines = cfg.read_yaml(path)
    unknown = [k for k in raw if k not in ("run", "data", *STAGES)]
    if unknown:
        raise InputError(
            f"unknown key (known: run, data, {', '.join(STAGES)})",
            path=path,
            line=lines.get(unknown[0]),
            field=unknown[0],
        )
    for key in ("run", "data"):
        if not isinstance(raw.get(key), str):
            raise InputError(
                "is required and must be text", path=path, line=lines.get(key), field=key
            )
    run_dir, dataset = Path(raw["run"]), raw["data"]
    if "${" in dataset or dataset.startswith("$"):
        dataset = os.path.expandvars(dataset)
    for name in STAGES:  # before any section is read as one
        if raw.get(name) is not None and not isinstance(raw[name], dict):
            raise InputError(
                f"must be a mapping of that stage's keys, not {type(raw[name]).__name__}",
                path=path,
                line=lines.get(name),
                field=name,
            )
    stages = _stages()
    folder = {name: str(run_dir / s.folder) for name, s in stages.items()}
    links, mine_queries = _links(raw, folder)
    configs: dict[str, Any] = {}
    for name, stage in stages.items():
        if name in OPTIONAL and name not in raw:
            continue
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise InputError(
                "must be a mapping of that stage's keys",
                path=path,
                line=lines.get(name),
                field=name,
            )
        for key in ("data", "output"):
            if key in section:
                raise InputError(
                    f"is set by the pipeline (from 'run' and 'data'); remove it from '{name}'",
                    path=path,
                    line=lines.get(f"{name}.{key}"),
                    field=f"{name}.{key}",
                )
        section_lines = {
            k[len(name) + 1 :]: v for k, v in lines.items() if k.startswith(name + ".")
        }
        merged = {
            **links[name],
            **section,
            "data": links[name].get("data", dataset),
            "output": folder[name],
        }
        if name == "mine":  # the section's queries, and the pseudo-queries when there are any
            merged["queries"] = mine_queries
        try:
            configs[name] = cfg.from_mapping(
                stage.config_cls, merged, path=path, lines=section_lines
            )
        except InputError as exc:
            if exc.field and not exc.field.startswith(name + "."):
                exc.field = f"{name}.{exc.field}"
            raise
    return run_dir, dataset, configs


def _key(
    name: str, config: Any, dataset: str, configs: dict[str, Any], stages: dict[str, Stage]
) -> str:
    digest = hashlib.sha256(json.dumps(artifacts._plain(asdict(config)), sort_keys=True).encode())
    dataset = getattr(config, "data", dataset)  # a cloze run's stages read its corpus copy
    digest.update(dataset.encode())
    if not dataset.startswith("beir:") and Path(dataset).is_dir():  # not made yet: a dry run
        ds = data.BeirDataset(dataset)
        digest.update(artifacts.fingerprint(ds.corpus_path).encode())
        digest.update(artifacts.fingerprint(ds.root / "queries.jsonl").encode())
        for split in ds.splits():
            digest.update(artifacts.fingerprint(ds.qrels_path(split)).encode())
    for part in str(getattr(config, "queries", "") or "").split(","):
        if part and Path(part).is_file():  # a queries file the config only names by path
            digest.update(artifacts.fingerprint(part).encode())
    for upstream in stages[name].reads:
        if upstream in configs:
            manifest = Path(configs[upstream].output) / artifacts.MANIFEST
            digest.update(
                artifacts.fingerprint(manifest).encode() if manifest.is_file() else b"missing"
            )
    return digest.hexdigest()


REFUSALS = "pipeline-refused.json"  # in the run folder: {stage: {"key", "message"}}
# what evaluate leaves out when a stage it reads was refused (or could not run because of one)
DROPPED = {
    "teach": ("teacher", "cascade"),
    "student": ("student", "cascade"),
    "baseline": ("supervised",),
}
MODEL_OF = {"teacher": "teach", "student": "student", "supervised": "baseline"}


def _without(config: Any, missing: dict[str, str]) -> Any:
    """evaluate's config without the systems whose stage is in ``missing`` ({stage: why}); the
    report says why each is absent."""
    drop = {s for name in missing for s in DROPPED.get(name, ())}
    systems = [s for s in config.chosen() if s not in drop]
    models = {m: None for m, stage in MODEL_OF.items() if stage in missing}
    notes = [f"No {stage}: {why}" for stage, why in missing.items()]
    return replace(config, systems=systems, absent=notes, **models)


def run(
    path: str | os.PathLike[str],
    *,
    start: str | None = None,
    stop: str | None = None,
    dry_run: bool = False,
    echo=click.echo,
) -> Path:
    """Run the pipeline (stages ``start`` forced .. ``stop``); return the run folder.
    ``dry_run``: only say which stages would run (a stage reading one that would run, would too).

    A refused stage ships nothing, and the stages that need it do not run; the others go on
    (evaluate compares what there is and says what is missing), then the pipeline exits 1
    naming the refusal. A refusal is remembered: a run with the same inputs says it again
    without re-training (``--from STAGE`` tries again)."""
    for option, value in (("from", start), ("to", stop)):
        if value is not None and value not in STAGES:
            raise InputError(f"unknown stage {value!r} (stages: {', '.join(STAGES)})", field=option)
    run_dir, dataset, configs = resolve(path)
    stages = _stages()
    if not dry_run:
        run_dir.mkdir(parents=True, exist_ok=True)
    refusals_path = run_dir / REFUSALS
    refusals = json.loads(refusals_path.read_text()) if refusals_path.is_file() else {}
    forced = False
    summary: dict[str, str] = {}
    pending: set[str] = set()  # stages that (would) run in this invocation
    missing: dict[str, str] = {}  # stages refused, or not run because of a refusal: why
    for name in STAGES:
        if name not in configs:
            continue
        config = configs[name]
        forced = forced or name == start
        needs = [r for r in stages[name].reads if r in missing]
        if needs and name != "evaluate":
            missing[name] = f"it needs {needs[0]}, which {missing[needs[0]]}"
            echo(f"[{name}] not run: {missing[name]}")
            summary[name] = "not run"
        else:
            if name == "evaluate" and missing:
                config = _without(config, missing)
            key = _key(name, config, dataset, configs, stages)
            summary[name] = _step(
                name, config, key, stages, pending, refusals, missing,
                forced=forced, dry_run=dry_run, echo=echo,
            )  # fmt: skip
        if name == stop:
            break
    if dry_run:
        return run_dir
    if refusals or refusals_path.is_file():  # a run with no refusal leaves no empty file
        artifacts.write_json(refusals_path, refusals)
    artifacts.write_json(run_dir / "pipeline-summary.json", summary)
    _finish(run_dir, configs, summary, stop, echo)
    refused = {n: why for n, why in missing.items() if summary.get(n) == "refused"}
    if refused:
        raise Refused(
            "; ".join(f"[{n}] {why}" for n, why in refused.items())
            + f" The stages that did not need it ran; see {run_dir / 'pipeline-summary.json'}."
        )
    return run_dir


def _step(name, config, key, stages, pending, refusals, missing, *, forced, dry_run, echo) -> str:
    """Run one stage unless it is current (or was refused with these same inputs); what
    happened: "skipped", "ran", "refused" or "would run"."""
    out = Path(config.output)
    state = out / STATE
    unchanged = not pending.intersection(stages[name].reads) and not forced
    current = (
        unchanged
        and (out / artifacts.MANIFEST).is_file()
        and state.is_file()
        and json.loads(state.read_text()).get("key") == key
    )
    if current:
        echo(f"[{name}] current, skipped ({out})")
        return "skipped"
    if unchanged and refusals.get(name, {}).get("key") == key:
        missing[name] = f"was refused: {refusals[name]['message']}"
        echo(
            f"[{name}] refused before with these same inputs, not re-run (--from {name} tries again): {refusals[name]['message']}"
        )
        return "refused"
    pending.add(name)
    if dry_run:
        echo(f"[{name}] would run -> {out}")
        return "would run"
    echo(f"[{name}] running -> {out}")
    try:
        stages[name].run(config, echo=echo)
    except Refused as exc:
        refusals[name] = {"key": key, "message": exc.message}
        missing[name] = f"was refused: {exc.message}"
        echo(f"[{name}] refused, nothing shipped: {exc.message}")
        return "refused"
    refusals.pop(name, None)
    artifacts.write_json(out / STATE, {"key": key, "stage": name})
    return "ran"


def _finish(run_dir: Path, configs: dict, summary: dict[str, str], stop, echo) -> None:
    """Say where the run stopped, or show a report evaluate did not print in this run."""
    if stop is not None and stop != "evaluate":
        echo(f"stopped after {stop}")
        return
    report = Path(configs["evaluate"].output)
    if (report / "report.md").is_file() and summary.get("evaluate") != "ran":
        echo("")  # evaluate printed its table when it ran; a skipped one is shown here
        echo((report / "report.md").read_text())
        echo(f"HTML report: {(report / 'report.html').resolve()}")


DEFAULT_LABELS = "runs/labels"


def _current(out: Path, config: Any) -> bool:
    """True when ``out`` holds a finished stage made with ``config`` from unchanged inputs."""
    manifest = artifacts.read_manifest(out)
    if manifest is None or manifest.get("config") != artifacts._plain(config):
        return False
    return all(
        Path(i["path"]).exists() and artifacts.fingerprint(i["path"]) == i["sha256"]
        for i in manifest.get("inputs", {}).values()
    )


def train_student(config: Any, echo=click.echo) -> Path:
    """``distill train-student``; with ``--teacher`` and no ``--labels``, first mine candidates
    and label them with the teacher into ``OUTPUT-work/`` (the design card's two commands:
    ``distill teach`` then ``distill train-student --teacher``). Current work is reused."""
    stages = _stages()
    if config.teacher is None or config.labels != DEFAULT_LABELS:
        return stages["student"].run(config, echo=echo)
    work = Path(config.output).parent / f"{Path(config.output).name}-work"
    # the student draws its negatives from the teacher's top negative_depth: deeper candidates
    # would be labelled for nothing
    mine = stages["mine"].config_cls(
        data=config.data, queries=config.queries, output=str(work / "mine"), k=config.negative_depth,
        cache_dir=config.cache_dir,
    )  # fmt: skip
    if _current(Path(mine.output), mine):
        echo(f"candidates in {mine.output} are current; reused", err=True)
    else:
        echo(f"mining candidates for the {config.queries!r} queries into {mine.output}", err=True)
        stages["mine"].run(mine, echo=echo)
    label = stages["label"].config_cls(
        data=config.data,
        queries=config.queries,
        candidates=str(Path(mine.output) / "candidates.parquet"),
        teacher=config.teacher,
        output=str(work / "labels"),
        allow_worse=config.allow_worse,
        cache_dir=config.cache_dir,  # where mine cached the corpus vectors
    )
    echo(f"labelling them with the teacher {config.teacher} into {label.output}", err=True)
    stages["label"].run(label, echo=echo)
    return stages["student"].run(replace(config, labels=label.output), echo=echo)
