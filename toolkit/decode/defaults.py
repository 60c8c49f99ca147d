"""The decode settings a recipe chose, kept beside the model: ``exp/<tag>/decode_defaults.yaml``.

The recipe's decode stage (``concord-decode --save-defaults``) writes the method, beam,
blank penalty, ILM weight and symbols per frame it decoded with; ``concord-pack-model``
carries the file into the pack; :class:`toolkit.decode.transcriber.Transcriber` and
``concord-transcribe`` start from it, and their arguments / flags override it. An
experiment without the file decodes with :data:`BUILTIN` (greedy, no penalty).

Example file::

    method: beam
    beam: 4
    blank_penalty: 1.0
    ilm_weight: 0.0
    max_sym_per_frame: 3
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from toolkit.utils.fileio import InputError, atomic_write

FILENAME = "decode_defaults.yaml"
BUILTIN = {"method": "greedy", "beam": 4, "blank_penalty": 0.0, "ilm_weight": 0.0, "max_sym_per_frame": 3}
_TYPES = {"method": str, "beam": int, "blank_penalty": float, "ilm_weight": float, "max_sym_per_frame": int}


def parse_defaults(text: str, source: str | os.PathLike) -> dict:
    """YAML text -> validated settings (only the keys it names); InputError naming ``source``."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise InputError(source, f"not YAML: {e}") from None
    if not isinstance(data, dict):
        raise InputError(source, "must be a mapping of decode settings")
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise InputError(source, f"unknown decode setting(s) {', '.join(unknown)}; known: {', '.join(_TYPES)}")
    out = {}
    for key, value in data.items():
        typ = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float) if typ is float else typ):
            raise InputError(source, f"{key}: expected {typ.__name__}, got {value!r}")
        out[key] = typ(value)
    if out.get("method", "greedy") not in ("greedy", "beam"):
        raise InputError(source, f"method must be 'greedy' or 'beam', got {out['method']!r}")
    if out.get("beam", 1) < 1 or out.get("max_sym_per_frame", 1) < 1:
        raise InputError(source, "beam and max_sym_per_frame must be >= 1")
    return out


def load_defaults(exp_dir: str | os.PathLike) -> dict:
    """The settings saved in ``exp_dir`` ({} when it has none)."""
    path = Path(exp_dir) / FILENAME
    return parse_defaults(path.read_text(encoding="utf-8"), path) if path.exists() else {}


def save_defaults(exp_dir: str | os.PathLike, settings: dict) -> Path:
    """Write ``settings`` (validated) to ``exp_dir/decode_defaults.yaml`` atomically."""
    path = Path(exp_dir) / FILENAME
    text = yaml.safe_dump({k: settings[k] for k in _TYPES if k in settings}, sort_keys=False)
    parse_defaults(text, path)
    with atomic_write(path) as f:
        f.write(text)
    return path


def resolve(saved: dict, **overrides) -> dict:
    """BUILTIN, then the saved settings, then every override that is not None."""
    return {**BUILTIN, **saved, **{k: v for k, v in overrides.items() if v is not None}}
