"""How one member is trained, from the kind of model it starts from.

:func:`recipe` resolves the score head, loss, learning rate, input length, epochs and warm-up
for a start; :func:`build_mean_pool` builds the mean-pooled score head a bi-encoder start gets
(its [CLS] token and a fresh classifier were never trained).
"""

from __future__ import annotations

from dataclasses import dataclass

from teachers.teach_config import TeachConfig


@dataclass
class Recipe:
    """How a member is trained, resolved from the config and the kind of its start."""

    head: str
    loss: str
    lr: float
    max_length: int
    epochs: float
    warmup: bool


def recipe(
    config: TeachConfig, start_kind: str, graded: bool, *, lr=None, max_length=None, epochs=None
) -> Recipe:
    """The guide's recipe for a trained cross-encoder; for a bi-encoder start (no trained
    classification head) a mean-pooled score head, a listwise loss, a higher learning rate and
    shorter inputs: the combination that learns (see the README's teacher section)."""
    from_bi = start_kind != "cross"
    head = config.head if config.head != "auto" else ("mean-pool" if from_bi else "classifier")
    loss = (
        config.loss
        if config.loss != "auto"
        else ("listnet" if from_bi else ("graded-bce" if graded else "bce"))
    )
    lr = (
        lr
        if lr is not None
        else config.lr
        if config.lr is not None
        else (2e-4 if from_bi else 3e-5)
    )
    max_length = max_length or config.max_length or (128 if from_bi else 256)
    epochs = epochs or config.epochs or (2.0 if from_bi else 1.0)
    warmup = (
        config.warmup_pairs > 0 if config.warmup_pairs is not None else from_bi
    ) and loss == "listnet"
    return Recipe(head, loss, lr, max_length, epochs, warmup)


def build_mean_pool(start: str, max_length: int, seed: int, config_kwargs: dict | None = None):
    """A CrossEncoder scoring the mean of the start's token embeddings with a linear head.

    The bi-encoder's own training shaped its mean-pooled embeddings; its [CLS] token and the
    classifier a plain ``CrossEncoder(start)`` adds were never trained.
    """
    import torch
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from distill.models import resolve_model

    torch.manual_seed(seed)
    transformer = Transformer(
        resolve_model(start),
        transformer_task="feature-extraction",
        max_seq_length=max_length,
        config_kwargs=config_kwargs,
    )
    dim = transformer.get_embedding_dimension()
    head = Dense(
        dim,
        1,
        activation_function=torch.nn.Identity(),
        module_input_name="sentence_embedding",
        module_output_name="scores",
    )
    return CrossEncoder(modules=[transformer, Pooling(dim, pooling_mode="mean"), head])
