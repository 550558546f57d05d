"""Long documents read whole (teachers.windows): windows that fit, cover the document, and
find a relevant passage that truncation cuts off."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from teachers.scoring import CrossEncoderTeacher
from teachers.windows import Windows, pool, score_windowed

FILLER = " ".join(f"Sample {i} of the cells was cultured for {i + 2} days." for i in range(60))
PLANTED = FILLER + "Zebrafish fin regeneration requires osteoblast dedifferentiation."


class KeywordCrossEncoder:
    """A cross-encoder stand-in that reads what the real one would read: the pair tokenized
    and truncated to ``max_length`` by the bundled tokenizer; it scores 1 when the key word
    (not in the query) survives truncation, else 0."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length
        self.seen = 0

    def predict(self, pairs, **_):
        self.seen += len(pairs)
        out = []
        for query, document in pairs:
            ids = self.tokenizer(
                query, document, truncation="only_second", max_length=self.max_length
            )["input_ids"]
            assert len(ids) <= self.max_length
            out.append(float("zebrafish" in self.tokenizer.decode(ids).lower()))
        return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("pooling", ["first", "max", "softmax"])
def test_planted_passage_past_the_first_window(bundled_tokenizer, pooling):
    """Prevents silent truncation: a document whose relevant passage sits past the first
    window is ranked first with windows, and not with truncation ("first")."""
    query = "fin regeneration in fish"
    docs = [FILLER, PLANTED, "a short unrelated note"]
    model = KeywordCrossEncoder(bundled_tokenizer, max_length=64)
    teacher = CrossEncoderTeacher(model, windows=Windows(pooling))
    scores = teacher.score([(query, d) for d in docs])
    ranked_first = int(np.argmax(scores)) == 1 and scores[1] > scores[0]
    assert ranked_first == (pooling != "first")
    # two of the three documents are longer than 64 tokens; only they get extra windows
    assert teacher.window_stats["pairs"] == 3 and teacher.window_stats["long_pairs"] == 2
    if pooling == "first":
        assert teacher.window_stats["windows"] == 3 and model.seen == 3
    else:
        assert teacher.window_stats["windows"] > 3 and model.seen == teacher.window_stats["windows"]


def test_windows_fit_and_cover_the_document(bundled_tokenizer):
    """Prevents windows that overflow max_length (truncated again) or skip text between them."""
    query = "osteoblast dedifferentiation"

    def windows_of(document):  # the texts score_windowed hands to the model for one pair
        seen = []
        score_windowed(
            lambda batch: seen.extend(d for _, d in batch) or np.zeros(len(batch)),
            bundled_tokenizer, [(query, document)], 64, Windows("max"), {},
        )  # fmt: skip
        return seen

    parts = windows_of(PLANTED)
    assert len(parts) > 2
    for part in parts:
        n = len(bundled_tokenizer(query, part)["input_ids"])
        assert n <= 64
        assert part in PLANTED
    starts = [PLANTED.index(p) for p in parts]
    ends = [s + len(p) for s, p in zip(starts, parts, strict=True)]
    assert starts[0] == 0 and ends[-1] == len(PLANTED)
    assert all(s <= e for s, e in zip(starts[1:], ends[:-1], strict=True))  # they overlap
    assert windows_of("a short document") == ["a short document"]


def test_windows_per_pair_by_hand(bundled_tokenizer):
    """Prevents a time budget (evaluate's rerank depth, label's plan) that prices a windowed
    teacher at its unwindowed rate. By hand: "cell" is one token, the query "fish" one, so a
    64-token window leaves 64 - 3 - 1 = 60 document tokens, 30 apart; a 300-token document has
    windows starting at 0, 30, ..., 240 (9 windows), a short one 1: 10 for 2 pairs = 5.0."""
    from teachers.scoring import windows_per_pair

    assert len(bundled_tokenizer("cell " * 300, add_special_tokens=False)["input_ids"]) == 300
    pairs = [("fish", "cell " * 300), ("fish", "a short note")]
    model = KeywordCrossEncoder(bundled_tokenizer, max_length=64)
    assert windows_per_pair(CrossEncoderTeacher(model, windows=Windows("max")), pairs) == 5.0
    assert windows_per_pair(CrossEncoderTeacher(model, windows=Windows("first")), pairs) == 1.0


def test_pooling_by_hand():
    """Prevents a pooling that is not the one named: max, the softmax-weighted mean, first."""
    s = np.array([1.0, 3.0, 2.0], dtype=np.float32)
    w = np.exp(s - 3.0)
    assert pool(s, "max") == 3.0 and pool(s, "first") == 1.0
    assert pool(s, "softmax") == pytest.approx(float((w * s).sum() / w.sum()))
    assert pool(s, "softmax") == pytest.approx(2.575, abs=1e-3)  # (e^-2 + 3 + 2 e^-1) / ...


@pytest.mark.parametrize("pooling", ["first", "max"])
def test_teach_validation_reads_the_windows_label_will(bundled_tokenizer, pooling):
    """Prevents a teacher validated, calibrated and fused on truncated scores while label and
    evaluate read it through windows: with windows its validation finds the planted passage
    (NDCG@10 1.0), truncated it does not."""
    from teachers.evaluator import RerankEvaluator

    evaluator = RerankEvaluator(
        {"q": "fin regeneration in fish"},
        {"z-filler": FILLER, "a-planted": PLANTED},
        {"q": ["z-filler", "a-planted"]},  # a tie puts z-filler first (trec_eval: docno desc)
        {"q": {"a-planted": 1}},
        windows=Windows(pooling),
    )
    model = KeywordCrossEncoder(bundled_tokenizer, max_length=64)
    model.model_card_data = SimpleNamespace(set_evaluation_metrics=lambda *a, **k: None)
    ndcg = evaluator(model)["val_ndcg@10"]
    assert (ndcg == 1.0) == (pooling == "max")
    assert evaluator.scored == model.seen and (evaluator.scored > 2) == (pooling == "max")


def test_best_window_training_reads_the_planted_passage(bundled_tokenizer):
    """Prevents a teacher trained on first windows only while max pooling scores the best one:
    with ``train_windows: best`` a long positive is trained on the window that holds the
    passage the query is about (which truncation cuts off), the window fits in max_length
    beside the query, and documents that fit are trained on whole."""
    from teachers.member_training import _documents

    query = "osteoblast dedifferentiation in fin regeneration"
    short = "Osteoblasts in a short note."
    d = SimpleNamespace(
        queries={"q": query},
        documents={"filler": FILLER, "planted": PLANTED, "short": short},
        corpus_texts=[FILLER, PLANTED, short, "An unrelated abstract on heart failure."],
    )
    model = SimpleNamespace(tokenizer=bundled_tokenizer, max_length=64)
    pairs = [("q", "filler"), ("q", "planted"), ("q", "short")]
    first, _ = _documents(d, SimpleNamespace(train_windows="first"), model, pairs)
    best, note = _documents(d, SimpleNamespace(train_windows="best"), model, pairs)
    reader = KeywordCrossEncoder(bundled_tokenizer, max_length=64)  # what training would read
    assert reader.predict([(query, first[1])])[0] == 0.0  # truncated: the passage is cut off
    assert reader.predict([(query, best[1])])[0] == 1.0
    assert best[1] in PLANTED and best[0] in FILLER and best[2] == short
    assert len(bundled_tokenizer(query, best[1])["input_ids"]) <= 64
    assert "2 of 3 documents" in note


def test_teach_writes_its_windows_for_label(scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents `teach --windows max` validating on windows while the saved teacher (hence
    label, evaluate, audit) truncates: the member folder carries windows.json, and loading the
    teacher gives max pooling. With ``--train-windows best`` the run trains on best windows."""
    from helpers import run_cli, tiny_teach_argv

    from teachers.scoring import load_teacher

    out = tmp_path / "t"
    code, _, err = run_cli(
        tiny_teach_argv(scifact_slice, tiny_models["bert-cross"], out, "--max-steps", "2",
                        "--eval-steps", "2", "--windows", "max", "--train-windows", "best"),
        capsys,
    )  # fmt: skip
    assert code == 0, err
    teacher = load_teacher(str(out))
    members = [m.teacher for m in getattr(teacher, "members", [])] or [teacher]
    assert any(getattr(m, "windows", None) == Windows("max") for m in members)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "trained on their best window" in json.dumps(manifest)


@pytest.mark.parametrize("precision", ["torch", "onnx", "int8", "onnx-int8"])
def test_every_cpu_backend_reads_the_windows(tiny_models, precision, tmp_path, monkeypatch):
    """Prevents a faster backend (onnxruntime, int8) that silently truncates again: with each
    CPU precision a long document is scored as the same windows, and the pooled score is the
    max of CrossEncoder.predict on windows cut here by hand (to 1e-6 for fp32, which tells it
    from the first window's score; closely for int8)."""
    from sentence_transformers import CrossEncoder
    from torch.nn import Identity

    from teachers.precision import apply_precision
    from teachers.scoring import load_teacher

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path))  # the ONNX export goes to a temp cache
    query, document = "fin regeneration", PLANTED[:600]
    reference = CrossEncoder(tiny_models["bert-cross"], max_length=32)
    ids = reference.tokenizer(document, add_special_tokens=False, return_offsets_mapping=True)
    room = 32 - 3 - len(reference.tokenizer(query, add_special_tokens=False)["input_ids"])
    spans, parts = ids["offset_mapping"], []
    for start in range(0, len(spans), room // 2):  # windows of `room` tokens, half a window apart
        end = min(start + room, len(spans))
        parts.append(document[spans[start][0] : spans[end - 1][1]])
        if end == len(spans):
            break
    each = reference.predict([(query, p) for p in parts], activation_fn=Identity())
    expected = each.max()
    assert expected > each[0] + 5e-6  # the first window alone (truncation) is told apart below
    teacher = load_teacher(tiny_models["bert-cross"], max_length=32, windows=Windows("max"))
    apply_precision(teacher, precision, [(query, document)], lambda *a, **k: None)
    score = teacher.score([(query, document), (query, "short")])
    assert teacher.window_stats["long_pairs"] == 1 and teacher.window_stats["windows"] > 2
    tolerance = 1e-6 if precision in ("torch", "onnx") else 0.05  # int8 weights: close only
    assert score[0] == pytest.approx(float(expected), abs=tolerance)
