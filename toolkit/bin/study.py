r"""Run a study grid (conditions x seeds) through a recipe's stages 5-8, and report on it.

Usage (from a recipe dir, after stages 0-4; egs/mini/local/study.sh does this):
    python -m toolkit.bin.study run --grid conf/study.yaml               # every unfinished cell
    python -m toolkit.bin.study run --grid conf/study.yaml --only B,C    # some conditions
    python -m toolkit.bin.study report --grid conf/study.yaml --out STUDY.md
    python -m toolkit.bin.study list --grid conf/study.yaml              # cells, finished or not
    python -m toolkit.bin.study archive                                  # finished cells -> study/cells/

``run`` is resumable: a finished cell (exp/study/<condition>/seed<k>/cell.json) is skipped,
a killed one resumes its training or, if the code or data changed, starts again clean.
``report`` reads the finished cells alone (see toolkit/analysis/study_report.py): those in
exp/study and those archived in study/cells (``archive`` copies each finished cell's small
result files there, to be committed: a clean clone then regenerates the report, and a later
session skips archived cells of the same code and data).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from toolkit.utils.cli import cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("run", "report", "list", "archive"))
    p.add_argument("--grid", default="conf/study.yaml", help="the grid file")
    p.add_argument("--recipe", default=".", help="recipe dir (holds run.sh, data/, dump/, exp/)")
    p.add_argument("--only", default="", help="comma-separated conditions (default: all)")
    p.add_argument("--recipe-args", default="", help="extra options for every cell's run.sh call")
    p.add_argument("--lock", default=None, help="run: hold an exclusive flock on this file during each cell")
    p.add_argument("--out", default="STUDY.md", help="report: the Markdown file (plots beside it)")
    p.add_argument("--command", default="", help="report: the command line that ran the study, quoted in it")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from toolkit.analysis import study
    recipe = Path(args.recipe).resolve()
    only = [c for c in args.only.split(",") if c]
    if args.action == "run":
        study.run_grid(args.grid, recipe, only, args.recipe_args, args.lock)
    elif args.action == "archive":
        for dest in study.archive_cells(recipe):
            print(dest)
    elif args.action == "list":
        grid = study.load_grid(args.grid)
        for cell in study.cells_of(grid, only):
            done = (recipe / "exp" / cell.tag / "cell.json").exists()
            print(f"{cell.tag}\t{'finished' if done else 'open'}\t{' '.join(cell.overrides)}")
    else:
        study.write_report(args.grid, recipe, Path(args.out), args.command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
