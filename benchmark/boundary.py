"""The one boundary every user-supplied file crosses: bounded reads, safe parsing, typed fields.

Presets, sweep grids, catalogue profiles, submissions, board files, result files and the metadata
of teachers, matchers and checkpoints are all read through `load_file` (or `parse_json` /
`parse_yaml` for text already in hand), which

- refuses what is not a regular file, or is larger than the kind of file can reasonably be
  (``max_bytes``), before reading it;
- refuses nesting deeper than ``max_depth`` *before* handing JSON to the parser (a pre-scan), and
  while composing YAML, so no input can exhaust the interpreter's stack;
- reads YAML without anchors and aliases (a 1.5 KB "billion laughs" document cannot expand),
  without custom tags (`yaml.SafeLoader`) and without repeated keys (YAML would keep the last);
- refuses JSON's non-standard constants (``NaN``, ``Infinity``) and, where asked, repeated keys;

and `check_fields` checks scalar fields against their declared types with pydantic in strict mode
(``"yes"`` is not a bool, ``true`` is not a seed, ``"abc"`` is not a number). Every violation is an
`InputError`: one line naming the file, the field and what to write instead.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ackd_bench.benchmark.errors import AckdBenchError

MAX_DEPTH = 32
MAX_SEED = 2**32 - 1  # every seed consumer (numpy's legacy and new generators, torch, dask) takes these
KiB, MiB = 1024, 1024 * 1024
LIMITS = {  # the largest file of each kind that is accepted, bytes
    "preset": 1 * MiB, "grid": 1 * MiB, "profile": 1 * MiB, "metadata": 1 * MiB,
    "result": 64 * MiB, "submission": 256 * MiB, "board": 16 * MiB, "manifest": 16 * MiB,
}
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


class InputError(AckdBenchError, ValueError):
    """A file a user handed in (or a state file on disk) cannot be used; the message says why and what to do."""


def read_text(path: Path | str, *, what: str, max_bytes: int | None = None) -> str:
    """The UTF-8 text of ``path``, after checking it is a regular file no larger than ``max_bytes``.

    Args:
        path: the file.
        what: what the file is ("preset", "grid", ...); names it in errors and picks the size limit.
        max_bytes: size limit; None: ``LIMITS[what]`` (8 MiB for kinds it does not list).

    Raises:
        InputError: missing, not a file, unreadable, too large or not UTF-8.
    """
    path = Path(path)
    limit = max_bytes if max_bytes is not None else LIMITS.get(what, 8 * MiB)
    try:
        if not path.exists():
            raise InputError(f"{what} file {path} does not exist; check the path")
        if not path.is_file():
            raise InputError(f"{what} file {path} is not a regular file (a folder?); give the file itself")
        size = path.stat().st_size
        if size > limit:
            raise InputError(f"{what} file {path} is {size / MiB:.1f} MiB, more than the {limit / MiB:.0f} MiB "
                             f"a {what} file may have; is it the right file?")
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read {what} file {path}: {err.strerror or err}") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{what} file {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from err


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings are skipped), without parsing it."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    bare = np.frombuffer(_STRING.sub(b'""', data), dtype=np.uint8)
    step = np.isin(bare, (ord("["), ord("{"))).astype(np.int64) - np.isin(bare, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; write a number or null")


def parse_json(text: str, *, where: str, max_depth: int = MAX_DEPTH, unique_keys: bool = False) -> Any:
    """Parse JSON text after checking its depth; ``NaN``/``Infinity`` are refused.

    Args:
        text: the JSON text.
        where: names the source in errors (a path, "the submission").
        max_depth: deepest nesting accepted.
        unique_keys: refuse an object that repeats a key (otherwise the last one wins).

    Raises:
        InputError: too deep, or not valid JSON (with line and column).
    """
    depth = json_depth(text)
    if depth > max_depth:
        raise InputError(f"{where}: nested {depth} levels deep, more than the {max_depth} accepted; "
                         f"is it the right file?")
    hook = _unique_pairs(where) if unique_keys else None
    try:
        return json.loads(text, object_pairs_hook=hook, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise InputError(f"{where}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err
    except (ValueError, RecursionError) as err:
        raise InputError(f"{where}: {err}") from err


def _unique_pairs(where: str):
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise ValueError(f"key {key!r} appears twice in one object; keep one")
            seen[key] = value
        return seen

    return pairs


class _BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (no custom tags) that refuses anchors and aliases and caps nesting."""

    max_depth = MAX_DEPTH

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.YAMLError(
                f"line {event.start_mark.line + 1}: YAML anchors and aliases (&{event.anchor} / *{event.anchor}) "
                f"are not accepted; write the value out in full")
        self._depth += 1
        if self._depth > self.max_depth:
            raise yaml.YAMLError(f"line {event.start_mark.line + 1}: nested more than {self.max_depth} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class names it
                break
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping; keep one", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, *, where: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML document without anchors, aliases or custom tags, at most ``max_depth`` deep.

    Raises:
        InputError: a refused construct or invalid YAML (first line of the parser's message).
    """
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader already refuses control characters
        loader.max_depth = max_depth
        return loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise InputError(f"{where}: not accepted as YAML: {line}{err.problem or err.context}") from err
    except yaml.YAMLError as err:
        raise InputError(f"{where}: not accepted as YAML: {' '.join(str(err).split())}") from err
    except RecursionError as err:  # the composer is capped; this guards the scanner
        raise InputError(f"{where}: nested too deeply") from err
    finally:
        if loader is not None:
            loader.dispose()


def load_file(path: Path | str, *, what: str, max_bytes: int | None = None, max_depth: int = MAX_DEPTH,
              unique_keys: bool = False) -> Any:
    """Read and parse a user file: YAML for ``.yaml``/``.yml``, JSON otherwise (see the module docstring)."""
    path = Path(path)
    text = read_text(path, what=what, max_bytes=max_bytes)
    where = f"{what} file {path}"
    if path.suffix.lower() in (".yaml", ".yml"):
        return parse_yaml(text, where=where, max_depth=max_depth)
    return parse_json(text, where=where, max_depth=max_depth, unique_keys=unique_keys)


def check_output_dir(path: Path | str, *, option: str = "--out") -> None:
    """Refuse an output folder that cannot be created or written, before any work is done.

    Nothing is created here: the nearest existing ancestor must be a writable folder, and
    ``path`` itself, if it exists, a folder.

    Raises:
        InputError: naming the option, the path and the fix.
    """
    import os

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file; give a folder path")
    ancestor = path
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise InputError(f"{option} {path}: {ancestor} is a file, so the folder cannot be created; give another path")
    if ancestor.exists() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: {ancestor} is not writable; give a path you can write to")


def expect_mapping(data: Any, where: str) -> dict[str, Any]:
    """``data`` as a dict, or an InputError saying the file holds something else."""
    if not isinstance(data, Mapping):
        kind = "nothing" if data is None else f"a {type(data).__name__}"
        raise InputError(f"{where}: expected a mapping of keys to values, found {kind}")
    return dict(data)


_SCALARS = (str, int, float, bool, type(None))


def _scalar_type(annotation: Any) -> bool:
    """Whether an annotation is a scalar or an optional scalar (the fields `check_fields` types)."""
    if annotation in _SCALARS:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return all(arg in _SCALARS for arg in typing.get_args(annotation))
    return False


def _type_name(annotation: Any) -> str:
    names = {str: "text", int: "an integer", float: "a number", bool: "true or false", type(None): "null"}
    args = typing.get_args(annotation) or (annotation,)
    return " or ".join(names.get(arg, getattr(arg, "__name__", str(arg))) for arg in args)


def check_fields(data: Mapping[str, Any], cls: type, where: str) -> None:
    """Check the scalar fields of ``data`` against the annotations of dataclass ``cls``, strictly.

    Strict means no coercion: a bool is not an integer, text is not a number or a bool; an integer
    is accepted where a number is declared. Fields of other types (nested specs, lists) are left to
    their own parsers.

    Raises:
        InputError: naming the field, the value and the type expected.
    """
    from pydantic import TypeAdapter, ValidationError

    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        annotation = hints.get(key)
        if annotation is None or not _scalar_type(annotation):
            continue
        try:
            TypeAdapter(annotation).validate_python(value, strict=True)
        except ValidationError:
            if isinstance(value, int) and not isinstance(value, bool) and float in typing.get_args(annotation) + (annotation,):
                continue
            raise InputError(f"{where}: {key} must be {_type_name(annotation)}, got {value!r}") from None
