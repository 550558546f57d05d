"""`distill data split` splits by query without leakage and reports what it found."""

from __future__ import annotations

import json

from helpers import run_cli

from distill import data
from distill.querysets import normalize_query, split_queries


def test_scifact_train_split_is_disjoint_and_complete(scifact_dir, tmp_path, capsys):
    """Prevents validation queries leaking into training (inflated validation figures)."""
    out = tmp_path / "split"
    code, stdout, err = run_cli(
        ["data", "split", scifact_dir, "--split", "train", "--output", out], capsys
    )
    assert code == 0, err
    train = data.load_qrels(out / "qrels" / "train.tsv")
    val = data.load_qrels(out / "qrels" / "val.tsv")
    assert not set(train) & set(val)
    assert len(train) + len(val) == 809
    assert sum(map(len, train.values())) + sum(map(len, val.values())) == 919
    assert len(val) == round(0.2 * 809)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "split" and manifest["figures"]["val_queries"] == len(val)
    assert "near-duplicate queries" in stdout and "exact duplicate rows removed" in stdout


def test_case_variant_queries_land_on_one_side(tmp_path, capsys):
    """Prevents a near-duplicate query (case/punctuation variant) being on both sides."""
    rows = []
    for i in range(30):
        rows.append({"query": f"question number {i}", "text": f"doc {i}", "label": 1})
    rows.append({"query": "What causes Scurvy?", "text": "vitamin C", "label": 1})
    rows.append({"query": "what  causes scurvy", "text": "vitamin D", "label": 0})
    rows.append(rows[0])  # an exact duplicate row
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for seed in range(5):
        out = tmp_path / f"out{seed}"
        code, stdout, err = run_cli(["data", "split", src, "--output", out, "--seed", seed], capsys)
        assert code == 0, err
        sides = {
            name: [json.loads(x)["query"] for x in (out / f"{name}.jsonl").read_text().splitlines()]
            for name in ("train", "val")
        }
        scurvy = [name for name, qs in sides.items() if any("scurvy" in q.lower() for q in qs)]
        assert len(scurvy) == 1
        assert len(sides[scurvy[0]]) >= 2
        assert sum(len(v) for v in sides.values()) == 32  # the exact duplicate is gone
        assert "exact duplicate rows removed: 1" in stdout
        assert "2 in 1 groups" in stdout


def test_split_is_seeded():
    """Prevents an unreproducible split (same seed, same parts) and an ignored seed."""
    queries = {f"q{i}": f"query {i}" for i in range(100)}
    a, b, c = (split_queries(queries, 0.2, s) for s in (1, 1, 2))
    assert a.val == b.val and len(a.val) == 20
    assert a.val != c.val


def test_normalize_query():
    """Prevents near-duplicates escaping the grouping by case, spacing or punctuation."""
    assert normalize_query("  What's  the CAUSE,  of scurvy? ") == normalize_query(
        "whats the cause of scurvy"
    )
    assert normalize_query("a-b") != normalize_query("ab c")
