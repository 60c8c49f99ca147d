"""A study: named conditions (training-config overrides) x seeds, one cell per pair.

The grid file's format: :mod:`toolkit.analysis.study_grid`.

Each cell runs the recipe's stages 5-8 (train, average, decode both modes, score,
per-layer analysis) as ``./run.sh --tag study/<condition>/seed<k> --train-args "--set
seed=<k> --set ..."`` in ``exp/study/<condition>/seed<k>/``, reusing the recipe's dumped
data. A cell is finished when its ``cell.json`` exists (written last, atomically, with the
WERs, per-utterance errors, wall time and the code and data versions). A killed cell is
rerun: training resumes from its checkpoints when code and data are unchanged
(``cell_started.json``), and starts clean otherwise, so a cell never mixes versions.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from toolkit.analysis.study_grid import (Cell, best_sweep_value, cells_of, choose_sweep, load_grid,  # noqa: F401 (the runner's grid API)
                                         sweep_score)
from toolkit.utils.config import ConfigError, load_yaml
from toolkit.utils.fileio import atomic_write

log = logging.getLogger("toolkit.study")
ROOT = Path(__file__).resolve().parents[2]


def sweep_choice(grid: dict, name: str, recipe: Path) -> tuple[object, dict] | None:
    """(chosen value, its cell record) of condition ``name``'s sweep, or None while any sweep
    cell is unfinished (:func:`toolkit.analysis.study_grid.choose_sweep` chooses)."""
    now = {"code": code_version(), "data": data_version(recipe)}

    def record_of(value):
        path = recipe / "exp" / "study" / f"{name}@{value}"
        recs = [json.loads(p.read_text()) for p in sorted(path.glob("seed*/cell.json"))]
        recs += [c for c in archived_cells(recipe) if c["condition"] == f"{name}@{value}"
                 and comparable(c["versions"], now)]
        return recs[0] if recs else None
    return choose_sweep(name, grid["conditions"][name]["sweep"], record_of)


def schedule_choice(grid: dict, recipe: Path, records: list[dict] | None = None) -> dict | None:
    """The grid's ``schedule:`` resolved: ``{value, best_epoch, best, from, seed, key, within}``,
    or None while the schedule run has not finished. ``records``: the cells to look in (the
    report passes its own); by default the recipe's finished cells of this code and data."""
    from toolkit.analysis.study_cells import dev_curve
    from toolkit.analysis.study_grid import choose_schedule
    sched = grid.get("schedule")
    if not sched:
        return None
    if records is None:
        now = {"code": code_version(), "data": data_version(recipe)}
        records = [c for c in finished_cells(recipe) if comparable(c["versions"], now)]
    runs = sorted((c for c in records if c["condition"] == sched["from"]), key=lambda c: c["seed"])
    if not runs:
        return None
    curve = [(epoch + 1, wer) for epoch, wer in dev_curve(runs[0])]  # the log counts epochs from 0
    if not curve:
        raise ConfigError(f"schedule: {sched['from']} seed {runs[0]['seed']} logged no per-epoch dev WER")
    value, best_epoch, best = choose_schedule(curve, float(sched["within"]))
    return {"value": value, "best_epoch": best_epoch, "best": best, "at_value": dict(curve)[value],
            "from": sched["from"], "seed": runs[0]["seed"], "key": sched["key"], "within": sched["within"]}


def resolve_schedule(cell: Cell, grid: dict, recipe: Path) -> Cell | None:
    """A cell with the schedule run's chosen value first in its overrides (its own settings still
    win), None while the schedule run is unfinished; the schedule run itself unchanged."""
    sched = grid.get("schedule")
    if not sched or cell.condition.split("@", 1)[0] == sched["from"]:
        return cell
    choice = schedule_choice(grid, recipe)
    if choice is None:
        return None
    return Cell(cell.condition, cell.seed, (f"{choice['key']}={choice['value']}",) + cell.overrides, cell.about)


def resolve_sweep(cell: Cell, grid: dict, recipe: Path) -> Cell | None:
    """A swept condition's later seed with the chosen value in its overrides (None: not yet);
    the chosen sweep cell is also recorded as the condition's seed 1."""
    cond = grid["conditions"].get(cell.condition) or {}
    sweep = cond.get("sweep")
    if not sweep:
        return cell
    choice = sweep_choice(grid, cell.condition, recipe)
    if choice is None:
        return None
    value, rec = choice
    seed1 = recipe / "exp" / "study" / cell.condition / f"seed{rec['seed']}" / "cell.json"
    if not seed1.exists():
        seed1.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(seed1) as f:
            json.dump({**{k: v for k, v in rec.items() if k != "_dir"}, "condition": cell.condition,
                       "from_sweep": f"{cell.condition}@{value}"}, f,
                      indent=1, sort_keys=True)
    return Cell(cell.condition, cell.seed, cell.overrides + (f"{sweep['key']}={value}",), cell.about)


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
    for rel in ("corpus/.done", "data/lang/tokens.txt", "data/lang/phones.txt", "dump/train/cmvn.ark") + (
            ("data/heldout_words.txt",) if (recipe / "data/heldout_words.txt").exists() else ()):
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
            json.dump({"versions": versions, "started": time.time(), "runs": []}, f)
    runs = _begin_run(started, cell_dir)
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
    record = collect_cell(cell, cell_dir, versions, recipe)
    wanted = grid.get("checkpoint_analysis") or {}
    if cell.condition in wanted.get("conditions", []) and cell.seed in wanted.get("seeds", [cell.seed]):
        record["analysis_over_training"] = analyse_checkpoints(cell_dir, recipe, wanted)
    record["wall_s_last_run"] = time.time() - t0
    record["wall_s"] = time.time() - json.loads(started.read_text())["started"]  # since the first start
    runs[-1]["end"] = time.time()
    record["run_s"] = sum(r["end"] - r["start"] for r in runs)  # the time its runs took (see _begin_run)
    record["runs"] = len(runs)
    record["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    with atomic_write(cell_dir / "cell.json") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    return record


def _begin_run(started: Path, cell_dir: Path) -> list[dict]:
    """Record a new run of the cell in ``cell_started.json``; an earlier run that was killed
    (no ``end``) is counted to the last write of its logs, so a cell resumed in a later session
    does not count the hours between as its time. Returns the runs, the new one last."""
    state = json.loads(started.read_text())
    # a cell started by a runner older than the run records: its one earlier run began at "started"
    runs = state.get("runs", [{"start": state["started"]}])
    if runs and "end" not in runs[-1]:
        logs = [p for p in (cell_dir / "run.log", cell_dir / "train.log") if p.exists()]
        runs[-1]["end"] = max([p.stat().st_mtime for p in logs] + [runs[-1]["start"]])
    runs.append({"start": time.time()})
    with atomic_write(started) as f:
        json.dump({**state, "runs": runs}, f)
    return runs


def collect_cell(cell: Cell, cell_dir: Path, versions: dict, recipe: Path) -> dict:
    """WER and per-utterance (errors, reference words) of every decode dir of the cell."""
    from toolkit.scoring.wer import score
    from toolkit.scoring.trn import read_trn

    from toolkit.scoring.heldout import heldout_scores, read_heldout_words

    words_file = recipe / "data" / "heldout_words.txt"
    heldout = read_heldout_words(words_file) if words_file.exists() else None
    decodes = {}
    for d in sorted(p for p in cell_dir.glob("decode_*") if p.is_dir()):  # not decode_defaults.yaml
        refs, hyps = read_trn(d / "ref.trn"), read_trn(d / "hyp.trn")
        res = score(refs, hyps)
        decodes[d.name[len("decode_"):]] = {
            "wer": res.wer, "words": res.total.wrd, "errors": res.total.err,
            "utts": {u: [s.counts.err, s.counts.wrd] for u, s in res.utts.items()}}
        if heldout is not None:
            decodes[d.name[len("decode_"):]]["heldout"] = {"words_file": "data/heldout_words.txt",
                                                           **heldout_scores(refs, hyps, heldout)}
    analysis = {}
    for md in sorted(cell_dir.glob("analysis_*/consistency.json")):
        analysis[md.parent.name[len("analysis_"):]] = json.loads(md.read_text())
    aligner = recipe / "exp" / "aligner" / "report.json"
    uses_aligner = any(o.startswith("durations_dir=") for o in cell.overrides)
    return {"condition": cell.condition, "seed": cell.seed, "overrides": list(cell.overrides),
            "about": cell.about, "versions": versions, "decodes": decodes, "analysis": analysis,
            "train_log_tail": _valid_lines(cell_dir / "train.log"),
            "aligner": json.loads(aligner.read_text()) if uses_aligner and aligner.exists() else None,
            "decode_setup": decode_setup(cell_dir), "init_digest": init_digest(cell_dir)}


def decode_setup(cell_dir: Path) -> dict:
    """{method, beam, blank_penalty, num_avg} of the cell: the method every decode's rtf.txt
    names (None if they differ or none says), and how many checkpoints the last averaging in
    run.log took (None if run.log does not say)."""
    from toolkit.analysis.study_cells import parse_method

    methods = set()
    for rtf in sorted(cell_dir.glob("decode_*/rtf.txt")):
        methods |= {line.split(None, 1)[1].strip() for line in rtf.read_text(encoding="utf-8").splitlines()
                    if line.startswith("method ") and len(line.split(None, 1)) == 2}
    setup = parse_method(methods.pop()) if len(methods) == 1 else {"method": None, "beam": None,
                                                                   "blank_penalty": None}
    run_log = cell_dir / "run.log"
    averaged = [line for line in (run_log.read_text(encoding="utf-8", errors="replace").splitlines()
                                  if run_log.exists() else []) if line.startswith("averaged ") and " -> " in line]
    setup["num_avg"] = len(averaged[-1][len("averaged "):].split(" -> ")[0].split(", ")) if averaged else None
    return setup


def initial_model(cell_dir: Path):
    """The cell's model as the trainer initialised it (same seed, same construction order)."""
    from toolkit.models import build_model
    from toolkit.train.launch import MODEL_INPUT_KEYS, seed_everything
    conf = load_yaml(cell_dir / "config.yaml")
    seed_everything(conf["seed"])  # rank 0
    return build_model({k: conf.get(k) for k in MODEL_INPUT_KEYS})


def init_digest(cell_dir: Path) -> str | None:
    """sha256 over the step-0 state_dict (names, dtypes, shapes, values), rebuilt from the
    cell's config.yaml and seed (no step-0 checkpoint is kept); None without a config.yaml or
    when the model cannot be rebuilt. Equal digests: seed k of two conditions is a real pair."""
    if not (cell_dir / "config.yaml").exists():
        return None
    try:
        model = initial_model(cell_dir)
    except (ConfigError, KeyError, TypeError, ValueError) as e:
        log.warning("%s: step-0 model not rebuilt (%s); no init_digest", cell_dir, e)
        return None
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_initial_model(cell_dir: Path) -> Path:
    import torch

    path = cell_dir / "checkpoints_init.pt"
    with atomic_write(path, "wb", encoding=None) as f:
        torch.save(initial_model(cell_dir).state_dict(), f)
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
             extra_args: str = "", lock: str | os.PathLike | None = None) -> list[dict]:
    """Every unfinished cell of the grid, one at a time (two trainings at once are ~10x slower).
    ``lock``: a file each cell holds an exclusive flock(2) on while it runs, so that other heavy
    jobs on the machine (benchmarks, other trainings) taking the same lock run between cells."""
    grid = load_grid(grid_path)
    archived = {(c["condition"], c["seed"]): c for c in archived_cells(recipe)}
    save_heldout_data(recipe)
    done, passes = [], 0
    while True:  # another pass while a cell waited for a schedule run or sweep that finished in this one
        passes += 1
        waited, ran = False, False
        for cell in cells_of(grid, only):
            out = recipe / "exp" / cell.tag / "cell.json"
            if out.exists():
                if passes == 1:
                    log.info("%s: finished earlier, skipped", cell.tag)
                continue
            resolved = resolve_schedule(cell, grid, recipe)
            if resolved is None:
                log.info("%s: waits for the schedule run (%s) to finish", cell.tag, grid["schedule"]["from"])
                waited = True
                continue
            resolved = resolve_sweep(resolved, grid, recipe)
            if resolved is None:
                log.info("%s: waits for its condition's weight sweep to finish", cell.tag)
                waited = True
                continue
            cell = resolved
            old = archived.get((cell.condition, cell.seed))
            if old is not None and comparable(old["versions"], {"code": code_version(), "data": data_version(recipe)}):
                if passes == 1:
                    log.info("%s: in %s with this code and data, skipped", cell.tag, ARCHIVE)
                continue
            with _held(lock):
                rec = run_cell(cell, recipe, grid, extra_args)
            log.info("%s: done in %.1f min: %s", cell.tag, rec["wall_s_last_run"] / 60,
                     ", ".join(f"{k} {v['wer']:.2f}" for k, v in rec["decodes"].items()))
            done.append(rec)
            ran = True
        if not (waited and ran):
            return done


@contextlib.contextmanager
def _held(lock):
    if lock is None:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# finished cells' small result files, committed with the recipe so a clean clone can
# regenerate the report and a later session can continue the grid (exp/ is not committed);
# one folder per code version, so a cell rerun on newer code never overwrites the older one
ARCHIVE = "study/cells"
HELDOUT_DATA = "study/heldout_data"  # <data version>.json: save_heldout_data
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


def _read_cell(path: Path) -> dict:
    """A cell.json record with ``_dir`` (where its other files are; not saved) added."""
    return {**json.loads(path.read_text()), "_dir": str(path.parent)}


def archived_cells(recipe: Path) -> list[dict]:
    return [_read_cell(p) for p in sorted((recipe / ARCHIVE).glob("*/*/seed*/cell.json"))]


def finished_cells(recipe: Path) -> list[dict]:
    """Cells finished in exp/study, and archived cells not superseded by one there."""
    live = [_read_cell(p) for p in sorted((recipe / "exp" / "study").glob("*/seed*/cell.json"))]
    key = {(c["condition"], c["seed"], json.dumps(c["versions"], sort_keys=True)) for c in live}
    return live + [c for c in archived_cells(recipe)
                   if (c["condition"], c["seed"], json.dumps(c["versions"], sort_keys=True)) not in key]


def linked_studies(grid: dict, recipe: Path, grid_path: str | os.PathLike = "the grid") -> list:
    """The grids named under ``linked:`` (other recipes' studies whose comparisons the report
    also states), each with that recipe's finished cells."""
    from toolkit.analysis.study_report import LinkedStudy
    out = []
    for link in grid.get("linked") or []:
        other = (recipe / link["recipe"]).resolve()
        path = other / link["grid"]
        if not path.is_file():
            raise ConfigError(f"{grid_path}: linked grid {link['recipe']}/{link['grid']} not found ({path})")
        linked = load_grid(path)
        if link.get("comparisons"):
            linked = {**linked, "comparisons": link["comparisons"]}
        out.append(LinkedStudy(f"{other.parent.name}/{other.name}/{link['grid']}", linked, finished_cells(other)))
    return out


def save_heldout_data(recipe: Path) -> Path | None:
    """On a held-out-word corpus, ``study/heldout_data/<data version>.json``: how the data treats
    the held-out words (:mod:`toolkit.analysis.heldout_data`), committed beside the cells so that
    the report can say it without the data. A failure is logged: it must not stop the grid."""
    if not (recipe / "data" / "heldout_words.txt").exists():
        return None
    from toolkit.analysis.heldout_data import summarize
    out = recipe / HELDOUT_DATA / f"{data_version(recipe)}.json"
    try:
        summary = summarize(recipe)
    except (OSError, ValueError) as e:
        log.warning("held-out word summary not written: %s", e)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    return out


def heldout_data(recipe: Path) -> dict[str, dict]:
    """Data version -> held-out word summary, from ``study/heldout_data``."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((recipe / HELDOUT_DATA).glob("*.json"))}


def write_report(grid_path: str | os.PathLike, recipe: Path, out: Path, command: str = "") -> Path:
    """The grid's report from the finished cells of ``recipe`` (and of its linked grids' recipes)."""
    from toolkit.analysis.study_report import write_study_report
    grid = load_grid(grid_path)
    return write_study_report(grid, finished_cells(recipe), out, command,
                              linked=linked_studies(grid, recipe, grid_path), heldout_data=heldout_data(recipe))
