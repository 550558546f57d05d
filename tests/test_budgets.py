"""Time budgets: teach, label and train-student stay bounded whatever the data's size, and
what a budget cuts is planned (a schedule that ends where training ends), resumable and said."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from helpers import run_cli, tiny_teach_argv
from test_label import _label, mined  # noqa: F401  (the module's candidates fixture)
from test_student import _student_argv, labels_dir  # noqa: F401

from distill.labels_io import read_labels
from students.budget import planned_total, steps_within
from teachers.member_training import budget_left, member_share, size_run


def test_teach_plan_cuts_steps_and_spaces_validations():
    """Prevents a teach plan that overruns its budget or validates so often that validation
    eats the training time. By hand: budget 20 min -> 0.9 * 1200 = 1080 s; validations at most
    5 and at most 30% of it (0.3 * 1080 / 60 = 5.4 -> 5); steps (1080 - 5 * 60) / 2 = 390,
    validated every ceil(390 / 5) = 78 steps."""
    assert size_run(1000, 2.0, 60.0, 50, 20) == (390, 78)
    # validations of 200 s: 0.3 * 1080 / 200 = 1.6 -> 1, at the end; (1080 - 200) / 2 = 440
    assert size_run(1000, 2.0, 200.0, 50, 20) == (440, 440)
    # no budget: every step kept, validations still at most 5 (every 200, not every 50)
    assert size_run(1000, 2.0, 60.0, 50, None) == (1000, 200)
    # fewer steps than eval_steps: one validation, at the last step
    assert size_run(10, 2.0, 60.0, 50, None) == (10, 10)
    # a budget smaller than one step still trains one
    assert size_run(1000, 100.0, 60.0, 50, 0.01) == (1, 1)


def test_teach_budget_counts_the_time_before_training():
    """Prevents a teach stage that overruns its budget by everything before training (data
    preparation, loading, the start's validation, the warm-up: 32 to 39 min for a 20-min
    budget on the many-positive stand-in). By hand: 20 min with 300 s spent leaves 15; with
    1,500 s spent, a tenth (2)."""
    assert budget_left(20, 300) == 15
    assert budget_left(20, 1500) == 2
    assert budget_left(None, 1500) is None
    # the stage's budget: 20 min, 8 min of data preparation -> 12 for one member, 6 each for
    # two; 25 min spent -> a tenth of an equal share (2 for one member, 1 each for two)
    assert member_share(20, 480, 1) == 12
    assert member_share(20, 480, 2) == 6
    assert member_share(20, 1500, 1) == 2
    assert member_share(20, 1500, 2) == 1
    assert member_share(None, 480, 1) is None


def test_student_steps_within_budget():
    """Prevents a student plan that ignores the measured step time: 0.9 * 600 s / 10 s = 54."""
    assert steps_within(100, 10.0, 10) == 54
    assert steps_within(30, 10.0, 10) == 30
    assert steps_within(100, 10.0, None) == 100
    assert steps_within(100, 1000.0, 1) == 1


def test_resumed_run_keeps_its_planned_steps(tmp_path):
    """Prevents a resumed student from re-probing and sizing its schedule differently from the
    run it resumes (its checkpoints' learning rates would belong to another schedule)."""
    assert planned_total(tmp_path, lambda: (17, 2.5)) == (17, 2.5)
    assert planned_total(tmp_path, lambda: (99, 0.1)) == (17, 2.5)
    assert json.loads((tmp_path / "plan.json").read_text()) == {"total": 17, "step_seconds": 2.5}


def test_student_budget_cuts_the_run_and_says_so(
    scifact_slice,
    labels_dir,  # noqa: F811
    tiny_models,
    tmp_path,
    capsys,
):
    """Prevents a time budget that is printed but not applied: a budget far below one step
    trains exactly one optimizer step, and the plan says it cut the run."""
    code, _out, err = run_cli(
        _student_argv(
            scifact_slice, labels_dir, tiny_models["bert-bi"], tmp_path / "s", "--time-budget",
            "0.00001", "--allow-worse",
        ),
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "time budget 1e-05 min for the stage" in err and ", cut from" in err
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["figures"]["steps"] == 1


def test_label_budget_keeps_whole_shards_and_resumes(
    scifact_slice,
    mined,  # noqa: F811
    tiny_models,
    tmp_path,
    capsys,
):
    """Prevents labelling that overruns its budget, a budget-cut folder that is not usable
    (unreadable, or relabelled from scratch on every run), and a later run with a larger
    budget that does not end with exactly the rows of an uncut run."""
    teacher = tiny_models["bert-cross"]
    shards = ["--shard-size", "50"]
    cut = tmp_path / "cut"
    code, _, err = _label(
        capsys, scifact_slice, mined, teacher, cut, *shards, "--time-budget", "1e-7"
    )
    assert code == 0, err
    assert "time budget of 1e-07 min: " in err and "shards left unlabelled" in err
    assert len(list(cut.glob("shard-*.parquet"))) == 1
    table = read_labels(cut)
    assert table.num_rows == 50
    figures = json.loads((cut / "manifest.json").read_text())["figures"]
    assert figures["pairs_labelled"] == 50 and figures["pairs"] > 50
    # the teacher is checked on the queries it labelled: the unlabelled ones scored 0 and
    # refused a good teacher (0.0929 vs 0.8160 on the 2.5k-query stand-in)
    assert figures["validation"]["queries"] == len({r["qid"] for r in table.to_pylist()})
    code, out, err = _label(
        capsys, scifact_slice, mined, teacher, cut, *shards, "--time-budget", "1e-7"
    )
    assert code == 0 and "are current" in out + err
    code, _, err = _label(
        capsys, scifact_slice, mined, teacher, cut, *shards, "--time-budget", "60"
    )
    assert code == 0, err
    whole = tmp_path / "whole"
    code, _, err = _label(capsys, scifact_slice, mined, teacher, whole, *shards)
    assert code == 0, err
    got = {(r["qid"], r["did"]): r["score"] for r in read_labels(cut).to_pylist()}
    want = {(r["qid"], r["did"]): r["score"] for r in read_labels(whole).to_pylist()}
    assert got.keys() == want.keys()  # (exact mode may pick onnxruntime in one run, torch in
    for key, score in want.items():  # the other: equal to 1e-4, not bit for bit)
        assert got[key] == pytest.approx(score, abs=1e-4)
    first = {r["qid"] for r in pq.read_table(cut / "shard-00000.parquet").to_pylist()}
    every = sorted({q for q, _ in want})
    assert sorted(first) != every[: len(first)]  # a seeded random query order, not sorted


@pytest.mark.parametrize("stage", ["teach", "label", "train-student"])
def test_every_training_stage_has_a_default_budget(stage):
    """Prevents a stage whose default cost grows without bound with the data: each has a time
    budget on by default."""
    from distill.stages import commands

    assert commands()[stage].config_class().__dataclass_fields__["time_budget"].default > 0


@pytest.mark.parametrize("n, held", [(200, 50), (1000, 100), (100, 25), (5000, 500)])
def test_student_validation_has_a_floor(n, held):
    """Prevents a guard decided on 20 queries (the demo's 200 labelled queries at 10%): it
    refused a student 0.025 below its start there that was 0.045 above base on test. At least
    50 queries are held out, never over a quarter of them, 10% past 500 and at most 500."""
    from students.validation import split_validation

    queries = {f"q{i}": f"text {i}" for i in range(n)}
    qrels = {q: {"d": 1} for q in queries}
    assert len(split_validation(queries, qrels, 0.1, 500, 0, floor=50)) == held


def _validation(start, student, loss="kl"):
    from types import SimpleNamespace

    from students.validation import Validation

    v = object.__new__(Validation)
    v.config = SimpleNamespace(loss=loss)
    v.queries = {f"q{i}": "" for i in range(len(start))}
    v.per_query = {
        "start": dict(zip(v.queries, start, strict=True)),
        "student": dict(zip(v.queries, student, strict=True)),
    }
    v.ndcg = {k: sum(x.values()) / len(x) for k, x in v.per_query.items()}
    v.verdict = None
    return v


def test_student_guard_refuses_a_drop_beyond_noise_only():
    """Prevents both guard failures: refusing on noise (a coin flip when student and start are
    close on few queries) and shipping a student shown worse. By hand: differences -0.1, 0,
    0.1, -0.2 have mean -0.05 and standard error sqrt(0.05 / 3) / 2 = 0.0645, so the drop is
    within noise and kept; -0.2, -0.1, -0.2, -0.1 have mean -0.15 and standard error
    sqrt(0.01 / 3) / 2 = 0.0289, so it is refused."""
    from distill.errors import Refused

    lines = []
    kept = _validation([0.5] * 4, [0.4, 0.5, 0.6, 0.3])
    kept.guard(False, lambda line, **_: lines.append(line))
    assert kept.verdict == {"drop": 0.05, "standard_error": 0.0645, "kept": "within noise"}
    assert "within noise" in lines[0]
    with pytest.raises(Refused, match=r"standard error of the difference 0\.0289"):
        _validation([0.5] * 4, [0.3, 0.4, 0.3, 0.4]).guard(False, print)
    # the supervised baseline's refusal names it (it read "the student" in a baseline run)
    with pytest.raises(Refused, match=r"^the supervised baseline is worse than its start"):
        _validation([0.5] * 4, [0.3, 0.4, 0.3, 0.4], loss="mnrl").guard(False, print)


def test_teach_validates_its_last_step(scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents trained steps thrown away: the Trainer validates every eval_steps only, so
    the steps after the last multiple (a budget-cut run's tail) were never validated, and the
    best-checkpoint reload discarded them. 5 steps validated every 2: at 2, 4 and 5."""
    out = tmp_path / "t"
    code, _, err = run_cli(
        tiny_teach_argv(scifact_slice, tiny_models["bert-cross"], out, "--max-steps", "5",
                        "--eval-steps", "2", "--patience", "100"),
        capsys,
    )  # fmt: skip
    assert code == 0, err
    member = json.loads((out / "manifest.json").read_text())["figures"]["members"]["teacher"]
    assert [h["steps"] for h in member["history"]] == [2, 4, 5]


def test_label_adds_at_most_a_sample_of_missed_positives():
    """Prevents labelling cost doubled by many-positive data (40 positives a query, most
    missed by mining, all added): at most ``max_added`` missed positives a query are added,
    a sample that does not change between runs; candidates are all kept, in rank order."""
    from distill.label_plan import pair_list

    candidates = {"q": ["b", "a"]}
    qrels = {"q": {"a": 1, "c": 1, "d": 2, "e": 1, "f": 1, "g": 0}}
    every = pair_list(candidates, qrels, True)
    assert [d for _, d in every] == ["b", "a", "c", "d", "e", "f"]
    two = [d for _, d in pair_list(candidates, qrels, True, 2)]
    assert two[:2] == ["b", "a"] and len(two) == 4 and set(two[2:]) <= {"c", "d", "e", "f"}
    assert two == [d for _, d in pair_list(candidates, qrels, True, 2)]


def test_label_adds_the_highest_grades_of_missed_positives_first():
    """Prevents the student losing its anchors on graded many-positive data: with room for 2
    added positives of 2 grade-2 and 30 grade-1 ones mining missed, both grade-2 documents
    are added (a plain sample would keep them with probability about 0.2%), and with room
    for 3 the third is one of the grade-1 ones."""
    from distill.label_plan import pair_list

    qrels = {"q": {"top1": 2, "top2": 2} | {f"low{i:02d}": 1 for i in range(30)}}
    two = [d for _, d in pair_list({"q": ["x"]}, qrels, True, 2)]
    assert two == ["x", "top1", "top2"]
    three = [d for _, d in pair_list({"q": ["x"]}, qrels, True, 3)]
    assert three[0] == "x" and {"top1", "top2"} < set(three) and len(three) == 4
    assert sum(qrels["q"].get(d) == 1 for d in three) == 1


def test_label_order_puts_labelled_queries_first():
    """Prevents a time budget that labels unlabelled or pseudo-queries and leaves the queries
    with gold positives out (they carry the gold signal and the label guard's check): every
    query with a gold positive comes before every query without one, each group shuffled."""
    from distill.label_plan import pair_list

    candidates = {f"u{i}": ["d"] for i in range(30)} | {f"g{i}": ["d"] for i in range(30)}
    qrels = {f"g{i}": {"x": 1} for i in range(30)} | {"u0": {"y": 0}}  # u0: a grade-0 row only
    order = list(dict.fromkeys(q for q, _ in pair_list(candidates, qrels, False)))
    assert set(order[:30]) == {f"g{i}" for i in range(30)}
    assert order[:30] != sorted(order[:30]) and order[30:] != sorted(order[30:])


def test_budget_stop_keeps_room_for_the_validation_it_triggers(monkeypatch):
    """Prevents the overrun measured on the many-positive stand-in: teach planned one
    validation (9,000 pairs, about 2.5 min) at the end, the clock stopped training at the
    budget, and that validation ran past it. By hand: a 100 s budget with a 30 s validation
    expected must stop at the first step ending at or after 70 s; without the estimate, at
    100 s."""
    from types import SimpleNamespace

    from distill.progress import expect_validation, trainer_callbacks

    clock = [0.0]
    monkeypatch.setattr("distill.progress.time.time", lambda: clock[0])

    def stops_at(expected_validation: float) -> float:
        callback = trainer_callbacks("t", budget_seconds=100)[0]
        expect_validation([callback], expected_validation)
        args = SimpleNamespace(eval_strategy="steps")
        state = SimpleNamespace(global_step=0, max_steps=1000)
        control = SimpleNamespace(
            should_training_stop=False, should_evaluate=False, should_save=False
        )
        clock[0] = 0.0
        callback.on_train_begin(args, state, control)
        while not control.should_training_stop:
            clock[0] += 1.0
            state.global_step += 1
            callback.on_step_end(args, state, control)
        assert control.should_evaluate  # the stop validates once more
        return clock[0]

    assert stops_at(30.0) == 70.0
    assert stops_at(0.0) == 100.0


def test_teacher_rate_counts_every_member_and_its_windows(tiny_models, scifact_slice):
    """Prevents a time budget priced on the cross-encoder alone: on the many-positive
    stand-in, label planned 96 pairs/s from the cross-encoder's timing and labelled at 32,
    since the ensemble's bi-encoder member embeds every pair's document too. By hand: a
    cross-encoder at 100 pairs/s reading 2 windows a pair and a bi-encoder member at 50
    pairs/s take 2/100 + 1/50 = 0.04 s a pair: 25 pairs/s. A member of weight 0 is not scored
    by label, so it is not timed there."""
    from distill.data import BeirDataset
    from teachers.members import BiEncoderScorer
    from teachers.precision import first_stage_rates, pairs_per_second
    from teachers.scoring import EnsembleTeacher, Member

    ce = {"backend": "onnxruntime fp32", "pairs_per_s": {"torch": 80.0, "onnxruntime": 100.0}}
    bi = {"member": "bi", "pairs_per_s": {"score": 50.0}}
    assert pairs_per_second([ce, bi], windows_per_pair=2.0) == pytest.approx(25.0)
    assert pairs_per_second([ce]) == pytest.approx(100.0)
    assert pairs_per_second([ce, {"member": "bm25", "pairs_per_s": {}}]) is None

    corpus = BeirDataset(scifact_slice).corpus
    pairs = [("cells", corpus[d].full_text) for d in list(corpus)[:6]]
    scorer = BiEncoderScorer(tiny_models["bert-bi"])
    kept = first_stage_rates(EnsembleTeacher([Member("bi", scorer, 0.5)]), pairs, skip_zero=True)
    assert [r["member"] for r in kept] == ["bi"] and kept[0]["pairs_per_s"]["score"] > 0
    assert (
        first_stage_rates(EnsembleTeacher([Member("bi", scorer, 0.0)]), pairs, skip_zero=True) == []
    )


def test_student_budget_is_the_stages_by_hand():
    """Prevents a student budget that counts training alone (the stand-in's student stage took
    about 20 minutes of its 15: the start's validation before, the trained student's after).
    By hand: 15 min less 120 s spent and a 180 s final validation leaves 10 min; a budget
    already spent still trains a tenth of it; 5,183 documents at a sixth of a 17.4 s training
    step (six passes: attention dropout on CPU) per 80 texts is 5,183 x 17.4 / 480 =
    90,184.2 / 480 = 187.88 s, and at a third (three passes: no attention dropout) twice that."""
    from students.budget import training_minutes, validation_seconds

    assert training_minutes(15, 120, 180) == pytest.approx(10.0)
    assert training_minutes(15, 3000, 0) == pytest.approx(1.5)
    assert training_minutes(None, 120, 180) is None
    assert validation_seconds(5183, 17.4, 80, 6) == pytest.approx(187.88375)
    assert validation_seconds(5183, 17.4, 80, 3) == pytest.approx(375.7675)


def test_student_probe_times_a_training_step_and_leaves_no_trace(tiny_models):
    """Prevents a probe that times the model in eval mode: attention dropout is off there, and
    on CPU a real training step cost about twice the probe (SciFact: 15.1 s probed, 23.4 s
    trained), so the plan overran its budget and the clock cut the schedule. Also prevents a
    probe that leaves the model in another mode, the RNG streams drawn from, or gradients set."""
    import random

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from distill.data import Document
    from students.budget import probe_step_seconds
    from students.config import StudentConfig
    from students.losses import build_loss

    model = SentenceTransformer(tiny_models["bert-bi"])
    modes = []
    model[0].register_forward_pre_hook(lambda module, args: modes.append(module.training))
    loss_fn = build_loss("kl", model, in_batch=0.0)
    queries = {"q1": "vitamin d", "q2": "tumour growth"}
    corpus = {d: Document("", f"text of {d} " * 20) for d in ("a", "b", "c")}
    rows = [("q1", ["a", "b"], [2.0, 0.5]), ("q2", ["c", "a"], [1.5, -1.0])]
    model.eval()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    before = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    seconds = probe_step_seconds(model, loss_fn, rows, queries, corpus, StudentConfig(data="x"))
    after = random.random(), np.random.rand(), torch.rand(1).item()
    assert seconds > 0 and modes and all(modes)
    assert not model.training and after == before
    assert all(p.grad is None for p in model.parameters())


def test_teach_probe_times_a_training_step_and_leaves_no_trace(tiny_models, tmp_path):
    """Prevents a teach plan sized from a multiple of an inference pass, which missed either
    way (a SciFact step at 128 tokens took 3.7 passes where 6 were assumed, so the plan cut the
    cross-encoder to 20 steps of the 6 minutes left and used 4): the probe must run the loss
    and its backward pass in training mode; and prevents one that leaves the model in another
    mode, the RNG streams drawn from, or gradients set."""
    import random

    import numpy as np
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from teachers.member_training import probe_step_seconds

    model = CrossEncoder(tiny_models["bert-cross"], num_labels=1)
    modes = []
    model[0].register_forward_pre_hook(lambda module, args: modes.append(module.training))
    rows = {"query": ["vitamin d", "tumour growth"], "doc": ["bone density " * 10, "cells " * 10]}
    trainer = CrossEncoderTrainer(
        model=model,
        args=CrossEncoderTrainingArguments(output_dir=str(tmp_path), report_to=[]),
        train_dataset=Dataset.from_dict({**rows, "label": [1.0, 0.0]}),
        loss=BinaryCrossEntropyLoss(model),
    )
    model.eval()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    before = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    seconds = probe_step_seconds(trainer, model, batch_size=2)
    after = random.random(), np.random.rand(), torch.rand(1).item()
    assert seconds > 0 and modes and all(modes)
    assert not model.training and after == before
    assert all(p.grad is None for p in model.parameters())
