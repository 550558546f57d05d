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


# --- inputs of the later stages (candidates, teachers, labels, models, configs) -------------


def _assert_one_line(code: int, err: str, where: str, field: str | None = None) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert where in lines[0], err
    if field:
        assert f"field '{field}'" in lines[0], err
    return lines[0]


def _bm25_teacher(folder: Path) -> Path:
    """A valid teacher that loads without a model: BM25 statistics of the tiny corpus."""
    from teachers.members import BM25Scorer

    folder.mkdir(parents=True)
    BM25Scorer.fit(["Vitamin C deficiency.", "Vitamin D deficiency."]).save(folder)
    return folder


def _candidates(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("qid", pa.string()), ("did", pa.string()), ("rank", pa.int32())])
    cols = {k: [r[i] for r in rows] for i, k in enumerate(("qid", "did", "rank"))}
    pq.write_table(pa.table(cols, schema=schema), path)
    return path


@pytest.fixture
def no_teacher_load(monkeypatch):
    """Fail the test if a teacher model gets loaded (the check must come before)."""
    import teachers.scoring

    def refuse(*args, **kwargs):
        raise AssertionError("the teacher was loaded before the input was checked")

    monkeypatch.setattr(teachers.scoring, "load_teacher", refuse)


def cands_unknown_document(tmp):
    return _candidates(tmp / "c.parquet", [("q1", "d1", 1), ("q1", "nope", 2)]), "did", "'nope'"


def cands_wrong_schema(tmp):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"query": ["q1"], "doc": ["d1"]}), tmp / "c.parquet")
    return tmp / "c.parquet", "qid", "missing column"


def cands_not_parquet(tmp):
    (tmp / "c.parquet").write_text("q1\td1\t1\n", encoding="utf-8")
    return tmp / "c.parquet", None, "not a readable Parquet file"


def cands_empty(tmp):
    return _candidates(tmp / "c.parquet", []), None, "no rows"


CANDS = [cands_unknown_document, cands_wrong_schema, cands_not_parquet, cands_empty]


@pytest.mark.parametrize("case", CANDS, ids=[c.__name__[6:] for c in CANDS])
def test_label_bad_candidates(case, tmp_path, capsys, no_teacher_load):
    """Prevents a KeyError after the teacher loads (a document id not in the corpus), pyarrow
    tracebacks for a candidates file of the wrong schema or not Parquet at all, and an empty
    candidates file 'labelling 0 pairs' with exit 0."""
    cands, field, words = case(tmp_path)
    out = tmp_path / "labels"
    teacher = _bm25_teacher(tmp_path / "teacher")
    argv = [
        "label",
        _beir(tmp_path / "beir"),
        "--candidates",
        cands,
        "--teacher",
        teacher,
        "--allow-worse",
    ]
    code, _, err = run_cli([*argv, "--output", out], capsys)
    line = _assert_one_line(code, err, "c.parquet", field)
    assert words in line
    assert not out.exists()


def test_mine_reader_refuses_bad_candidates(tmp_path):
    """Prevents distill.candidates.read_candidates raising pyarrow errors for a foreign file."""
    from distill.candidates import read_candidates
    from distill.errors import InputError

    path, _, _ = cands_wrong_schema(tmp_path)
    with pytest.raises(InputError, match="missing column"):
        read_candidates(path, with_scores=True)


def teacher_empty_folder(tmp):
    (tmp / "t").mkdir()
    return tmp / "t", "t", None, "empty folder"


def teacher_invalid_ensemble_json(tmp):
    (tmp / "t").mkdir()
    (tmp / "t" / "ensemble.json").write_text('{"members": [', encoding="utf-8")
    return tmp / "t", "ensemble.json:1", None, "invalid JSON"


def teacher_ensemble_without_members(tmp):
    (tmp / "t").mkdir()
    (tmp / "t" / "ensemble.json").write_text('{"weights": [1.0]}', encoding="utf-8")
    return tmp / "t", "ensemble.json", "members", "missing or empty"


TEACHERS = [teacher_empty_folder, teacher_invalid_ensemble_json, teacher_ensemble_without_members]


@pytest.mark.parametrize("case", TEACHERS, ids=[c.__name__[8:] for c in TEACHERS])
def test_label_bad_teacher_folder(case, tmp_path, capsys, no_teacher_load):
    """Prevents transformers' ValueError for an empty teacher folder, and a JSONDecodeError or
    KeyError('members') from a broken ensemble.json, all after work had started."""
    teacher, where, field, words = case(tmp_path)
    cands = _candidates(tmp_path / "c.parquet", [("q1", "d1", 1)])
    out = tmp_path / "labels"
    argv = [
        "label",
        _beir(tmp_path / "beir"),
        "--candidates",
        cands,
        "--teacher",
        teacher,
        "--allow-worse",
    ]
    code, _, err = run_cli([*argv, "--output", out], capsys)
    assert words in _assert_one_line(code, err, where, field)
    assert not out.exists()


def test_pipeline_section_not_a_mapping(tmp_path, capsys):
    """Prevents AttributeError ('int' object has no attribute 'get') for `mine: 5`."""
    (tmp_path / "p.yaml").write_text(
        f"run: {tmp_path / 'run'}\ndata: {_beir(tmp_path / 'beir')}\nmine: 5\n", encoding="utf-8"
    )
    code, _, err = run_cli(["pipeline", tmp_path / "p.yaml"], capsys)
    assert "must be a mapping" in _assert_one_line(code, err, "p.yaml:3", "mine")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "option, value, field, words",
    [
        ("--measures", "bogus", "measures", "accepted: ndcg@10"),
        ("--measures", "P.0", "measures", "mrr@N"),  # a cutoff below 1 crashes trec_eval
        ("--k", "-3", "k", "at least 1"),
        ("--k", "0", "k", "at least 1"),
    ],
)
def test_evaluate_bad_measures_and_depth(option, value, field, words, tmp_path, capsys):
    """Prevents pytrec_eval's ValueError (or a crash) for an unknown measure, and a report of
    NDCG@10 0.0000 with exit 0 for --k 0."""
    out = tmp_path / "report"
    argv = ["evaluate", _beir(tmp_path / "beir"), "--split", "train", "--systems", "bm25"]
    code, _, err = run_cli([*argv, option, value, "--output", out], capsys)
    assert words in _assert_one_line(code, err, "error:", field)
    assert not out.exists()


@pytest.fixture
def labels_dir(tmp_path, capsys) -> Path:
    """A finished `distill label` folder (BM25 teacher, two pairs) beside a BEIR folder."""
    cands = _candidates(tmp_path / "c.parquet", [("q1", "d1", 1), ("q1", "d2", 2)])
    teacher = _bm25_teacher(tmp_path / "teacher")
    argv = [
        "label",
        _beir(tmp_path / "beir"),
        "--candidates",
        cands,
        "--teacher",
        teacher,
        "--allow-worse",
    ]
    code, _, err = run_cli([*argv, "--output", tmp_path / "labels"], capsys)
    assert code == 0, err
    return tmp_path / "labels"


def _damage_progress(folder: Path) -> str:
    (folder / "progress.json").write_text('{"key": "3f2a', encoding="utf-8")
    return "progress.json"


def _truncate_shard(folder: Path) -> str:
    shard = next(folder.glob("shard-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:100])
    return shard.name


@pytest.mark.parametrize("damage", [_damage_progress, _truncate_shard], ids=["progress", "shard"])
def test_train_student_damaged_labels(damage, labels_dir, tmp_path, capsys):
    """Prevents a JSONDecodeError or a pyarrow traceback when train-student reads labels whose
    progress.json or a shard is damaged; the message names the file and `distill label`."""
    name = damage(labels_dir)
    out = tmp_path / "student"
    argv = ["train-student", tmp_path / "beir", "--labels", labels_dir, "--output", out]
    code, _, err = run_cli(argv, capsys)
    assert "distill label" in _assert_one_line(code, err, name)
    assert not out.exists()
    assert not list(tmp_path.glob(".student*"))


def test_label_resume_discards_damaged_progress(labels_dir, tmp_path, capsys):
    """Prevents a JSONDecodeError on resume when progress.json is damaged: the run says so in
    one line, discards the shards it can no longer vouch for, and labels them again."""
    from distill.labels_io import read_labels

    before = read_labels(labels_dir).to_pylist()
    _damage_progress(labels_dir)
    cands, teacher = tmp_path / "c.parquet", tmp_path / "teacher"
    argv = [
        "label",
        tmp_path / "beir",
        "--candidates",
        cands,
        "--teacher",
        teacher,
        "--allow-worse",
    ]
    code, out, err = run_cli([*argv, "--output", labels_dir], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if "progress.json" in line]
    assert len(warnings) == 1 and "damaged" in warnings[0], err
    assert "(0 already done)" in out
    assert read_labels(labels_dir).to_pylist() == before


def test_stats_missing_folder(tmp_path, capsys):
    """Prevents 'unknown pairs format' for a data path that does not exist."""
    code, _, err = run_cli(["data", "stats", tmp_path / "nowhere"], capsys)
    assert "no such file or folder" in _assert_one_line(code, err, "nowhere")


def _auto_map(folder: Path) -> None:
    (folder / "config.json").write_text(
        json.dumps({"model_type": "evil", "auto_map": {"AutoModel": "modeling_evil.EvilModel"}}),
        encoding="utf-8",
    )


def _custom_module(folder: Path) -> None:
    (folder / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "evil_module.Encoder"}]),
        encoding="utf-8",
    )


@pytest.mark.parametrize("plant", [_auto_map, _custom_module], ids=["auto_map", "modules"])
def test_model_needing_custom_code_refused_in_one_line(plant, tmp_path, capsys):
    """Prevents transformers' multi-line ValueError traceback for a model folder that asks to
    run its own code (trust_remote_code); the code is never imported."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "modeling_evil.py").write_text("raise SystemExit('custom code ran')\n")
    plant(model)
    out = tmp_path / "mine"
    argv = ["mine", _beir(tmp_path / "beir"), "--method", "dense", "--model", model]
    code, _, err = run_cli([*argv, "--output", out], capsys)
    line = _assert_one_line(code, err, "model")
    assert "own Python code" in line and "trust_remote_code" in line
    assert not out.exists()
