"""Concord: joint speech-text ASR with a best-alignment consistency loss.

Subpackages, one concern each (dependencies point one way: bin -> train/decode ->
models -> nn/losses; data, text, features, scoring stand alone):

    data      Kaldi data dirs, datasets, bucketing, collation
    text      phoneme lexicon, wordpieces, text normalisation, token sequence stores
    features  Kaldi fbank, CMVN, kaldiio dumping, SpecAugment
    nn        conformer blocks, subsampling
    models    encoders, HAT decoders, the joint speech-text model
    losses    best-alignment consistency loss, transducer (HAT) loss
    decode    greedy/beam search, streaming sessions
    scoring   sclite-compatible scoring
    train     the trainer
    bin       one thin CLI per stage: python -m toolkit.bin.<stage> --help
"""

__version__ = "0.1.0"

__all__ = ["Transcriber", "Transcript", "__version__"]


def __getattr__(name: str):
    # lazy: `import toolkit` stays light (no torch) for the CLIs that do not need a model
    if name in ("Transcriber", "Transcript"):
        from toolkit.decode import transcriber
        return getattr(transcriber, name)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
