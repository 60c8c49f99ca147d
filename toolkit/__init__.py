"""Concord: joint speech-text ASR with a best-alignment consistency loss.

Subpackages, one concern each (dependencies point one way: bin -> train/decode ->
models -> nn/losses; data, text, features, scoring stand alone):

    data      Kaldi data dirs, corpus layouts, bucketing, collation
    text      phoneme lexicon, wordpieces, text normalisation, token sequence stores
    features  Kaldi fbank, CMVN, kaldiio dumping and reading, SpecAugment
    nn        conformer blocks, subsampling
    models    encoders, HAT decoders, the joint speech-text model, loading an experiment
    losses    best-alignment consistency loss and the other alignment kinds, (pruned) HAT loss
    decode    greedy/beam search, streaming sessions, decode jobs, Transcriber, packed models
    scoring   sclite-compatible scoring, RESULTS.md tables
    train     the objective, the trainer, the training datasets
    analysis  per-layer consistency, study runner and report
    export    ONNX export and an onnxruntime transducer
    synth     the embedded corpus synthesizer (espeak-ng)
    utils     small helpers every package may import (config, file I/O, Kaldi maps, CLI)
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
