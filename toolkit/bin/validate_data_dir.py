"""Check a Kaldi data dir; print every problem as ``file:line: message``.

Usage:
    python -m toolkit.bin.validate_data_dir data/train
    python -m toolkit.bin.validate_data_dir --no-check-audio --allow-empty-text data/dev

Exit status 2 (bad input, as every CLI: toolkit/utils/cli.py) when there is an error (or, with
--strict, a warning); 0 otherwise.
"""
from __future__ import annotations

import argparse
import sys

from toolkit.data.validate import validate_data_dir
from toolkit.utils.cli import EXIT_USER, cli


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="validate_data_dir", description=__doc__.split("\n")[0])
    p.add_argument("data_dir")
    p.add_argument("--no-check-audio", action="store_true", help="do not check that audio files exist")
    p.add_argument("--allow-empty-text", action="store_true", help="accept empty transcripts")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    args = p.parse_args(argv)
    problems = validate_data_dir(args.data_dir, check_audio=not args.no_check_audio,
                                 allow_empty_text=args.allow_empty_text)
    for problem in problems:
        print(problem, file=sys.stderr)
    errors = sum(pr.severity == "error" for pr in problems)
    warnings = len(problems) - errors
    if errors or (args.strict and warnings):
        print(f"validate_data_dir: {args.data_dir}: {errors} error(s), {warnings} warning(s); "
              f"many are fixed by utils/fix_data_dir.sh {args.data_dir}", file=sys.stderr)
        return EXIT_USER
    print(f"validate_data_dir: {args.data_dir}: OK" + (f" ({warnings} warning(s))" if warnings else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
