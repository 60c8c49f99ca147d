"""The one wrapper every ``toolkit/bin`` CLI runs under: one clear line on failure.

Usage (a bin script keeps ``def main(argv=None)``: parse the arguments, call the library)::

    from toolkit.utils.cli import cli

    @cli
    def main(argv=None) -> int:
        args = get_parser().parse_args(argv)
        do_the_work(args)          # raise InputError / ConfigError on bad input
        return 0

    if __name__ == "__main__":
        sys.exit(main())

``@cli`` makes ``main(argv)`` return an exit code whatever happens inside (so console
entry points, ``sys.exit(main())`` and tests see the same thing); ``run_cli(main, argv)``
does the same for an undecorated function. Extra keyword arguments are passed through.

Exit codes, the same for every CLI (shell stages and tests rely on them):

====  ==========================================================================
0     success
2     bad input the user can fix: :class:`~toolkit.utils.fileio.InputError`,
      :class:`~toolkit.utils.config.ConfigError`, any other ``ValueError`` (the
      project's type for a bad argument), a missing or unreadable file
      (``OSError``), or a bad command line (argparse's own code)
1     any other failure (a bug, the machine, a diverged training): the exception's
      type and message
130   interrupted (Ctrl-C)
141   the reader of stdout went away (``| head``): no message, as for cat
====  ==========================================================================

On failure stderr gets one line, ``<prog>: error: <message>``; the traceback follows
only with ``--verbose`` anywhere on the command line (taken out before ``main`` sees
it) or ``CONCORD_VERBOSE=1`` in the environment (recipes: ``./run.sh --verbose true``).
"""
from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Callable, Sequence

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)
EXIT_USER, EXIT_UNEXPECTED, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 2, 1, 130, 141


def one_line(message: object) -> str:
    """A (possibly multi-line) message as one line: its non-empty lines joined by '; '."""
    return "; ".join(s.strip() for s in str(message).splitlines() if s.strip())


def verbose_requested(argv: Sequence[str]) -> bool:
    return "--verbose" in argv or os.environ.get("CONCORD_VERBOSE", "") not in ("", "0")


def prog_name(main: Callable) -> str:
    """``toolkit.bin.decode`` (imported, or run as ``python -m``) -> ``decode``; else the function's name."""
    module = getattr(main, "__module__", "") or ""
    if module == "__main__" and sys.argv and sys.argv[0]:
        return os.path.splitext(os.path.basename(sys.argv[0]))[0]
    return module.rsplit(".", 1)[-1] if module.startswith("toolkit.bin.") else main.__name__


def run_cli(main: Callable, argv: Sequence[str] | None = None, prog: str | None = None, **kwargs) -> int:
    """Call ``main(argv, **kwargs)`` and turn whatever happens into an exit code (see above)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = verbose_requested(argv)
    argv = [a for a in argv if a != "--verbose"]
    prog = prog or prog_name(main)
    try:
        code = main(argv, **kwargs)
    except SystemExit as e:  # argparse (usage printed already), or sys.exit("message")
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(f"{prog}: error: {one_line(e.code)}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`... | head`): nothing to report, as cat does
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except USER_ERRORS as e:
        _report(prog, one_line(e) or type(e).__name__, verbose)
        return EXIT_USER
    except Exception as e:  # a bug or the machine: say what, not where (unless --verbose)
        hint = "" if verbose else " (rerun with --verbose for the traceback)"
        _report(prog, f"{type(e).__name__}: {one_line(e)}{hint}", verbose)
        return EXIT_UNEXPECTED
    return 0 if code is None else int(code)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _report(prog: str, message: str, verbose: bool) -> None:
    if verbose:
        traceback.print_exc(file=sys.stderr)
    print(f"{prog}: error: {message}", file=sys.stderr)


def cli(main: Callable | None = None, *, prog: str | None = None) -> Callable:
    """Decorator form of :func:`run_cli`: ``main(argv=None, **kwargs) -> int``.

    ``@cli`` names the tool after its module; ``@cli(prog="concord-transcribe")`` gives the
    name users type (errors then read ``concord-transcribe: error: ...``).
    """
    def wrap(main: Callable) -> Callable:
        @functools.wraps(main)
        def wrapped(argv: Sequence[str] | None = None, **kwargs) -> int:
            return run_cli(main, argv, prog=prog, **kwargs)
        return wrapped
    return wrap if main is None else wrap(main)
