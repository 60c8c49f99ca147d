"""The training objective: one owner for every loss weight, the consistency term and its alignment.

The model returns per-term losses (HAT streaming/full, auxiliary CTC) and, when asked, the
speech and text representations of the consistency layers; :class:`Objective` combines them:

    paired: loss = hat_stream + hat_full + ctc_weight * ctc + w(step) * mean_layers cons
    text:   loss = text_weight * (hat_text_stream + hat_text_full)

with ``w(step) = consistency.weight * ramp(step)`` (0 before ``warmup.start_step``, then a
linear ramp over ``warmup.ramp_steps``). One switch per idea: ``consistency.weight: 0``
turns the consistency term (and the text pass it needs) off; ``ctc_weight: 0`` the CTC;
text-only batches are ``batching.text_ratio`` (0: none). ``consistency.alignment`` picks
the path the term pulls along:

- ``best``: the least-cost monotonic alignment by DP (the paper; pass-through gradient),
- ``uniform``: frame i -> position floor(i m / n) (the upsampling heuristic),
- ``forced``: the Viterbi path of the model's own phoneme CTC head (``ctc_target: phones``,
  ``ctc_weight`` > 0) on the same batch, without gradient: an explicit alignment model
  trained on the paired data alongside, at no extra stage or pass (the CTC posteriors are
  already computed for its loss),
- ``soft``: a smoothed-min DP over all alignments (temperature ``soft_gamma``).

The resolved ``objective`` section is saved in the experiment's config.yaml; decoding and
the analysis read ``consistency.feature_norm`` and the layers from there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from toolkit.train.schedule import delayed_ramp
from toolkit.utils.config import ConfigError

ALIGNMENTS = ("best", "uniform", "forced", "soft")
CTC_TARGETS = ("tokens", "phones")
TRANSDUCERS = ("full", "pruned")
OBJECTIVE_DEFAULTS: dict = {
    "text_weight": 1.0,          # text-only batches: weight of their two HAT losses
    "ctc_weight": 0.0,           # auxiliary CTC on speech (0: off, and the model has no CTC head)
    "ctc_target": "tokens",      # tokens: wordpieces on the shared encoder; phones: phonemes on the audio encoder
    # the HAT transducer loss: full (every (t, u) of the lattice) or pruned (a window of
    # prune_range symbol positions per frame from a simple joiner's occupation; the model then
    # has the simple joiner's two projections); see toolkit/losses/pruned_transducer.py
    "transducer": "full",
    "transducer_conf": {"prune_range": 5, "simple_scale": 0.5, "warmup_steps": 2000, "lm_scale": 0.25,
                        "am_scale": 0.0},
    "consistency": {
        "weight": 0.05,          # 0: off
        "alignment": "best",     # best | uniform | forced | soft
        "layers": "all",         # "all" (encoder outputs + every shared layer) or a list of layer names
        "normalize": "frames",   # frames | tokens | dim | none
        "feature_norm": True,    # compare per-frame layer-normalised representations
        "soft_gamma": 1.0,       # temperature of the soft alignment
        # the consistency weight is 0 before start_step, then ramps linearly to 1 over ramp_steps
        # (a model that has not learned to read speech yet is pulled to a collapsed, constant
        # representation by the consistency loss alone; the HAT losses go first)
        "warmup": {"start_step": 0, "ramp_steps": 0},
    },
}
# model_conf keys that belonged to the model before the objective had a home: where they went
MOVED_MODEL_KEYS = {"text_weight": "objective.text_weight", "cons_weight": "objective.consistency.weight",
                    "cons_layers": "objective.consistency.layers",
                    "cons_normalize": "objective.consistency.normalize",
                    "cons_feature_norm": "objective.consistency.feature_norm",
                    "ctc_weight": "objective.ctc_weight", "ctc_target": "objective.ctc_target"}
# model_conf keys derived from the objective (model_keys_of); a config may repeat them only unchanged


def check_objective(obj: dict, where: str = "objective") -> None:
    """Value checks the type-filling in train/config.py cannot do (choices, signs)."""
    cons = obj["consistency"]
    if cons["alignment"] not in ALIGNMENTS:
        raise ConfigError(f"{where}.consistency.alignment: choose {', '.join(ALIGNMENTS)}, got {cons['alignment']!r}")
    if obj["transducer"] not in TRANSDUCERS:
        raise ConfigError(f"{where}.transducer: choose {', '.join(TRANSDUCERS)}, got {obj['transducer']!r}")
    if obj["ctc_target"] not in CTC_TARGETS:
        raise ConfigError(f"{where}.ctc_target: choose {', '.join(CTC_TARGETS)}, got {obj['ctc_target']!r}")
    for key, value in (("ctc_weight", obj["ctc_weight"]), ("text_weight", obj["text_weight"]),
                       ("consistency.weight", cons["weight"]), ("consistency.soft_gamma", cons["soft_gamma"])):
        if value < 0:
            raise ConfigError(f"{where}.{key} must be >= 0, got {value}")
    if cons["alignment"] == "forced" and cons["weight"] > 0 and not (
            obj["ctc_weight"] > 0 and obj["ctc_target"] == "phones"):
        raise ConfigError(f"{where}.consistency.alignment forced aligns with the phoneme CTC head: "
                          f"set {where}.ctc_weight > 0 and {where}.ctc_target: phones")
    if cons["alignment"] == "soft" and cons["soft_gamma"] <= 0:
        raise ConfigError(f"{where}.consistency.soft_gamma must be > 0 for the soft alignment")
    layers = cons["layers"]
    if not (layers == "all" or (isinstance(layers, list) and all(isinstance(x, str) for x in layers))):
        raise ConfigError(f"{where}.consistency.layers: 'all' or a list of layer names, got {layers!r}")


def model_keys_of(obj: dict) -> dict:
    """The model_conf keys that follow from the objective (they decide parameters): the CTC
    head ('none', 'tokens' or 'phones') and the transducer loss with its settings."""
    return {"ctc_head": obj["ctc_target"] if obj["ctc_weight"] > 0 else "none",
            "transducer": obj["transducer"], "transducer_conf": dict(obj["transducer_conf"])}


def consistency_features(x: torch.Tensor, feature_norm: bool) -> torch.Tensor:
    """What the consistency term compares: with feature_norm each frame normalised to zero
    mean / unit variance (no affine), so the loss cannot be lowered by shrinking the scale
    of both paths (e.g. LayerNorm gains) instead of aligning them."""
    return F.layer_norm(x, x.shape[-1:]) if feature_norm else x


class Objective:
    """Combines the model's per-term outputs into the training loss (see the module doc)."""

    def __init__(self, obj: dict, layer_names: list[str], default_layers: list[str]):
        check_objective(obj)
        self.conf = obj
        cons = obj["consistency"]
        layers = default_layers if cons["layers"] == "all" else list(cons["layers"])
        unknown = [n for n in layers if n not in layer_names]
        if unknown:
            raise ConfigError(f"objective.consistency.layers: unknown layer(s) {unknown}; "
                              f"use 'all' or a list of {layer_names}")
        self.layers = layers if cons["weight"] > 0 else []
        self.forced_fallbacks = 0  # utterances the forced aligner could not align (uniform used)

    @classmethod
    def for_model(cls, obj: dict, model) -> "Objective":
        return cls(obj, model.layer_names, model.default_consistency_layers())

    def consistency_weight(self, step: int | None) -> float:
        """The weight at optimizer step ``step`` (None: the full weight, as in validation)."""
        cons = self.conf["consistency"]
        if not self.layers:
            return 0.0
        w = cons["warmup"]
        ramp = 1.0 if step is None else delayed_ramp(step, w["start_step"], w["ramp_steps"])
        return cons["weight"] * ramp

    def __call__(self, model, batch: dict, step: int | None = None) -> dict:
        """Forward ``model`` (or its DDP wrapper) on ``batch`` -> {"loss", per-term scalars}."""
        if batch["kind"] == "text":
            out = model(batch)
            out["loss"] = self.conf["text_weight"] * (out["hat_text_stream"] + out["hat_text_full"])
            return out
        w = self.consistency_weight(step)
        want_ctc = self.conf["ctc_weight"] > 0
        out = model(batch, cons_layers=self.layers if w > 0 else None, ctc=want_ctc)
        terms = {k: out[k] for k in ("hat_stream", "hat_full")}
        loss = out["hat_stream"] + out["hat_full"]
        if want_ctc:
            terms["ctc"] = out["ctc"]
            loss = loss + self.conf["ctc_weight"] * out["ctc"]
        if w > 0:
            per_layer = [self._consistency(out, name) for name in self.layers]
            for name, c in zip(self.layers, per_layer):
                terms[f"cons/{name}"] = c
            terms["cons"] = torch.stack(per_layer).mean()
            loss = loss + w * terms["cons"]
        terms["loss"] = loss
        return terms

    def _consistency(self, out: dict, name: str) -> torch.Tensor:
        """Batch mean of the consistency loss at one layer along the configured alignment."""
        from toolkit.losses import alignment_kinds as kinds
        from toolkit.losses.best_alignment import best_alignment_loss

        cons = self.conf["consistency"]
        speech = consistency_features(out["speech_layers"][name], cons["feature_norm"])
        text = consistency_features(out["text_layers"][name], cons["feature_norm"])
        s_lens, t_lens = out["speech_lens"], out["text_lens"]
        kind, norm = cons["alignment"], cons["normalize"]
        if kind == "best":  # examples with n < m (rare) are aligned by symmetric DTW
            loss, _ = best_alignment_loss(speech, s_lens, text, t_lens, normalize=norm, fallback="dtw")
        elif kind == "soft":
            loss = kinds.soft_alignment_loss(speech, s_lens, text, t_lens, cons["soft_gamma"], norm)
        else:
            if kind == "uniform":
                path = kinds.uniform_path(s_lens, t_lens, speech.shape[1])
            else:
                path = out.get("_forced_path")
                if path is None:  # once per batch, shared by every layer
                    path, fallbacks = kinds.ctc_forced_path(out["ctc_log_probs"], s_lens, out["phones"], t_lens)
                    out["_forced_path"] = path
                    self.forced_fallbacks += fallbacks
            loss = kinds.path_loss(speech, s_lens, text, t_lens, path, norm)
        return loss.mean()
