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
- ``forced``: the path of an explicit, frozen alignment model trained on the paired data
  (``toolkit.aligner``: a phoneme CTC aligner's Viterbi durations, read with the batch):
  frame t -> the phone the aligner put there; on text upsampled by those durations the
  same path is frame t -> position t,
- ``soft``: a smoothed-min DP over all alignments; its temperature ``soft_gamma`` is in
  units of cost per dimension (the DP runs on costs / d), so it stays a different method
  from ``best`` whatever the width of the layer.

The text's length at the shared encoder is the model's ``text_upsampling`` (none | repeat
| durations, :mod:`toolkit.models.upsampling`); on upsampled text ``uniform`` is the
frame-wise path of JOIST and Maestro (frame i -> position floor(i m' / n), proportional
when the lengths differ). With ``durations`` the paired loss adds
``duration_weight * duration`` (the duration predictor's loss).

Utterances with fewer encoder frames than phones (infeasible: no monotonic alignment gives
every phone a frame) are left out of every consistency kind and of the CTC mean, and
counted (``Objective.infeasible``); text that upsampling made longer than its speech is
aligned by symmetric DTW under ``best`` (every frame and every position at least once),
proportionally under ``uniform``; ``soft`` and ``forced`` are refused with ``repeat``.

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
    "duration_weight": 1.0,      # text_upsampling durations: the duration predictor's loss
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
        "soft_gamma": 1.0,       # temperature of the soft alignment, in cost per dimension
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
                       ("duration_weight", obj["duration_weight"]),
                       ("consistency.weight", cons["weight"]), ("consistency.soft_gamma", cons["soft_gamma"])):
        if value < 0:
            raise ConfigError(f"{where}.{key} must be >= 0, got {value}")
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

    def __init__(self, obj: dict, layer_names: list[str], default_layers: list[str],
                 text_upsampling: str = "none"):
        check_objective(obj)
        self.conf = obj
        cons = obj["consistency"]
        layers = default_layers if cons["layers"] == "all" else list(cons["layers"])
        unknown = [n for n in layers if n not in layer_names]
        if unknown:
            raise ConfigError(f"objective.consistency.layers: unknown layer(s) {unknown}; "
                              f"use 'all' or a list of {layer_names}")
        self.layers = layers if cons["weight"] > 0 else []
        self.text_upsampling = text_upsampling
        if self.layers and text_upsampling == "repeat" and cons["alignment"] in ("forced", "soft"):
            raise ConfigError(f"objective.consistency.alignment {cons['alignment']} is not defined on text "
                              "repeated by model_conf.text_upsampling repeat: use best or uniform")
        self.infeasible = 0  # paired utterances with fewer encoder frames than phones seen so far

    @classmethod
    def for_model(cls, obj: dict, model) -> "Objective":
        return cls(obj, model.layer_names, model.default_consistency_layers(),
                   getattr(model, "text_upsampling", "none"))

    @property
    def needs_durations(self) -> bool:
        """Whether paired batches must carry aligner durations (toolkit.aligner)."""
        return self.text_upsampling == "durations" or (
            bool(self.layers) and self.conf["consistency"]["alignment"] == "forced")

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
        self.infeasible += out.get("infeasible", 0)
        if want_ctc:
            terms["ctc"] = out["ctc"]
            loss = loss + self.conf["ctc_weight"] * out["ctc"]
        if "duration" in out:
            terms["duration"] = out["duration"]
            loss = loss + self.conf["duration_weight"] * out["duration"]
        if w > 0:
            per_layer = [self._consistency(out, name) for name in self.layers]
            for name, c in zip(self.layers, per_layer):
                terms[f"cons/{name}"] = c
            terms["cons"] = torch.stack(per_layer).mean()
            loss = loss + w * terms["cons"]
        terms["loss"] = loss
        return terms

    def _consistency(self, out: dict, name: str) -> torch.Tensor:
        """Mean over the batch's feasible examples of the consistency loss at one layer along
        the configured alignment (0 when none is feasible)."""
        from toolkit.losses import alignment_kinds as kinds
        from toolkit.losses.best_alignment import best_alignment_loss

        cons = self.conf["consistency"]
        speech = consistency_features(out["speech_layers"][name], cons["feature_norm"])
        text = consistency_features(out["text_layers"][name], cons["feature_norm"])
        s_lens, t_lens = out["speech_lens"], out["text_lens"]
        feasible = (s_lens >= out["phone_lens"].to(s_lens.device)).to(speech.device)  # (B,)
        kind, norm = cons["alignment"], cons["normalize"]
        if kind == "best":  # upsampled text longer than its speech: symmetric DTW
            loss, _ = best_alignment_loss(speech, s_lens, text, t_lens, normalize=norm, fallback="dtw")
        elif kind == "soft":
            safe = torch.where(feasible.to(s_lens.device), t_lens, torch.ones_like(t_lens))
            loss = kinds.soft_alignment_loss(speech, s_lens, text, safe, cons["soft_gamma"], norm)
        else:
            if kind == "uniform" or self.text_upsampling == "durations":  # text at speech length: frame-wise
                path = kinds.uniform_path(s_lens, t_lens, speech.shape[1])
            else:
                path = out.get("_forced_path")
                if path is None:  # once per batch, shared by every layer
                    if out.get("durations") is None:
                        raise ValueError("objective.consistency.alignment forced needs the aligner's durations in "
                                         "every paired batch (train with --durations-dir)")
                    path = kinds.durations_path(out["durations"], s_lens, speech.shape[1])
                    out["_forced_path"] = path
            loss = kinds.path_loss(speech, s_lens, text, t_lens, path, norm)
        loss = torch.where(feasible, loss, torch.zeros_like(loss))
        return loss.sum() / feasible.sum().clamp(min=1)
