"""Typed configs: YAML, then command-line overrides; unknown keys and wrong types fail early."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

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
