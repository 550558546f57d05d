"""`distill pipeline`: all stages in one run folder; current stages are skipped."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli


def _config(path, run, data, tiny, student_lr="1e-3"):
    path.write_text(
        f"""run: {run}
data: {data}
teach:
  model: {tiny["bert-cross"]}
  negatives_from: bm25
  max_length: 64
  batch_size: 8
  eval_steps: 4
  negatives: 3
  val_candidates: 10
  lr: 1.0e-4
  allow_worse: true
mine:
  method: bm25
  k: 10
label:
  shard_size: 200
  allow_worse: true
student:
  model: {tiny["bert-bi"]}
  lr: {student_lr}
  batch_size: 8
  negatives: 2
  false_negative_margin: 0.0
  max_doc_length: 48
baseline:
  model: {tiny["bert-bi"]}
  batch_size: 8
  max_doc_length: 48
evaluate:
  base: {tiny["bert-bi"]}
  cost_queries: 2
"""
    )
    return path


def test_pipeline_runs_then_skips_then_reruns_what_changed(
    scifact_slice, tiny_models, tmp_path, capsys
):
    """Prevents a pipeline that redoes finished work, one that keeps stale results after a
    config change (only the changed stage and what reads it may re-run), a table printed
    twice, and a report that does not say how its models were made."""
    run = tmp_path / "run"
    config = _config(tmp_path / "p.yaml", run, scifact_slice, tiny_models)
    code, out, err = run_cli(["pipeline", config], capsys)
    assert code == 0, err
    assert json.loads((run / "pipeline-summary.json").read_text()) == dict.fromkeys(
        ("teach", "mine", "label", "student", "baseline", "evaluate"), "ran"
    )
    assert out.count("| distilled student |") == 1  # the table once, not by evaluate and again
    assert "| supervised baseline |" in out and out.count("HTML report:") == 1
    report = json.loads((run / "report" / "report.json").read_text())
    assert set(report["systems"]) == {"bm25", "base", "student", "supervised", "teacher", "cascade"}
    _check_training_story(run, report)

    code, out, err = run_cli(["pipeline", config], capsys)
    assert code == 0, err
    assert set(json.loads((run / "pipeline-summary.json").read_text()).values()) == {"skipped"}
    assert out.count("| distilled student |") == 1  # nothing ran: the table is still shown

    _config(config, run, scifact_slice, tiny_models, student_lr="2e-3")
    code, out, err = run_cli(["pipeline", config, "--dry-run"], capsys)
    assert code == 0, err
    assert "[student] would run" in out and "[evaluate] would run" in out
    assert "[baseline] current, skipped" in out and "[label] current, skipped" in out
    code, out, err = run_cli(["pipeline", config], capsys)
    assert code == 0, err
    summary = json.loads((run / "pipeline-summary.json").read_text())
    assert summary == {
        "teach": "skipped",
        "mine": "skipped",
        "label": "skipped",
        "student": "ran",
        "baseline": "skipped",
        "evaluate": "ran",
    }

    code, out, err = run_cli(["pipeline", config, "--from", "mine", "--to", "label"], capsys)
    assert code == 0, err
    summary = json.loads((run / "pipeline-summary.json").read_text())
    assert summary == {"teach": "skipped", "mine": "ran", "label": "ran"}
    assert "stopped after label" in out

    code, out, err = run_cli(["pipeline", config, "--from", "label"], capsys)
    assert code == 0, err
    summary = json.loads((run / "pipeline-summary.json").read_text())
    assert {k for k, v in summary.items() if v == "ran"} == {
        "label",
        "student",
        "baseline",
        "evaluate",
    }

    code, out, err = run_cli(["pipeline", config, "--from", "evaluate"], capsys)
    assert code == 0, err  # evaluated twice: the card's test figures are replaced
    _check_training_story(run, json.loads((run / "report" / "report.json").read_text()))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("run: r\ndata: d\nteach:\n  lrr: 1\n", "c.yaml:4: field 'teach.lrr': unknown key"),
        (
            "run: r\ndata: d\nmine:\n  output: x\n",
            "c.yaml:4: field 'mine.output': is set by the pipeline",
        ),
        ("run: r\ndata: d\nstudnet: {}\n", "c.yaml:3: field 'studnet': unknown key"),
        ("data: d\n", "field 'run': is required"),
    ],
)
def test_bad_pipeline_config(tmp_path, capsys, text, words):
    """Prevents a typo in a pipeline config being ignored or reported without its line."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code, _, err = run_cli(["pipeline", path], capsys)
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1


def test_a_changed_queries_file_makes_mine_stale(scifact_slice, tiny_models, tmp_path):
    """Prevents a pipeline that keeps candidates mined for an old file of unlabelled queries:
    the config names the file only by path, so its contents must be part of the stage key."""
    from distill import pipeline

    qfile = tmp_path / "log.jsonl"
    qfile.write_text(json.dumps({"_id": "u1", "text": "stem cells"}) + "\n")
    text = _config(tmp_path / "p.yaml", tmp_path / "run", scifact_slice, tiny_models).read_text()
    config = tmp_path / "p.yaml"
    config.write_text(text.replace("mine:\n", f"mine:\n  queries: train,{qfile}\n"))

    def key(stage):
        _, dataset, configs = pipeline.resolve(config)
        return pipeline._key(stage, configs[stage], dataset, configs, pipeline._stages())

    before = {s: key(s) for s in ("teach", "mine", "label")}
    assert before == {s: key(s) for s in ("teach", "mine", "label")}  # deterministic
    qfile.write_text(json.dumps({"_id": "u1", "text": "stem cell niches"}) + "\n")
    after = {s: key(s) for s in ("teach", "mine", "label")}
    assert after["teach"] == before["teach"]  # teach reads the qrels split, not the file
    assert after["mine"] != before["mine"] and after["label"] != before["label"]


def _check_training_story(run, report):
    """The report says how the models were made: each stage's time and config (from its
    manifest), the teacher's validation NDCG@10 per evaluation (eval_steps 4), the student's
    loss at each of its steps; the HTML draws both curves as images a decoder can read. The
    student's model card carries its test figures once."""
    import base64
    import io
    import re

    import matplotlib.image as mpimg

    story = report["training"]
    manifests = {
        s: json.loads((run / folder / "manifest.json").read_text())
        for s, folder in (("teach", "teacher"), ("mine", "mine"), ("label", "labels"),
                          ("train-student", "student"))
    }  # fmt: skip
    assert [s["stage"] for s in story["stages"]] == list(manifests)
    for entry in story["stages"]:
        manifest = manifests[entry["stage"]]
        assert entry["seconds"] == manifest["timings"]["seconds"]
        assert entry["config"] == manifest["config"]
    history = manifests["teach"]["figures"]["members"]["teacher"]["history"]
    assert story["teacher_history"]["teacher"] == [[h["steps"], h["ndcg@10"]] for h in history]
    steps = manifests["train-student"]["figures"]["steps"]
    assert len(story["student_loss"]["loss"]) == steps and story["student_loss"]["first_step"] == 1
    page = (run / "report" / "report.html").read_text()
    for caption in ("Teacher: validation NDCG@10 per step", "Student: training loss per step"):
        b64 = re.search(
            rf'<img alt="{re.escape(caption)}" src="data:image/png;base64,([^"]+)"', page
        )
        assert b64, caption
        assert mpimg.imread(io.BytesIO(base64.b64decode(b64.group(1))), format="png").shape[0] > 100
    assert "How the models were made" in page and "evaluate config" in page
    card = (run / "student" / "README.md").read_text()
    ndcg = report["metrics"]["student"]["ndcg@10"]
    assert card.count("## Test figures (distill evaluate)") == 1  # replaced, not appended again
    assert f"| distilled student | {ndcg:.4f} |" in card and "## distill student" in card


@pytest.mark.parametrize("method", ["title", "cloze"])
def test_pseudo_queries_are_a_pipeline_stage(scifact_slice, tiny_models, tmp_path, capsys, method):
    """Prevents pseudo-queries that must be made and wired by hand, or that are made but never
    labelled: a `queries` section makes them in the run folder, mine and label take them with
    the train queries (the teacher scores their candidates: no generator-given positive is
    added), and a second run skips the stage. For cloze, mine and label read the corpus copy
    without the queries' sentences, and the teacher is taught on the original."""
    import pyarrow.parquet as pq

    from distill import artifacts
    from distill.labels_io import read_labels

    run = tmp_path / "run"
    text = _config(tmp_path / "p.yaml", run, scifact_slice, tiny_models).read_text()
    config = tmp_path / "p.yaml"
    config.write_text(text + f"queries:\n  method: {method}\n  max_docs: 12\n")
    code, _, err = run_cli(["pipeline", config, "--to", "label"], capsys)
    assert code == 0, err
    made = [json.loads(line)["_id"] for line in (run / "queries" / "queries.jsonl").open()]
    assert 0 < len(made) <= 12
    mined = set(pq.read_table(run / "mine" / "candidates.parquet").column("qid").to_pylist())
    assert set(made) <= mined
    rows = read_labels(run / "labels").to_pylist()
    pseudo = [r for r in rows if r["qid"] in set(made)]
    assert {r["qid"] for r in pseudo} == set(made)
    assert all(r["gold"] == -1 for r in pseudo)  # no qrels: the teacher alone decides
    per_query = {q: sum(r["qid"] == q for r in pseudo) for q in made}
    assert set(per_query.values()) == {10}  # mine's k candidates, nothing added
    read = {
        stage: artifacts.read_manifest(run / folder)["config"]["data"]
        for stage, folder in (("teach", "teacher"), ("mine", "mine"), ("label", "labels"))
    }
    copy = str(run / "queries" / "data")
    expected = (copy, copy) if method == "cloze" else (str(scifact_slice),) * 2
    assert (read["mine"], read["label"]) == expected
    assert read["teach"] == str(scifact_slice)
    code, _, err = run_cli(["pipeline", config, "--to", "label"], capsys)
    assert code == 0, err
    assert json.loads((run / "pipeline-summary.json").read_text()) == dict.fromkeys(
        ("queries", "teach", "mine", "label"), "skipped"
    )


def test_a_refused_stage_stops_only_what_needs_it(scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents a refusal that ends the whole run with no report (the user then runs the
    baseline and the evaluation by hand), a refused stage whose dependants run on its
    half-made output, a report silent on the missing system, and a re-run that trains a
    refused stage again for the same answer. Here a random tiny teacher ranks BM25's
    candidates worse than BM25 on the train queries, so label's guard refuses it."""
    run = tmp_path / "run"
    config = _config(tmp_path / "p.yaml", run, scifact_slice, tiny_models)
    config.write_text(config.read_text().replace("  allow_worse: true\nstudent:", "student:"))
    code, out, err = run_cli(["pipeline", config], capsys)
    assert code == 1, err
    assert "[label] refused, nothing shipped" in out
    assert "[label] was refused: the teacher ranks the candidates worse" in err
    summary = json.loads((run / "pipeline-summary.json").read_text())
    assert summary == {
        "teach": "ran",
        "mine": "ran",
        "label": "refused",
        "student": "not run",
        "baseline": "not run",
        "evaluate": "ran",
    }
    assert not (run / "student").exists() and not (run / "baseline").exists()
    report = json.loads((run / "report" / "report.json").read_text())
    assert report["systems"][:3] == ["bm25", "base", "teacher"]  # no student, no cascade
    assert not {"student", "cascade", "supervised"} & set(report["systems"])
    md = (run / "report" / "report.md").read_text()
    assert "No label: was refused" in md and "No student: it needs label" in md

    code, out, err = run_cli(["pipeline", config], capsys)
    assert code == 1, err
    assert "[label] refused before with these same inputs, not re-run" in out
    assert json.loads((run / "pipeline-summary.json").read_text())["evaluate"] == "skipped"


def test_label_reads_the_corpus_vectors_mine_cached(scifact_slice, tiny_models, tmp_path):
    """Prevents a pipeline whose label stage encodes an ensemble bi-encoder member's documents
    again although mine cached their vectors (2.5x slower labelling on SciFact): label is
    given mine's cache folder, and a label section can still name its own."""
    from distill import pipeline

    text = _config(tmp_path / "p.yaml", tmp_path / "run", scifact_slice, tiny_models).read_text()
    config = tmp_path / "p.yaml"
    config.write_text(text.replace("mine:\n", "mine:\n  cache_dir: /somewhere/cache\n"))
    assert pipeline.resolve(config)[2]["label"].cache_dir == "/somewhere/cache"
    config.write_text(
        text.replace("mine:\n", "mine:\n  cache_dir: /somewhere/cache\n").replace(
            "label:\n", "label:\n  cache_dir: /elsewhere\n"
        )
    )
    assert pipeline.resolve(config)[2]["label"].cache_dir == "/elsewhere"
