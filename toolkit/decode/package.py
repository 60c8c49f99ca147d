"""A packed model: one file (a zip archive, ``*.concord``) or one directory holding all
a trained model needs to transcribe, checked when loaded.

Members (all listed with their size and sha256 in ``manifest.json``):

    config.yaml    the experiment's resolved config; cmvn / bpe_model name members below
    model.pt       the (averaged) state dict, loaded with ``torch.load(weights_only=True)``
    cmvn.ark       global CMVN stats (Kaldi (2, D+1) matrix)
    wp.model       the sentencepiece wordpiece model
    tokens.txt     wordpiece table (``piece id``), as data/lang/tokens.txt
    phones.txt, lexicon.txt   the phoneme table and lexicon, when the experiment's lang dir has them
    README.md      what the model is, its RESULTS.md, the code version it was packed with
    decode_defaults.yaml   the recipe's decode settings (toolkit.decode.defaults), when it saved them

A packed model is untrusted input (it may come from anyone). Loading reads the manifest
first and checks, in this order, before any audio is touched:

1. every member is listed in the manifest (an unlisted one is refused, never inflated)
   and every listed or required member is present, once;
2. each member is inflated in chunks and stopped as soon as it exceeds its declared size
   (format /2 declares sizes; a format /1 pack is bounded by the zip's own sizes), and a
   declared size more than 100 times the member's compressed size (a zip bomb)
   is refused before inflating; ``manifest.json`` and ``config.yaml`` are at most 1 MiB;
3. each member's sha256 matches the manifest;
4. model.pt is torch's zip with every record stored (as torch.save writes it: nothing in
   it inflates past its size); the config's sizes fit the weights: the model is built on
   the ``meta`` device (no memory) and its parameter names and shapes compared with
   model.pt's, loaded with ``torch.load(weights_only=True)``; only then is the real model
   built;
5. the wordpiece model, tokens.txt and the model agree on the vocabulary size; the CMVN
   dimension equals the model's feature dimension.

Nothing is extracted to disk (steps 1-3: :mod:`toolkit.decode.package_archive`). Any
failure is an InputError naming the package and the part.

The sha256 manifest detects corruption (a truncated download, a damaged disk), not
tampering: whoever can change a member can rewrite the manifest too. For authenticity,
publish the sha256 of the whole ``.concord`` file (``sha256sum mini.concord``) beside it
and load with ``expect_sha256`` (``concord-transcribe --expect-sha256 HEX``); for a
packed directory the digest is that of its ``manifest.json`` (which lists every member's
digest).
"""
from __future__ import annotations

import copy
import datetime
import io
import json
import os
import zipfile
from pathlib import Path

from toolkit.decode.package_archive import FORMAT, check_digest, read_members, sha256
from toolkit.utils.config import dump_yaml
from toolkit.utils.fileio import InputError, atomic_write
from toolkit.utils.version import code_version

# config keys that name training data on the packing machine: meaningless elsewhere
DATA_KEYS = ("train_data", "valid_data", "text_data", "lang_dir")


def is_package(path: str | os.PathLike) -> bool:
    path = Path(path)
    if path.is_dir():
        return (path / "manifest.json").exists()
    return path.is_file() and zipfile.is_zipfile(path)


def _member_sources(exp_dir: Path, config: dict, model_path: Path) -> dict[str, Path]:
    from toolkit.models.experiment import config_path
    sources = {"model.pt": model_path, "cmvn.ark": config_path(config, "cmvn", exp_dir),
               "wp.model": config_path(config, "bpe_model", exp_dir)}
    lang = Path(config["lang_dir"]) if config.get("lang_dir") else sources["wp.model"].parent
    if not lang.is_absolute() and not lang.exists():
        lang = exp_dir.parent.parent / lang
    for name in ("tokens.txt", "phones.txt", "lexicon.txt"):
        if (lang / name).exists():
            sources[name] = lang / name
    if "tokens.txt" not in sources:
        raise InputError(lang, "no tokens.txt beside the wordpiece model (stage 3 writes it)")
    return sources


def _readme(exp_dir: Path, config: dict, version: dict) -> str:
    results = exp_dir / "RESULTS.md"
    body = results.read_text(encoding="utf-8") if results.exists() else "(the experiment had no RESULTS.md)\n"
    return (f"# Concord packed model: {exp_dir.name}\n\n"
            f"- packed from: `{exp_dir.resolve()}`\n- packed on: "
            f"`{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}`\n"
            f"- toolkit version: `{version['toolkit']}`\n- git hash: `{version['git']}`\n"
            f"- vocabulary: {config['vocab_size']} wordpieces, {config['num_phones']} phones\n\n"
            "Use it with `concord-transcribe <this> audio.wav` or "
            "`toolkit.Transcriber.from_pretrained(<this>)`.\n\n" + body)


def pack_model(exp_dir: str | os.PathLike, out: str | os.PathLike,
               model_path: str | os.PathLike | None = None) -> Path:
    """Pack ``exp_dir`` (config.yaml, model_avg.pt or ``model_path``) into ``out``.

    ``out`` ending in ``.concord`` (or ``.zip``) is written as one zip file, anything else
    as a directory. The result is checked by loading it back.
    """
    from toolkit.utils.config import load_yaml
    exp_dir, out = Path(exp_dir), Path(out)
    config = load_yaml(exp_dir / "config.yaml")
    model_path = Path(model_path) if model_path else exp_dir / "model_avg.pt"
    if not model_path.exists():
        raise InputError(model_path, "no model to pack (stage 5 averages checkpoints into model_avg.pt)")
    members = {name: src.read_bytes() for name, src in _member_sources(exp_dir, config, model_path).items()}
    from toolkit.decode.defaults import FILENAME as DEFAULTS
    if (exp_dir / DEFAULTS).exists():
        members[DEFAULTS] = (exp_dir / DEFAULTS).read_bytes()
    packed = copy.deepcopy(config)
    for key in DATA_KEYS:
        packed.pop(key, None)
    packed.update({"cmvn": "cmvn.ark", "bpe_model": "wp.model"})
    version = code_version()
    members["config.yaml"] = dump_yaml(packed).encode("utf-8")
    members["README.md"] = _readme(exp_dir, config, version).encode("utf-8")
    manifest = {"format": FORMAT, **{f"{k}_version": v for k, v in version.items()},
                "vocab_size": config["vocab_size"], "num_phones": config["num_phones"],
                "files": {name: {"sha256": sha256(data), "size": len(data)}
                          for name, data in sorted(members.items())}}
    members["manifest.json"] = json.dumps(manifest, indent=1).encode("utf-8")
    if out.suffix in (".concord", ".zip"):
        with atomic_write(out, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                for name, data in members.items():
                    z.writestr(name, data)
    else:
        if out.exists() and any(out.iterdir()):
            raise InputError(out, "exists and is not empty; give a new directory or a .concord file")
        for name, data in members.items():  # manifest last: a dir without one is not a package
            with atomic_write(out / name, "wb") as f:
                f.write(data)
    load_package(out)
    return out


def _check_stored_only(path: Path, model_pt: bytes) -> None:
    """model.pt is torch's zip format with every record stored, as torch.save writes it: a
    compressed record inside (a second zip bomb, past the package's bounds) is refused."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_pt)) as z:
            packed = [i.filename for i in z.infolist() if i.compress_type != zipfile.ZIP_STORED]
    except zipfile.BadZipFile:
        raise InputError(path, "model.pt is not torch's zip format (torch.save)") from None
    if packed:
        raise InputError(path, f"model.pt has {len(packed)} compressed record(s) (e.g. {packed[0]}); "
                               "torch.save writes none: refused")


def _check_weights_fit(path: Path, config: dict, state) -> None:
    """Names and shapes of ``state`` against the model ``config`` builds on the meta device
    (no memory is allocated, whatever sizes the config names)."""
    import torch
    from toolkit.models import build_model
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "model.pt does not fit the config: not a state dict of tensors")
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    except (ValueError, TypeError, KeyError) as e:
        raise InputError(path, f"config.yaml does not build a model: {e}") from None
    found = {k: tuple(v.shape) for k, v in state.items()}
    if set(expected) != set(found):
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        raise InputError(path, f"model.pt does not fit the config: missing {missing[:3]}, unexpected {extra[:3]}")
    wrong = [k for k in expected if expected[k] != found[k]]
    if wrong:
        k = wrong[0]
        raise InputError(path, f"model.pt does not fit the config: {len(wrong)} tensor(s) of another size, "
                               f"e.g. {k}: config.yaml makes {expected[k]}, model.pt holds {found[k]}")


def load_package(path: str | os.PathLike, device: str = "cpu", expect_sha256: str | None = None):
    """A checked packed model as a :class:`toolkit.models.experiment.Experiment`.

    ``expect_sha256``: the published digest of the package file (of manifest.json for a
    directory); anything else is refused before a member is read.
    """
    import numpy as np
    import torch
    import yaml

    from kaldiio.matio import read_kaldi

    from toolkit.models.experiment import Experiment
    from toolkit.features.cmvn import GlobalCMVN
    from toolkit.models import build_model, resolve_model_config
    from toolkit.text.wordpiece import load_wordpiece

    path = Path(path)
    if path.is_dir():
        if expect_sha256 is not None:
            check_digest(path, expect_sha256)
        members = read_members(path)
    else:
        with open(path, "rb") as f:  # one open file: the digest is of the bytes that are loaded
            if expect_sha256 is not None:
                check_digest(path, expect_sha256, f)
            members = read_members(path, f)
    try:
        config = yaml.safe_load(members["config.yaml"])
    except yaml.YAMLError as e:
        raise InputError(path, f"config.yaml is not YAML: {e}") from None
    if not isinstance(config, dict):
        raise InputError(path, "config.yaml is not a mapping")
    _check_stored_only(path, members["model.pt"])
    try:
        state = torch.load(io.BytesIO(members["model.pt"]), map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError) as e:
        raise InputError(path, f"model.pt is not a weights-only state dict: {str(e).splitlines()[0]}") from None
    _check_weights_fit(path, config, state)
    try:
        model = build_model(config)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as e:
        raise InputError(path, f"model.pt does not fit the config: {str(e).splitlines()[0]}") from None
    try:
        sp = load_wordpiece(members["wp.model"], "wp.model")
    except ValueError as e:
        raise InputError(path, str(e)) from None
    n_tokens = len([line for line in members["tokens.txt"].decode("utf-8").splitlines() if line.strip()])
    out_dim = model.stream_decoder.joiner.out.out_features
    if not sp.get_piece_size() == n_tokens == config["vocab_size"] == out_dim:
        raise InputError(path, f"vocabulary sizes disagree: wp.model {sp.get_piece_size()}, tokens.txt "
                               f"{n_tokens}, config vocab_size {config['vocab_size']}, model output {out_dim}")
    try:
        stats = np.asarray(read_kaldi(io.BytesIO(members["cmvn.ark"])), dtype=np.float64)
    except Exception as e:
        raise InputError(path, f"cmvn.ark is not Kaldi CMVN stats: {e}") from None
    feat_dim = resolve_model_config(config)["model_conf"]["audio_encoder_conf"]["feat_dim"]
    if stats.ndim != 2 or stats.shape != (2, feat_dim + 1) or stats[0, -1] <= 0:
        raise InputError(path, f"cmvn.ark: shape {stats.shape}, the model reads {feat_dim}-dim features")
    from toolkit.decode.defaults import FILENAME as DEFAULTS, parse_defaults
    defaults = (parse_defaults(members[DEFAULTS].decode("utf-8"), f"{path}:{DEFAULTS}")
                if DEFAULTS in members else {})
    model.to(device).eval()
    return Experiment(model, GlobalCMVN.from_stats(stats), sp, config, defaults)

