"""The shipped configs stay loadable as the code changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distill import pipeline

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_pipeline_configs_resolve(path):
    """Prevents a shipped config with a key or type the stages no longer accept."""
    run_dir, _, configs = pipeline.resolve(path)
    assert {"teach", "mine", "label", "student", "evaluate"} <= set(configs)
    assert configs["label"].teacher == str(run_dir / "teacher")
    assert configs["student"].labels == str(run_dir / "labels")


def test_accelerate_configs_parse():
    """Prevents a malformed accelerate config reaching `accelerate launch`."""
    for path in Path(__file__).resolve().parents[1].glob("configs/accelerate/*.yaml"):
        cfg = yaml.safe_load(path.read_text())
        assert cfg["num_processes"] >= 1 and cfg["mixed_precision"] == "bf16"
