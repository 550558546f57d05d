"""Typed stage configs: loaded from YAML, overridden on the command line, checked strictly.

Every stage has one small dataclass config. :func:`load` builds it from a YAML file (the
stage's section, or the whole file), then applies command-line overrides; an unknown key or a
value of the wrong type is an :class:`~distill.errors.InputError` that names the file, the
line and the key. A number outside its field's range (``metadata={"range": "(0, inf)"}``)
and a float that is NaN or infinite are errors of the same kind. :func:`options` turns a dataclass into click options (``--val-fraction``
for ``val_fraction``), so every field is overridable without writing each option by hand.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import click
import yaml

from distill.errors import InputError

T = TypeVar("T")


def _line_map(node: yaml.Node, prefix: str = "", out: dict[str, int] | None = None) -> dict:
    """Map key paths of a YAML document (``teach.lr``, ``members[0].lr``) to 1-based lines."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            out[key] = key_node.start_mark.line + 1
            _line_map(value_node, key + ".", out)
    elif isinstance(node, yaml.SequenceNode) and prefix:
        for index, item in enumerate(node.value):
            key = f"{prefix[:-1]}[{index}]"
            out[key] = item.start_mark.line + 1
            _line_map(item, key + ".", out)
    return out


def read_yaml(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """A YAML mapping and the line of each key; bad files are one-line InputErrors."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such config file", path=p)
    try:
        text = p.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=p) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        raise InputError(
            f"invalid YAML: {getattr(exc, 'problem', exc)}", path=p, line=line
        ) from None
    if data is None:
        raise InputError("config file is empty", path=p)
    if not isinstance(data, dict):
        raise InputError("a config must be a mapping of keys to values", path=p, line=1)
    return data, _line_map(node) if node is not None else {}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _type_name(tp: Any) -> str:
    tp, optional = _unwrap_optional(tp)
    if get_origin(tp) is Literal:
        name = "one of " + ", ".join(repr(a) for a in get_args(tp))
    elif get_origin(tp) is list:
        name = f"a list of {_type_name(get_args(tp)[0])}"
    else:
        name = getattr(tp, "__name__", str(tp))
    return f"{name} or null" if optional else name


# A field's allowed numbers, in its metadata: ``"range": "[1, inf)"`` (at least 1),
# ``"(0, inf)"`` (positive), ``"[0, 1)"``, ``"(-inf, inf)"`` (any). Square brackets include the
# bound, parentheses exclude it. null stays legal in an Optional field (it means "auto").
# Floats must be finite unless the metadata says ``"finite": False``.
_RANGE = re.compile(r"([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])")


@functools.cache
def _interval(spec: str) -> tuple[float, bool, float, bool]:
    """(low, low included, high, high included) of a range spec such as ``"[0, 1)"``."""
    match = _RANGE.fullmatch(spec.strip())
    if match is None:
        raise ValueError(f"bad range {spec!r}; write it like '[1, inf)' or '(0, 1)'")
    return float(match[2]), match[1] == "[", float(match[3]), match[4] == "]"


def describe_range(spec: str, name: str = "x") -> str:
    """The range ``spec`` in words: 'at least 1', 'between 0 and 1 (0 < x < 1)'."""
    low, low_in, high, high_in = _interval(spec)
    if math.isinf(low) and math.isinf(high):
        return "any number"
    if math.isinf(high):
        return f"at least {low:g}" if low_in else f"greater than {low:g}"
    if math.isinf(low):
        return f"at most {high:g}" if high_in else f"less than {high:g}"
    ops = ("<=" if low_in else "<", "<=" if high_in else "<")
    return f"between {low:g} and {high:g} ({low:g} {ops[0]} {name} {ops[1]} {high:g})"


def _check_number(value: Any, meta: Mapping[str, Any], key: str, at: dict[str, Any]) -> Any:
    """``value`` if it is finite (floats) and inside the field's ``range``; else InputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, float) and not math.isfinite(value) and meta.get("finite", True):
        raise InputError(f"must be a finite number, got {value}", field=key, **at)
    spec = meta.get("range")
    if spec is not None:
        low, low_in, high, high_in = _interval(spec)
        above = value >= low if low_in else value > low
        below = value <= high if high_in else value < high
        if not (above and below):
            name = key.rsplit(".", 1)[-1]
            raise InputError(
                f"must be {describe_range(spec, name)}, got {value!r}", field=key, **at
            )
    return value


def _coerce(
    value: Any, tp: Any, key: str, where: dict[str, Any], meta: Mapping[str, Any] | None = None
) -> Any:
    """Check ``value`` against the annotation ``tp`` and the field metadata ``meta`` (its
    ``range``; floats finite); ints widen to floats, nothing else."""
    meta = meta or {}
    tp, optional = _unwrap_optional(tp)
    at = {"path": where.get("path"), "line": where.get("line")}
    if value is None:
        if optional:
            return None
        raise InputError(f"must be {_type_name(tp)}, got null", field=key, **at)
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise InputError(f"must be a mapping, got {value!r}", field=key, **at)
        return _build(tp, value, prefix=key + ".", where=where)
    if origin is Literal:
        if value not in get_args(tp):
            raise InputError(f"must be {_type_name(tp)}, got {value!r}", field=key, **at)
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise InputError(f"must be {_type_name(tp)}, got {value!r}", field=key, **at)
        lines = where.get("lines", {})
        return [
            _coerce(
                v,
                get_args(tp)[0],
                f"{key}[{i}]",
                {**where, "line": lines.get(f"{key}[{i}]", where.get("line"))},
                meta,
            )
            for i, v in enumerate(value)
        ]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise InputError(f"must be a mapping, got {value!r}", field=key, **at)
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return _check_number(float(value), meta, key, at)
    if tp is float and isinstance(value, str):
        # PyYAML reads 1e-3 (no dot) as text; a float field takes any text that is a number.
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            return _check_number(number, meta, key, at)
    if tp in (int, float, str, bool) and (
        not isinstance(value, tp) or (tp is int and isinstance(value, bool))
    ):
        raise InputError(
            f"must be {_type_name(tp)}, got {type(value).__name__} {value!r}", field=key, **at
        )
    return _check_number(value, meta, key, at)


def _build(cls: type[T], data: Mapping[str, Any], *, prefix: str, where: dict[str, Any]) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    lines: dict[str, int] = where.get("lines", {})
    path = where.get("path")
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        loc = {"path": path, "line": lines.get(full)}
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise InputError(f"unknown key (known keys: {known})", field=full, **loc)
        kwargs[key] = _coerce(value, hints[key], full, {**where, **loc}, fields[key].metadata)
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise InputError(
            "is required (set it in the config or on the command line)",
            field=prefix + missing[0],
            path=path,
        )
    instance = cls(**kwargs)
    check = getattr(instance, "validate", None)
    if check is not None:
        try:
            check()
        except InputError as err:
            if err.path is None:  # a check across fields: locate it in the config file
                err.field = None if err.field is None else prefix + err.field
                err.path = None if path is None else str(path)
                err.line = lines.get(err.field) if err.field else where.get("line")
            raise
    return instance


def from_mapping(
    cls: type[T],
    data: Mapping[str, Any],
    *,
    path: str | os.PathLike[str] | None = None,
    lines: Mapping[str, int] | None = None,
) -> T:
    """Build and check a config dataclass from a plain mapping."""
    return _build(cls, data, prefix="", where={"path": path, "lines": dict(lines or {})})


def load(
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    *,
    section: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Defaults, then the YAML file (its ``section`` when given), then ``overrides``.

    Overrides whose value is None are ignored (an option the user did not pass).
    """
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        data, lines = read_yaml(path)
        if section is not None and section in data:
            part = data[section]
            if not isinstance(part, dict):
                raise InputError(
                    "must be a mapping", path=path, line=lines.get(section), field=section
                )
            lines = {
                k[len(section) + 1 :]: v for k, v in lines.items() if k.startswith(section + ".")
            }
            data = dict(part)
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged = {**data, **cli}
    # An override's errors point at the command line, not at the file.
    for key in cli:
        for known in [k for k in lines if k == key or k.startswith((key + ".", key + "["))]:
            del lines[known]
    return from_mapping(cls, merged, path=path, lines=lines)


def _click_type(tp: Any) -> tuple[Any, bool]:
    tp, _ = _unwrap_optional(tp)
    if get_origin(tp) is Literal:
        return click.Choice([str(a) for a in get_args(tp)]), False
    if tp is bool:
        return None, True
    if tp in (int, float):
        return tp, False
    return str, False


def options(cls: type, *, arguments: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Click decorator: ``--config FILE`` plus one option per field of the dataclass ``cls``.

    Fields named in ``arguments`` become optional positional arguments instead. Every
    generated option defaults to None, so :func:`load` can tell "not given" from a value.
    """
    hints = typing.get_type_hints(cls)

    def decorate(func: Callable) -> Callable:
        for f in reversed(dataclasses.fields(cls)):
            kind, is_flag = _click_type(hints[f.name])
            help_text = f.metadata.get("help", "")
            if f.default is not dataclasses.MISSING and f.default is not None:
                help_text += f" [default: {f.default}]"
            if f.name in arguments or not f.metadata.get("cli", True):
                continue
            flag = "--" + f.name.replace("_", "-")
            if is_flag:
                decl = f"{flag}/--no-{f.name.replace('_', '-')}"
                func = click.option(decl, f.name, default=None, help=help_text.strip())(func)
            else:
                func = click.option(flag, f.name, type=kind, default=None, help=help_text.strip())(
                    func
                )
        for name in reversed(arguments):
            func = click.argument(name, required=False)(func)
        return click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="YAML config; command-line options override it.",
        )(func)

    return decorate
