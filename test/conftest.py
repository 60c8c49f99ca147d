"""Shared pytest fixtures: repository paths and an isolated, tool-ready environment."""
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tool_env() -> dict:
    """Environment for shell tools under utils/: utils on PATH, C locale, this venv's python first."""
    env = dict(os.environ)
    venv_bin = str(Path(os.sys.executable).parent)
    env["PATH"] = f"{REPO / 'utils'}:{venv_bin}:{env.get('PATH', '')}"
    env["LC_ALL"] = "C"
    env["PYTHONIOENCODING"] = "UTF-8"
    env["OMP_NUM_THREADS"] = "1"
    return env


def sclite_binary():
    """Path of a real sclite (Debian's sctk) when installed, else None."""
    for cand in (shutil.which("sclite"), "/usr/lib/sctk/bin/sclite"):
        if cand and os.path.exists(cand):
            return cand
    return None


def nvvm_available() -> bool:
    """True when numba can compile PTX here (libNVVM found), with or without a GPU."""
    try:
        from numba.cuda.cudadrv import nvvm
        return nvvm.is_available()
    except Exception:
        return False
