"""What a finished cell's files say beyond its WERs: decode setup, initialisation, dev curve.

A cell record (cell.json, see toolkit/analysis/study.py) carries ``decode_setup`` and
``init_digest`` when the code that ran it recorded them; older cells (and those of the
held-out grid, run by frozen code) do not, so each reader here falls back to the cell's
archived files (``_dir``: where :func:`toolkit.analysis.study.finished_cells` found it):
RESULTS.md for the decode method, config.yaml for the model, train.log for the dev curve.
A cell copied from its condition's weight sweep (``from_sweep``) reads the sweep cell's files.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from toolkit.utils.config import load_yaml

# what the model's step-0 weights depend on besides the seed (toolkit/train/launch.py MODEL_INPUT_KEYS)
MODEL_KEYS = ("model", "model_conf", "vocab_size", "num_phones")


def cell_file(cell: dict, name: str) -> Path | None:
    """The cell's file ``name`` (its own dir first, then its sweep cell's), None if neither has it."""
    if not cell.get("_dir"):
        return None
    own = Path(cell["_dir"])
    dirs = [own] + ([own.parent.parent / cell["from_sweep"] / own.name] if cell.get("from_sweep") else [])
    return next((d / name for d in dirs if (d / name).exists()), None)


def parse_method(method: str) -> dict:
    """'beam4 bp0.5' -> {method: beam, beam: 4, blank_penalty: 0.5}; 'greedy' -> beam None, penalty 0."""
    beam = re.search(r"\bbeam(\d+)", method)
    bp = re.search(r"\bbp([0-9.eE+-]+)", method)
    return {"method": "beam" if beam else method.split()[0] if method.split() else None,
            "beam": int(beam.group(1)) if beam else None, "blank_penalty": float(bp.group(1)) if bp else 0.0}


def decode_setup(cell: dict) -> dict:
    """{method, beam, blank_penalty, num_avg}: the record's, else RESULTS.md's method column
    (num_avg None: RESULTS.md does not say how many checkpoints were averaged)."""
    if cell.get("decode_setup"):
        return cell["decode_setup"]
    results = cell_file(cell, "RESULTS.md")
    if results is None:
        return {"method": None, "beam": None, "blank_penalty": None, "num_avg": None}
    methods = {m for m in re.findall(r"^\|[^|]+\|((?:greedy|beam\d+)[^|]*)\|", results.read_text(), re.M)}
    if len(methods) != 1:  # none found, or cells decoded two ways: say nothing rather than guess
        return {"method": None, "beam": None, "blank_penalty": None, "num_avg": None}
    return {**parse_method(methods.pop().strip()), "num_avg": None}


def init_key(cell: dict) -> tuple[str, str] | None:
    """What identifies the cell's step-0 weights: ("digest", sha256 of the initial state_dict)
    when recorded, else ("config", hash of the seed and the model config from config.yaml),
    None when neither is known. Equal keys of one kind: identical step-0 weights."""
    if cell.get("init_digest"):
        return "digest", cell["init_digest"]
    conf_path = cell_file(cell, "config.yaml")
    if conf_path is None:
        return None
    conf = load_yaml(conf_path)
    model = {k: conf.get(k) for k in MODEL_KEYS}
    text = json.dumps({"seed": conf.get("seed"), **model}, sort_keys=True)
    return "config", hashlib.sha256(text.encode()).hexdigest()[:16]


def seeds_paired(x_cells: list[dict], y_cells: list[dict]) -> tuple[bool, str]:
    """Whether seed k of x and seed k of y start from identical weights, for every common seed,
    and why. Compared by recorded digests when all these cells have one, else by config."""
    common = sorted({c["seed"] for c in x_cells} & {c["seed"] for c in y_cells})
    if not common:
        return False, "no seed in common"
    by_seed = lambda cells: {c["seed"]: c for c in cells}  # noqa: E731
    xs, ys = by_seed(x_cells), by_seed(y_cells)
    pairs = [(xs[k], ys[k]) for k in common]
    use_digest = all(c.get("init_digest") for pair in pairs for c in pair)
    for a, b in pairs:
        ka, kb = (("digest", a["init_digest"]), ("digest", b["init_digest"])) if use_digest else (
            _config_key(a), _config_key(b))
        if ka is None or kb is None:
            return False, "a cell's initialisation is not recorded (no init_digest, no config.yaml)"
        if ka != kb:
            return False, ("step-0 weights differ (init_digest)" if use_digest
                           else "the model configs differ, so seed k does not give the same step-0 weights")
    return True, ("identical step-0 weights (init_digest)" if use_digest
                  else "same seed and model config: identical step-0 weights")


def _config_key(cell: dict) -> tuple[str, str] | None:
    return init_key({k: v for k, v in cell.items() if k != "init_digest"})


def dev_curve(cell: dict) -> list[tuple[int, float]]:
    """(epoch, greedy dev WER) per validation, from the record's train_log_tail or train.log."""
    lines = cell.get("train_log_tail") or []
    if not lines:
        log = cell_file(cell, "train.log")
        lines = [ln for ln in log.read_text(encoding="utf-8").splitlines() if " validation: " in ln] if log else []
    curve = []
    for line in lines:
        m = re.search(r"epoch (\d+) validation: .*\bwer ([0-9.]+)", line)
        if m:
            curve.append((int(m.group(1)), float(m.group(2))))
    return curve
