"""YAML configs in ESPnet style: ``component: name`` + ``component_conf: {...}``.

A :class:`Registry` maps names to classes (or functions); :meth:`Registry.build` checks
the ``*_conf`` keys against the constructor's signature so an unknown or misspelt key is
an error that names the key, the component and the accepted keys. Defaults of a
registered class are its constructor defaults, so ``--print-config`` can show them.
YAML is read with :func:`parse_yaml`: safe types only, and a mapping that repeats a key
is an error (not "the last one wins").
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable

import yaml

from toolkit.utils.fileio import InputError, atomic_write


class ConfigError(ValueError):
    """A configuration problem; the message names the key and where it came from."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"key {key!r} appears twice (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def parse_yaml(text, where: str = "<string>"):
    """YAML text (or an open file) -> Python data; ConfigError (one line, naming ``where``) if invalid."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {' '.join(str(e).split())}") from None


def load_yaml(path: str | os.PathLike) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise InputError(path, f"invalid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, f"expected a mapping at top level, got {type(data).__name__}")
    return data


def dump_yaml(data: dict, path: str | os.PathLike | None = None) -> str:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None)
    if path is not None:
        with atomic_write(path) as f:
            f.write(text)
    return text


def check_keys(conf: dict, allowed: set[str] | list[str], where: str) -> None:
    """Raise ConfigError naming every key of ``conf`` not in ``allowed``."""
    unknown = sorted(set(conf) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}")


def signature_defaults(fn: Callable) -> dict[str, Any]:
    """Keyword parameters of ``fn`` (a class's __init__ for a class) with their defaults."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    out = {}
    for name, p in inspect.signature(target).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[name] = None if p.default is inspect.Parameter.empty else p.default
    return out


class Registry:
    """Named constructors for one kind of component (``encoder``, ``predictor``...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable] = {}

    def register(self, name: str):
        def deco(obj):
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = obj
            return obj
        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Callable:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} '{name}'; choose from: {', '.join(self.names())}")
        return self._items[name]

    def build(self, name: str, conf: dict | None = None, *args, **extra):
        """Construct ``name`` with ``conf``; unknown keys in ``conf`` raise ConfigError."""
        cls = self.get(name)
        conf = dict(conf or {})
        accepted = signature_defaults(cls)
        check_keys(conf, set(accepted), f"{self.kind}_conf for '{name}'")
        return cls(*args, **extra, **conf)

    def defaults(self, name: str) -> dict[str, Any]:
        return signature_defaults(self.get(name))
