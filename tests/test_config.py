"""Typed configs: YAML, then command-line overrides; unknown keys and wrong types fail early."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
from helpers import run_cli

from distill import config as cfg
from distill.errors import InputError


@dataclass
class Inner:
    lr: float = 3e-5
    members: list[str] = field(default_factory=list)


@dataclass
class Outer:
    data: str
    epochs: int = 1
    loss: Literal["bce", "listwise"] = "bce"
    fp16: bool = False
    teach: Inner = field(default_factory=Inner)


def test_precedence_defaults_yaml_cli(tmp_path):
    """Prevents a CLI option losing to the file, or a file value losing to a default."""
    p = tmp_path / "c.yaml"
    p.write_text("data: x\nepochs: 3\nteach:\n  lr: 1e-3\n  members: [a, b]\n")
    c = cfg.load(Outer, p, overrides={"epochs": 5, "loss": None})
    assert c == Outer(data="x", epochs=5, loss="bce", teach=Inner(lr=1e-3, members=["a", "b"]))
    assert isinstance(c.teach.lr, float)


def test_section_is_used(tmp_path):
    """Prevents a stage reading another stage's keys from a pipeline config."""
    p = tmp_path / "c.yaml"
    p.write_text("other:\n  zzz: 1\nouter:\n  data: y\n")
    assert cfg.load(Outer, p, section="outer").data == "y"


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("data: x\nepochs: 2.5\n", 2, "epochs", "must be int"),
        ("data: x\nfp16: 1\n", 2, "fp16", "must be bool"),
        ("data: x\nepochs: true\n", 2, "epochs", "must be int"),
        ("data: x\nloss: mse\n", 2, "loss", "one of 'bce', 'listwise'"),
        ("data: x\nteach:\n  lr: fast\n", 3, "teach.lr", "must be float"),
        ("data: x\nteach:\n  lrr: 1\n", 3, "teach.lrr", "unknown key"),
        ("epochs: 1\n", None, "data", "is required"),
        ("data: [unclosed\n", 2, None, "invalid YAML"),
    ],
)
def test_bad_config_names_line_and_field(tmp_path, text, line, field, words):
    """Prevents config typos being ignored or reported without a location."""
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as info:
        cfg.load(Outer, p)
    err = info.value
    message = str(err)
    assert err.line == line, message
    assert err.field == field
    assert words in message
    assert message.startswith(str(p))


def _stage_configs():
    from distill.evaluate import EvaluateConfig
    from distill.label import LabelConfig
    from distill.mine import MineConfig
    from distill.queries import QueriesConfig
    from distill.sample import SampleConfig
    from distill.split import SplitConfig
    from distill.stats import StatsConfig
    from students.config import StudentConfig
    from teachers.audit import AuditConfig
    from teachers.teach_config import MemberConfig, TeachConfig

    return [
        SplitConfig,
        SampleConfig,
        StatsConfig,
        MineConfig,
        QueriesConfig,
        LabelConfig,
        EvaluateConfig,
        StudentConfig,
        TeachConfig,
        MemberConfig,
        AuditConfig,
    ]


def _config(name):
    return next(c for c in _stage_configs() if c.__name__ == name)


# (config class, section, YAML text, planted line, field, words in the message). Line 1 is
# the section key, line 2 `data:`; the planted defect is on the line named.
OUT_OF_RANGE = [
    ("StudentConfig", "student", "  loss: kl\n  lr: -0.001\n", 4, "lr", "greater than 0"),
    ("StudentConfig", "student", "  epochs: 0\n", 3, "epochs", "at least 1"),
    ("StudentConfig", "student", "  seed: 1\n  scale: .nan\n", 4, "scale", "finite"),
    ("StudentConfig", "student", "  lr: .inf\n", 3, "lr", "finite"),
    ("StudentConfig", "student", "  lr: nan\n", 3, "lr", "finite"),
    ("StudentConfig", "student", "  warmup: -0.1\n", 3, "warmup", "0 <= warmup < 1"),
    ("StudentConfig", "student", "  warmup: 1\n", 3, "warmup", "0 <= warmup < 1"),
    (
        "StudentConfig",
        "student",
        "  teacher_temperature: 0\n",
        3,
        "teacher_temperature",
        "greater than 0",
    ),
    ("TeachConfig", "teach", "  epochs: 0\n", 3, "epochs", "greater than 0"),
    ("TeachConfig", "teach", "  lr: -1e-5\n", 3, "lr", "greater than 0"),
    (
        "TeachConfig",
        "teach",
        "  members:\n    - name: a\n      model: m\n    - name: b\n      model: m\n"
        "      lr: -0.001\n",
        8,
        "members[1].lr",
        "greater than 0",
    ),
    ("MineConfig", "mine", "  method: bm25\n  k: 0\n", 4, "k", "at least 1"),
    ("EvaluateConfig", "evaluate", "  k: 0\n", 3, "k", "at least 1"),
    (
        "EvaluateConfig",
        "evaluate",
        "  judge_thresholds:\n    - 0.5\n    - 1.5\n",
        5,
        "judge_thresholds[1]",
        "between 0 and 1",
    ),
    ("LabelConfig", "label", "  shard_size: 0\n", 3, "shard_size", "at least 1"),
    ("SplitConfig", "split", "  val_fraction: 1.0\n", 3, "val_fraction", "between 0 and 1"),
    ("AuditConfig", "audit", "  threshold: .nan\n", 3, "threshold", "finite"),
    # a check across fields in validate() is located too
    ("TeachConfig", "teach", "  skip_top: 40\n", 3, "skip_top", "below mine_depth"),
]


@pytest.mark.parametrize(
    ("name", "section", "body", "line", "field", "words"),
    OUT_OF_RANGE,
    ids=[f"{c[0]}-{c[2].splitlines()[c[3] - 3].strip()}" for c in OUT_OF_RANGE],
)
def test_out_of_range_value_names_file_line_and_field(
    tmp_path, name, section, body, line, field, words
):
    """Prevents a negative learning rate, 0 epochs, k 0, a NaN scale (...) passing the config
    checks, or being reported without the file, line and key to fix."""
    p = tmp_path / "c.yaml"
    p.write_text(f"{section}:\n  data: some/data\n{body}", encoding="utf-8")
    with pytest.raises(InputError) as info:
        cfg.load(_config(name), p, section=section)
    err = info.value
    assert (err.path, err.line, err.field) == (str(p), line, field), str(err)
    assert str(err).startswith(f"{p}:{line}: field '{field}': "), str(err)
    assert words in str(err)


def test_cli_override_out_of_range_names_the_field(tmp_path):
    """Prevents an out-of-range command-line value being blamed on a line of the file."""
    p = tmp_path / "c.yaml"
    p.write_text("student:\n  data: d\n  lr: 0.001\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        cfg.load(_config("StudentConfig"), p, section="student", overrides={"lr": -1.0})
    assert (info.value.field, info.value.line) == ("lr", None)
    assert "greater than 0" in str(info.value)


def test_special_values_stay_legal(tmp_path):
    """Prevents the range checks rejecting documented special values: null = auto, 0 = off,
    fractional teacher epochs, negative seeds."""
    p = tmp_path / "c.yaml"
    p.write_text(
        "student:\n  data: d\n  teacher_temperature: null\n  in_batch: 0\n  warmup: 0\n"
        "  false_negative_margin: 0\n  seed: -1\n"
        "teach:\n  data: d\n  lr: null\n  epochs: 0.5\n  warmup_pairs: 0\n  skip_top: 0\n"
        "  max_length: null\n"
        "sample:\n  data: d\n  neighbours: 0\n"
        "label:\n  data: d\n  fidelity_sample: 0\n  max_length: null\n"
        "mine:\n  data: d\n  rrf_k: 0\n",
        encoding="utf-8",
    )
    student = cfg.load(_config("StudentConfig"), p, section="student")
    assert (student.teacher_temperature, student.in_batch, student.seed) == (None, 0.0, -1)
    teach = cfg.load(_config("TeachConfig"), p, section="teach")
    assert (teach.lr, teach.epochs, teach.warmup_pairs) == (None, 0.5, 0)
    assert cfg.load(_config("SampleConfig"), p, section="sample").neighbours == 0
    assert cfg.load(_config("LabelConfig"), p, section="label").fidelity_sample == 0
    assert cfg.load(_config("MineConfig"), p, section="mine").rrf_k == 0


def test_every_numeric_field_has_a_range():
    """Prevents a new int or float config field that skips the range check (and a typo in a
    range spec that would only show when a user hits it)."""
    import dataclasses
    import typing

    missing = []
    for cls in _stage_configs():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp, _ = cfg._unwrap_optional(hints[f.name])
            if typing.get_origin(tp) is list:
                tp = typing.get_args(tp)[0]
            if tp in (int, float):
                if "range" not in f.metadata:
                    missing.append(f"{cls.__name__}.{f.name}")
                else:
                    cfg.describe_range(f.metadata["range"])  # parses
    assert not missing


def test_validate_does_not_change_the_config(tmp_path):
    """Prevents validate() rewriting what the user set (MNRL zeroing in_batch, evaluate adding
    ndcg@10 to measures): the recorded config must be the config given; the derived values
    are read where they are used."""
    import copy

    p = tmp_path / "c.yaml"
    p.write_text(
        "student:\n  data: d\n  loss: mnrl\n  in_batch: 1.0\n"
        "evaluate:\n  data: d\n  measures: [mrr@10]\n",
        encoding="utf-8",
    )
    student = cfg.load(_config("StudentConfig"), p, section="student")
    assert (student.in_batch, student.in_batch_weight) == (1.0, 0.0)
    evaluate = cfg.load(_config("EvaluateConfig"), p, section="evaluate")
    assert evaluate.measures == ["mrr@10"]
    assert evaluate.scored_measures == ["ndcg@10", "mrr@10"]
    for config in (student, evaluate):
        before = copy.deepcopy(config)
        check = getattr(config, "validate", None)  # configs without cross-field checks have none
        if check is not None:
            check()
        assert config == before


def test_cli_out_of_range_config_is_one_line_exit_2(tmp_path, capsys):
    """Prevents a negative learning rate in a config file starting a training run, or ending
    in a traceback instead of one located line and exit code 2."""
    p = tmp_path / "c.yaml"
    p.write_text("student:\n  data: d\n  lr: -0.001\n", encoding="utf-8")
    code, _, err = run_cli(["train-student", "--config", p, "--output", tmp_path / "out"], capsys)
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: {p}:3: field 'lr': must be greater than 0, got -0.001"
    ]
    assert not (tmp_path / "out").exists()
