"""`distill teach` and `distill audit` on tiny models: training, best checkpoint, the check
against the start, ensembles, calibration and the label audit."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from helpers import run_cli

from teachers.audit import audit_rows
from teachers.calibration import Calibration, expected_calibration_error, fit_platt
from teachers.scoring import CrossEncoderTeacher, EnsembleTeacher, Member, load_teacher

FAST = [
    "--negatives-from",
    "bm25",
    "--max-length",
    "64",
    "--batch-size",
    "8",
    "--eval-steps",
    "4",
    "--val-fraction",
    "0.25",
    "--val-candidates",
    "10",
    "--negatives",
    "3",
]


@pytest.fixture(scope="module")
def taught(scifact_slice, tiny_models, tmp_path_factory):
    """A tiny BERT teacher trained for 2 epochs on the SciFact slice's train queries."""
    from distill.cli import main

    out = tmp_path_factory.mktemp("teach") / "teacher"
    try:
        main(
            [
                "teach",
                str(scifact_slice),
                "--model",
                tiny_models["bert-cross"],
                "--output",
                str(out),
                "--epochs",
                "2",
                "--lr",
                "1e-4",
                "--patience",
                "100",
                "--allow-worse",
                *FAST,
            ]
        )
    except SystemExit as exc:
        assert exc.code in (0, None)
    return out


def test_best_checkpoint_is_kept(taught):
    """Prevents saving the last checkpoint when an earlier one validated better."""
    figures = json.loads((taught / "manifest.json").read_text())["figures"]["members"]["teacher"]
    history = [h["ndcg@10"] for h in figures["history"]]
    assert len(history) >= 2 and figures["steps"] > 0
    assert figures["best_metric"] == pytest.approx(max(history), abs=1e-4)
    assert figures["after"]["ndcg@10"] == pytest.approx(max(history), abs=1e-4)


def test_saved_teacher_loads_and_scores(taught):
    """Prevents a teacher folder that CrossEncoder(path) cannot load, or one without its card
    and calibration."""
    from sentence_transformers import CrossEncoder

    scores = CrossEncoder(str(taught)).predict([("query text", "document text"), ("a", "b")])
    assert scores.shape == (2,) and np.isfinite(scores).all()
    card = (taught / "README.md").read_text()
    assert "distill teacher" in card and "NDCG@10" in card
    cal = json.loads((taught / "calibration.json").read_text())
    assert cal["method"] in ("platt", "base-rate") and cal["temperature"] > 0 and cal["pairs"] > 0
    assert (taught / "reliability.png").stat().st_size > 1000
    assert list(taught.glob("*.safetensors")) and not list(taught.glob("*.bin"))


def test_no_test_split_and_no_leak(scifact_slice, tmp_path, capsys):
    """Prevents teaching on the test split (figures reported on it would be tuned on it)."""
    code, _, err = run_cli(
        ["teach", scifact_slice, "--split", "test", "--output", tmp_path / "t"], capsys
    )
    assert code == 2 and "test split" in err
    assert not (tmp_path / "t").exists()


def test_not_better_needs_allow_worse(scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents a tuned teacher that did not improve on its start from being kept silently."""
    argv = [
        "teach",
        scifact_slice,
        "--model",
        tiny_models["bert-cross"],
        "--epochs",
        "1",
        "--lr",
        "1e-12",
        *FAST,
    ]
    code, _, err = run_cli([*argv, "--output", tmp_path / "refused"], capsys)
    assert code == 1
    assert "not better than its start" in err and "--allow-worse" in err
    assert not (tmp_path / "refused").exists()
    code, _out, err = run_cli([*argv, "--output", tmp_path / "kept", "--allow-worse"], capsys)
    assert code == 0, err
    assert (tmp_path / "kept" / "model.safetensors").is_file()
    assert "outside 1e-05..0.0001" in err  # lr 1e-12 is warned about


def test_ensemble_of_bert_and_deberta(scifact_slice, tiny_models, tmp_path, capsys):
    """Prevents an ensemble that does not save or reload its members as stored (weights,
    calibrations, the members' own raw scores)."""
    config = tmp_path / "ens.yaml"
    config.write_text(
        "teach:\n  members:\n"
        f"    - {{name: minilm, model: {tiny_models['bert-cross']}}}\n"
        f"    - {{name: deberta, model: {tiny_models['deberta-cross']}, train: false}}\n"
    )
    out = tmp_path / "ens"
    code, stdout, err = run_cli(
        [
            "teach",
            scifact_slice,
            "--config",
            config,
            "--output",
            out,
            "--epochs",
            "1",
            "--lr",
            "1e-4",
            "--allow-worse",
            *FAST,
        ],
        capsys,
    )
    assert code == 0, err
    assert "ensemble (weights; weights on unit-spread scores" in stdout
    teacher = load_teacher(str(out))
    assert isinstance(teacher, EnsembleTeacher)
    assert [m.name for m in teacher.members] == ["minilm", "deberta"]
    spec = json.loads((out / "ensemble.json").read_text())
    assert sum(spec["weights_on_unit_spread"].values()) == pytest.approx(1.0)
    # reloaded as stored: each member's weight from ensemble.json, its calibration from its
    # own calibration.json, its raw scores those of CrossEncoder(member folder) itself
    # (how combine() fuses them is checked by hand in test_ensemble_combine_by_hand)
    assert [m.weight for m in teacher.members] == [m["weight"] for m in spec["members"]]
    from sentence_transformers import CrossEncoder

    pairs = [
        ("vitamin d", "Vitamin D deficiency and bone health."),
        ("cancer", "A study of tumours."),
    ]
    members = teacher.member_scores(pairs)
    for m in teacher.members:
        folder = out / "members" / m.name
        stored = json.loads((folder / "calibration.json").read_text())
        assert (m.teacher.calibration.temperature, m.teacher.calibration.bias) == (
            stored["temperature"],
            stored["bias"],
        )
        direct = CrossEncoder(str(folder)).predict(pairs, activation_fn=torch.nn.Identity())
        np.testing.assert_allclose(members[m.name], direct, rtol=1e-4, atol=1e-5)
    probs = teacher.probability(teacher.score(pairs))
    assert ((probs > 0) & (probs < 1)).all()


class LookupModel:
    """A stand-in cross-encoder model whose logit for a pair is looked up by document text."""

    def __init__(self, logits: dict[str, float]) -> None:
        self.logits = logits

    def predict(self, pairs, **kwargs):
        return np.array([self.logits[d] for _, d in pairs])


def test_ensemble_combine_by_hand():
    """Prevents an ensemble that fuses raw logits instead of calibrated ones, applies a weight
    to the wrong member, or lets a zero-weight member count."""
    docs = ["d1", "d2", "d3"]
    pairs = [("q", d) for d in docs]
    a = CrossEncoderTeacher(
        LookupModel({"d1": 4.0, "d2": 0.0, "d3": -2.0}),
        Calibration(temperature=2.0, bias=1.0, method="platt"),
    )
    b = CrossEncoderTeacher(
        LookupModel({"d1": 1.0, "d2": 2.0, "d3": 0.0}),
        Calibration(temperature=0.5, bias=-1.0, method="platt"),
    )
    off = CrossEncoderTeacher(LookupModel({"d1": 100.0, "d2": -100.0, "d3": 0.0}))
    teacher = EnsembleTeacher([Member("a", a, 0.25), Member("b", b, 0.75), Member("off", off, 0.0)])
    # calibrated a = raw / 2 + 1   = [4/2+1, 0/2+1, -2/2+1] = [3, 1, 0]
    # calibrated b = raw / 0.5 - 1 = [1*2-1, 2*2-1, 0*2-1]   = [1, 3, -1]
    # fused = 0.25 * a + 0.75 * b = [0.75+0.75, 0.25+2.25, 0-0.75] = [1.5, 2.5, -0.75]
    # (raw logits fused with the same weights would give [1.75, 1.5, -0.5]: d1 first)
    fused = teacher.score(pairs)
    np.testing.assert_allclose(fused, [1.5, 2.5, -0.75], rtol=1e-6)
    assert [docs[i] for i in np.argsort(-fused)] == ["d2", "d1", "d3"]
    # labelling skips the zero-weight member; combine must not need its scores
    assert set(teacher.member_scores(pairs, skip_zero=True)) == {"a", "b"}
    np.testing.assert_allclose(
        teacher.combine(teacher.member_scores(pairs, skip_zero=True)), [1.5, 2.5, -0.75], rtol=1e-6
    )


def test_fused_weights_by_hand(tmp_path):
    """Prevents fitting ensemble weights on raw logits of different scales (the larger-scale
    member then decides the ranking alone) and storing weights that do not undo the
    unit-spread division or that skip a member's calibration."""
    from teachers.evaluator import RerankEvaluator
    from teachers.fusion import fuse
    from teachers.teach_config import TeachConfig

    # validation pairs, in order: (q1, a) relevant, (q1, b), (q2, c), (q2, d) relevant
    evaluator = RerankEvaluator(
        {"q1": "q1", "q2": "q2"},
        {d: d for d in "abcd"},
        {"q1": ["a", "b"], "q2": ["c", "d"]},
        {"q1": {"a": 1}, "q2": {"d": 1}},
    )
    # m1 (no calibration.json: identity) ranks q1 right and q2 wrong, m2 the reverse;
    # m2's calibration (temperature 2) makes its logits [-9, 9, -10, 10]
    results = {
        "m1": {"val_scores": np.array([1.0, -1.0, 0.9, -0.9])},
        "m2": {"val_scores": np.array([-18.0, 18.0, -20.0, 20.0])},
    }
    Calibration(temperature=2.0, bias=0.0, method="platt").save(tmp_path / "members" / "m2")
    lines: list[str] = []
    figures = fuse(results, tmp_path, TeachConfig(data="x"), evaluator, lines.append)
    # spread (population std) of m1's logits: sqrt((1 + 1 + 0.81 + 0.81) / 4) = sqrt(0.905)
    # = 0.951315; of m2's logits: 10 * 0.951315 = 9.51315. On unit spread, with w on m1:
    # q1 right iff w*2 - (1-w)*1.8 > 0, i.e. w > 0.4737; q2 right iff (1-w)*2 - w*1.8 > 0,
    # i.e. w < 0.5263; on the 0.1 grid only w = 0.5 gets both right (NDCG@10 1.0).
    # (on raw logits q1 needs w > 0.9 and q2 w < 0.917: no grid point gets both)
    assert figures["weights"] == {"m1": pytest.approx(0.5), "m2": pytest.approx(0.5)}
    # stored weight = unit-spread weight / spread: 0.5 / 0.951315, 0.5 / 9.51315
    assert figures["stored_weights"] == {
        "m1": pytest.approx(0.525588, rel=1e-5),
        "m2": pytest.approx(0.0525588, rel=1e-5),
    }
    assert figures["validation"] == {"ndcg@10": 1.0, "mrr@10": 1.0}
    spec = json.loads((tmp_path / "ensemble.json").read_text())
    assert [(m["name"], m["path"]) for m in spec["members"]] == [
        ("m1", "members/m1"),
        ("m2", "members/m2"),
    ]
    assert [m["weight"] for m in spec["members"]] == [
        pytest.approx(0.525588, rel=1e-5),
        pytest.approx(0.0525588, rel=1e-5),
    ]
    assert "m1 0.50, m2 0.50" in lines[-1] and "NDCG@10 1.0000" in lines[-1]


def test_calibration_lowers_ece_on_separable_scores():
    """Prevents calibration that leaves overconfident logits (a common confusion: scores
    are not probabilities)."""
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(6, 1, 200), rng.normal(3, 1, 800)  # separable-ish, all sigmoid > 0.9
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(200), np.zeros(800)])
    cal = fit_platt(scores, labels)
    assert cal.ece_before > 0.5
    assert cal.ece_after < 0.05
    assert cal.ece_after == pytest.approx(
        expected_calibration_error(cal.probability(scores), labels)
    )


def test_ece_by_hand():
    """Prevents an ECE that weights bins wrongly."""
    probs = np.array([0.1, 0.1, 0.9, 0.9])
    labels = np.array([0, 1, 1, 1])
    # bin of 0.1: accuracy 0.5, |0.5-0.1| * 0.5 ; bin of 0.9: accuracy 1, |1-0.9| * 0.5
    assert expected_calibration_error(probs, labels) == pytest.approx(0.2 + 0.05)


class KeywordModel:
    """A stand-in cross-encoder model: logit +4 when the document says 'relevant', else -4."""

    def predict(self, pairs, **kwargs):
        return np.array([4.0 if "relevant" in d else -4.0 for _, d in pairs])


def test_audit_ranks_flipped_labels_first(tmp_path, capsys):
    """Prevents an audit that buries label noise among agreeing pairs."""
    rows = []
    flipped = set()
    for i in range(20):
        rel = i % 2 == 0
        label = float(rel)
        if i in (3, 8, 15):  # planted flips
            label = 1.0 - label
            flipped.add((f"q{i}", f"d{i}"))
        rows.append(
            (f"q{i}", f"d{i}", f"query {i}", f"{'relevant' if rel else 'other'} doc {i}", label)
        )
    teacher = CrossEncoderTeacher(
        KeywordModel(), Calibration(temperature=2.0, bias=0.0, method="platt")
    )
    ranked = audit_rows(teacher, rows)
    assert {(r["qid"], r["did"]) for r in ranked[:3]} == flipped
    assert ranked[0]["disagreement"] == pytest.approx(
        1 / (1 + np.exp(-2)), abs=1e-3
    )  # sigmoid(4 / 2)
    assert ranked[3]["disagreement"] < 0.5


def test_audit_command_writes_csv(tmp_path, tiny_models, capsys):
    """Prevents the audit command failing on a labeled pairs file or writing no header."""
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"query": f"q{i}", "text": f"doc {i}", "label": i % 2}) + "\n"
            for i in range(6)
        )
    )
    out = tmp_path / "audit.csv"
    code, _stdout, err = run_cli(
        [
            "audit",
            path,
            "--teacher",
            tiny_models["bert-cross"],
            "--output",
            out,
            "--threshold",
            "0.01",
        ],
        capsys,
    )
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0] == "qid,did,query,document,label,teacher_probability,disagreement"
    assert len(lines) == 7  # every pair disagrees by >= 0.01 with a random tiny teacher
    assert "no calibration.json" in err


def test_bm25_member_equals_bm25s_retrieval(scifact_slice):
    """Prevents a BM25 ensemble member that scores differently from the BM25 first stage."""
    from distill import retrieval
    from distill.data import BeirDataset
    from teachers.members import BM25Scorer

    ds = BeirDataset(scifact_slice)
    scorer = BM25Scorer.fit([doc.full_text for doc in ds.corpus.values()])
    queries = {q: ds.queries[q] for q in list(ds.qrels("test"))[:5]}
    run = retrieval.bm25_search(ds.corpus, queries, 10)
    for qid, docs in run.items():
        pairs = [(queries[qid], ds.corpus[d].full_text) for d in docs]
        np.testing.assert_allclose(scorer.score(pairs), list(docs.values()), rtol=1e-4)
    assert scorer.score([("zzzqqq", "no overlap at all")])[0] == 0.0


def test_bi_encoder_start_gets_mean_pool_recipe_and_fusion(
    scifact_slice, tiny_models, tmp_path, capsys
):
    """Prevents a bi-encoder start from getting the untrained [CLS] classifier (it does not
    learn), a teacher worse on validation than its own first-stage members, and a
    ``--bi-encoder`` member that is silently the miner instead of the model asked for."""
    out = tmp_path / "t"
    argv = [
        "teach",
        scifact_slice,
        "--model",
        tiny_models["bert-bi"],
        "--miner",
        tiny_models["bert-bi"],
        "--bi-encoder",
        tiny_models["deberta-bi"],
        "--output",
        out,
        "--epochs",
        "1",
        "--allow-worse",
        *FAST,
    ]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "not a trained cross-encoder" in err and "mean-pool head, listnet loss" in err
    manifest = json.loads((out / "manifest.json").read_text())["figures"]
    assert set(manifest["members"]) == {"teacher", "bm25", "bi-encoder"}
    assert manifest["members"]["teacher"]["head"] == "mean-pool"
    assert manifest["members"]["teacher"]["warmup"]["lists"] == manifest["data"]["warmup_lists"] > 0
    assert manifest["members"]["teacher"]["loss"].startswith("ListNet")
    best_member = max(m["after"]["ndcg@10"] for m in manifest["members"].values())
    assert manifest["ensemble"]["validation"]["ndcg@10"] >= best_member - 1e-9
    teacher = load_teacher(str(out))
    assert [m.name for m in teacher.members] == ["teacher", "bm25", "bi-encoder"]
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(out / "members" / "teacher"))
    assert [type(m).__name__ for m in ce] == ["Transformer", "Pooling", "Dense"]
    pairs = [("vitamin d", "Vitamin D and bones."), ("cancer", "Tumour growth.")]
    assert np.isfinite(teacher.score(pairs)).all()
    from sentence_transformers import SentenceTransformer

    bi = SentenceTransformer(tiny_models["deberta-bi"])  # the member's similarity, by hand
    q, d = bi.encode([p[0] for p in pairs]), bi.encode([p[1] for p in pairs])
    raw = teacher.member_scores(pairs)["bi-encoder"]
    np.testing.assert_allclose(raw, (q * d).sum(axis=1), rtol=1e-4, atol=1e-5)
    assert manifest["members"]["bi-encoder"]["start"] == tiny_models["deberta-bi"]


def test_warmup_lists_are_titles_of_unlabeled_documents(scifact_slice):
    """Prevents the title warm-up from leaking labeled (validation) documents into training,
    pairing a title with another document's body, or using its own document as a negative."""
    from distill import data
    from teachers.teach_config import TeachConfig
    from teachers.teach_data import _warmup_lists

    ds = data.BeirDataset(scifact_slice)
    labeled = {d for split in ds.splits() for docs in ds.qrels(split).values() for d in docs}
    config = TeachConfig(
        data=str(scifact_slice), negatives_from="bm25", negatives=3, warmup_pairs=25
    )
    lists = _warmup_lists(config, ds.corpus, labeled, random.Random(0))
    assert len(lists) == 25
    by_title = {doc.title: d for d, doc in ds.corpus.items()}
    for title, docs in lists:
        source = by_title[title]
        assert source not in labeled
        assert docs[0] == ds.corpus[source].text and len(docs) == 4
        assert ds.corpus[source].text not in docs[1:]
    config.warmup_pairs = 0
    assert _warmup_lists(config, ds.corpus, labeled, random.Random(0)) == []


def test_saved_teacher_is_the_checkpoint_validation_chose(taught):
    """Prevents a teacher folder holding other weights than the checkpoint whose validation
    figures it reports (the final figures are taken from the validation that chose the
    checkpoint, not measured again): the saved model, scored afresh on the same validation
    split, gives the reported NDCG@10."""
    from sentence_transformers import CrossEncoder

    from distill.config import load
    from teachers.evaluator import RerankEvaluator
    from teachers.teach_config import TeachConfig
    from teachers.teach_data import prepare

    config = load(TeachConfig, taught / "config.yaml")
    d = prepare(config, echo=lambda *a, **k: None)
    evaluator = RerankEvaluator(d.queries, d.documents, d.val_candidates, d.qrels)
    fresh = evaluator(CrossEncoder(str(taught)))["val_ndcg@10"]
    figures = json.loads((taught / "manifest.json").read_text())["figures"]["members"]["teacher"]
    assert fresh == pytest.approx(figures["after"]["ndcg@10"], abs=1e-4)


def test_tuned_bi_encoder_member_travels_with_the_teacher(
    scifact_slice, tiny_models, tmp_path, capsys
):
    """Prevents a tuned bi-encoder member that is stored by an absolute path (teach writes it
    in a temporary folder, and a user moves teachers), that scores with the untuned start, that
    trains on validation queries (the fusion weights fitted on them would favour it), or whose
    corpus embeddings label cannot find in the cache."""
    import shutil

    from sentence_transformers import SentenceTransformer

    from distill.data import open_dataset
    from teachers.bi_member import training_rows
    from teachers.members import use_cached_corpus
    from teachers.teach_config import TeachConfig
    from teachers.teach_data import prepare

    start, cache = tiny_models["bert-bi"], tmp_path / "cache"
    argv = ["teach", scifact_slice, "--model", tiny_models["bert-cross"], "--fuse"]
    argv += ["--miner", start, "--tune-bi-encoder", "--bi-epochs", "1", "--bi-lr", "1e-3"]
    argv += ["--cache-dir", cache, "--output", tmp_path / "t", "--allow-worse", *FAST]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    tuning = json.loads((tmp_path / "t" / "manifest.json").read_text())["figures"]
    assert tuning["bi_encoder_tuning"]["steps"] > 0
    shutil.move(tmp_path / "t", tmp_path / "moved")
    teacher = load_teacher(str(tmp_path / "moved"))
    tuned = SentenceTransformer(str(tmp_path / "moved" / "members" / "bi-encoder" / "model"))
    pairs = [("vitamin d", "Vitamin D and bones."), ("cancer", "Tumour growth.")]
    raw = teacher.member_scores(pairs)["bi-encoder"]
    by_hand = {}
    for name, model in (("tuned", tuned), ("start", SentenceTransformer(start))):
        q, d = model.encode([p[0] for p in pairs]), model.encode([p[1] for p in pairs])
        by_hand[name] = (q * d).sum(axis=1)
    np.testing.assert_allclose(raw, by_hand["tuned"], rtol=1e-4, atol=1e-5)
    assert not np.allclose(raw, by_hand["start"], rtol=1e-3)
    corpus = open_dataset(str(scifact_slice)).corpus
    assert use_cached_corpus(teacher, corpus, cache, skip_zero=False) == ["bi-encoder"]
    config = TeachConfig(data=str(scifact_slice), negatives_from="bm25", val_fraction=0.25)
    d = prepare(config, echo=lambda *a, **k: None)
    anchors = {row["anchor"] for row in training_rows(d, config)}
    val_texts = {d.queries[q] for q in d.val_candidates}
    assert anchors and not anchors & val_texts


def test_tuning_plan_fits_the_budget_after_its_validations():
    """Prevents a tuning plan that ignores the budget, counts validations it will not run, or
    plans zero steps: 100 rows in batches of 16 are 7 steps an epoch (14 for 2 epochs); with
    1 s a step and 6 s a validation, 0.4 min is 0.9 * 24 s - 2 * 6 s = 9.6 s: 9 steps."""
    from teachers.bi_member import planned_steps

    assert planned_steps(100, 16, 2, 1.0, 6.0, None) == (14, 14)
    assert planned_steps(100, 16, 2, 1.0, 6.0, 1.0) == (14, 14)
    assert planned_steps(100, 16, 2, 1.0, 6.0, 0.4) == (9, 14)
    assert planned_steps(100, 16, 2, 1.0, 6.0, 0.2) == (1, 14)
    assert planned_steps(100, 16, 0.5, 1.0, 0.0, None) == (4, 4)


def test_budget_cut_tuning_run_ends_its_schedule_where_it_stops(
    scifact_slice, tiny_models, tmp_path, monkeypatch
):
    """Prevents a budget-cut tuning run that keeps the full-length learning-rate schedule (the
    clock then stops it high up the schedule, as on a loaded machine): with a probe of 1 s a
    step, a 0.2-minute budget plans fewer steps than 10 epochs hold, and the run trains exactly
    those, validated at its last step, instead of all of them."""
    from sentence_transformers import SentenceTransformer

    from teachers import bi_member
    from teachers.teach_config import TeachConfig
    from teachers.teach_data import prepare

    config = TeachConfig(
        data=str(scifact_slice), negatives_from="bm25", val_fraction=0.25, bi_epochs=10
    )
    d = prepare(config, echo=lambda *a, **k: None)
    rows = len(bi_member.training_rows(d, config))
    full = -(-rows // config.batch_size) * 10
    monkeypatch.setattr(bi_member, "_probe_step_seconds", lambda *a: 1.0, raising=False)
    figures = bi_member.tune_bi_encoder(
        tiny_models["bert-bi"], d, config, tmp_path / "m", 0.2, lambda *a, **k: None
    )
    assert 1 <= figures["steps"] < full
    assert figures["steps"] == figures["planned_steps"] and figures["full_steps"] == full
    assert "ndcg@10" in figures["tuned"]
    SentenceTransformer(str(tmp_path / "m"))


def test_bi_encoder_member_without_training_rows_stays_its_start(tmp_path):
    """Prevents a crash (an empty training set for the Trainer) when no training query has both
    a positive and a negative: the member stays the untuned start, and nothing is written."""
    from teachers.bi_member import tune_bi_encoder
    from teachers.teach_config import TeachConfig
    from teachers.teach_data import TeachData

    d = TeachData(
        queries={"q1": "vitamin d"},
        documents={"d1": "Vitamin D and bones."},
        qrels={"q1": {"d1": 1}},
        train_rows=[("q1", "d1", 1.0)],  # a positive, and no pool to draw a negative from
        val_candidates={},
        negative_pools={},
        graded=False,
        figures={},
        corpus_texts=["Vitamin D and bones."],
    )
    lines = []
    figures = tune_bi_encoder(
        "some-start",
        d,
        TeachConfig(data="x"),
        tmp_path / "m",
        None,
        lambda *a, **k: lines.append(a[0]),
    )
    assert figures["model"] == "some-start" and figures["rows"] == 0
    assert not (tmp_path / "m").exists() and "not tuned" in lines[0]
