"""Strict loading of frozen dataclass configs from YAML files and dotted `key=value` overrides.

The flow is `load_yaml` (data + line numbers) -> `merge` with `parse_overrides(argv)` -> `build(Spec, data)`.
`build` works for any frozen dataclass tree made of the supported field types (see `build`), rejects unknown
keys and wrong types, and reports every problem at once with `file:line` where known. `to_dict` / `dump_yaml`
go the other way, so that a resolved config can be saved next to what it produced and loaded again.
"""
from __future__ import annotations

import dataclasses
import re
import types
from enum import Enum
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, Mapping, Sequence, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from stepstone.errors import ConfigError, choices, did_you_mean
from stepstone.registry import Registry

T = TypeVar("T")
LineMap = dict[tuple[str, ...], int]  # key path -> 1-based line of that key in the YAML file

# YAML 1.1 (PyYAML) reads `3e-4` and `1e5` as strings: its float pattern wants a dot and a signed exponent.
# Learning rates are written exactly that way, so both loader and dumper also resolve exponent-only floats;
# the dumper needs it too, so that the *string* "1e5" is quoted on the way out and survives a round trip.
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """SafeLoader (no python tags) that also reads `3e-4` as a float."""


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes strings `_Loader` would read as floats."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789."))


def load_yaml(path: str | Path) -> tuple[dict, LineMap]:
    """Read a YAML file whose top level is a mapping; return the data and the line of every mapping key.

    Duplicate keys, syntax errors and a non-mapping top level raise `ConfigError` naming `PATH:LINE`.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError([f"config file not found: {path}"])
    if path.is_dir():
        raise ConfigError([f"{path}: is a directory, expected a YAML file"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}: cannot read: {err}"]) from None
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([f"{path}: expected a mapping of keys at the top level, the file is empty"])
        if not isinstance(node, yaml.MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else f"the value {node.value!r}"
            raise ConfigError([f"{path}:{node.start_mark.line + 1}: expected a mapping of keys at the top "
                               f"level, got {kind}"])
        lines: LineMap = {}
        problems: list[str] = []
        _walk(node, (), lines, problems, str(path), set())
        if problems:
            raise ConfigError(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        if err.context_mark is not None and mark.index >= len(text.rstrip()):
            # found at the end of the file (an unclosed bracket or quote): the line that opened it
            mark = err.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        what = "; ".join(p for p in (err.context, err.problem) if p)
        raise ConfigError([f"{where}: invalid YAML: {what}"]) from None
    except yaml.reader.ReaderError as err:  # a control character; it has a text offset, not a mark
        line = text.count("\n", 0, err.position) + 1
        what = f"{err.reason} (character {err.character:#x})"
        raise ConfigError([f"{path}:{line}: invalid YAML: {what}"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines


def _walk(node: yaml.Node, path: tuple[str, ...], lines: LineMap, problems: list[str], src: str,
          active: set[int]) -> None:
    """Record key lines below `node` and report duplicate keys (PyYAML silently keeps the last one)."""
    if id(node) in active:  # an alias pointing at its own ancestor; nothing in a config needs that
        problems.append(f"{src}:{node.start_mark.line + 1}: recursive alias is not supported")
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[tuple[str, str]] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            if (key.tag, key.value) in seen:
                problems.append(f"{src}:{key.start_mark.line + 1}: duplicate key '{key.value}'")
            seen.add((key.tag, key.value))
            lines.setdefault(path + (key.value,), key.start_mark.line + 1)
            _walk(value, path + (key.value,), lines, problems, src, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault(path + (f"[{i}]",), item.start_mark.line + 1)
            _walk(item, path + (f"[{i}]",), lines, problems, src, active)
    active.discard(id(node))


def parse_overrides(items: Sequence[str]) -> dict:
    """Turn `["train.lr=3e-4", "langs=[en, de]"]` into `{"train": {"lr": 0.0003}, "langs": ["en", "de"]}`.

    Values are YAML (numbers, true/false, null, flow lists); a later item for the same key wins.
    """
    out: dict = {}
    problems = []
    for item in items:
        key, eq, text = item.partition("=")
        parts = tuple(p.strip() for p in key.split("."))
        if not eq or not all(parts):
            problems.append(f"bad override '{item}': expected KEY=VALUE, e.g. train.lr=3e-4")
            continue
        try:
            value = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as err:
            reason = getattr(err, "problem", None) or err
            problems.append(f"bad override '{item}': invalid value: {reason}")
            continue
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):  # `a=1` then `a.b=2`: the later, deeper one wins
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    if problems:
        raise ConfigError(problems)
    return out


def merge(base: Mapping, overrides: Mapping) -> dict:
    """Deep-merge `overrides` into `base`: overrides win, mappings merge key by key; inputs stay untouched."""
    out = {k: (merge(v, {}) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            value = merge(out[key] if isinstance(out.get(key), Mapping) else {}, value)
        elif isinstance(value, list):
            value = list(value)
        out[key] = value
    return out


_BAD = object()  # conversion failed; the problem is already recorded
_NAMES = {int: "an integer", float: "a float", str: "a string", bool: "a boolean (true/false)",
          Path: "a path (string)"}


def dotted_path(path: tuple[str, ...]) -> str:
    return "".join(p if p.startswith("[") or i == 0 else "." + p for i, p in enumerate(path))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Builder:
    """Converts nested data to dataclasses, collecting problems instead of stopping at the first."""

    def __init__(self, source: str, lines: LineMap | None):
        self.source, self.lines, self.problems = source, lines or {}, []

    def where(self, path: tuple[str, ...]) -> str:
        line = self.lines.get(path)
        return f"{self.source}:{line}: " if line else f"{self.source}: "

    def bad(self, path: tuple[str, ...], expected: str, value: Any, hint: str = "") -> object:
        name = f"'{dotted_path(path)}'" if path else "the config"
        self.problems.append(f"{self.where(path)}{name} must be {expected}, got {_show(value)}{hint}")
        return _BAD

    def dataclass(self, cls: type, data: Any, path: tuple[str, ...]) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            return self.bad(path, "a mapping of keys", data)
        hints = get_type_hints(cls, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        before = len(self.problems)
        for key in data:
            if key not in fields:
                msg = f"unknown key '{dotted_path(path + (str(key),))}' (valid: {choices(fields)})"
                msg += did_you_mean(str(key), fields)
                self.problems.append(self.where(path + (str(key),)) + msg)
        kwargs = {}
        for name, field in fields.items():
            if name in data:
                kwargs[name] = self.convert(hints[name], data[name], path + (name,))
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                self.problems.append(f"{self.where(path)}missing key '{dotted_path(path + (name,))}'")
        if len(self.problems) > before:  # __post_init__ on half-converted data would only add noise
            return _BAD
        try:
            return cls(**kwargs)
        except ValueError as err:
            self.problems.append(self.where(path) + (f"'{dotted_path(path)}': {err}" if path else str(err)))
            return _BAD

    def convert(self, tp: Any, value: Any, path: tuple[str, ...]) -> Any:  # noqa: C901 - one branch per type
        origin, args = get_origin(tp), get_args(tp)
        if tp is Any:
            return value
        if origin is Annotated:  # Annotated[str, REGISTRY]: a registered name
            registries = [a for a in args[1:] if isinstance(a, Registry)]
            out = self.convert(args[0], value, path)
            if out is _BAD or not registries:
                return out
            names = {name.lower(): name for name in registries[0]}
            if isinstance(out, str) and out.lower() in names:
                return names[out.lower()]
            return self._one_of(path, list(registries[0]), value)
        if origin in (Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            if value is None and len(options) < len(args):
                return None
            if len(options) == 1:
                return self.convert(options[0], value, path)
            for option in options:  # first option that converts silently wins
                trial = _Builder(self.source, self.lines)
                out = trial.convert(option, value, path)
                if out is not _BAD:
                    return out
            names = " or ".join(_NAMES.get(o, getattr(o, "__name__", str(o))) for o in options)
            return self.bad(path, names, value)
        if origin is Literal:
            for allowed in args:
                if value == allowed and type(value) is type(allowed):
                    return allowed
            return self._one_of(path, [str(a) for a in args], value)
        if origin is tuple or tp is tuple:
            args = args or (Any, ...)
            variadic = len(args) == 2 and args[1] is Ellipsis
            if variadic and value is not None and not isinstance(value, (list, tuple, Mapping)) \
                    and not dataclasses.is_dataclass(args[0]):
                value = [value]  # `langs: en` means the one-item list
            if not isinstance(value, (list, tuple)):
                return self.bad(path, "a list", value)
            if not variadic and len(value) != len(args):
                return self.bad(path, f"a list of {len(args)} items", value)
            kinds = [args[0]] * len(value) if variadic else list(args)
            items = [self.convert(k, v, path + (f"[{i}]",)) for i, (k, v) in enumerate(zip(kinds, value))]
            return _BAD if _BAD in items else tuple(items)
        if origin is dict or tp is dict:
            key_type, value_type = args or (str, Any)
            if not isinstance(value, Mapping):
                return self.bad(path, "a mapping", value)
            out = {self.convert(key_type, k, path + (str(k),)): self.convert(value_type, v, path + (str(k),))
                   for k, v in value.items()}
            return _BAD if _BAD in out or _BAD in out.values() else out
        if not isinstance(tp, type):
            raise TypeError(f"unsupported config field type {tp!r} at '{dotted_path(path)}'")
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp, value, path)
        if issubclass(tp, Enum):
            if isinstance(value, tp):
                return value
            for member in tp:
                if isinstance(value, str) and isinstance(member.value, str):
                    if value.lower() == member.value.lower():
                        return member
                elif value == member.value and type(value) is not bool:
                    return member
            return self._one_of(path, [str(m.value) for m in tp], value)
        if tp is bool:
            return value if isinstance(value, bool) else self.bad(path, _NAMES[bool], value)
        if tp is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            return value if ok else self.bad(path, _NAMES[int], value)
        if tp is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return float(value) if ok else self.bad(path, _NAMES[float], value)
        if tp is str:
            if isinstance(value, str):
                return value
            # YAML 1.1 turns `no`, `on`, `1.0` into bool/float; the fix is quoting
            hint = " (quote it to keep it as text)" if value is not None else ""
            return self.bad(path, _NAMES[str], value, hint)
        if issubclass(tp, PurePath):
            return tp(value) if isinstance(value, (str, PurePath)) else self.bad(path, _NAMES[Path], value)
        raise TypeError(f"unsupported config field type {tp!r} at '{dotted_path(path)}'")

    def _one_of(self, path: tuple[str, ...], allowed: list[str], value: Any) -> object:
        self.problems.append(f"{self.where(path)}'{dotted_path(path)}' must be one of: {choices(allowed)} "
                             f"(got {_show(value)})")
        return _BAD


def build(cls: type[T], data: Mapping, *, source: str = "<config>", lines: LineMap | None = None,
          prefix: tuple[str, ...] = ()) -> T:
    """Make a `cls` (frozen dataclass) from nested plain data, strictly; raise one `ConfigError` listing all
    problems (unknown/missing keys, wrong types, `__post_init__` ValueErrors), each prefixed `source:line:`.

    Field types: int, float (ints accepted), str, bool, Path, Enum (by value, case-insensitive), Literal,
    `X | None`, `tuple[X, ...]` (from a list; a lone scalar is a 1-tuple), `dict[K, V]`, nested dataclasses,
    Any, `Annotated[str, registry]` (a name registered in that `Registry`, case-insensitive; a miss lists
    the registered names).
    `prefix` is the key path of `data` inside the file, for building one section of a larger config.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"build() needs a dataclass type, got {cls!r}")
    builder = _Builder(source, lines)
    out = builder.dataclass(cls, data, tuple(prefix))
    if builder.problems:
        raise ConfigError(builder.problems)
    return out


def to_dict(obj: Any) -> dict:
    """A dataclass instance as plain YAML/JSON data (enum values, lists, str paths); `build` inverts it."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_dict() needs a dataclass instance, got {obj!r}")
    return _plain(obj)


def _plain(value: Any) -> Any:
    if hasattr(value, "to_config") and not isinstance(value, type):  # a spec that writes only what it uses
        return _plain(value.to_config())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # init=False fields are derived; `build` would reject them as unknown keys
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, Enum):  # before str/int: `class Kind(str, Enum)` members are strs too
        return _plain(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def dump_yaml(obj: Any) -> str:
    """A dataclass instance as YAML with sorted keys, readable back by `load_yaml` + `build`."""
    return yaml.dump(to_dict(obj), Dumper=_Dumper, sort_keys=True, allow_unicode=True,
                     default_flow_style=False)
