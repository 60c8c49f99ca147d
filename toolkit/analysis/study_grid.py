"""A study grid file: named conditions (training-config overrides) x seeds -> cells.

A grid file (``conf/study.yaml``)::

    recipe_args: "--stage 5 --stop-stage 8"   # what every cell runs of the recipe (asr.sh options)
    seeds: [1, 2, 3]
    conditions:                               # run in this order, seed-major (B1 C1 B2 C2 ...)
      B: {about: "+ text-only, no consistency", set: [objective.consistency.weight=0]}
      C: {about: "+ consistency, best alignment", set: []}
      C_w0.2: {about: "weight sweep", set: [objective.consistency.weight=0.2], seeds: [1]}
      M: {about: "Maestro", set: [...], sweep: {key: objective.consistency.weight, values: [0.02, 0.05, 0.2],
                                             by: dev_clean}}

Keys that tell ``egs/mini/local/study.sh`` how to prepare the grid's data: ``corpus_opts``
(stage 0 options of the study's corpus), ``aligner: true`` (train the explicit aligner
before the cells), ``report`` (the report file's name). ``equivalence_margin`` (absolute WER,
default 1.0): the margin of the report's equivalence tests (TOST). ``linked``: other recipes'
grids whose comparisons the report also states, from their own finished cells, e.g.
``linked: [{recipe: ../multilingual, grid: conf/study.yaml, comparisons: [[C, B]]}]``
(``comparisons`` defaults to that grid's own).

A condition with a ``sweep`` first runs seed 1 once per value (cells ``<condition>@<value>``,
in the condition's phase), chooses the value whose cell has the lowest mean of its
full-context and streaming WER on the ``by`` set, takes that cell as the condition's seed
1 (copied with ``from_sweep`` set) and runs the other seeds with the chosen value, one
phase later. Until every sweep cell has finished, those seeds wait.

"""
from __future__ import annotations

import os
from dataclasses import dataclass

from toolkit.utils.config import ConfigError, load_yaml


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
                                  "checkpoint_analysis", "corpus_opts", "aligner", "report",
                                  "equivalence_margin", "linked", "schedule"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    for link in grid.get("linked") or []:
        if not isinstance(link, dict) or set(link) - {"recipe", "grid", "comparisons"} \
                or not {"recipe", "grid"} <= set(link):
            raise ConfigError(f"{path}: each 'linked' entry needs recipe and grid (and may name comparisons), "
                              f"got {link!r}")
    if not isinstance(grid.get("conditions"), dict) or not grid["conditions"]:
        raise ConfigError(f"{path}: 'conditions' must map names to {{about, set, seeds}}")
    schedule = grid.get("schedule")
    if schedule is not None and (not isinstance(schedule, dict) or set(schedule) - {"from", "key", "within"}
                                 or not {"from", "key", "within"} <= set(schedule)
                                 or schedule["from"] not in grid["conditions"]
                                 or not isinstance(schedule["within"], (int, float))):
        raise ConfigError(f"{path}: schedule needs from (a condition of the grid), key (e.g. max_epochs) and "
                          f"within (dev WER points), got {schedule!r}")
    for name, cond in grid["conditions"].items():
        bad = sorted(set(cond or {}) - {"about", "set", "seeds", "phase", "sweep"})
        if bad:
            raise ConfigError(f"{path}: condition {name}: unknown key(s) {', '.join(bad)}")
        sweep = (cond or {}).get("sweep")
        if sweep is not None and (set(sweep) - {"key", "values", "by"} or not sweep.get("values")
                                  or "key" not in sweep or "by" not in sweep):
            raise ConfigError(f"{path}: condition {name}: sweep needs key, values (a list) and by (a dev set)")
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
        phase, sweep, overrides = int(cond.get("phase", 1)), cond.get("sweep"), tuple(cond.get("set", []))
        seeds = cond.get("seeds", grid.get("seeds", [1]))
        if sweep:
            for rank, value in enumerate(sweep["values"]):
                order.append(((phase, rank, index), Cell(f"{name}@{value}", int(seeds[0]),
                                                         overrides + (f"{sweep['key']}={value}",),
                                                         f"{cond.get('about', '')}; sweep of {sweep['key']}")))
            phase, seeds = phase + 1, seeds[1:]  # the chosen sweep cell is seed 1
        for rank, seed in enumerate(seeds):
            order.append(((phase, rank, index), Cell(name, int(seed), overrides, cond.get("about", ""))))
    return [cell for _, cell in sorted(order, key=lambda x: x[0])]


def sweep_score(record: dict, by: str) -> float | None:
    """What a sweep cell is chosen by: the mean of its full-context and streaming WER on the
    ``by`` set (None: the cell decoded neither)."""
    wers = [record["decodes"][f"{mode}_{by}"]["wer"] for mode in ("full", "streaming")
            if f"{mode}_{by}" in record["decodes"]]
    return sum(wers) / len(wers) if wers else None


def best_sweep_value(scores: list[tuple[object, float]]) -> object:
    """The value with the lowest score among (value, score) in the grid's order (ties: the first)."""
    return min(scores, key=lambda vs: vs[1])[0]


def choose_sweep(name: str, sweep: dict, record_of) -> tuple[object, dict] | None:
    """(chosen value, its cell record) of condition ``name``'s sweep, or None while a value has
    no finished cell (``record_of(value)`` -> record or None): the value whose cell has the lowest
    mean of full-context and streaming WER on the ``by`` set (ties: the first value listed).
    The runner and the report both choose here, so they cannot disagree."""
    scored = []
    for value in sweep["values"]:
        rec = record_of(value)
        if rec is None:
            return None
        score = sweep_score(rec, sweep["by"])
        if score is None:
            raise ConfigError(f"sweep of {name}: cell {name}@{value} has no decode of {sweep['by']}")
        scored.append((value, score, rec))
    value = best_sweep_value([(v, sc) for v, sc, _ in scored])
    return value, next(rec for v, _, rec in scored if v == value)


def choose_schedule(curve: list[tuple[int, float]], within: float) -> tuple[int, int, float]:
    """(chosen epoch, best epoch, best dev WER) of a per-epoch dev curve ``[(epoch, WER)]``: the
    first epoch whose dev WER is within ``within`` points of the curve's best (ties: the first).
    The rule a schedule run (``schedule:`` in a grid) fixes every other cell's epochs by."""
    if not curve:
        raise ValueError("no per-epoch dev WER to choose a schedule from")
    best_epoch, best = min(curve, key=lambda ew: (ew[1], ew[0]))
    return next(e for e, w in sorted(curve) if w <= best + within), best_epoch, best
