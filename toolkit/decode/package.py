"""A packed model: one file (a zip archive, ``*.concord``) or one directory holding all
a trained model needs to transcribe, verified when loaded.

Members (all listed with their sha256 in ``manifest.json``):

    config.yaml    the experiment's resolved config; cmvn / bpe_model name members below
    model.pt       the (averaged) state dict, loaded with ``torch.load(weights_only=True)``
    cmvn.ark       global CMVN stats (Kaldi (2, D+1) matrix)
    wp.model       the sentencepiece wordpiece model
    tokens.txt     wordpiece table (``piece id``), as data/lang/tokens.txt
    phones.txt, lexicon.txt   the phoneme table and lexicon, when the experiment's lang dir has them
    README.md      what the model is, its RESULTS.md, the code version it was packed with
    decode_defaults.yaml   the recipe's decode settings (toolkit.decode.defaults), when it saved them

Loading checks, before any audio is touched: every member listed is present and has its
checksum; the config builds the model; the state dict fits it (names and shapes); the
wordpiece model, tokens.txt and the model agree on the vocabulary size; the CMVN
dimension equals the model's feature dimension. Any failure is an InputError naming the
package and the part.
"""
from __future__ import annotations

import copy
import datetime
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

from toolkit.utils.config import dump_yaml
from toolkit.utils.fileio import InputError, atomic_write
from toolkit.utils.version import code_version

FORMAT = "concord-packed-model/1"
REQUIRED = ("config.yaml", "model.pt", "cmvn.ark", "wp.model", "tokens.txt", "README.md")
# config keys that name training data on the packing machine: meaningless elsewhere
DATA_KEYS = ("train_data", "valid_data", "text_data", "lang_dir")


def is_package(path: str | os.PathLike) -> bool:
    path = Path(path)
    if path.is_dir():
        return (path / "manifest.json").exists()
    return path.is_file() and zipfile.is_zipfile(path)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    as a directory. The result is verified by loading it back.
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
                "files": {name: _sha256(data) for name, data in sorted(members.items())}}
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


def read_members(path: str | os.PathLike) -> dict[str, bytes]:
    """Every member of a packed model (file or dir), checksums verified against the manifest."""
    path = Path(path)
    if path.is_dir():
        names = [p.name for p in path.iterdir() if p.is_file()]
        members = {n: (path / n).read_bytes() for n in names}
    else:
        try:
            with zipfile.ZipFile(path) as z:
                members = {n: z.read(n) for n in z.namelist()}
        except (OSError, zipfile.BadZipFile) as e:
            raise InputError(path, f"not a packed model (zip archive): {e}") from None
    if "manifest.json" not in members:
        raise InputError(path, "no manifest.json: not a Concord packed model")
    try:
        manifest = json.loads(members["manifest.json"])
    except ValueError as e:
        raise InputError(path, f"manifest.json is not JSON: {e}") from None
    if manifest.get("format") != FORMAT:
        raise InputError(path, f"format {manifest.get('format')!r}, this toolkit reads {FORMAT!r}")
    files = manifest.get("files", {})
    missing = [n for n in (*REQUIRED, *files) if n not in members]
    if missing:
        raise InputError(path, f"missing part(s): {', '.join(sorted(set(missing)))}")
    for name, digest in files.items():
        if _sha256(members[name]) != digest:
            raise InputError(path, f"{name}: checksum mismatch (the file was changed or truncated)")
    return members


def load_package(path: str | os.PathLike, device: str = "cpu"):
    """A verified packed model as a :class:`toolkit.models.experiment.Experiment`."""
    import numpy as np
    import torch
    import yaml

    from kaldiio.matio import read_kaldi

    from toolkit.models.experiment import Experiment
    from toolkit.features.cmvn import GlobalCMVN
    from toolkit.models import build_model, resolve_model_config
    from toolkit.text.wordpiece import load_wordpiece

    members = read_members(path)
    config = yaml.safe_load(members["config.yaml"])
    try:
        model = build_model(config)
    except (ValueError, TypeError) as e:
        raise InputError(path, f"config.yaml does not build a model: {e}") from None
    try:
        state = torch.load(io.BytesIO(members["model.pt"]), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as e:
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

