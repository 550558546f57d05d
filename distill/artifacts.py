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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from distill.errors import InputError

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


STAGE_MARK = ".distill-stage"
MIN_FREE_BYTES = 64 << 20  # refuse to start a stage on a disk with less than this free


def _read_mark(folder: Path) -> dict[str, Any]:
    """The stage mark of ``folder``: ``{"stage": ..., "files": [...]}`` (files: what the stage
    wrote there, when it wrote the folder whole), or {}."""
    try:
        mark = json.loads((folder / STAGE_MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return mark if isinstance(mark, dict) else {}


def output_owner(path: str | os.PathLike[str]) -> str | None:
    """The stage that wrote folder ``path``: its manifest's stage, else the mark a stage
    leaves when it starts writing in place (a killed run's partial output), else None."""
    folder = Path(path)
    manifest = read_manifest(folder)
    if manifest is not None and isinstance(manifest.get("stage"), str):
        return manifest["stage"]
    stage = _read_mark(folder).get("stage")
    return stage if isinstance(stage, str) else None


def _user_entries(folder: Path) -> list[str]:
    """Names in ``folder`` other than distill's own marks and write probes, sorted."""
    return sorted(p.name for p in folder.iterdir() if "distill-" not in p.name[:10])


def _nests(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def claim_output(
    path: str | os.PathLike[str],
    *,
    stage: str,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    overwrite: bool = False,
    field: str = "output",
) -> Path:
    """Check, before any work, that ``stage`` may write its output folder ``path``.

    Refused (an :class:`InputError`, one line): a path that is a file; a path that is,
    contains or lies inside one of ``inputs`` (always, even with ``overwrite``); a non-empty
    folder that no run of ``stage`` made, unless ``overwrite`` (then the stage's files are
    written into it and every other file is kept); a place that cannot be written or whose
    disk is nearly full. Returns the path.
    """
    out = Path(path)
    where = out.resolve()
    if out.exists() and not out.is_dir():
        raise InputError("is a file; give a folder to write into", path=out, field=field)
    for item in inputs:
        if item is None or str(item) == "" or not Path(item).exists():
            continue
        if _nests(where, Path(item).resolve()):
            raise InputError(
                f"is, contains or lies inside the input {str(item)!r}; choose another --{field}",
                path=out,
                field=field,
            )
    if out.is_dir() and _user_entries(out):
        owner = output_owner(out)
        if owner != stage and not overwrite:
            what = (
                f"holds a distill {owner} output"
                if owner
                else f"holds files distill did not write (e.g. {_user_entries(out)[0]!r})"
            )
            raise InputError(
                f"{what}; choose another --{field}, or pass --overwrite to write the {stage} "
                "files into it (nothing else there is deleted)",
                path=out,
                field=field,
            )
    _probe_writable(out, field)
    return out


def claim_file(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    field: str = "output",
) -> Path:
    """Check, before any work, that an output *file* may be written at ``path``: not a folder,
    not one of ``inputs`` nor inside an input folder, and writable."""
    out = Path(path)
    if out.is_dir():
        raise InputError("is a folder; give a file path", path=out, field=field)
    where = out.resolve()
    for item in inputs:
        if item is None or str(item) == "" or not Path(item).exists():
            continue
        source = Path(item).resolve()
        if where == source or source in where.parents:
            raise InputError(
                f"is, or lies inside, the input {str(item)!r}; choose another --{field}",
                path=out,
                field=field,
            )
    _probe_writable(out, field)
    return out


def _probe_writable(out: Path, field: str) -> None:
    """Fail now, not after hours of work, when ``out`` cannot be written or the disk is full."""
    parent = out if out.is_dir() else out.parent
    while not parent.exists():
        parent = parent.parent
    try:
        fd, name = tempfile.mkstemp(prefix=".distill-probe-", dir=parent)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        raise InputError(f"cannot write here: {exc.strerror}", path=parent, field=field) from None
    free = shutil.disk_usage(parent).free
    if free < MIN_FREE_BYTES:
        raise InputError(
            f"only {free >> 20} MiB free on this disk; free some space first",
            path=parent,
            field=field,
        )


def mark_output(path: str | os.PathLike[str], stage: str) -> Path:
    """Create folder ``path`` for a stage that writes in place (resumable work) and mark it
    as that stage's, so a restarted run knows its own partial output."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / STAGE_MARK).is_file():
        write_json(out / STAGE_MARK, {"stage": stage})
    return out


def _files(folder: Path) -> list[str]:
    return sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file())


def _merge_into(src: Path, dest: Path, stale: Iterable[str] = ()) -> None:
    """Move every file of ``src`` into ``dest`` at the same relative path, after removing the
    ``stale`` files (an earlier run's, by its mark); every other file of ``dest`` is kept."""
    for name in stale:
        (dest / name).unlink(missing_ok=True)
    for name in _files(src):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src / name, target)


def _replace_dir(tmp: Path, final: Path, stage: str | None, overwrite: bool) -> None:
    """Put the finished folder ``tmp`` at ``final`` without deleting anything distill did
    not write there."""
    if stage is not None:
        write_json(tmp / STAGE_MARK, {"stage": stage, "files": _files(tmp)})
    if not final.is_dir() or not any(final.iterdir()):
        if final.is_dir():
            final.rmdir()
        os.replace(tmp, final)
        return
    if stage is None or (output_owner(final) != stage and not overwrite):
        raise InputError(
            "is a non-empty folder distill did not write; not replacing it", path=final
        )
    ours = _read_mark(final).get("files") if output_owner(final) == stage else []
    if ours is None or set(_files(final)) <= {*ours, STAGE_MARK, MANIFEST, RESOLVED_CONFIG}:
        # the whole folder is the earlier run's artifact: swap it in one rename
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / final.name)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        _merge_into(tmp, final, stale=[f for f in ours if f != STAGE_MARK])


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, stage: str | None = None, overwrite: bool = False
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success.

    Works for files and directories. On any exception the temporary is removed and ``path``
    is left as it was. An existing non-empty folder is replaced only when it is an output of
    ``stage`` (see :func:`output_owner`); with ``overwrite`` the new files are written into
    it and its other files are kept; anything else is refused, so no user folder is deleted.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if tmp.is_dir():
            _replace_dir(tmp, final, stage, overwrite)
        elif final.is_dir():
            raise InputError("is a folder; not replacing it with a file", path=final)
        else:
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
