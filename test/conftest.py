"""Shared pytest fixtures: repository paths and an isolated, tool-ready environment."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tool_env() -> dict:
    """Environment for shell tools under utils/: utils on PATH, C locale, this venv's python first."""
    env = dict(os.environ)
    venv_bin = str(Path(os.sys.executable).parent)
    env["PATH"] = f"{REPO / 'utils'}:{venv_bin}:{env.get('PATH', '')}"
    env["LC_ALL"] = "C"
    env["PYTHONIOENCODING"] = "UTF-8"
    env["OMP_NUM_THREADS"] = "1"
    return env


def sclite_binary():
    """Path of a real sclite (Debian's sctk) when installed, else None."""
    for cand in (shutil.which("sclite"), "/usr/lib/sctk/bin/sclite"):
        if cand and os.path.exists(cand):
            return cand
    return None


SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "hello world again", "we decode speech",
             "streaming sessions are fun", "one two three four five"]
TINY = {"chunk_size": 2, "left_chunks": 2,
        "audio_encoder_conf": {"d_model": 16, "n_layers": 1, "n_heads": 2, "conv_kernel": 3,
                               "subsampling_channels": 4, "dropout": 0.0},
        "text_encoder_conf": {"d_model": 16, "n_layers": 1, "n_heads": 2, "conv_kernel": 3, "dropout": 0.0},
        "shared_encoder_conf": {"d_model": 16, "n_layers": 1, "n_heads": 2, "conv_kernel": 3, "dropout": 0.0},
        "cascaded_encoder_conf": {"d_model": 16, "n_layers": 1, "n_heads": 2, "conv_kernel": 3, "dropout": 0.0},
        "predictor": "stateless", "predictor_conf": {"embed_dim": 16, "dropout": 0.0},
        "joiner_conf": {"joint_dim": 16}}


def waveform(seed: int, seconds: float) -> np.ndarray:
    """Speech-like test signal: a few gliding harmonics plus noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000.0
    f0 = 120 + 60 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
    x = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 6))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def make_tiny_recipe(root: Path) -> dict:
    """A recipe dir under ``root``: data/test (wav + text), dump/test (feats, CMVN), data/lang
    (wordpieces, tokens.txt) and exp/tiny, an untrained tiny joint model whose blank logit is
    lowered so that it emits tokens (the comparisons of decoders are then not vacuous)."""
    import kaldiio
    import sentencepiece as spm
    import soundfile as sf
    import torch

    from toolkit.features.cmvn import accumulate_stats, write_stats
    from toolkit.features.fbank import FbankExtractor
    from toolkit.models import build_model
    from toolkit.text.wordpiece import train_wordpiece
    from toolkit.utils.config import dump_yaml
    data = root / "data" / "test"
    data.mkdir(parents=True)
    ids = [f"spk{i % 2}-utt{i}" for i in range(len(SENTENCES))]
    extractor, feats = FbankExtractor(), {}
    for i, (u, text) in enumerate(zip(ids, SENTENCES)):
        wav = waveform(i, 0.6 + 0.17 * i)
        sf.write(root / f"{u}.wav", wav, 16000, subtype="FLOAT")
        feats[u] = extractor.compute(wav)
    order = sorted(ids)
    (data / "wav.scp").write_text("".join(f"{u} {root / u}.wav\n" for u in order))
    (data / "text").write_text("".join(f"{u} {SENTENCES[ids.index(u)]}\n" for u in order))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in order))
    dump = root / "dump" / "test"
    dump.mkdir(parents=True)
    with kaldiio.WriteHelper(f"ark,scp:{dump / 'feats.ark'},{dump / 'feats.scp'}") as w:
        for u in order:
            w(u, feats[u])
    write_stats(dump / "cmvn.ark", accumulate_stats(feats.values()))
    bpe = train_wordpiece([data / "text"], 40, root / "data" / "lang")
    vocab = spm.SentencePieceProcessor(model_file=str(bpe)).get_piece_size()
    config = {"model": "joint", "model_conf": TINY, "vocab_size": vocab, "num_phones": 20,
              "bpe_model": "data/lang/" + bpe.name, "cmvn": "dump/test/cmvn.ark"}
    exp = root / "exp" / "tiny"
    exp.mkdir(parents=True)
    dump_yaml(config, exp / "config.yaml")
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():  # lower the blank logit so the untrained model emits tokens to compare
        for dec in (model.stream_decoder, model.full_decoder):
            dec.joiner.out.bias[0] = -6.0
    torch.save(model.state_dict(), exp / "model_avg.pt")
    return {"root": root, "data": data, "feats": dump / "feats.scp", "exp": exp, "ids": order}


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> dict:
    """make_tiny_recipe, built once per test session (treat it as read-only)."""
    return make_tiny_recipe(tmp_path_factory.mktemp("tiny_recipe"))


def nvvm_available() -> bool:
    """True when numba can compile PTX here (libNVVM found), with or without a GPU."""
    try:
        from numba.cuda.cudadrv import nvvm
        return nvvm.is_available()
    except Exception:
        return False


# ---- CUDA paths -----------------------------------------------------------------------
# Tests marked ``cuda`` cover the CUDA kernels and device paths. Without a GPU the kernel
# equalities run in numba's CUDA simulator (the ``*_in_the_cuda_simulator`` tests) and the
# device-only tests skip. ``CONCORD_CUDA_TESTS=device pytest -m cuda`` (what concord-gpu-check
# runs) takes the simulator away, so the same equalities run on the real device, and makes
# the device-only tests fail instead of skipping when no device is visible.
CUDA_TESTS_ON_DEVICE = os.environ.get("CONCORD_CUDA_TESTS", "") == "device"


def cuda_kernel_env(**extra) -> dict:
    """Environment for a subprocess that runs the numba.cuda kernels: the simulator, or the
    device when CONCORD_CUDA_TESTS=device."""
    env = {**os.environ, **extra}
    if CUDA_TESTS_ON_DEVICE:
        env.pop("NUMBA_ENABLE_CUDASIM", None)
    else:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def needs_cuda_device(available: bool):
    """skipif for a device-only test: skipped without a device, unless the run asked for the device."""
    return pytest.mark.skipif(not (available or CUDA_TESTS_ON_DEVICE), reason="needs a CUDA device")
