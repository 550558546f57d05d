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
