"""Transcribe audio with a trained model: the Python API behind ``concord-transcribe``.

Usage::

    from toolkit import Transcriber
    asr = Transcriber.from_pretrained("egs/mini/exp/train")      # an exp dir or a packed model
    print(asr.transcribe("my.flac").text)                        # full context (second pass)
    for r in asr.transcribe(["a.wav", "b.ogg"], mode="streaming"):
        print(r.uttid, r.text, [(w.word, w.start, w.end) for w in r.words])
    stream = asr.stream()                                         # live audio, any sample rate
    stream.accept_waveform(samples, 44100); stream.result(); stream.finalize()

Audio: a path (anything libsndfile reads: wav, flac, ogg, mp3; str, Path or bytes; a file
name only, never a shell command, and only a regular file), or float samples in
[-1, 1] with their ``sample_rate`` (default 16 kHz); other rates are resampled with
soxr, several channels are averaged. Times (seconds) are those of the encoder frame at
which the transducer emitted each token: a token is dated by the frame it came out in,
which lags its sound by up to the model's latency; a word spans its first token's start
to the next word's start, at most 0.5 s past its last token (see :func:`timed_units`).

Long audio: a recording longer than ``max_segment_s`` (default 20 s; 0 = never cut) is cut
at pauses into speech segments of at most that length (:mod:`toolkit.features.segment`),
decoded as a batch (full) or one after another (streaming, each from a fresh state), and
joined back with times from the start of the file. Memory then grows with the length of
a segment, not of the file, and a transducer does not drift over an hour of audio.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from toolkit.features.fbank import SAMPLE_RATE, FbankExtractor

MODES = ("full", "streaming")
PATH_TYPES = (str, bytes, os.PathLike)  # a file name (bytes: decoded with os.fsdecode), never a command


@dataclass(frozen=True)
class TimedUnit:
    """A token (wordpiece) or a word, with start/end in seconds from the start of the audio."""
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    uttid: str
    text: str
    tokens: tuple[TimedUnit, ...]
    words: tuple[TimedUnit, ...]
    duration: float       # seconds of audio
    compute_s: float = 0.0

    def to_json(self) -> dict:
        unit = lambda u: {"text": u.text, "start": round(u.start, 3), "end": round(u.end, 3)}  # noqa: E731
        return {"utt": self.uttid, "text": self.text, "duration": round(self.duration, 3),
                "words": [unit(w) for w in self.words], "tokens": [unit(t) for t in self.tokens]}


def load_model(path: str | os.PathLike, device: str = "cpu", expect_sha256: str | None = None):
    """An :class:`~toolkit.models.experiment.Experiment` from an experiment dir or a packed model.

    ``expect_sha256``: the published sha256 of a packed model file (see
    :mod:`toolkit.decode.package`); the package is refused unless it matches.
    """
    from toolkit.decode.package import is_package, load_package
    from toolkit.models.experiment import load_experiment
    from toolkit.utils.fileio import InputError
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such path: give an experiment dir (exp/<tag>) or a packed model (*.concord)")
    if is_package(path):
        return load_package(path, device, expect_sha256=expect_sha256)
    if expect_sha256 is not None:
        raise InputError(path, "--expect-sha256 checks a packed model; this is not one")
    if path.is_dir() and (path / "config.yaml").exists():
        return load_experiment(path, device=device)
    tags = sorted(p.name for p in path.iterdir() if (p / "config.yaml").exists()) if path.is_dir() else []
    hint = f" (experiment dirs in it: {', '.join(str(path / t) for t in tags)})" if tags else ""
    raise InputError(path, "neither an experiment dir (config.yaml + model_avg.pt) nor a packed model" + hint)


def read_audio(path: str | bytes | os.PathLike, uttid: str | None = None) -> np.ndarray:
    """16 kHz mono float32 samples of an audio file: a file name, never a command (see
    :func:`~toolkit.features.audio.read_audio_file`; FIFOs, devices and directories are refused)."""
    from toolkit.features.audio import audio_path, read_audio_file, resample
    path = audio_path(path)
    uttid = uttid or Path(path).stem
    samples, rate = read_audio_file(path, uttid)
    return resample(samples, rate, SAMPLE_RATE, uttid, path)


def read_wav_scp_value(spec: str, uttid: str) -> np.ndarray:
    """16 kHz mono float32 samples of a wav.scp value (a path or Kaldi's ``cmd |``)."""
    from toolkit.features.audio import read_recording, resample
    samples, rate = read_recording(spec, uttid)
    return resample(samples, rate, SAMPLE_RATE, uttid, spec.strip())


WORD_TAIL_S = 0.5  # a word lasts at most this long past its last token: a longer pause is not the word


def timed_units(sp, ids: Sequence[int], frames: Sequence[int], frame_s: float, audio_s: float | None = None):
    """(tokens, words) as TimedUnits; words group pieces at '▁'.

    Token i spans its emission frame. A word starts at its first token and lasts until the
    next word starts (so a one-token word is not one frame long), but never past the next
    word's start, at most WORD_TAIL_S past its last token's frame, and (the last word) not
    past ``audio_s``.
    """
    tokens = tuple(TimedUnit(sp.id_to_piece(i), f * frame_s, (f + 1) * frame_s) for i, f in zip(ids, frames))
    groups: list[list[int]] = []
    for k, tok in enumerate(tokens):
        if tok.text.startswith("\u2581") or not groups:
            groups.append([])
        groups[-1].append(k)
    spans = []
    for g in groups:
        word = sp.decode([ids[k] for k in g]).strip()
        if word:
            spans.append((word, tokens[g[0]].start, tokens[g[-1]].end))
    words = []
    for n, (word, start, last_end) in enumerate(spans):
        end = last_end + WORD_TAIL_S
        if n + 1 < len(spans):
            end = min(end, spans[n + 1][1])
        elif audio_s is not None:
            end = min(end, max(audio_s, last_end))
        words.append(TimedUnit(word, start, max(start, end)))
    return tokens, tuple(words)


class Transcriber:
    """A loaded model plus search settings; ``transcribe`` files or arrays, ``stream`` live audio.

    Search settings left None come from the experiment's ``decode_defaults.yaml`` (the
    recipe's choice, carried by packed models too; :mod:`toolkit.decode.defaults`), else
    greedy search without a blank penalty.
    """

    def __init__(self, experiment, mode: str = "full", method: str | None = None, beam: int | None = None,
                 blank_penalty: float | None = None, ilm_weight: float | None = None,
                 max_sym_per_frame: int | None = None, max_segment_s: float = 20.0):
        from toolkit.decode.defaults import resolve
        s = resolve(getattr(experiment, "decode_defaults", {}), method=method, beam=beam,
                    blank_penalty=blank_penalty, ilm_weight=ilm_weight, max_sym_per_frame=max_sym_per_frame)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if s["method"] not in ("greedy", "beam"):
            raise ValueError(f"method must be 'greedy' or 'beam', got {s['method']!r}")
        self.experiment, self.model, self.sp = experiment, experiment.model, experiment.sp
        self.mode, self.method, self.beam = mode, s["method"], s["beam"]
        self.blank_penalty, self.ilm_weight, self.max_sym_per_frame = (s["blank_penalty"], s["ilm_weight"],
                                                                        s["max_sym_per_frame"])
        self.frame_s = 0.01 * self.model.audio_encoder.frames_per_output  # seconds per encoder frame
        self.max_segment_s = max_segment_s

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu", expect_sha256: str | None = None,
                        **settings) -> "Transcriber":
        """From an experiment dir (``exp/<tag>``) or a packed model (``*.concord`` file or dir);
        ``expect_sha256``: the packed model's published digest, checked before it is read."""
        return cls(load_model(path, device, expect_sha256), **settings)

    # --- whole utterances ---------------------------------------------------------------
    def transcribe(self, audio, mode: str | None = None, sample_rate: int = SAMPLE_RATE,
                   batch_size: int = 8):
        """One path / array -> a Transcript; a list of them -> a list (ids: file stems or ``utt<i>``)."""
        single = isinstance(audio, PATH_TYPES + (np.ndarray, torch.Tensor))
        items = [audio] if single else list(audio)
        named = [(self._name(a, i), a) for i, a in enumerate(items)]
        results = self.transcribe_named(((u, self._samples(a, u, sample_rate)) for u, a in named),
                                        mode, batch_size)
        return results[0] if single else results

    def transcribe_named(self, utterances, mode: str | None = None, batch_size: int = 8) -> list[Transcript]:
        """``(uttid, 16 kHz samples)`` pairs (any iterable) -> Transcripts in the same order."""
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        out, batch = [], []
        for uttid, samples in utterances:
            if self.max_segment_s and len(samples) > self.max_segment_s * SAMPLE_RATE:
                if batch:  # keep the input order
                    out += self._decode_pieces(batch, mode, batch_size)
                    batch = []
                out.append(self._long_utterance(uttid, samples, mode, batch_size))
                continue
            batch.append((uttid, samples))
            if len(batch) == batch_size:
                out += self._decode_pieces(batch, mode, batch_size)
                batch = []
        return out + (self._decode_pieces(batch, mode, batch_size) if batch else [])

    def _decode_pieces(self, pieces, mode: str, batch_size: int) -> list[Transcript]:
        if mode == "streaming":
            return [self._stream_utterance(u, s) for u, s in pieces]
        return [r for b in range(0, len(pieces), batch_size) for r in self._full_batch(pieces[b:b + batch_size])]

    def _long_utterance(self, uttid: str, samples: np.ndarray, mode: str, batch_size: int) -> Transcript:
        """Speech segments decoded on their own, joined with times from the start of ``samples``."""
        from toolkit.features.segment import SegmentConfig, speech_segments
        spans = speech_segments(samples, SegmentConfig(max_s=self.max_segment_s))
        parts = self._decode_pieces([(uttid, samples[a:b]) for a, b in spans], mode, batch_size)
        return joined(uttid, len(samples), [(a / SAMPLE_RATE, p) for (a, _), p in zip(spans, parts)])

    @torch.no_grad()
    def _full_batch(self, batch) -> list[Transcript]:
        from toolkit.decode.runner import search_full_batch, skip_if_too_short
        extractor = FbankExtractor(self._feat_dim())
        feats = [extractor.compute(s) for _, s in batch]
        ok = [k for k, f in enumerate(feats) if not skip_if_too_short(self.model, batch[k][0], len(f))]
        hyps, frames, share = {k: [] for k in range(len(batch))}, {k: [] for k in range(len(batch))}, 0.0
        if ok:
            start = time.perf_counter()
            (found, found_frames), _ = search_full_batch(
                self.model, [feats[k] for k in ok], self.experiment.cmvn, self.method, self.beam, self.ilm_weight,
                self.blank_penalty, with_frames=True, max_sym_per_frame=self.max_sym_per_frame)
            hyps.update(zip(ok, found))
            frames.update(zip(ok, found_frames))
            share = (time.perf_counter() - start) / len(ok)
        return [self._transcript(u, len(s), hyps[k], frames[k], share) for k, (u, s) in enumerate(batch)]

    def _stream_utterance(self, uttid: str, samples: np.ndarray) -> Transcript:
        stream = self.stream(mode="streaming")
        stream.accept_waveform(samples)
        return stream.finalize(uttid)

    # --- live audio -----------------------------------------------------------------------
    def stream(self, mode: str = "streaming") -> "Stream":
        """A live session: ``accept_waveform(samples, sample_rate)`` -> partial text, ``result()``,
        ``finalize()`` -> Transcript. mode 'full': partials from the streaming pass, the final
        text from the full-context pass over the whole utterance (two-pass recognition)."""
        return Stream(self, mode)

    # --- helpers ----------------------------------------------------------------------------
    def _feat_dim(self) -> int:
        return int(self.experiment.cmvn.mean.shape[0]) if self.experiment.cmvn is not None else 80

    @staticmethod
    def _name(audio, index: int) -> str:
        return Path(os.fsdecode(audio)).stem if isinstance(audio, PATH_TYPES) else f"utt{index}"

    @staticmethod
    def _samples(audio, uttid: str, sample_rate: int) -> np.ndarray:
        if isinstance(audio, PATH_TYPES):
            return read_audio(audio, uttid)
        from toolkit.features.audio import resample
        x = np.asarray(audio.cpu().numpy() if isinstance(audio, torch.Tensor) else audio, dtype=np.float32)
        if x.ndim == 2:  # (N, C) channels last, as soundfile gives them
            x = x.mean(axis=1, dtype=np.float32)
        return resample(x.reshape(-1), sample_rate, SAMPLE_RATE, uttid, "<array>")

    def _transcript(self, uttid, num_samples, ids, frames, compute_s) -> Transcript:
        tokens, words = timed_units(self.sp, ids, frames, self.frame_s, num_samples / SAMPLE_RATE)
        return Transcript(uttid, self.sp.decode(list(ids)), tokens, words, num_samples / SAMPLE_RATE, compute_s)


def joined(uttid: str, num_samples: int, parts) -> Transcript:
    """One Transcript from ``(offset seconds, Transcript)`` parts of the same recording."""
    shift = lambda units, s: tuple(TimedUnit(u.text, u.start + s, u.end + s) for u in units)  # noqa: E731
    return Transcript(uttid, " ".join(p.text for _, p in parts if p.text),
                      tuple(t for s, p in parts for t in shift(p.tokens, s)),
                      tuple(w for s, p in parts for w in shift(p.words, s)),
                      num_samples / SAMPLE_RATE, sum(p.compute_s for _, p in parts))


class Stream:
    """One utterance of live audio (see :meth:`Transcriber.stream`)."""

    def __init__(self, transcriber: Transcriber, mode: str):
        from toolkit.decode.session import StreamingSession
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        t = transcriber
        self.transcriber, self.mode = t, mode
        self.session = StreamingSession(t.model, t.experiment.cmvn, t.sp, method=t.method, beam=t.beam,
                                        ilm_weight=t.ilm_weight, num_mel_bins=t._feat_dim(),
                                        blank_penalty=t.blank_penalty, max_sym_per_frame=t.max_sym_per_frame)
        # full mode: audio the full-context pass has not decoded yet, from sample `offset` on
        self.pending: list[np.ndarray] = []
        self.pending_len, self.offset = 0, 0
        self.parts: list[tuple[float, Transcript]] = []  # full-context results of finished segments
        self._final: Transcript | None = None

    def accept_waveform(self, samples, sample_rate: int = SAMPLE_RATE) -> str:
        """Feed more audio; returns the partial text so far (streaming pass)."""
        x = Transcriber._samples(samples, "stream", sample_rate)
        limit = self.transcriber.max_segment_s * SAMPLE_RATE
        if self.mode == "full":
            self.pending.append(x)
            self.pending_len += len(x)
            if limit and self.pending_len > 1.5 * limit:
                self._decode_finished_segments()
        return self.session.accept_waveform(x)

    def _decode_finished_segments(self) -> None:
        """Full-context pass over every speech segment of the pending audio but the last (which
        may still grow); the audio before that last one is then dropped, so a long stream is
        never decoded twice and memory stays bounded."""
        from toolkit.features.segment import SegmentConfig, speech_segments
        t = self.transcriber
        audio = np.concatenate(self.pending)
        spans = speech_segments(audio, SegmentConfig(max_s=t.max_segment_s))
        keep_from = spans[-1][0] if spans else max(0, len(audio) - SAMPLE_RATE)  # no speech: keep 1 s
        done = spans[:-1]
        parts = t._decode_pieces([("stream", audio[a:b]) for a, b in done], "full", 8)
        self.parts += [((self.offset + a) / SAMPLE_RATE, p) for (a, _), p in zip(done, parts)]
        self.pending, self.pending_len = [audio[keep_from:]], len(audio) - keep_from
        self.offset += keep_from

    def result(self) -> str:
        """Text so far: the streaming partial, or the final text once finalized."""
        return self._final.text if self._final is not None else self.session.partial()

    def finalize(self, uttid: str = "stream") -> Transcript:
        """End of audio: flush the streaming pass; in full mode, the full-context pass over the
        audio it has not decoded yet (segmented when long), joined to the earlier segments."""
        if self._final is None:
            self.session.finalize()
            t = self.transcriber
            if self.mode == "full":
                audio = np.concatenate(self.pending) if self.pending else np.zeros(0, np.float32)
                rest = t.transcribe_named([(uttid, audio)], mode="full")[0]
                self._final = joined(uttid, self.offset + len(audio),
                                     self.parts + [(self.offset / SAMPLE_RATE, rest)])
            else:
                from toolkit.decode.runner import skip_if_too_short
                skip_if_too_short(t.model, uttid, self.session.num_feat_frames)
                n = self.session.num_samples
                self._final = t._transcript(uttid, n, self.session.token_ids(), self.session.token_frames(),
                                            sum(self.session.chunk_compute_s))
        return self._final
