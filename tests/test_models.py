"""Model resolution and the tiny fixture models every later test builds on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distill import models
from distill.errors import InputError


def test_bundled_alias_resolves_to_local_weights():
    """Prevents the default model being fetched from a hub (fails offline)."""
    for alias in ("bundled", "sentence-transformers/all-MiniLM-L6-v2"):
        path = Path(models.resolve_model(alias))
        assert (path / "model.safetensors").is_file()
        assert (path / "modules.json").is_file()


def test_missing_local_model_is_input_error(tmp_path):
    """Prevents a typo in a model path turning into a hub lookup and a traceback."""
    with pytest.raises(InputError, match="no such model folder"):
        models.resolve_model(str(tmp_path / "nope"))


@pytest.mark.parametrize("kind", ["bert-cross", "deberta-cross"])
def test_tiny_cross_encoders_score_pairs(tiny_models, kind):
    """Prevents broken fixtures: each tiny cross-encoder loads through CrossEncoder and
    gives one finite score per pair, different for different pairs."""
    model = models.load_cross_encoder(tiny_models[kind])
    scores = model.predict([("a query", "a document"), ("other", "entirely different text here")])
    assert scores.shape == (2,)
    assert np.isfinite(scores).all()
    assert scores[0] != scores[1]
    assert (Path(tiny_models[kind]) / "model.safetensors").is_file()


@pytest.mark.parametrize("kind", ["bert-bi", "deberta-bi"])
def test_tiny_bi_encoders_embed(tiny_models, kind):
    """Prevents broken fixtures: each tiny bi-encoder loads through SentenceTransformer."""
    model = models.load_bi_encoder(tiny_models[kind])
    emb = model.encode(["one", "two words"])
    assert emb.shape == (2, 32)
    assert not np.allclose(emb[0], emb[1])


@pytest.mark.parametrize(
    "kind, load",
    [
        ("bert-bi", models.load_bi_encoder),
        ("deberta-bi", models.load_bi_encoder),
        ("bert-cross", models.load_cross_encoder),
        ("deberta-cross", models.load_cross_encoder),
    ],
)
def test_attention_dropout_setting_reaches_the_trained_model(tiny_models, kind, load):
    """Prevents an attention_dropout setting that never reaches the model (a training step
    that still pays for attention dropout, or one that silently trains without it): with
    hidden dropout off, two forward passes in training mode differ only through attention
    dropout, so they must agree at 0 and differ at the model's own 0.1 (``None``)."""
    import torch

    def two_passes(rate):
        kwargs = models.attention_dropout_kwargs(rate)
        kwargs.setdefault("config_kwargs", {})["hidden_dropout_prob"] = 0.0
        model = load(tiny_models[kind], **kwargs)
        module = model if kind.endswith("bi") else model.model
        module.train()
        torch.manual_seed(0)
        batch = model.tokenize(["a query about vitamin d and bone density"] * 2)
        if kind.endswith("bi"):
            out = [module(dict(batch))["sentence_embedding"] for _ in range(2)]
        else:
            out = [module(**batch).logits for _ in range(2)]
        return out, model

    (a, b), off = two_passes(0.0)
    assert torch.equal(a, b)
    assert models.attention_dropout(off) == 0.0 and models.step_passes(off) == 3
    (a, b), own = two_passes(None)
    assert not torch.allclose(a, b)
    assert models.attention_dropout(own) == pytest.approx(0.1) and models.step_passes(own) == 6
