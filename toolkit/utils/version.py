"""The code version a result was made with: the toolkit version and the git commit.

``code_version()`` -> ``{"toolkit": "0.1.0", "git": "<40 hex>[-dirty]" or "unknown"}``.
The git hash is read from the checkout this package was imported from; an installed
wheel (no checkout) or a missing ``git`` gives ``"unknown"``, never an error.
"""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_revision(where: str | Path | None = None) -> str:
    """HEAD of the git checkout holding ``where`` (default: this package), ``-dirty`` if modified."""
    where = Path(where) if where else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def toolkit_version() -> str:
    """The installed distribution's version (setup.cfg), without importing the package root."""
    import importlib.metadata
    try:
        return importlib.metadata.version("concord-asr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def code_version() -> dict[str, str]:
    return {"toolkit": toolkit_version(), "git": git_revision()}
