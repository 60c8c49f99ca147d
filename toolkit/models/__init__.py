"""Models: audio/text/shared/cascaded encoders, HAT decoders, the joint speech-text model.

``build_model(config)`` builds the model from the top-level config (``model``,
``model_conf``, ``vocab_size``, ``num_phones``); ``resolve_model_config`` fills in every
default (what ``python -m toolkit.bin.print_model_config`` prints).
"""
from __future__ import annotations

import copy

from torch import nn

from toolkit.models.joint import COMPONENTS, JointSpeechTextModel
from toolkit.models.upsampling import check_upsampling
from toolkit.utils.config import ConfigError, Registry

MODELS = Registry("model")
MODELS.register("joint")(JointSpeechTextModel)
MODEL_INJECTED = {"vocab_size", "num_phones"}


def resolve_model_config(config: dict) -> dict:
    """Copy of ``config`` with ``model`` and every ``model_conf`` default filled in.

    Unknown keys raise ConfigError naming the key; vocab_size/num_phones stay top level.
    """
    config = copy.deepcopy(config)
    name = config.setdefault("model", "joint")
    conf = dict(config.get("model_conf") or {})
    clash = sorted(set(conf) & MODEL_INJECTED)
    if clash:
        raise ConfigError(f"model_conf: {', '.join(clash)} belong at the top level of the config")
    defaults = {k: v for k, v in MODELS.defaults(name).items() if k not in MODEL_INJECTED}
    unknown = sorted(set(conf) - set(defaults))
    if unknown:
        raise ConfigError(f"model_conf for '{name}': unknown key(s) {', '.join(unknown)}; "
                          f"accepted: {', '.join(sorted(defaults))}")
    resolved = {**defaults, **conf}
    for kind, (registry, reserved) in COMPONENTS.items():
        sub = dict(resolved.get(f"{kind}_conf") or {})
        comp_defaults = {k: v for k, v in registry.defaults(resolved[kind]).items() if k not in reserved}
        unknown = sorted(set(sub) - set(comp_defaults))
        if unknown:
            raise ConfigError(f"{kind}_conf for '{resolved[kind]}': unknown key(s) {', '.join(unknown)}; "
                              f"accepted: {', '.join(sorted(comp_defaults))}")
        resolved[f"{kind}_conf"] = {**comp_defaults, **sub}
    if name == "joint":
        resolved["text_upsampling_conf"] = check_upsampling(resolved["text_upsampling"],
                                                            resolved.get("text_upsampling_conf"))
    config["model_conf"] = resolved
    return config


def build_model(config: dict) -> JointSpeechTextModel:
    """Model from a top-level config; needs integer ``vocab_size`` and ``num_phones``."""
    for key in sorted(MODEL_INJECTED):
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise ConfigError(f"config needs a positive integer '{key}' (the trainer fills it from data/lang)")
    resolved = resolve_model_config(config)
    return MODELS.build(resolved["model"], resolved["model_conf"],
                        vocab_size=config["vocab_size"], num_phones=config["num_phones"])


def count_parameters(model: nn.Module) -> dict:
    """Trainable parameters per top-level component plus ``total`` (shared modules once)."""
    counts, seen = {}, set()
    for name, child in model._modules.items():  # named_children() would hide an alias (shared decoder)
        n = 0
        for p in child.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        counts[name] = n
    counts["total"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return counts


__all__ = ["build_model", "resolve_model_config", "count_parameters", "JointSpeechTextModel", "MODELS"]
