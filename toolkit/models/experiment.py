"""A trained experiment as the trainer left it: the model with its CMVN and wordpieces.

``exp/<tag>/config.yaml`` is the resolved config (read back unchanged); the weights are
``model_avg.pt`` (or any state dict / training checkpoint); the config's ``cmvn`` and
``bpe_model`` paths name the CMVN stats and the sentencepiece model. Decoding, analysis
and studies all load an experiment through :func:`load_experiment`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from toolkit.utils.config import load_yaml
from toolkit.utils.fileio import InputError


@dataclass(frozen=True)
class Experiment:
    model: torch.nn.Module
    cmvn: object          # GlobalCMVN or None
    sp: object            # SentencePieceProcessor
    config: dict
    decode_defaults: dict = field(default_factory=dict)  # toolkit.decode.defaults: the recipe's search settings


def config_path(config: dict, key: str, exp_dir: Path) -> Path:
    """A path from config.yaml: as written (relative to the recipe dir), else beside exp/<tag>/../.."""
    if not config.get(key):
        raise InputError(exp_dir / "config.yaml", f"no '{key}' path (the trainer writes it)")
    p = Path(config[key])
    for cand in (p, exp_dir.parent.parent / p):
        if cand.exists():
            return cand
    raise InputError(exp_dir / "config.yaml", f"'{key}': {p} does not exist (relative to the current dir "
                                              f"or to {exp_dir.parent.parent})")


def load_experiment(exp_dir: str | os.PathLike, model_path: str | os.PathLike | None = None,
                    device: str = "cpu") -> Experiment:
    """Model (eval mode) from ``config.yaml`` + ``model_avg.pt``, with its CMVN and wordpieces."""
    from toolkit.features.cmvn import GlobalCMVN
    from toolkit.models import build_model
    from toolkit.text.wordpiece import load_wordpiece

    exp_dir = Path(exp_dir)
    if not (exp_dir / "config.yaml").exists():
        raise InputError(exp_dir / "config.yaml", "missing: stage 5 (training) writes it")
    config = load_yaml(exp_dir / "config.yaml")
    model_path = Path(model_path) if model_path else exp_dir / "model_avg.pt"
    model = build_model(config)
    if not model_path.exists():
        raise InputError(model_path, "missing: stage 5 (training + averaging) writes it")
    try:  # truncated zip, bad pickle, I/O error: all mean "unusable"
        state = torch.load(model_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(model_path, f"cannot load model ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):  # a training checkpoint
        state = state["model"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise InputError(model_path, f"does not fit the model of {exp_dir / 'config.yaml'}: {e}") from None
    model.to(device).eval()
    cmvn = GlobalCMVN.load(config_path(config, "cmvn", exp_dir))
    sp = load_wordpiece(config_path(config, "bpe_model", exp_dir))
    from toolkit.decode.defaults import load_defaults
    return Experiment(model, cmvn, sp, config, load_defaults(exp_dir))
