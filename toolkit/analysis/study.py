"""A study: named conditions (training-config overrides) x seeds, one cell per pair.

A grid file (``conf/study.yaml``)::

    recipe_args: "--stage 5 --stop-stage 8"   # what every cell runs of the recipe (asr.sh options)
    seeds: [1, 2, 3]
    conditions:                               # run in this order, seed-major (B1 C1 B2 C2 ...)
      B: {about: "+ text-only, no consistency", set: [objective.consistency.weight=0]}
      C: {about: "+ consistency, best alignment", set: []}
      C_w0.2: {about: "weight sweep", set: [objective.consistency.weight=0.2], seeds: [1]}

Each cell runs the recipe's stages 5-8 (train, average, decode both modes, score,
per-layer analysis) as ``./run.sh --tag study/<condition>/seed<k> --train-args "--set
seed=<k> --set ..."`` in ``exp/study/<condition>/seed<k>/``, reusing the recipe's dumped
data. A cell is finished when its ``cell.json`` exists (written last, atomically, with the
WERs, per-utterance errors, wall time and the code and data versions). A killed cell is
rerun: training resumes from its checkpoints when code and data are unchanged
(``cell_started.json``), and starts clean otherwise, so a cell never mixes versions.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from toolkit.utils.config import ConfigError, load_yaml
from toolkit.utils.fileio import atomic_write

log = logging.getLogger("toolkit.study")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cell:
    condition: str
    seed: int
    overrides: tuple[str, ...]
    about: str

    @property
    def tag(self) -> str:
        return f"study/{self.condition}/seed{self.seed}"


def load_grid(path: str | os.PathLike) -> dict:
    grid = load_yaml(path)
    unknown = sorted(set(grid) - {"recipe_args", "seeds", "conditions", "about", "comparisons", "common_set",
                                  "checkpoint_analysis"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    if not isinstance(grid.get("conditions"), dict) or not grid["conditions"]:
        raise ConfigError(f"{path}: 'conditions' must map names to {{about, set, seeds}}")
    for name, cond in grid["conditions"].items():
        bad = sorted(set(cond or {}) - {"about", "set", "seeds", "phase"})
        if bad:
            raise ConfigError(f"{path}: condition {name}: unknown key(s) {', '.join(bad)}")
    return grid


def cells_of(grid: dict, only: list[str] | None = None) -> list[Cell]:
    """Cells in run order: by ``phase`` (default 1), then seed-major over the phase's conditions
    in file order (B1 C1 B2 C2 ...), so a comparison is possible as early as it can be."""
    conds = grid["conditions"]
    if only:
        missing = [c for c in only if c not in conds]
        if missing:
            raise ConfigError(f"no condition(s) {', '.join(missing)} in the grid ({', '.join(conds)})")
    order = []
    for index, (name, cond) in enumerate(conds.items()):
        if only and name not in only:
            continue
        cond = cond or {}
        for rank, seed in enumerate(cond.get("seeds", grid.get("seeds", [1]))):
            order.append(((int(cond.get("phase", 1)), rank, index),
                          Cell(name, int(seed), tuple(cond.get("set", [])), cond.get("about", ""))))
    return [cell for _, cell in sorted(order, key=lambda x: x[0])]


# the code that makes a cell's numbers (tests, docs and the report generator are not in it)
CODE_PATHS = ("toolkit/data", "toolkit/text", "toolkit/features", "toolkit/nn", "toolkit/models",
              "toolkit/losses", "toolkit/decode", "toolkit/scoring", "toolkit/train", "toolkit/utils",
              "toolkit/analysis/consistency.py", "toolkit/bin", "egs/TEMPLATE", "utils")


def code_version() -> dict:
    """The commit, a hash of the committed code that makes the numbers (CODE_PATHS), and a
    hash of any uncommitted change to it. Two cells are comparable when ``code`` and
    ``dirty`` agree, whatever the commit."""
    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout
    files = git("ls-files", "-s", "--", *CODE_PATHS)
    diff = git("diff", "HEAD", "--", *CODE_PATHS)
    return {"commit": git("rev-parse", "HEAD").strip() or "unknown",
            "code": hashlib.sha1(files.encode()).hexdigest()[:12],
            "dirty": hashlib.sha1(diff.encode()).hexdigest()[:12] if diff else ""}


def comparable(a: dict, b: dict) -> bool:
    """Same code (whatever the commit) and the same data."""
    return (a["code"]["code"], a["code"]["dirty"], a["data"]) == (b["code"]["code"], b["code"]["dirty"], b["data"])


def data_version(recipe: Path) -> str:
    """Hash of what defines the data: the corpus marker, the lang dir and the training CMVN."""
    h = hashlib.sha1()
    for rel in ("corpus/.done", "data/lang/tokens.txt", "data/lang/phones.txt", "dump/train/cmvn.ark"):
        p = recipe / rel
        h.update(rel.encode() + (p.read_bytes() if p.exists() else b"<missing>"))
    return h.hexdigest()[:12]


def run_cell(cell: Cell, recipe: Path, grid: dict, extra_args: str = "") -> dict:
    """Run (or resume) one cell; returns its cell.json record."""
    cell_dir = recipe / "exp" / cell.tag
    versions = {"code": code_version(), "data": data_version(recipe)}
    started = cell_dir / "cell_started.json"
    if started.exists() and not comparable(json.loads(started.read_text())["versions"], versions):
        log.warning("%s: started with other code or data; starting it again clean", cell.tag)
        shutil.rmtree(cell_dir)
    if not started.exists():
        cell_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(started) as f:
            json.dump({"versions": versions, "started": time.time()}, f)
    sets = (f"seed={cell.seed}",) + tuple(grid.get("common_set", [])) + cell.overrides
    train_args = " ".join(f"--set {shlex.quote(o)}" for o in sets)
    cmd = (["./run.sh"] + shlex.split(grid.get("recipe_args", "--stage 5 --stop-stage 8"))
           + ["--tag", cell.tag, "--train-args", train_args] + shlex.split(extra_args))
    log.info("%s: %s", cell.tag, shlex.join(cmd))
    t0 = time.time()
    with open(cell_dir / "run.log", "a", encoding="utf-8") as logf:
        rc = subprocess.run(cmd, cwd=recipe, stdout=logf, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"{cell.tag}: the recipe failed (exit {rc}); see {cell_dir / 'run.log'}")
    record = collect_cell(cell, cell_dir, versions)
    wanted = grid.get("checkpoint_analysis") or {}
    if cell.condition in wanted.get("conditions", []) and cell.seed in wanted.get("seeds", [cell.seed]):
        record["analysis_over_training"] = analyse_checkpoints(cell_dir, recipe, wanted)
    record["wall_s_last_run"] = time.time() - t0
    record["wall_s"] = time.time() - json.loads(started.read_text())["started"]
    record["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    with atomic_write(cell_dir / "cell.json") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    return record


def collect_cell(cell: Cell, cell_dir: Path, versions: dict) -> dict:
    """WER and per-utterance (errors, reference words) of every decode dir of the cell."""
    from toolkit.scoring.wer import score
    from toolkit.scoring.trn import read_trn

    decodes = {}
    for d in sorted(cell_dir.glob("decode_*")):
        refs, hyps = read_trn(d / "ref.trn"), read_trn(d / "hyp.trn")
        res = score(refs, hyps)
        decodes[d.name[len("decode_"):]] = {
            "wer": res.wer, "words": res.total.wrd, "errors": res.total.err,
            "utts": {u: [s.counts.err, s.counts.wrd] for u, s in res.utts.items()}}
    analysis = {}
    for md in sorted(cell_dir.glob("analysis_*/consistency.json")):
        analysis[md.parent.name[len("analysis_"):]] = json.loads(md.read_text())
    return {"condition": cell.condition, "seed": cell.seed, "overrides": list(cell.overrides),
            "about": cell.about, "versions": versions, "decodes": decodes, "analysis": analysis,
            "train_log_tail": _valid_lines(cell_dir / "train.log")}


def save_initial_model(cell_dir: Path) -> Path:
    """The cell's model as the trainer initialised it (same seed, same construction order)."""
    import torch

    from toolkit.models import build_model
    from toolkit.train.launch import MODEL_INPUT_KEYS, seed_everything
    conf = load_yaml(cell_dir / "config.yaml")
    seed_everything(conf["seed"])  # rank 0
    model = build_model({k: conf.get(k) for k in MODEL_INPUT_KEYS})
    path = cell_dir / "checkpoints_init.pt"
    with atomic_write(path, "wb", encoding=None) as f:
        torch.save(model.state_dict(), f)
    return path


def analyse_checkpoints(cell_dir: Path, recipe: Path, wanted: dict) -> dict:
    """Per-layer consistency of the untrained model and of every kept checkpoint:
    {step: {"layers": [...]}}, step 0 = initialisation (is consistency learned in training?)."""
    from toolkit.train.checkpoint import list_checkpoints
    data = recipe / "dump" / wanted.get("set", "dev_clean")
    models = [(0, save_initial_model(cell_dir))] + list_checkpoints(cell_dir / "checkpoints")
    out = {}
    for step, path in models:
        dest = cell_dir / "analysis_over_training" / f"step{step}"
        cmd = ["python", "-m", "toolkit.bin.analyze_alignment", "--exp", str(cell_dir), "--model", str(path),
               "--data", str(data), "--out", str(dest), "--max-utts", str(wanted.get("max_utts", 100))]
        with open(cell_dir / "run.log", "a", encoding="utf-8") as logf:
            if subprocess.run(cmd, cwd=recipe, stdout=logf, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"analysis of {path} failed; see {cell_dir / 'run.log'}")
        out[step] = json.loads((dest / "consistency.json").read_text())
    return out


def _valid_lines(path: Path) -> list[str]:
    """The per-epoch validation lines of the training log (the learning curve)."""
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if " validation: " in line]


def run_grid(grid_path: str | os.PathLike, recipe: Path, only: list[str] | None = None,
             extra_args: str = "") -> list[dict]:
    """Every unfinished cell of the grid, one at a time (two trainings at once are ~10x slower)."""
    grid = load_grid(grid_path)
    archived = {(c["condition"], c["seed"]): c for c in archived_cells(recipe)}
    done = []
    for cell in cells_of(grid, only):
        out = recipe / "exp" / cell.tag / "cell.json"
        if out.exists():
            log.info("%s: finished earlier, skipped", cell.tag)
            continue
        old = archived.get((cell.condition, cell.seed))
        if old is not None and comparable(old["versions"], {"code": code_version(), "data": data_version(recipe)}):
            log.info("%s: in %s with this code and data, skipped", cell.tag, ARCHIVE)
            continue
        rec = run_cell(cell, recipe, grid, extra_args)
        log.info("%s: done in %.1f min: %s", cell.tag, rec["wall_s_last_run"] / 60,
                 ", ".join(f"{k} {v['wer']:.2f}" for k, v in rec["decodes"].items()))
        done.append(rec)
    return done


# finished cells' small result files, committed with the recipe so a clean clone can
# regenerate the report and a later session can continue the grid (exp/ is not committed);
# one folder per code version, so a cell rerun on newer code never overwrites the older one
ARCHIVE = "study/cells"
ARCHIVED_FILES = ("cell.json", "config.yaml", "RESULTS.md", "train.log", "run.sh")


def archive_cells(recipe: Path) -> list[Path]:
    """Copy every finished cell's small files to <recipe>/study/cells/<code>/<condition>/seed<k>/
    (<code>: the cell's code hash, with its uncommitted-change hash if any)."""
    copied = []
    for cell_json in sorted((recipe / "exp" / "study").glob("*/seed*/cell.json")):
        src = cell_json.parent
        code = json.loads(cell_json.read_text())["versions"]["code"]
        dest = recipe / ARCHIVE / (code["code"] + (f"+{code['dirty']}" if code["dirty"] else "")) / src.parent.name / src.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in ARCHIVED_FILES:
            if (src / name).exists():
                shutil.copyfile(src / name, dest / name)
        for score in sorted(src.glob("decode_*/score_wer/result.txt")):
            (dest / score.parent.parent.name).mkdir(exist_ok=True)
            shutil.copyfile(score, dest / score.parent.parent.name / "result.txt")
        copied.append(dest)
    return copied


def archived_cells(recipe: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((recipe / ARCHIVE).glob("*/*/seed*/cell.json"))]


def finished_cells(recipe: Path) -> list[dict]:
    """Cells finished in exp/study, and archived cells not superseded by one there."""
    live = [json.loads(p.read_text()) for p in sorted((recipe / "exp" / "study").glob("*/seed*/cell.json"))]
    key = {(c["condition"], c["seed"], json.dumps(c["versions"], sort_keys=True)) for c in live}
    return live + [c for c in archived_cells(recipe)
                   if (c["condition"], c["seed"], json.dumps(c["versions"], sort_keys=True)) not in key]
