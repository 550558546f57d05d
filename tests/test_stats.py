"""`distill data stats` counts exactly and reports how many pairs max_length would cut."""

from __future__ import annotations

import json

from helpers import run_cli

from distill.stats import StatsConfig, compute


def test_scifact_stats_real_counts(scifact_dir, capsys):
    """Prevents wrong counts in the figures users plan their runs with."""
    code, out, err = run_cli(
        ["data", "stats", scifact_dir, "--model", "bundled", "--max-length", "256"], capsys
    )
    assert code == 0, err
    assert "documents: 5,183" in out
    rows = {
        line.split()[0]: line.split()[1:5] for line in out.splitlines() if line.startswith("  t")
    }
    assert rows["train"] == ["809", "queries", "919", "qrels"]
    assert rows["test"] == ["300", "queries", "339", "qrels"]
    assert "truncation at max_length=256" in out


def test_truncation_share_matches_hand_count(tmp_path, bundled_tokenizer):
    """Prevents a truncation share that ignores special tokens or the query's length."""
    tok = bundled_tokenizer
    special = tok.num_special_tokens_to_add(pair=True)
    rows = [
        {"query": "alpha beta", "text": "gamma " * 10, "label": 1},  # 2 + 10 tokens
        {"query": "alpha", "text": "gamma " * 30, "label": 0},  # 1 + 30 tokens
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lengths = [len(tok(r["query"], r["text"])["input_ids"]) for r in rows]
    assert lengths == [12 + special, 31 + special]
    limit = 20 + special  # cuts the second pair only
    stats = compute(StatsConfig(data=str(path), max_length=limit))
    assert stats["truncation"] == {
        "population": "all pairs",
        "pairs": 2,
        "truncated": 1,
        "share": 0.5,
    }
    assert stats["labels"] == {"0": 1, "1": 1} and stats["label_kind"] == "binary"
    assert stats["tokens"]["pairs"]["max"] == lengths[1]


def test_stats_writes_json_when_asked(scifact_slice, tmp_path, capsys):
    """Prevents --output being ignored (the figures must be readable by other tools)."""
    out = tmp_path / "stats"
    code, _, err = run_cli(["data", "stats", scifact_slice, "--output", out], capsys)
    assert code == 0, err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["splits"]["train"]["queries"] == 40 and stats["splits"]["test"]["queries"] == 20
    assert json.loads((out / "manifest.json").read_text())["stage"] == "stats"
