"""Every malformed input ends in ONE line naming file, line and field, exit code 2, and no
output left behind. Each case plants one defect in otherwise valid input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_beir
from helpers import run_cli

GOOD = [
    {"query": "what causes scurvy", "text": "Scurvy is caused by a lack of vitamin C.", "label": 1},
    {
        "query": "what causes scurvy",
        "text": "Rickets is caused by a lack of vitamin D.",
        "label": 0,
    },
    {
        "query": "is aspirin an nsaid",
        "text": "Aspirin is a nonsteroidal anti-inflammatory drug.",
        "label": 1,
    },
    {"query": "is aspirin an nsaid", "text": "Paracetamol is not an NSAID.", "label": 0},
]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def _beir(root: Path) -> Path:
    corpus = {"d1": ("Scurvy", "Vitamin C deficiency."), "d2": ("Rickets", "Vitamin D deficiency.")}
    queries = {"q1": "what causes scurvy", "q2": "what causes rickets"}
    return write_beir(root, corpus, queries, {"train": {"q1": {"d1": 1}, "q2": {"d2": 1}}})


def case_missing_field(tmp):
    rows = [*GOOD[:2], {"query": "q", "text": "t"}]
    return ["data", "split", _jsonl(tmp / "p.jsonl", rows)], "p.jsonl:3", "label", "missing"


def case_empty_field(tmp):
    rows = [GOOD[0], {"query": "  ", "text": "t", "label": 1}]
    return ["data", "split", _jsonl(tmp / "p.jsonl", rows)], "p.jsonl:2", "query", "empty"


def case_invalid_json(tmp):
    rows = [GOOD[0], GOOD[1], '{"query": "q", "text": "t", "label": 1']
    return ["data", "split", _jsonl(tmp / "p.jsonl", rows)], "p.jsonl:3", None, "invalid JSON"


def case_non_numeric_label(tmp):
    rows = [GOOD[0], {**GOOD[1], "label": "relevant"}]
    return (
        ["data", "split", _jsonl(tmp / "p.jsonl", rows)],
        "p.jsonl:2",
        "label",
        "must be a number",
    )


def case_label_out_of_range(tmp):
    (tmp / "p.csv").write_text(
        "query,text,label\nq one,doc one,1\nq two,doc two,7\n", encoding="utf-8"
    )
    return ["data", "split", tmp / "p.csv"], "p.csv:3", "label", "between 0 and 4"


def case_duplicate_corpus_id(tmp):
    root = _beir(tmp / "beir")
    with open(root / "corpus.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"_id": "d1", "title": "again", "text": "dup"}) + "\n")
    return ["data", "split", root], "corpus.jsonl:3", "_id", "duplicate id 'd1'"


def case_duplicate_pair_id(tmp):
    rows = [{**GOOD[0], "qid": "a"}, {**GOOD[2], "qid": "a"}]
    return ["data", "split", _jsonl(tmp / "p.jsonl", rows)], "p.jsonl:2", "qid", "duplicate id 'a'"


def case_qrels_unknown_doc(tmp):
    root = _beir(tmp / "beir")
    with open(root / "qrels" / "train.tsv", "a", encoding="utf-8") as f:
        f.write("q1\tnope\t1\n")
    return ["data", "split", root], "train.tsv:4", "corpus-id", "unknown document id 'nope'"


def case_qrels_unknown_query(tmp):
    root = _beir(tmp / "beir")
    with open(root / "qrels" / "train.tsv", "a", encoding="utf-8") as f:
        f.write("q9\td1\t1\n")
    return ["data", "split", root], "train.tsv:4", "query-id", "unknown query id 'q9'"


def case_split_without_qrels(tmp):
    root = _beir(tmp / "beir")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n", encoding="utf-8")
    return ["data", "split", root], "train.tsv:1", None, "no qrels"


def case_missing_split(tmp):
    root = _beir(tmp / "beir")
    return ["data", "split", root, "--split", "dev"], "dev.tsv", None, "available: train"


def case_empty_file(tmp):
    (tmp / "p.jsonl").write_bytes(b"")
    return ["data", "split", tmp / "p.jsonl"], "p.jsonl:1", None, "empty"


def case_wrong_encoding(tmp):
    good = json.dumps(GOOD[0]).encode()
    bad = (
        json.dumps({"query": "caf\u00e9", "text": "t", "label": 1}, ensure_ascii=False)
        .encode("utf-8")
        .replace(b"\xc3\xa9", b"\xe9")
    )
    (tmp / "p.jsonl").write_bytes(good + b"\n" + bad + b"\n")
    return ["data", "split", tmp / "p.jsonl"], "p.jsonl:2", None, "not UTF-8"


def case_missing_path(tmp):
    return ["data", "split", tmp / "nothing.jsonl"], "nothing.jsonl", None, "no such file"


def case_unknown_config_key(tmp):
    _jsonl(tmp / "p.jsonl", GOOD)
    (tmp / "c.yaml").write_text(
        f"split:\n  data: {tmp / 'p.jsonl'}\n  val_fraktion: 0.3\n", encoding="utf-8"
    )
    return ["data", "split", "--config", tmp / "c.yaml"], "c.yaml:3", "val_fraktion", "unknown key"


def case_config_wrong_type(tmp):
    _jsonl(tmp / "p.jsonl", GOOD)
    (tmp / "c.yaml").write_text(
        f"split:\n  data: {tmp / 'p.jsonl'}\n  seed: forty-two\n", encoding="utf-8"
    )
    return ["data", "split", "--config", tmp / "c.yaml"], "c.yaml:3", "seed", "must be int"


def case_conflicting_labels(tmp):
    rows = [GOOD[0], GOOD[1], {**GOOD[0], "label": 0}]
    return (
        ["data", "split", _jsonl(tmp / "p.jsonl", rows)],
        "p.jsonl:3",
        "label",
        "labelled 1 at line 1",
    )


def case_csv_extra_field(tmp):
    (tmp / "p.tsv").write_text("query\ttext\tlabel\nq\tt\t1\nq2\tt2\t0\textra\n", encoding="utf-8")
    return ["data", "split", tmp / "p.tsv"], "p.tsv:3", None, "more fields"


def case_bad_qrels_header(tmp):
    root = _beir(tmp / "beir")
    (root / "qrels" / "train.tsv").write_text("q1\td1\t1\n", encoding="utf-8")
    return ["data", "split", root], "train.tsv:1", None, "header must be"


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_malformed_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    """Prevents tracebacks, vague messages (no file/line/field) and half-written outputs."""
    argv, where, field, words = case(tmp_path)
    out = tmp_path / "out"
    code, _, err = run_cli([*argv, "--output", out], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert where in lines[0]
    if field:
        assert f"field '{field}'" in lines[0]
    assert words in lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_bad_option_value_is_one_line_exit_2(tmp_path, capsys):
    """Prevents click's multi-line usage dump for a wrongly typed command-line option."""
    code, _, err = run_cli(["data", "split", "x.jsonl", "--seed", "abc"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "--seed" in err and "'abc'" in err


def test_val_fraction_out_of_range(tmp_path, capsys):
    """Prevents a split that puts every query (or none) on the validation side."""
    path = _jsonl(tmp_path / "p.jsonl", GOOD)
    code, _, err = run_cli(["data", "split", path, "--val-fraction", "1.5"], capsys)
    assert code == 2
    assert "field 'val_fraction'" in err and "between 0 and 1" in err
