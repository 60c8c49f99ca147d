"""The joint speech-text model: cascaded-encoder HAT ASR trained on paired speech+text
and on text alone (masked phonemes -> HAT).

    speech: fbank -> audio encoder (causal) ─┐
    text:   phonemes -> text encoder ────────┴> shared encoder (chunked) -> streaming HAT
                                                      └> cascaded encoder (full) -> full HAT

The model computes terms, not the training loss (``toolkit.train.objective`` combines them):
- paired batch: ``hat_stream``, ``hat_full`` (batch means of per-utterance NLLs); with
  ``ctc=True`` the auxiliary CTC term ``ctc`` and its ``ctc_log_probs``; with
  ``cons_layers`` the speech and *unmasked* text representations of those layers
  (``speech_layers``/``text_layers``: name -> (B, n|m, D), ``speech_lens``/``text_lens``).
- text batch: ``hat_text_stream``, ``hat_text_full`` from the masked phonemes.
The CTC head (``ctc_head``: none | tokens | phones) is set from the objective by the
training config: over wordpieces on the shared encoder output, or over the paired phoneme
sequence on the audio encoder output. An utterance with fewer encoder frames than phones
(``infeasible``: no monotonic alignment gives every phone a frame) is left out of the CTC
mean; the batch's count is returned as ``infeasible``.
Text length (``text_upsampling``, :mod:`toolkit.models.upsampling`): the text encoder's
output enters the shared encoder at phoneme length (``none``), repeated r times
(``repeat``), or repeated by durations (``durations``: the batch's aligner ``durations``
for paired text, the duration predictor's for text-only batches; paired batches then
also give the predictor's loss ``duration``).
Layer names: ``encoder`` (audio vs text encoder outputs), ``shared.<i>``, ``cascaded.<i>``
(1-based); ``default_consistency_layers()`` = ``encoder`` + every shared layer.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.models.encoders import (AUDIO_ENCODERS, AUDIO_ENCODERS_INJECTED, ENCODERS, ENCODERS_INJECTED,
                                     TEXT_ENCODERS, TEXT_ENCODERS_INJECTED)
from toolkit.models.hat import JOINERS, PREDICTORS, HatDecoder
from toolkit.models.upsampling import DurationPredictor, check_upsampling, repeat_durations, upsample
from toolkit.nn.subsampling import Conv2dSubsampling
from toolkit.utils.config import ConfigError

# component -> (registry, keys the model fills in and a config may not set)
COMPONENTS = {
    "audio_encoder": (AUDIO_ENCODERS, AUDIO_ENCODERS_INJECTED),
    "text_encoder": (TEXT_ENCODERS, TEXT_ENCODERS_INJECTED),
    "shared_encoder": (ENCODERS, ENCODERS_INJECTED),
    "cascaded_encoder": (ENCODERS, ENCODERS_INJECTED),
    "predictor": (PREDICTORS, {"vocab_size"}),
    "joiner": (JOINERS, {"enc_dim", "pred_dim", "vocab_size"}),
}


def build_component(kind: str, name: str, conf: dict | None, **injected):
    registry, reserved = COMPONENTS[kind]
    conf = dict(conf or {})
    clash = sorted(set(conf) & reserved)
    if clash:
        raise ConfigError(f"{kind}_conf: key(s) {', '.join(clash)} are set by the model, remove them")
    return registry.build(name, conf, **injected)


@dataclass
class StreamState:
    """Where a first-pass stream stands between pieces (see ``encode_chunk``).

    ``feat_buf``: fbank frames the subsampling has not consumed yet; ``stack_buf``:
    subsampled frames waiting for frame stacking; ``sub_buf``: stacked frames short of a
    chunk; ``audio``/``shared``: the causal conformers' attention and convolution caches.
    """
    batch_size: int
    audio: object
    shared: object
    feat_buf: torch.Tensor | None = None
    stack_buf: torch.Tensor | None = None
    sub_buf: torch.Tensor | None = None


class JointSpeechTextModel(nn.Module):
    def __init__(self, vocab_size: int, num_phones: int, chunk_size: int = 8, left_chunks: int = 4,
                 audio_encoder: str = "conformer", audio_encoder_conf: dict | None = None,
                 text_encoder: str = "conformer", text_encoder_conf: dict | None = None,
                 shared_encoder: str = "conformer", shared_encoder_conf: dict | None = None,
                 cascaded_encoder: str = "conformer", cascaded_encoder_conf: dict | None = None,
                 predictor: str = "lstm", predictor_conf: dict | None = None,
                 joiner: str = "hat", joiner_conf: dict | None = None,
                 share_decoder: bool = False, ctc_head: str = "none", max_lattice_elems: int = 2 ** 25,
                 transducer: str = "full", transducer_conf: dict | None = None,
                 text_upsampling: str = "none", text_upsampling_conf: dict | None = None):
        super().__init__()
        chunking = {"chunk_size": chunk_size, "left_chunks": left_chunks}
        self.audio_encoder = build_component("audio_encoder", audio_encoder, audio_encoder_conf, **chunking)
        self.text_encoder = build_component("text_encoder", text_encoder, text_encoder_conf, num_phones=num_phones)
        if self.text_encoder.output_dim != self.audio_encoder.output_dim:
            raise ConfigError(f"text_encoder d_model {self.text_encoder.output_dim} != audio_encoder d_model "
                              f"{self.audio_encoder.output_dim}: both feed the shared encoder")
        self.shared_encoder = build_component("shared_encoder", shared_encoder, shared_encoder_conf,
                                              input_dim=self.audio_encoder.output_dim, causal=True, **chunking)
        self.cascaded_encoder = build_component("cascaded_encoder", cascaded_encoder, cascaded_encoder_conf,
                                                input_dim=self.shared_encoder.output_dim, causal=False,
                                                chunk_size=0, left_chunks=-1)

        def make_decoder(enc_dim):
            pred = build_component("predictor", predictor, predictor_conf, vocab_size=vocab_size)
            join = build_component("joiner", joiner, joiner_conf, enc_dim=enc_dim, pred_dim=pred.output_dim,
                                   vocab_size=vocab_size)
            return HatDecoder(pred, join, vocab_size, max_lattice_elems, transducer, transducer_conf)

        self.stream_decoder = make_decoder(self.shared_encoder.output_dim)
        if share_decoder:
            if self.cascaded_encoder.output_dim != self.shared_encoder.output_dim:
                raise ConfigError("share_decoder needs shared and cascaded encoders of the same d_model")
            self.full_decoder = self.stream_decoder
        else:
            self.full_decoder = make_decoder(self.cascaded_encoder.output_dim)

        # auxiliary CTC on speech (as ESPnet's and icefall's transducer recipes offer), either
        # over wordpieces on the shared encoder output, or over the paired phoneme sequence on
        # the audio encoder output: the same units the text encoder reads, and learned from
        # little audio far sooner than spelling (a character CTC sat at its initial loss for
        # 400 steps where a phoneme CTC reached 21% phone errors in 300), so the shared
        # encoder soon sees phone-like input from both sides
        if ctc_head not in ("none", "tokens", "phones"):
            raise ConfigError(f"ctc_head must be 'none', 'tokens' or 'phones', got {ctc_head!r}")
        self.ctc_target = ctc_head
        self.ctc_head = None
        if ctc_head != "none":
            self.ctc_head = (nn.Linear(self.audio_encoder.output_dim, num_phones) if ctc_head == "phones"
                             else nn.Linear(self.shared_encoder.output_dim, vocab_size))

        self.text_upsampling = text_upsampling
        self.upsampling_conf = check_upsampling(text_upsampling, text_upsampling_conf)
        if text_upsampling == "repeat" and self.upsampling_conf["repeat"] < 1:
            raise ConfigError("model_conf.text_upsampling_conf.repeat 0 (from the data) is resolved at training "
                              "start; a model built elsewhere needs it set (>= 1)")
        self.duration_predictor = None
        if text_upsampling == "durations":
            self.duration_predictor = DurationPredictor(self.text_encoder.output_dim,
                                                        int(self.upsampling_conf["predictor_channels"]),
                                                        int(self.upsampling_conf["predictor_kernel"]))

        self.layer_names = (["encoder"] + [f"shared.{i + 1}" for i in range(len(self.shared_encoder.layers))]
                            + [f"cascaded.{i + 1}" for i in range(len(self.cascaded_encoder.layers))])
        self.chunk_size = chunk_size
        self.chunk_size_frames = chunk_size * self.audio_encoder.frames_per_output
        # the last output frame of a chunk also reads 3 input frames past the chunk's span
        self.lookahead_frames = Conv2dSubsampling.receptive_field - Conv2dSubsampling.stride

    def default_consistency_layers(self) -> list[str]:
        """``encoder`` + every shared layer (what ``consistency.layers: all`` means)."""
        return self.layer_names[: 1 + len(self.shared_encoder.layers)]

    # --- training ---------------------------------------------------------------------
    def forward(self, batch: dict, cons_layers: list[str] | None = None, ctc: bool = False) -> dict:
        """One batch -> its loss terms (and representations); see the module docstring."""
        if batch["kind"] == "paired":
            return self._forward_paired(batch, cons_layers or [], ctc)
        if batch["kind"] == "text":
            return self._forward_text(batch)
        raise ValueError(f"batch kind must be 'paired' or 'text', got {batch['kind']!r}")

    def _forward_paired(self, b, cons_layers, ctc):
        speech = self._path(*self.audio_encoder(b["feats"], b["feat_lens"]), need_layers=bool(cons_layers),
                            cons_layers=cons_layers)
        out = {"hat_stream": self.stream_decoder.loss(speech["shared"], speech["lens"], b["tokens"],
                                                      b["token_lens"]).mean(),
               "hat_full": self.full_decoder.loss(speech["cascaded"], speech["lens"], b["tokens"],
                                                  b["token_lens"]).mean()}
        if ctc:
            if self.ctc_head is None:
                raise ConfigError("the objective asks for a CTC loss but the model has no CTC head (ctc_head: none)")
            if self.ctc_target == "phones":  # blank: phone id 0 (<pad>) or token id 0 (<blank>)
                out["ctc"], out["ctc_log_probs"] = self._ctc(speech["layers"]["encoder"], speech["lens"],
                                                             b["phones"], b["phone_lens"])
            else:
                out["ctc"], out["ctc_log_probs"] = self._ctc(speech["shared"], speech["lens"], b["tokens"],
                                                             b["token_lens"])
        out["infeasible"] = int((speech["lens"] < b["phone_lens"].to(speech["lens"].device)).sum())
        durations = self._aligner_durations(b)
        if cons_layers or self.duration_predictor is not None:
            text_enc = self.text_encoder(b["phones"], b["phone_lens"], mask=False)
            if self.duration_predictor is not None and durations is not None:
                # trained on the aligner's durations, without gradient into the text encoder
                out["duration"] = self.duration_predictor.loss(text_enc.detach(), b["phone_lens"], durations)
        if cons_layers:
            up, up_lens = self._upsample_text(text_enc, b["phone_lens"], durations)
            text = self._path(up, up_lens, need_layers=True, need_cascaded=False, cons_layers=cons_layers)
            out.update(speech_layers={n: speech["layers"][n] for n in cons_layers}, speech_lens=speech["lens"],
                       text_layers={n: text["layers"][n] for n in cons_layers}, text_lens=text["lens"],
                       phones=b["phones"], phone_lens=b["phone_lens"], durations=durations)
        return out

    def _aligner_durations(self, b):
        """The batch's aligner durations (B, M) in this model's encoder frames, or None."""
        d = b.get("durations")
        k = self.audio_encoder.stack_frames
        if d is None or k == 1:
            return d
        # the aligner counts subsampled frames; stacking k of them makes one encoder frame
        ends = torch.div(d.cumsum(1), k, rounding_mode="floor")
        return torch.diff(ends, dim=1, prepend=torch.zeros_like(ends[:, :1]))

    def _upsample_text(self, text_enc, phone_lens, durations=None):
        """Text encoder output (B, m, D) -> (B, m', D), lens at the shared encoder's input length."""
        if self.text_upsampling == "none":
            return text_enc, phone_lens
        if self.text_upsampling == "repeat":
            durations = repeat_durations(phone_lens, text_enc.shape[1], self.upsampling_conf["repeat"])
        elif durations is None:  # text-only or unaligned text: the predictor's durations
            durations = self.duration_predictor.durations(text_enc, phone_lens)
        return upsample(text_enc, phone_lens, durations)

    def _forward_text(self, b):
        text = self._path(*self._upsample_text(self.text_encoder(b["phones"], b["phone_lens"], mask=True),
                                               b["phone_lens"]))
        return {"hat_text_stream": self.stream_decoder.loss(text["shared"], text["lens"], b["tokens"],
                                                            b["token_lens"]).mean(),
                "hat_text_full": self.full_decoder.loss(text["cascaded"], text["lens"], b["tokens"],
                                                        b["token_lens"]).mean()}

    def _ctc(self, enc, enc_lens, tokens, token_lens):
        """Batch mean of the per-utterance CTC NLL (blank = 0) of enc (B, T, D) for labels (B, U),
        and the log-probabilities (B, T, V)."""
        log_probs = self.ctc_head(enc).float().log_softmax(-1)  # (B, T, V)
        nll = F.ctc_loss(log_probs.transpose(0, 1), tokens, enc_lens, token_lens, blank=0, reduction="none",
                         zero_infinity=True)
        feasible = (enc_lens >= token_lens).to(nll.device)  # the others have no CTC path: left out
        return (nll * feasible).sum() / feasible.sum().clamp(min=1), log_probs

    def _path(self, enc, lens, need_layers=False, need_cascaded=True, cons_layers=()):
        """Encoder output (B, n, D) -> shared (+ per-layer) -> cascaded. With need_cascaded
        False (the paired text in the consistency branch, which feeds no decoder) the
        cascaded encoder runs only if a consistency layer lies in it."""
        shared, shared_layers = self.shared_encoder(enc, lens, return_layers=True)
        need_cascaded_layers = need_layers and any(n.startswith("cascaded.") for n in cons_layers)
        layers = {"encoder": enc}
        layers.update({f"shared.{i + 1}": x for i, x in enumerate(shared_layers)})
        keep_cascaded_layers = need_cascaded_layers or not self.training
        cascaded = None
        if need_cascaded or keep_cascaded_layers:
            cascaded, casc_layers = self.cascaded_encoder(shared, lens, return_layers=True)
            if keep_cascaded_layers:
                layers.update({f"cascaded.{i + 1}": x for i, x in enumerate(casc_layers)})
        return {"shared": shared, "cascaded": cascaded, "lens": lens, "layers": layers}

    # --- inference --------------------------------------------------------------------
    def encode(self, feats, feat_lens, mode: str = "full"):
        """feats (B, T, F) -> (B, T', D), (B,). mode 'streaming' (shared) or 'full' (cascaded)."""
        if mode not in ("streaming", "full"):
            raise ValueError(f"mode must be 'streaming' or 'full', got {mode!r}")
        enc, lens = self.audio_encoder(feats, feat_lens)
        enc = self.shared_encoder(enc, lens)
        return (enc if mode == "streaming" else self.cascaded_encoder(enc, lens)), lens

    def decoder(self, mode: str) -> HatDecoder:
        if mode not in ("streaming", "full"):
            raise ValueError(f"mode must be 'streaming' or 'full', got {mode!r}")
        return self.stream_decoder if mode == "streaming" else self.full_decoder

    def consistency_representations(self, feats, feat_lens, phones, phone_lens):
        """Per layer (every name in ``layer_names``): (name, speech (B, n, d), speech_lens,
        text (B, m, d), text_lens), as the layers compute them (the objective's feature
        normalisation is the caller's). Text is not masked; call in eval mode."""
        speech = self._path(*self.audio_encoder(feats, feat_lens), need_layers=True)
        # upsampled text (repeat, or the duration predictor's durations: no aligner here)
        text = self._path(*self._upsample_text(self.text_encoder(phones, phone_lens, mask=False), phone_lens),
                          need_layers=True)
        return [(n, speech["layers"][n], speech["lens"], text["layers"][n], text["lens"])
                for n in self.layer_names if n in speech["layers"] and n in text["layers"]]

    # --- streaming (first pass) -------------------------------------------------------
    def init_stream(self, batch_size: int = 1) -> "StreamState":
        return StreamState(batch_size, audio=self.audio_encoder.conformer.init_cache(),
                           shared=self.shared_encoder.init_cache())

    def encode_chunk(self, feats_piece, state: "StreamState"):
        """feats_piece (B, t, F), any t >= 0 -> (newly final shared-encoder frames (B, t', D), new state)."""
        state = dataclasses.replace(state)
        sub, state.feat_buf = self.audio_encoder.subsampling.forward_stream(feats_piece, state.feat_buf)
        if state.stack_buf is not None:
            sub = torch.cat([state.stack_buf, sub], dim=1)
        k = self.audio_encoder.stack_frames
        n = sub.shape[1] // k * k
        sub, state.stack_buf = self.audio_encoder.stack(sub[:, :n]), sub[:, n:]
        buf = sub if state.sub_buf is None else torch.cat([state.sub_buf, sub], dim=1)
        outs = []
        while buf.shape[1] >= self.chunk_size:
            outs.append(self._stream_step(buf[:, : self.chunk_size], state))
            buf = buf[:, self.chunk_size:]
        state.sub_buf = buf
        return self._cat(outs, state), state

    def encode_chunk_final(self, state: "StreamState"):
        """Flush the last partial chunk at the end of the utterance -> (frames, new state)."""
        state = dataclasses.replace(state)
        outs = []
        if state.sub_buf is not None and state.sub_buf.shape[1] > 0:
            outs.append(self._stream_step(state.sub_buf, state))
        state.sub_buf = None
        return self._cat(outs, state), state

    def _stream_step(self, chunk, state: "StreamState"):
        x, state.audio = self.audio_encoder.conformer.forward_chunk(chunk, state.audio)
        x, state.shared = self.shared_encoder.forward_chunk(x, state.shared)
        return x

    def _cat(self, outs, state):
        if outs:
            return torch.cat(outs, dim=1)
        p = next(self.parameters())
        return p.new_zeros(state.batch_size, 0, self.shared_encoder.output_dim)
