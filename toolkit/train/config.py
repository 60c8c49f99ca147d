"""Training configuration: defaults, model-config inclusion, ``--set`` overrides, checks.

A training YAML holds the keys of :data:`TRAIN_DEFAULTS` and either the model keys
inline (``model: joint``, ``model_conf: {...}``) or ``model_config: model_tiny.yaml``,
a model YAML found relative to the training YAML, then the working directory, then
``toolkit/resources/conf/``. Inline keys win over the included file (deep merge), so
a resolved ``config.yaml`` fed back in gives the same config. Unknown keys are errors
naming the key; values are checked against the default's type (``1e-3``, which YAML
reads as a string, is accepted for a float).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

from toolkit.train.objective import MOVED_MODEL_KEYS, OBJECTIVE_DEFAULTS, check_objective, model_keys_of
from toolkit.utils.config import ConfigError, check_keys, load_yaml, parse_yaml

RESOURCE_CONF = Path(__file__).resolve().parents[1] / "resources" / "conf"

TRAIN_DEFAULTS: dict = {
    "seed": 0,
    "max_epochs": 10,
    "max_steps": 0,                  # 0: stop after max_epochs only
    "batching": {
        "max_frames": 20000,         # padded feature frames per paired batch
        "max_tokens": 10000,         # padded phones per text-only batch
        "text_ratio": 1.0,           # text-only batches per paired batch (0: none)
        "shuffle": True,
        "num_workers": 2,
        "utt2lang": None,            # path; with lang_balance_alpha: language-balanced sampling
        "text_utt2lang": None,       # path: the text-only data's utt2lang (balances the text batches too)
        "lang_balance_alpha": None,  # p(lang) ∝ (its share of hours, phones for text) ** alpha
    },
    "specaug": True,
    "specaug_conf": {
        "num_freq_masks": 2, "freq_mask_width": 27, "num_time_masks": 2,
        "time_mask_width": 40, "time_mask_max_ratio": 0.2, "time_warp_window": 0,
    },
    "optim": "adamw",
    "optim_conf": {"lr": 1.0e-3, "betas": [0.9, 0.98], "eps": 1.0e-9, "weight_decay": 1.0e-3},
    "scheduler": "warmup_cosine",    # noam | warmup_cosine | warmup_linear | constant
    "scheduler_conf": {"warmup_steps": 1000, "total_steps": 0, "min_lr_ratio": 0.01},  # total 0: from epochs
    "objective": OBJECTIVE_DEFAULTS,  # loss weights, consistency term and its alignment (train/objective.py)
    "grad_clip": 5.0,                # max gradient norm; 0 disables
    "accum_grad": 1,
    "amp": "auto",                   # auto (bf16 on GPU, none on CPU) | none | bf16 | fp16
    "nonfinite_patience": 10,        # stop after this many non-finite steps in a row
    "save_every_steps": 1000,
    "keep_last": 5,
    "log_every_steps": 50,
    "valid_greedy_wer": True,
    "valid_max_batches": 0,          # 0: the whole validation set
    "tensorboard": True,
    "progress_bar": True,
}
MODEL_KEYS = {"model", "model_conf", "vocab_size", "num_phones"}
# Filled in by the trainer from the command line; allowed in a config so config.yaml re-loads.
# values checked by their owner, not against the default's type ("all" or a list of names)
FREE_KEYS = {"layers"}
PATH_KEYS = {"train_data", "valid_data", "text_data", "lang_dir", "cmvn", "bpe_model", "durations_dir"}
ALLOWED_TOP = set(TRAIN_DEFAULTS) | MODEL_KEYS | PATH_KEYS


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def find_model_config(name: str, train_config: str | os.PathLike | None) -> Path:
    cands = [Path(name)] if Path(name).is_absolute() else (
        ([Path(train_config).parent / name] if train_config else []) + [Path(name), RESOURCE_CONF / name])
    for c in cands:
        if c.exists():
            return c
    raise ConfigError(f"model_config '{name}' not found (looked in: {', '.join(map(str, cands))})")


def apply_overrides(conf: dict, overrides: list[str]) -> dict:
    """``["optim_conf.lr=2.0e-3", "batching.num_workers=0"]`` -> updated copy."""
    conf = copy.deepcopy(conf)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = conf
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{p}' is not a section")
        node[parts[-1]] = parse_yaml(raw, f"--set {item}") if raw.strip() else None
    return conf


def _coerce(value, default, where: str):
    if default is None or value is None or where.rsplit(".", 1)[-1] in FREE_KEYS:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, int):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def check_and_fill(conf: dict, defaults: dict = TRAIN_DEFAULTS, where: str = "config") -> dict:
    """Reject unknown keys (naming them), fill defaults, coerce scalar types."""
    allowed = ALLOWED_TOP if defaults is TRAIN_DEFAULTS else set(defaults)
    check_keys(conf, allowed, where)
    out = {}
    for key, default in defaults.items():
        value = conf.get(key, copy.deepcopy(default))
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key}: expected a mapping, got {value!r}")
            out[key] = check_and_fill(value, default, f"{where}.{key}")
        else:
            out[key] = _coerce(value, default, f"{where}.{key}")
    for key in conf:
        if key not in defaults:
            out[key] = conf[key]
    return out


def _refuse_moved_keys(user: dict, where: str) -> None:
    """Loss settings that used to live elsewhere: say where they are now."""
    if "cons_warmup" in user:
        raise ConfigError(f"{where}: cons_warmup moved to objective.consistency.warmup")
    moved = sorted(set(user.get("model_conf") or {}) & set(MOVED_MODEL_KEYS))
    if moved:
        raise ConfigError(f"{where}: model_conf.{moved[0]} moved to {MOVED_MODEL_KEYS[moved[0]]} "
                          "(the training objective owns every loss setting)")


def resolve_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> dict:
    """Load a training YAML (+ its model_config), apply ``--set``, check, fill defaults."""
    if path and not Path(path).is_file():
        raise ConfigError(f"config file {path} not found")
    user = load_yaml(path) if path else {}
    name = user.pop("model_config", None)
    if name is not None:
        model_path = find_model_config(str(name), path)
        model_part = load_yaml(model_path)
        check_keys(model_part, ALLOWED_TOP, str(model_path))
        user = deep_merge(model_part, user)
    user = apply_overrides(user, list(overrides))
    _refuse_moved_keys(user, str(path) if path else "config")
    conf = check_and_fill(user, where=str(path) if path else "config")
    if conf["accum_grad"] < 1:
        raise ConfigError(f"accum_grad must be >= 1, got {conf['accum_grad']}")
    if conf["amp"] not in ("auto", "none", "bf16", "fp16"):
        raise ConfigError(f"amp: choose auto, none, bf16 or fp16, got {conf['amp']!r}")
    check_objective(conf["objective"])
    return conf


def symbol_table_size(path: str | os.PathLike) -> int:
    """``max id + 1`` of a ``<sym> <id>`` table (tokens.txt, phones.txt)."""
    from toolkit.utils.kaldi_map import iter_kaldi_map
    from toolkit.utils.fileio import InputError
    if not Path(path).is_file():
        raise InputError(path, "missing (run the lexicon and wordpiece stages first)")
    top = -1
    for lineno, sym, value in iter_kaldi_map(path):
        if not value.strip().isdigit():
            raise InputError(path, f"symbol '{sym}': id {value!r} is not a non-negative integer", lineno)
        top = max(top, int(value))
    if top < 0:
        raise InputError(path, "empty symbol table")
    return top + 1


def fill_data_paths(conf: dict, train_data=None, valid_data=None, text_data=None, lang_dir=None,
                    cmvn=None, bpe_model=None, durations_dir=None) -> dict:
    """Command-line paths (absolute) over the config's; ``vocab_size``, ``num_phones``,
    ``bpe_model`` from the lang dir."""
    conf = dict(conf)
    for key, value in (("train_data", train_data), ("valid_data", valid_data), ("text_data", text_data),
                       ("lang_dir", lang_dir), ("cmvn", cmvn), ("bpe_model", bpe_model),
                       ("durations_dir", durations_dir)):
        if value is not None:
            conf[key] = str(Path(value).resolve())
        conf.setdefault(key, None)
    lang = conf["lang_dir"]
    if lang:
        lang = Path(lang)
        conf["vocab_size"] = symbol_table_size(lang / "tokens.txt")
        conf["num_phones"] = symbol_table_size(lang / "phones.txt")
        models = sorted(lang.glob("wp*.model"))
        if len(models) > 1 and bpe_model is None:
            raise ConfigError(f"{lang}: several wordpiece models ({', '.join(m.name for m in models)}); keep one")
        if bpe_model is None and models:
            conf["bpe_model"] = str(models[0].resolve())
    return conf


def fill_model_defaults(conf: dict) -> dict:
    """Every ``model_conf`` default filled in (unknown model keys rejected) for registered models.

    The model's CTC head and transducer loss follow the objective (derived, not settings)."""
    from toolkit.models import MODELS, resolve_model_config
    if conf.get("model", "joint") not in MODELS.names():
        return conf  # a model the caller builds itself (tests' stand-ins)
    conf = copy.deepcopy(conf)
    derived = model_keys_of(conf.get("objective", OBJECTIVE_DEFAULTS))
    model_conf = conf.setdefault("model_conf", {}) or {}
    for key, value in derived.items():
        if key in model_conf and model_conf[key] != value:
            raise ConfigError(f"model_conf.{key} {model_conf[key]!r} disagrees with the objective, which "
                              f"decides it ({value!r}); remove it from model_conf and set the objective")
    conf["model_conf"] = {**model_conf, **derived}
    return resolve_model_config(conf)
