"""Text-to-speech through ctypes on the libespeak-ng shipped by the ``espeakng-loader`` wheel.

espeak-ng keeps global state (voice, parameters, wave generator phase, echo buffer,
random noise generator) that leaks from one utterance into the next, so the same text
can come out differently depending on what was said before. For byte-identical output
:func:`synthesize_isolated` forks a child from a process whose espeak was initialised
but never used; the child says a fixed group of utterances (e.g. one chapter), each with
a seeded noise generator, so the bytes depend only on that group.
"""
from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
espeakCHARS_UTF8 = 1
espeakRATE, espeakVOLUME, espeakPITCH, espeakRANGE = 1, 2, 3, 4
ESPEAK_RATE = 22050
TARGET_RATE = 16000


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak language+variant plus prosody settings."""

    lang: str       # espeak voice name, e.g. "en", "de", "fr", "es"
    variant: str    # espeak variant under voices/!v, e.g. "f2", "m3", "klatt"
    pitch: int      # 0..100, espeak default 50
    rate: int       # words per minute, espeak default 175
    range: int      # pitch range 0..100, espeak default 50
    volume: int = 50  # amplitude 0..200; espeak's default 100 clips for some variants (john, klatt4)

    @property
    def espeak_name(self) -> str:
        return f"{self.lang}+{self.variant}"


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_void_p * 2)]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


class Espeak:
    """The process-wide espeak-ng engine (one per process: the library is a singleton)."""

    _instance: "Espeak | None" = None

    def __init__(self):
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak_Initialize failed or gave an unexpected rate ({rate})")
        self._lib = lib
        self._data_path = Path(espeakng_loader.get_data_path())
        self._chunks: list[np.ndarray] = []

        def collect(wav, n, _events):
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0  # 0 = keep going

        self._callback = _SynthCallback(collect)  # keep a reference: ctypes does not
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "Espeak":
        if cls._instance is None:
            cls._instance = Espeak()
        return cls._instance

    def has_voice(self, name: str) -> bool:
        """``lang+variant`` exists (espeak itself silently ignores an unknown variant)."""
        lang, _, variant = name.partition("+")
        if variant and not (self._data_path / "voices" / "!v" / variant).is_file():
            return False
        return self._lib.espeak_SetVoiceByName(name.encode()) == 0

    def synthesize(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        """Say ``text``; returns int16 samples at 16 kHz, shape (T,). Not isolated: see module doc."""
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice '{voice.espeak_name}'")
        for param, value in ((espeakRATE, voice.rate), (espeakPITCH, voice.pitch), (espeakRANGE, voice.range),
                             (espeakVOLUME, voice.volume)):
            lib.espeak_SetParameter(param, value, 0)
        lib.espeak_ng_SetRandSeed(seed)
        self._chunks = []
        data = text.encode("utf-8")
        err = lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err} on {text!r}")
        lib.espeak_Synchronize()
        wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)  # (T22,)
        self._chunks = []
        if len(wav) == 0:
            raise RuntimeError(f"espeak produced no audio for {text!r} with voice {voice}")
        out = soxr.resample(wav.astype(np.float32), ESPEAK_RATE, TARGET_RATE)  # (T,)
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def add_recording_conditions(samples: np.ndarray, seed: int, pad_seconds=(0.05, 0.35),
                             snr_db=(30.0, 50.0)) -> np.ndarray:
    """Make a clean espeak utterance (int16, 16 kHz) sound recorded: silence of a random
    length before and after, and white noise at a random SNR over the whole signal.

    espeak's pauses are digital zeros, which no microphone gives: their log-mel energies
    sit at log(FLT_EPSILON) = -15.9, far from speech, and squash every other frame once
    CMVN normalises. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    lead, trail = (int(rng.uniform(*pad_seconds) * TARGET_RATE) for _ in range(2))
    x = np.concatenate([np.zeros(lead), samples.astype(np.float64), np.zeros(trail)])  # (T,)
    speech_rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 1.0
    noise_rms = max(speech_rms, 1.0) * 10 ** (-rng.uniform(*snr_db) / 20)
    x += rng.standard_normal(len(x)) * max(noise_rms, 1.0)  # at least 1 LSB: never digital silence
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def synthesize_isolated(items: list[tuple[str, Voice, int]], write, post=None) -> list[float]:
    """Say ``items`` (text, voice, seed) in a forked child that starts from a clean engine.

    The child says them in order, calling ``write(i, samples_int16)`` for each (e.g. to
    write the audio file), so the result depends only on ``items``, never on what this
    process said before. ``post(samples, seed) -> samples`` (e.g.
    :func:`add_recording_conditions`) is applied before writing. Returns the durations in
    seconds of what was written. Call from a process whose
    :class:`Espeak` was created but has not synthesized (see :func:`prepare_engine`).
    Raises RuntimeError with the child's message if it fails.
    """
    engine = Espeak.get()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: exit without running Python's atexit or flushing the parent's buffers
        os.close(rfd)
        status, msg = 0, b""
        try:
            for i, (text, voice, seed) in enumerate(items):
                samples = engine.synthesize(text, voice, seed)
                if post is not None:
                    samples = post(samples, seed)
                write(i, samples)
                msg += struct.pack("<q", len(samples))
        except BaseException as e:  # noqa: BLE001 - everything must reach the parent
            msg += struct.pack("<q", -1) + f"{type(e).__name__}: {e}".encode("utf-8", "replace")
            status = 1
        view = memoryview(msg)
        while view:
            view = view[os.write(wfd, view):]
        os._exit(status)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        reply = f.read()
    os.waitpid(pid, 0)
    durations = []
    for off in range(0, len(reply) - len(reply) % 8, 8):
        n = struct.unpack("<q", reply[off:off + 8])[0]
        if n < 0:
            text = items[len(durations)][0]
            raise RuntimeError(f"{text!r}: {reply[off + 8:].decode('utf-8', 'replace')}")
        durations.append(n / TARGET_RATE)
    if len(durations) != len(items):
        raise RuntimeError(f"synthesis child died after {len(durations)} of {len(items)} utterances")
    return durations


def prepare_engine(voice_names: list[str]) -> Espeak:
    """Create the engine and check every voice exists, without synthesizing anything."""
    engine = Espeak.get()
    missing = [v for v in voice_names if not engine.has_voice(v)]
    if missing:
        raise ValueError(f"espeak-ng voices not found: {', '.join(missing)}")
    return engine
