"""The data layer reads BEIR folders and labeled pairs exactly, in every supported format."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import run_cli

from distill import data
from distill.errors import InputError
from distill.pairs import is_binary, load_pairs, stable_id


def test_scifact_real_counts(scifact_dir):
    """Prevents silently dropped or doubled rows when reading the real SciFact files."""
    ds = data.BeirDataset(scifact_dir)
    assert len(ds.corpus) == 5183
    assert len(ds.queries) == 1109
    train, test = ds.qrels("train"), ds.qrels("test")
    assert (len(train), sum(map(len, train.values()))) == (809, 919)
    assert (len(test), sum(map(len, test.values()))) == (300, 339)
    assert not set(train) & set(test)
    assert ds.splits() == ["test", "train"]


def test_corpus_is_parsed_once(scifact_slice, tmp_path):
    """Prevents a pipeline that re-reads a large corpus for every stage."""
    first = data.BeirDataset(scifact_slice).corpus
    assert data.BeirDataset(scifact_slice).corpus is first
    # a changed file is read again
    copy = tmp_path / "corpus.jsonl"
    shutil.copy(scifact_slice / "corpus.jsonl", copy)
    before = data.load_corpus(copy)
    with open(copy, "a", encoding="utf-8") as f:
        f.write(json.dumps({"_id": "new", "title": "t", "text": "x"}) + "\n")
    after = data.load_corpus(copy)
    assert len(after) == len(before) + 1


def test_gzipped_corpus_equals_plain(scifact_slice, tmp_path):
    """Prevents the .jsonl.gz layout (how SciFact ships) from reading differently."""
    gz = tmp_path / "corpus.jsonl.gz"
    with open(scifact_slice / "corpus.jsonl", "rb") as src, gzip.open(gz, "wb") as dst:
        dst.write(src.read())
    assert data.load_corpus(gz) == data.load_corpus(scifact_slice / "corpus.jsonl")


def test_pairs_read_the_same_in_every_format(tmp_path):
    """Prevents format-dependent parsing: JSONL, CSV, TSV and Parquet give identical pairs,
    with ids derived from the text when the file has none."""
    rows = [
        {
            "query": "what causes scurvy",
            "text": 'Lack of vitamin C, as in "sailors", causes it.',
            "label": 1,
        },
        {"query": "what causes scurvy", "text": "Rickets, from lack of vitamin D.", "label": 0},
        {"query": "graded one", "text": "doc three", "label": 3},
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    import csv

    for name, delim in (("p.csv", ","), ("p.tsv", "\t")):
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["query", "text", "label"], delimiter=delim)
            w.writeheader()
            w.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    loaded = {n: load_pairs(tmp_path / n) for n in ("p.jsonl", "p.csv", "p.tsv", "p.parquet")}
    key = [(p.qid, p.did, p.query, p.text, p.label) for p in loaded["p.jsonl"]]
    for name, pairs in loaded.items():
        assert [(p.qid, p.did, p.query, p.text, p.label) for p in pairs] == key, name
    expected_qid = "q-" + hashlib.sha1(b"what causes scurvy").hexdigest()[:16]
    assert key[0][0] == key[1][0] == expected_qid
    assert [p.label for p in loaded["p.jsonl"]] == [1.0, 0.0, 3.0]
    assert not is_binary([p.label for p in loaded["p.jsonl"]])
    assert is_binary([1.0, 0.0])


def test_given_ids_are_kept(tmp_path):
    """Prevents overwriting the user's own qid/did with derived ones."""
    (tmp_path / "p.jsonl").write_text(
        json.dumps({"qid": "Q7", "did": "D9", "query": "q", "text": "t", "label": 1}) + "\n",
        encoding="utf-8",
    )
    (pair,) = load_pairs(tmp_path / "p.jsonl")
    assert (pair.qid, pair.did, pair.line) == ("Q7", "D9", 1)


def test_graded_qrels_and_repeated_rows(tmp_path):
    """Prevents graded qrels being read as binary, and an exact repeated row from failing."""
    from conftest import write_beir

    root = write_beir(
        tmp_path,
        {"d1": ("", "a"), "d2": ("", "b")},
        {"q1": "x"},
        {"test": {"q1": {"d1": 2, "d2": 0}}},
    )
    with open(root / "qrels" / "test.tsv", "a", encoding="utf-8") as f:
        f.write("q1\td1\t2\n")
    assert data.BeirDataset(root).qrels("test") == {"q1": {"d1": 2, "d2": 0}}


def test_sample_keeps_every_judged_document_of_its_queries(scifact_slice, tmp_path, capsys):
    """Prevents a demo sample whose queries lost their relevant documents (every system would
    score zero on them) or that mixes train and test queries."""
    from distill import data

    out = tmp_path / "sample"
    code, _, err = run_cli(
        [
            "data",
            "sample",
            scifact_slice,
            "--output",
            out,
            "--train-queries",
            "10",
            "--test-queries",
            "5",
            "--docs",
            "60",
            "--neighbours",
            "3",
        ],
        capsys,
    )
    assert code == 0, err
    full, small = data.BeirDataset(scifact_slice), data.BeirDataset(out)
    train, test = small.qrels("train"), small.qrels("test")
    assert len(train) == 10 and len(test) == 5 and not set(train) & set(test)
    for split, rows in (("train", train), ("test", test)):
        for q, docs in rows.items():
            assert docs == full.qrels(split)[q] and small.queries[q] == full.queries[q]
            assert all(small.corpus[d].text == full.corpus[d].text for d in docs)
    assert len(small.corpus) == 60


# Texts a CSV/TSV writer has to quote: line breaks (one of them an empty line, one CRLF),
# embedded quotes, and both delimiters inside a field.
AWKWARD = [
    {"query": "what is line c", "text": "line a\n\nline c", "label": 1},
    {"query": "vitamins, minerals", "text": 'He said "stop", then\tleft.', "label": 0},
    {"query": 'the "quoted" query', "text": "windows\r\nline\nand a tab\there", "label": 2},
    {"query": "plain", "text": "a plain document", "label": 1},
]


def _write_with_csv_module(path, rows, delimiter):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["query", "text", "label"])
        writer.writerows([r["query"], r["text"], r["label"]] for r in rows)


def _write_with_pandas(path, rows, delimiter):
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    pd.DataFrame(rows, columns=["query", "text", "label"]).to_csv(path, sep=delimiter, index=False)


@pytest.mark.parametrize(
    "writer", [_write_with_csv_module, _write_with_pandas], ids=["csv", "pandas"]
)
@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_csv_quoted_fields_read_exactly(tmp_path, writer, suffix):
    """Prevents quoted line breaks being dropped or joined (``"line a\\n\\nline c"`` read as
    ``line aline c``), quotes or delimiters inside a field splitting it, and document ids
    derived from damaged text."""
    path = tmp_path / f"pairs{suffix}"
    writer(path, AWKWARD, "\t" if suffix == ".tsv" else ",")
    pairs = load_pairs(path)
    assert [(p.query, p.text, p.label) for p in pairs] == [
        (r["query"], r["text"], float(r["label"])) for r in AWKWARD
    ]
    # ids are derived from the original text: "q-"/"d-" + sha1 of the (stripped) text
    assert [p.qid for p in pairs] == [stable_id("q", r["query"]) for r in AWKWARD]
    assert [p.did for p in pairs] == [stable_id("d", r["text"]) for r in AWKWARD]
    # each pair's line is the line its record starts on (the header is line 1)
    starts, line = [], 2
    for r in AWKWARD:
        starts.append(line)
        line += 1 + sum(str(v).count("\n") for v in r.values())
    assert [p.line for p in pairs] == starts


def test_csv_blank_lines_outside_quotes_are_skipped(tmp_path):
    """Prevents blank lines between records (or before the header) failing the file, while
    blank lines inside a quoted field are kept; line numbers stay those of the file."""
    path = tmp_path / "p.csv"
    path.write_text(
        '\nquery,text,label\n\nq1,"a\n\nb",1\n   \nq2,t,0\n\n', encoding="utf-8", newline=""
    )
    pairs = load_pairs(path)
    assert [(p.query, p.text, p.line) for p in pairs] == [("q1", "a\n\nb", 4), ("q2", "t", 8)]


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ('query,text,label\nq0,t0,1\nq1,"a\n\nb",\n', 3, "label", "missing"),
        ('query,text,label\nq0,"t\n0",1\nq1,"a\nb",1,extra\n', 4, None, "more fields"),
    ],
    ids=["missing-label", "extra-field"],
)
def test_csv_bad_row_names_its_first_line(tmp_path, text, line, field, words):
    """Prevents a bad multi-line record being reported at its last line, or at a line
    counted without the line breaks inside earlier quoted fields."""
    path = tmp_path / "p.csv"
    path.write_text(text, encoding="utf-8", newline="")
    with pytest.raises(InputError) as info:
        load_pairs(path)
    assert (info.value.line, info.value.field) == (line, field), str(info.value)
    assert words in str(info.value)
