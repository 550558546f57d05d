"""`distill train-student`: losses by hand, the false-negative filter, exact resume, output."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import run_cli

from students.config import StudentConfig
from students.examples import build_examples, select_negatives
from students.losses import build_loss
from students.losses.in_batch import WithInBatchNegatives


def _embeddings(
    seed: int = 0, batch: int = 3, columns: int = 4, dim: int = 8
) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=-1)
        for _ in range(columns)
    ]


class _Stub(torch.nn.Module):
    """What a loss needs of a model before it embeds anything (the losses here get embeddings)."""


def test_kl_loss_by_hand():
    """Prevents a listwise loss whose temperatures or direction differ from the documented
    KL(teacher || student) over softmaxes."""
    emb = _embeddings()
    teacher = torch.tensor([[5.0, 1.0, 0.0], [2.0, 2.5, -1.0], [0.0, 0.0, 0.0]])
    loss = build_loss("kl", _Stub(), scale=20.0, teacher_temperature=2.0)
    student = torch.stack([20.0 * (emb[0] * e).sum(-1) for e in emb[1:]], dim=1)
    p = torch.softmax(teacher / 2.0, dim=1)
    by_hand = (p * (p.log() - torch.log_softmax(student, dim=1))).sum(1).mean()
    assert float(loss.compute_loss_from_embeddings(emb, teacher)) == pytest.approx(
        float(by_hand), rel=1e-5
    )


def test_margin_mse_by_hand():
    """Prevents a Margin-MSE that compares scores instead of margins, or ignores the scale."""
    emb = _embeddings(1)
    teacher = torch.tensor([[5.0, 1.0, 0.0], [2.0, 2.5, -1.0], [0.0, 3.0, 1.0]])
    loss = build_loss("margin-mse", _Stub(), scale=10.0)
    pos = 10.0 * (emb[0] * emb[1]).sum(-1)
    margins = torch.stack([pos - 10.0 * (emb[0] * e).sum(-1) for e in emb[2:]], dim=1)
    by_hand = ((margins - (teacher[:, :1] - teacher[:, 1:])) ** 2).mean()
    assert float(loss.compute_loss_from_embeddings(emb, teacher)) == pytest.approx(
        float(by_hand), rel=1e-5
    )


def test_in_batch_term_by_hand():
    """Prevents an in-batch term that targets the wrong column or ignores other rows."""
    emb = _embeddings(2)
    teacher = torch.zeros(3, 3)
    base = build_loss("kl", _Stub())
    loss = WithInBatchNegatives(base, scale=20.0, weight=0.5)
    cands = torch.cat(emb[1:])
    ce = torch.nn.functional.cross_entropy(20.0 * emb[0] @ cands.T, torch.arange(3))
    expected = base.compute_loss_from_embeddings(emb, teacher) + 0.5 * ce
    assert float(loss.compute_loss_from_embeddings(emb, teacher)) == pytest.approx(
        float(expected), rel=1e-5
    )


def test_supervised_loss_is_sentence_transformers_mnrl_when_nothing_is_masked():
    """Prevents a supervised baseline whose in-batch loss drifts from the library's
    MultipleNegativesRankingLoss (cosine, scale 20, every other candidate a negative)."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    emb = _embeddings(3, batch=4, columns=3)
    ours = build_loss("mnrl", _Stub(), scale=20.0).compute_loss_from_embeddings(emb, None)
    theirs = MultipleNegativesRankingLoss(_Stub(), scale=20.0).compute_loss_from_embeddings(
        emb, None
    )
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_known_positives_are_left_out_of_the_in_batch_softmax():
    """Prevents in-batch negatives that are positives of the row's query (two rows of one
    query, or a document that is another row's negative): on data with about 40 positives a
    query 18% of rows had one, and the loss pushed the query away from its own positives."""
    from students.examples import batch_ids
    from students.losses import BatchIds

    emb = _embeddings(4, batch=3, columns=3)
    rows = [("A", ["d1", "d5"], []), ("A", ["d2", "d6"], []), ("B", ["d3", "d1"], [])]
    index = {d: i for i, d in enumerate(["d1", "d2", "d3", "d5", "d6"])}
    candidates, known = batch_ids(rows, {"A": ["d1", "d2"], "B": ["d3"]}, index)
    ids = BatchIds(torch.from_numpy(candidates), torch.from_numpy(known))
    loss = build_loss("mnrl", _Stub(), scale=20.0).compute_loss_from_embeddings(emb, None, ids)
    # candidate order: positives of rows 0, 1, 2, then negatives of rows 0, 1, 2
    logits = 20.0 * (emb[0] @ torch.cat(emb[1:]).T).numpy()
    allowed = {0: [0, 2, 3, 4], 1: [1, 2, 3, 4], 2: [0, 1, 2, 3, 4, 5]}  # by hand
    by_hand = np.mean(
        [np.log(np.exp(logits[i, cols]).sum()) - logits[i, i] for i, cols in allowed.items()]
    )
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)
    kl = build_loss("kl", _Stub(), in_batch=1.0)
    teacher = torch.zeros(3, 2)
    assert float(kl.compute_loss_from_embeddings(emb, teacher, ids)) == pytest.approx(
        float(kl.base.compute_loss_from_embeddings(emb, teacher)) + float(by_hand), rel=1e-5
    )


@pytest.mark.parametrize("name", ["kl", "margin-mse", "kl+in-batch"])
def test_losses_decrease(name):
    """Prevents a loss whose gradient does not move the student toward the teacher."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 8)) for _ in range(4)]
    teacher = torch.tensor([[6.0, 0.0, -2.0, -4.0]] * 4)[:, :4][:, : len(params) - 1]
    loss = build_loss(name.split("+")[0], _Stub(), in_batch=1.0 if "in-batch" in name else 0.0)
    opt = torch.optim.Adam(params, lr=0.05)
    values = []
    for _ in range(30):
        emb = [torch.nn.functional.normalize(p, dim=-1) for p in params]
        value = loss.compute_loss_from_embeddings(emb, teacher)
        opt.zero_grad()
        value.backward()
        opt.step()
        values.append(float(value.detach()))
    assert values[-1] < values[0] * 0.8


def test_false_negative_filter():
    """Prevents teaching the student that a likely unlabeled positive is irrelevant."""
    scores = np.array([9.0, 8.8, 3.0, 2.0, 8.5, 1.0], dtype=np.float32)
    rng = random.Random(0)
    picked = select_negatives(scores, positive=0, exclude={0}, k=10, depth=10, margin=1.0, rng=rng)
    assert sorted(picked) == [2, 3, 5]  # 1 (8.8) and 4 (8.5) are within 1.0 of the positive
    # depth 2 = the 2 best-scored eligible candidates: 2 (3.0) and 3 (2.0)
    assert sorted(select_negatives(scores, 0, {0}, 10, depth=2, margin=1.0, rng=rng)) == [2, 3]


def test_negatives_come_from_deeper_ranks_when_the_top_is_all_positives():
    """Prevents a query with many positives losing all its examples: its teacher top 5 are
    all positives, so its negatives must come from ranks 6 and below (by hand: 5 and 6)."""
    scores = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 1.0, 0.5, 0.2], dtype=np.float32)
    picked = select_negatives(
        scores, 0, {0, 1, 2, 3, 4}, 2, depth=2, margin=1.0, rng=random.Random(0)
    )
    assert sorted(picked) == [5, 6]


def test_examples_sample_at_most_max_positives_and_count_drops():
    """Prevents a query with 40 positives outweighing 40 others, and drops nobody can see:
    10 gold positives with max_positives 3 give 3 examples and 7 unsampled positives; a query
    whose candidates are all positives is counted as dropped for too few negatives."""
    from students.examples import QueryLabels

    many = QueryLabels(
        [f"p{i}" for i in range(10)] + ["n1", "n2"],
        np.array([9.0 - i * 0.1 for i in range(10)] + [0.0, -1.0], dtype=np.float32),
        np.array([1] * 10 + [0, 0]),
    )
    full = QueryLabels(["a", "b"], np.array([2.0, 1.0], dtype=np.float32), np.array([1, 1]))
    cfg = StudentConfig(data="x", negatives=2, max_positives=3, false_negative_margin=0.5)
    counts: dict[str, int] = {}
    examples = build_examples({"many": many, "full": full}, cfg, 0, counts)
    assert [q for q, _, _ in examples] == ["many"] * 3
    assert all(sorted(dids[1:]) == ["n1", "n2"] for _, dids, _ in examples)
    assert counts == {
        "built": 3,
        "positives_not_sampled": 7,
        "dropped_no_gold": 0,
        "dropped_too_few_negatives": 2,
    }


def test_examples_are_anchored_on_the_highest_grades_first():
    """Prevents a many-positive query's grade-2 documents being sampled away among its grade-1
    ones (a plain sample of 3 of these 8 positives holds both grade-2 ones 11% of the time):
    ``graded`` anchors both grade-2 documents and one grade-1, ``top`` the grade-2 ones only,
    ``all`` a sample of any 3; a grade-1 document is never a negative in any of them."""
    from students.examples import QueryLabels

    names = ["g2a", "g2b"] + [f"g1{c}" for c in "abcdef"] + ["n1", "n2", "n3"]
    lab = QueryLabels(
        names,
        np.array([5.0, 4.5, 6.0, 4.0, 3.5, 3.0, 2.5, 2.0, 0.0, -1.0, -2.0], dtype=np.float32),
        np.array([2, 2, 1, 1, 1, 1, 1, 1, -1, 0, -1]),
    )
    anchors = {}
    for which in ("graded", "top", "all"):
        cfg = StudentConfig(
            data="x", negatives=2, max_positives=3, false_negative_margin=0.5,
            positive_grades=which,
        )  # fmt: skip
        rows = build_examples({"q": lab}, cfg, 0)
        assert all(set(dids[1:]) <= {"n1", "n2", "n3"} for _, dids, _ in rows)
        anchors[which] = sorted(dids[0] for _, dids, _ in rows)
    assert anchors["top"] == ["g2a", "g2b"]
    graded = anchors["graded"]
    assert graded[1:] == ["g2a", "g2b"] and graded[0].startswith("g1")
    assert len(anchors["all"]) == 3 and set(anchors["all"]) <= set(names[:8])


def test_highest_grades_first_is_a_plain_sample_on_one_grade():
    """Prevents binary qrels (SciFact's) getting other examples or other added positives than
    before the graded choice: with one grade it draws exactly what ``random.sample`` draws."""
    import random as stdlib_random

    from distill.querysets import highest_grades_first

    docs = [f"d{i}" for i in range(12)]
    drawn = highest_grades_first(docs, dict.fromkeys(docs, 1), 5, stdlib_random.Random(7))
    assert drawn == sorted(stdlib_random.Random(7).sample(docs, 5))


def test_examples_use_gold_or_teacher_top():
    """Prevents unlabeled queries being dropped (they are what more queries buy), gold
    positives being replaced by the teacher's choice, a negative within the margin of its
    positive (a likely unlabeled positive) being kept, and teacher scores attached to the
    wrong documents."""
    from students.examples import QueryLabels

    labels = {
        "gold": QueryLabels(
            ["a", "b", "c", "d"],
            np.array([1.0, 5.0, 0.0, -1.0], dtype=np.float32),
            np.array([1, -1, -1, -1]),
        ),
        "free": QueryLabels(
            ["x", "y", "z"], np.array([0.0, 6.0, -3.0], dtype=np.float32), np.array([-1, -1, -1])
        ),
    }
    cfg = StudentConfig(data="x", negatives=2, false_negative_margin=0.5)
    ex = {q: (dids, scores) for q, dids, scores in build_examples(labels, cfg, 0)}
    # gold: the positive is gold "a" (1.0), though the teacher prefers "b"; "b" (5.0) is not
    # below 1.0 - 0.5, so the negatives are "c" (0.0) and "d" (-1.0).
    # free: no gold, so the positive is the teacher's top "y" (6.0); negatives "x" and "z".
    assert ex["gold"][0][0] == "a" and ex["free"][0][0] == "y"
    assert dict(zip(*ex["gold"], strict=True)) == {"a": 1.0, "c": 0.0, "d": -1.0}
    assert dict(zip(*ex["free"], strict=True)) == {"y": 6.0, "x": 0.0, "z": -3.0}
    assert build_examples(labels, cfg, 0) == build_examples(
        labels, cfg, 0
    )  # deterministic per epoch


@pytest.fixture(scope="module")
def labels_dir(scifact_slice, tiny_models, tmp_path_factory):
    """Tiny-teacher labels for the slice's 40 train queries (BM25 top-10 + gold)."""
    from distill.cli import main

    root = tmp_path_factory.mktemp("student-data")
    for argv in (
        [
            "mine",
            str(scifact_slice),
            "--queries",
            "train",
            "--method",
            "bm25",
            "--k",
            "10",
            "--output",
            str(root / "mine"),
        ],
        [
            "label",
            str(scifact_slice),
            "--candidates",
            str(root / "mine" / "candidates.parquet"),
            "--teacher",
            tiny_models["bert-cross"],
            "--output",
            str(root / "labels"),
            "--allow-worse",  # a random tiny teacher: worse than BM25, used for the mechanics
        ],
    ):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code in (0, None)
    return root / "labels"


def _student_argv(data, labels, model, out, *extra):
    return [
        "train-student",
        str(data),
        "--labels",
        str(labels),
        "--model",
        model,
        "--output",
        str(out),
        "--batch-size",
        "4",
        "--negatives",
        "2",
        "--false-negative-margin",
        "0",
        "--max-doc-length",
        "48",
        "--max-query-length",
        "24",
        *extra,
    ]


def test_student_trains_and_loads(scifact_slice, labels_dir, tiny_models, tmp_path, capsys):
    """Prevents a student folder that SentenceTransformer(path) cannot load, a run that does
    not change the weights, and ONNX exports of other weights than the trained ones."""
    from sentence_transformers import SentenceTransformer

    code, _out, err = run_cli(
        _student_argv(
            scifact_slice, labels_dir, tiny_models["bert-bi"], tmp_path / "s", "--lr", "1e-3",
            "--onnx-int8",
        ),
        capsys,
    )  # fmt: skip
    assert code == 0, err
    student = SentenceTransformer(str(tmp_path / "s"))
    # the exports serve the trained weights: the fp32 graph computes the student's embeddings
    from distill.serving import OnnxEncoder

    onnx = OnnxEncoder(student, tmp_path / "s" / "onnx" / "student.onnx")
    texts = ["vitamin d", "bone density in older adults"]
    np.testing.assert_allclose(onnx.encode(texts), student.encode(texts), atol=1e-5)
    assert (tmp_path / "s" / "onnx" / "student-int8.onnx").is_file()
    base = SentenceTransformer(tiny_models["bert-bi"])
    a, b = student.encode(["vitamin d"]), base.encode(["vitamin d"])
    assert a.shape == (1, 32) and not np.allclose(a, b)
    assert "distill student" in (tmp_path / "s" / "README.md").read_text()
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    examples = manifest["figures"]["examples"]
    # 10 of the 40 gold queries are held out (the validation floor of 50, capped at a
    # quarter); most of the other 30 keep 2 negatives below the margin
    assert examples >= 25
    per_epoch = -(-examples // 4)  # batch 4
    assert manifest["figures"]["epochs"] == -(-25 // per_epoch)  # small data: >= 25 steps
    assert manifest["figures"]["steps"] == per_epoch * manifest["figures"]["epochs"]
    assert not (tmp_path / ".s-checkpoints").exists()
    _check_card(tmp_path / "s", labels_dir, manifest["figures"])


def _check_card(folder, labels_dir, figures):
    """The card names the data (labelled queries counted from the labels here), the loss and
    its settings, and the validation figures of the manifest."""
    from distill.labels_io import read_labels

    card = (folder / "README.md").read_text()
    gold = {r["qid"] for r in read_labels(labels_dir).to_pylist() if r["gold"] > 0}
    validation = figures["validation"]
    held = validation["queries"] if validation else 0
    assert figures["queries"] == {"labelled": len(gold) - held, "teacher_labelled": 0}
    assert f"{len(gold) - held} labelled queries" in card
    assert "0 teacher-labelled queries" in card
    assert "loss: kl + in-batch negatives (weight 1.0); scale 20.0" in card
    assert "2 negatives from the teacher's top 30" in card
    if validation:
        ndcg = validation["ndcg@10"]
        assert f"NDCG@10 {ndcg['start']:.4f} at the start, {ndcg['student']:.4f} trained" in card
        # per-query values kept for later paired tests: one per held-out query, same means
        for name, scores in validation["per_query_ndcg@10"].items():
            assert len(scores) == held
            assert np.mean(list(scores.values())) == pytest.approx(ndcg[name], abs=1e-3)
    else:
        assert "validation: none" in card
    assert f"teacher: `{labels_dir_teacher(labels_dir)}` (no `distill teach` manifest" in card


def labels_dir_teacher(labels_dir):
    return json.loads((labels_dir / "manifest.json").read_text())["config"]["teacher"]


def test_card_carries_the_teachers_validation(tmp_path):
    """Prevents a student card that does not say how good its teacher was: the figures come
    from the teacher's `distill teach` manifest (written here by hand)."""
    from students.card import teacher_summary

    teacher, labels = tmp_path / "teacher", tmp_path / "labels"
    teacher.mkdir()
    labels.mkdir()
    (teacher / "manifest.json").write_text(json.dumps({"figures": {
        "ensemble": {"validation": {"ndcg@10": 0.7909}}, "first_stage": {"ndcg@10": 0.7048},
        "members": {"teacher": {"after": {"ndcg@10": 0.7475}}, "bm25": {}},
    }}))  # fmt: skip
    (labels / "manifest.json").write_text(json.dumps({"config": {"teacher": str(teacher)}}))
    assert teacher_summary(labels) == (
        f"`{teacher}`, validation NDCG@10 0.7909 against the first stage's 0.7048 "
        "(reranking, no injected positives)"
    )
    single = {"figures": {"members": {"teacher": {"after": {"ndcg@10": 0.7475}}}}}
    (teacher / "manifest.json").write_text(json.dumps(single))
    assert "validation NDCG@10 0.7475 (reranking" in teacher_summary(labels)


def test_supervised_baseline_runs(scifact_slice, labels_dir, tiny_models, tmp_path, capsys):
    """Prevents the no-teacher baseline (the comparison distillation must win) from breaking."""
    code, _, err = run_cli(
        _student_argv(
            scifact_slice, labels_dir, tiny_models["bert-bi"], tmp_path / "m", "--loss", "mnrl"
        ),
        capsys,
    )
    assert code == 0, err
    assert "none (supervised baseline" in (tmp_path / "m" / "README.md").read_text()


def test_killed_student_resumes_to_same_weights(
    scifact_slice, labels_dir, tiny_models, tmp_path, capsys
):
    """Prevents a resumed run from ending with other weights than an uninterrupted one
    (lost RNG state, replayed or skipped batches)."""
    from safetensors.numpy import load_file

    extra = ["--epochs", "3", "--checkpoint-steps", "3", "--lr", "1e-3"]
    argv = [
        sys.executable,
        "-m",
        "distill.cli",
        *_student_argv(
            scifact_slice, labels_dir, tiny_models["bert-bi"], tmp_path / "killed", *extra
        ),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = tmp_path / ".killed-checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not (ckpts / "step-9" / "done").exists():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed").exists(), "the run finished before it could be killed"
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stderr
    code, _, err = run_cli(
        _student_argv(
            scifact_slice, labels_dir, tiny_models["bert-bi"], tmp_path / "whole", *extra
        ),
        capsys,
    )
    assert code == 0, err
    a, b = (
        load_file(str(tmp_path / "killed" / "model.safetensors")),
        load_file(str(tmp_path / "whole" / "model.safetensors")),
    )
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_auto_temperature_puts_teacher_in_student_units(scifact_slice, labels_dir, tiny_models):
    """Prevents teacher scores in their own unit (logits, fused z-scores, BM25) being used as
    student logits: the temperature must follow the teacher's scale, so that x10 teacher
    scores give a x10 temperature and the same training examples."""
    from dataclasses import replace

    from distill import data
    from distill.labels_io import read_labels
    from distill.models import load_bi_encoder
    from students.examples import auto_temperature, group_labels

    ds = data.BeirDataset(scifact_slice)
    labels = group_labels(read_labels(labels_dir))
    model = load_bi_encoder(tiny_models["bert-bi"])
    cfg = StudentConfig(data="x", negatives=2, false_negative_margin=0.5, max_doc_length=48)
    t1 = auto_temperature(labels, model, ds.queries, ds.corpus, cfg)
    scaled = {q: replace(lab, scores=lab.scores * 10) for q, lab in labels.items()}
    t10 = auto_temperature(scaled, model, ds.queries, ds.corpus, cfg)
    assert t1 > 0 and t10 == pytest.approx(10 * t1, rel=1e-4)
    norm1 = {q: replace(lab, scores=lab.scores / t1) for q, lab in labels.items()}
    norm10 = {q: replace(lab, scores=lab.scores / t10) for q, lab in scaled.items()}
    ex1, ex10 = build_examples(norm1, cfg, 0), build_examples(norm10, cfg, 0)
    assert [e[1] for e in ex1] == [e[1] for e in ex10]
    np.testing.assert_allclose([e[2] for e in ex1], [e[2] for e in ex10], rtol=1e-4)


def test_unconfident_teacher_labelled_queries_are_dropped():
    """Prevents training on a teacher-labelled query whose positive the teacher itself gives
    little chance (its top candidate's calibrated probability under --min-confidence), and
    dropping a query that has gold positives or no probabilities."""
    from students.examples import QueryLabels, confident

    def lab(scores, probs, gold):
        return QueryLabels(
            ["a", "b", "c"], np.array(scores, np.float32), np.array(gold),
            None if probs is None else np.array(probs, np.float32),
        )  # fmt: skip

    labels = {
        "gold-low": lab([3.0, 1.0, 0.0], [0.02, 0.01, 0.0], [-1, 1, -1]),  # gold: kept
        "unsure": lab([0.1, 0.3, 0.2], [0.06, 0.08, 0.07], [-1, -1, -1]),  # top b at 0.08
        "sure": lab([2.0, 0.1, 0.2], [0.3, 0.01, 0.02], [-1, -1, -1]),  # top a at 0.3
        "no-prob": lab([1.0, 2.0, 0.0], None, [-1, -1, -1]),
    }
    kept, dropped = confident(labels, 0.1)
    assert sorted(kept) == ["gold-low", "no-prob", "sure"] and dropped == 1
    kept, dropped = confident(labels, 0.0)
    assert kept == labels and dropped == 0
    kept, dropped = confident(labels, 0.31)  # "sure" is 0.3 < 0.31 now
    assert sorted(kept) == ["gold-low", "no-prob"] and dropped == 2


@pytest.mark.parametrize(
    ("examples", "batch", "procs", "epochs", "expected"),
    [
        (199, 16, 1, None, 2),  # the demo sample: 13 steps an epoch, 2 epochs make 26
        (803, 16, 1, None, 1),  # 51 steps in one epoch
        (40, 4, 1, None, 3),  # 10 steps an epoch: 3 make 30
        (40, 4, 2, None, 5),  # 5 steps an epoch on 2 processes: 5 make 25
        (40, 4, 1, 1, 1),  # --epochs given: kept
    ],
)
def test_epochs_for_small_data(examples, batch, procs, epochs, expected):
    """Prevents a student on a few hundred queries being trained for a dozen steps (refused on
    validation) when no --epochs is given, and a given --epochs being overridden."""
    from students.loop import epochs_for

    assert epochs_for(examples, batch, procs, 1, epochs) == expected


def test_supervised_examples_when_the_top_is_all_positives():
    """Prevents the crash found on many-positive data: a query whose candidates in ranks 4..30
    are all gold gave a supervised (MNRL) row without a negative, and a batch mixing it with
    2-document rows failed with an IndexError. Its negative now comes from deeper ranks, and a
    query with no non-gold candidate at all is dropped and counted."""
    from students.examples import QueryLabels

    n = 40
    dids = [f"d{i}" for i in range(n)]
    all_gold_top = QueryLabels(dids, np.zeros(n, dtype=np.float32), np.array([1] * 32 + [-1] * 8))
    only_gold = QueryLabels(dids[:5], np.zeros(5, dtype=np.float32), np.ones(5, dtype=int))
    cfg = StudentConfig(data="x", loss="mnrl", max_positives=1)
    counts: dict[str, int] = {}
    rows = build_examples({"a": all_gold_top, "b": only_gold}, cfg, 0, counts)
    assert [q for q, _, _ in rows] == ["a"] and counts["dropped_too_few_negatives"] == 1
    ((_, docs, _),) = rows
    assert len(docs) == 2 and int(docs[1][1:]) >= 32  # the negative is a non-gold, deeper rank
