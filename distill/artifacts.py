"""Artifacts: atomic writes, fingerprints and the ``manifest.json`` every stage ends with.

A killed run must never leave a half file that looks whole, so every file is written to a
temporary name in the same directory and renamed into place (``os.replace`` is atomic on one
file system). A stage finishes by writing ``manifest.json``; a stage whose manifest matches
its inputs and config is current and can be skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

MANIFEST = "manifest.json"
RESOLVED_CONFIG = "config.yaml"
TRACKED_LIBRARIES = (
    "distill",
    "torch",
    "transformers",
    "sentence-transformers",
    "accelerate",
    "faiss-cpu",
    "faiss-gpu-cu12",
    "bm25s",
    "pytrec-eval-terrier",
    "pyarrow",
)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Works for files and directories. On any exception the temporary is removed and ``path``
    is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if final.is_dir() and tmp.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_text(path, json.dumps(_plain(data), indent=2, sort_keys=True) + "\n")


def fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, or of a directory's relative paths and file contents.

    Hidden files (temporaries, ``.git``) and manifests are left out, so writing a manifest
    into a directory does not change the directory's fingerprint.
    """
    p = Path(path)
    digest = hashlib.sha256()
    if p.is_file():
        files = [p]
    else:
        files = sorted(
            f
            for f in p.rglob("*")
            if f.is_file()
            and f.name != MANIFEST
            and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
    for f in files:
        if f is not p:
            digest.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries whose behaviour shapes an artifact."""
    versions = {}
    for name in TRACKED_LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _plain(obj: Any) -> Any:
    """Dataclasses, paths and tuples as JSON/YAML-friendly builtins."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return _plain(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_manifest(
    outdir: str | os.PathLike[str],
    *,
    stage: str,
    config: Any,
    inputs: Mapping[str, str | os.PathLike[str]],
    figures: Mapping[str, Any] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Finish a stage: write the resolved config and ``manifest.json`` into ``outdir``.

    ``inputs`` maps a role ("dataset", "teacher", ...) to a path, which is fingerprinted.
    """
    out = Path(outdir)
    now = time.time()
    resolved = _plain(config)
    write_text(out / RESOLVED_CONFIG, yaml.safe_dump(resolved, sort_keys=False))
    manifest = {
        "stage": stage,
        "config": resolved,
        "inputs": {
            role: {"path": str(p), "sha256": fingerprint(p)} for role, p in sorted(inputs.items())
        },
        "versions": library_versions(),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "timings": {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
            "seconds": None if started is None else round(now - started, 3),
        },
        "figures": _plain(dict(figures or {})),
    }
    write_json(out / MANIFEST, manifest)
    return manifest


def read_manifest(outdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest in ``outdir``, or None when the stage never finished there."""
    path = Path(outdir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def is_current(outdir: str | os.PathLike[str], *, config: Any, inputs: Mapping[str, Any]) -> bool:
    """True when ``outdir`` holds a finished stage made from this config and these inputs."""
    manifest = read_manifest(outdir)
    if manifest is None or manifest.get("config") != _plain(config):
        return False
    recorded = manifest.get("inputs", {})
    if set(recorded) != set(inputs):
        return False
    return all(
        Path(p).exists() and recorded[role]["sha256"] == fingerprint(p)
        for role, p in inputs.items()
    )
