"""One validator for every config section: a YAML/JSON mapping checked against a frozen dataclass's fields.

    settings = check_config(TrainSettings, raw, "runs/train.yaml", key="train")

walks the dataclass fields (nested dataclasses and tuples of them included) and returns an instance,
or raises ``ConfigError`` (a ``DemixError``; pass ``error=`` for a subclass such as ``RecipeError``)
with one line ``<where>: <key.path>: <value>: <what is wrong>``, e.g.
``corpus/recipes/demo.yaml: dedup.threshold: 7: expected a number in (0, 1]``.

What a field's annotation accepts (``from __future__ import annotations`` is fine):

- ``bool``: true/false only (the string ``"no"`` is refused, never truthy).
- ``int``: an integer, not a bool and not ``5.0``; with ``rules(tokens=True)`` also a token amount
  such as ``"22T"`` (``corpus.tokens.parse_tokens``).
- ``float``: an int or a float, finite; also a string in exponent form such as ``"3e-4"``, which
  PyYAML (YAML 1.1) reads as a string.
- ``str``: a non-empty string (``rules(allow_empty=True)`` allows ``""``); ``rules(pattern=...)``
  must match in full.  ``Path``: a non-empty string, returned as a ``Path``.
- ``Literal[...]``: one of the choices.  ``X | None``: null or an X.  ``Any``: anything.
- ``tuple[X, ...]`` / ``list[X]``: a list of X; a single string for ``tuple[str, ...]`` is a one-item
  list (never its characters).  ``dict[str, X]``: a mapping; integer keys (YAML reads ``1:`` as an
  int) become strings.  A nested dataclass: a mapping checked the same way.
- null for a nested dataclass, a list or a mapping means empty / all defaults.

Field metadata (build it with ``rules``): bounds ``ge``/``gt``/``le``/``lt`` for numbers,
``min_items`` for lists and mappings, ``tokens``, ``pattern`` (+ ``hint``), ``allow_empty``,
``key`` (the config key when it differs from the field name) and ``internal`` (never read from
the config; the caller supplies it). Bounds and ``tokens`` apply to the items of a list and the
values of a mapping.

Unknown keys are refused, naming the key and listing the allowed ones; a field without a default
is required. Rules across fields (exactly one of two keys, names that must exist elsewhere) stay
with the caller, which can raise through ``ConfigChecker.fail`` for the same message shape.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from corpus.errors import DemixError
from corpus.tokens import TokenAmountError, parse_tokens

T = TypeVar("T")

# PyYAML (YAML 1.1) reads 3e-4 and 1e6 as strings: accept exactly that form for float fields
_EXPONENT_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)[eE][+-]?\d+")


class ConfigError(DemixError, ValueError):
    """A config value that cannot be used; the message names the file, key path and value."""


def rules(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_items: int | None = None,
    tokens: bool = False,
    pattern: str | None = None,
    hint: str | None = None,
    allow_empty: bool = False,
    key: str | None = None,
    internal: bool = False,
) -> dict[str, Any]:
    """Field metadata for ``check_config``: ``field(default=0.9, metadata=rules(gt=0, le=1))``."""
    given = {
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "min_items": min_items,
        "pattern": pattern,
        "hint": hint,
        "key": key,
    }
    meta = {k: v for k, v in given.items() if v is not None}
    meta.update({k: True for k, v in (("tokens", tokens), ("allow_empty", allow_empty), ("internal", internal)) if v})
    return meta


def config_keys(cls: type) -> tuple[str, ...]:
    """The keys a config mapping for ``cls`` may hold, in field order."""
    return tuple(f.metadata.get("key", f.name) for f in dataclasses.fields(cls) if not f.metadata.get("internal"))


def check_config(
    cls: type[T], raw: Mapping[str, Any] | None, where: str, *, key: str = "", error: type[ConfigError] = ConfigError
) -> T:
    """Check ``raw`` against the fields of dataclass ``cls`` and return the instance.

    ``where`` names the origin (a file, ``--config``), ``key`` the key path of ``raw`` inside it
    (``""`` at the top). Raises ``error`` as ``<where>: <key.path>: <value>: <what is wrong>``.
    """
    return ConfigChecker(where, error).config(cls, raw, key)


def _show(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _join(key: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{key}[{name}]"
    return f"{key}.{name}" if key else str(name)


def _interval(meta: Mapping[str, Any], integer: bool) -> str | None:
    lo = ("[", meta["ge"]) if "ge" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = (meta["le"], "]") if "le" in meta else (meta["lt"], ")") if "lt" in meta else None
    kind = "an integer" if integer else "a number"
    if lo and hi:
        return f"expected {kind} in {lo[0]}{lo[1]:g}, {hi[0]:g}{hi[1]}"
    if lo:
        return f"expected {kind} {'>=' if lo[0] == '[' else '>'} {lo[1]:g}"
    if hi:
        return f"expected {kind} {'<=' if hi[1] == ']' else '<'} {hi[0]:g}"
    return None


def _in_bounds(value: float, meta: Mapping[str, Any]) -> bool:
    return not (
        ("ge" in meta and value < meta["ge"])
        or ("gt" in meta and value <= meta["gt"])
        or ("le" in meta and value > meta["le"])
        or ("lt" in meta and value >= meta["lt"])
    )


def _describe(tp: Any) -> str:
    """A type in the words of a message: 'a list of strings', 'one of a, b'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "anything"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin in (tuple, list):
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


class ConfigChecker:
    """Checks values against annotations; every failure raises ``error`` naming ``where``, key path and value."""

    def __init__(self, where: str, error: type[ConfigError] = ConfigError):
        self.where, self.error = where, error

    def fail(self, key: str, message: str, value: Any = dataclasses.MISSING) -> typing.NoReturn:
        """Raise ``<where>: <key>: [<value>: ]<message>``."""
        shown = "" if value is dataclasses.MISSING else f"{_show(value)}: "
        raise self.error(f"{self.where}: {key or '<top>'}: {shown}{message}")

    def mapping(self, raw: Any, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> Mapping:
        """``raw`` as a mapping with only ``allowed`` keys and every ``required`` key given (null is not given)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.fail(key, f"expected a mapping with keys {', '.join(allowed)}", raw)
        for k in raw:
            if k not in allowed:
                self.fail(_join(key, str(k)), f"unknown key; allowed keys are {', '.join(allowed)}")
        for k in required:
            if raw.get(k) is None:
                self.fail(_join(key, k), "is required")
        return raw

    def config(self, cls: type[T], raw: Any, key: str = "", supplied: Mapping[str, Any] | None = None) -> T:
        """An instance of dataclass ``cls`` from mapping ``raw``.

        ``supplied`` holds values the caller made itself: internal fields, and sections whose config
        shape differs from their field (their keys are still allowed and required, but not re-read).
        """
        hints = typing.get_type_hints(cls)
        raw = self.mapping(raw, key, config_keys(cls))
        values: dict[str, Any] = dict(supplied or {})
        for f in dataclasses.fields(cls):  # in field order, so the first problem a reader meets is reported
            name = f.metadata.get("key", f.name)
            if not f.init or f.metadata.get("internal"):
                continue
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if raw.get(name) is None and not has_default:
                self.fail(_join(key, name), "is required")
            if f.name in values or name not in raw:
                continue  # supplied by the caller, or absent: the dataclass default applies
            values[f.name] = self.value(hints[f.name], raw[name], _join(key, name), f.metadata)
        return cls(**values)

    def value(self, tp: Any, value: Any, key: str, meta: Mapping[str, Any] = types.MappingProxyType({})) -> Any:
        """``value`` checked against annotation ``tp`` and the field rules ``meta``; returns the clean value."""
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp is Any:
            return value
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            arms = [a for a in args if a is not type(None)]
            if len(arms) == 1:
                return self.value(arms[0], value, key, meta)
            for arm in arms:  # a general union: the first arm that takes the value
                try:
                    return self.value(arm, value, key, meta)
                except ConfigError:
                    continue
            self.fail(key, f"expected {_describe(tp)}", value)
        if origin is Literal:
            if not any(type(value) is type(a) and value == a for a in args):  # `true` is not the choice 1
                self.fail(key, f"expected one of {', '.join(str(a) for a in args)}", value)
            return value
        if dataclasses.is_dataclass(tp):
            return self.config(tp, value, key)
        if origin in (tuple, list) or tp in (tuple, list):
            return self._sequence(tp, origin or tp, args, value, key, meta)
        if origin is dict or tp is dict:
            return self._dict(args, value, key, meta)
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(key, "expected true or false", value)
            return value
        if tp is int:
            return self._int(value, key, meta)
        if tp is float:
            return self._float(value, key, meta)
        if tp is str or tp is Path:
            return self._str(value, key, meta) if tp is str else Path(self._str(value, key, meta))
        raise TypeError(f"check_config: unsupported annotation {tp!r} at {key}")  # a bug in the dataclass

    def _int(self, value: Any, key: str, meta: Mapping[str, Any]) -> int:
        if meta.get("tokens"):
            try:
                value = parse_tokens(value)
            except TokenAmountError as e:
                self.fail(key, e.reason, value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, _interval(meta, integer=True) or "expected an integer", value)
        if not _in_bounds(value, meta):
            self.fail(key, _interval(meta, integer=True), value)
        return value

    def _float(self, value: Any, key: str, meta: Mapping[str, Any]) -> float:
        wanted = _interval(meta, integer=False) or "expected a number"
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, wanted, value)
        if not math.isfinite(value):
            self.fail(key, f"{wanted} (finite)", value)
        if not _in_bounds(value, meta):
            self.fail(key, wanted, value)
        return float(value)

    def _str(self, value: Any, key: str, meta: Mapping[str, Any]) -> str:
        if not isinstance(value, str):
            self.fail(key, "expected a string", value)
        if not value.strip() and not meta.get("allow_empty"):
            self.fail(key, "expected a non-empty string", value)
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            self.fail(key, meta.get("hint") or f"expected a string matching {meta['pattern']}", value)
        return value

    def _sequence(self, tp: Any, origin: type, args: tuple, value: Any, key: str, meta: Mapping[str, Any]):
        item_tp = args[0] if args else Any
        if len(args) == 2 and args[1] is not Ellipsis or len(args) > 2:
            raise TypeError(f"check_config: fixed-length tuples are not supported ({tp!r} at {key})")
        if value is None:
            value = []
        elif isinstance(value, str) and item_tp is str:
            value = [value]  # `languages: en` is the list [en], never ('e', 'n')
        if not isinstance(value, (list, tuple)):
            self.fail(key, f"expected {_describe(tp)}", value)
        if len(value) < meta.get("min_items", 0):
            self.fail(key, f"expected at least {meta['min_items']} item(s)", value)
        items = [self.value(item_tp, v, _join(key, i), meta) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items

    def _dict(self, args: tuple, value: Any, key: str, meta: Mapping[str, Any]) -> dict:
        key_tp, val_tp = args if args else (Any, Any)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            self.fail(key, "expected a mapping", value)
        if len(value) < meta.get("min_items", 0):
            self.fail(key, f"expected at least {meta['min_items']} item(s)", value)
        out = {}
        for k, v in value.items():
            if key_tp is str and isinstance(k, int) and not isinstance(k, bool):
                k = str(k)  # YAML reads `1: 5B` with an int key
            k = self.value(key_tp, k, _join(key, str(k)))
            out[k] = self.value(val_tp, v, _join(key, str(k)), meta)
        return out
