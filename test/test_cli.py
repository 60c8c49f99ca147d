"""Failure behaviour shared by every CLI and process pool: one clear line, a stated exit
code, no traceback unless asked; worker errors reach the parent, no pool can hang."""
import importlib
import inspect
import os
import pickle
import pkgutil
import subprocess
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import toolkit
import toolkit.bin
from toolkit.utils.cli import EXIT_INTERRUPTED, EXIT_UNEXPECTED, EXIT_USER, cli, run_cli
from toolkit.utils.config import ConfigError
from toolkit.utils.fileio import InputError
from toolkit.utils.parallel import WorkerError, imap_processes

REPO = Path(__file__).resolve().parents[1]


def _all_toolkit_modules():
    for info in pkgutil.walk_packages(toolkit.__path__, "toolkit."):
        yield importlib.import_module(info.name)


def _project_exceptions():
    found = {}
    for module in _all_toolkit_modules():
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__.startswith("toolkit.")):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_project_exception_survives_a_pickle_round_trip():
    found = _project_exceptions()
    assert {"toolkit.utils.fileio.InputError", "toolkit.utils.config.ConfigError"} <= set(found)
    for name, cls in found.items():
        try:
            signature = inspect.signature(cls)
        except ValueError:  # the builtin Exception signature: one message
            signature = inspect.Signature([inspect.Parameter("message", inspect.Parameter.POSITIONAL_ONLY)])
        params = [p for p in signature.parameters.values()
                  if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        args = [7 if "int" in str(p.annotation) else f"arg{i}" for i, p in enumerate(params)]
        err = cls(*args) if args else cls("a message")
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls and str(back) == str(err), name
        assert vars(back) == vars(err), name


# ---- the process pool ----------------------------------------------------------------------

def _fail_on_two(x):
    if x == 2:
        raise InputError("bad.wav", "utterance 'u2': cannot read audio")
    return x * 10


class _Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def _raise_unpicklable(x):
    raise _Unpicklable("left", "right")


def _die(x):
    if x == 1:
        os._exit(9)
    return x


def test_pool_worker_error_reaches_the_parent_as_itself():
    with pytest.raises(InputError, match="bad.wav: utterance 'u2'"):
        list(imap_processes(_fail_on_two, [1, 2, 3], nj=2))


def test_pool_worker_error_that_cannot_be_pickled_arrives_as_worker_error():
    with pytest.raises(WorkerError, match="_Unpicklable: left and right"):
        list(imap_processes(_raise_unpicklable, [1, 2], nj=2))


def test_pool_worker_that_dies_ends_the_run_instead_of_hanging():
    with pytest.raises(BrokenProcessPool):
        list(imap_processes(_die, [1, 2, 3], nj=2))


def test_pool_keeps_the_order_of_the_items():
    assert list(imap_processes(_fail_on_two, [3, 1, 4], nj=2)) == [30, 10, 40]


def test_dump_feats_in_process_pool_ends_with_the_workers_message_on_bad_audio(tmp_path, tool_env):
    """Was a hang: the InputError of a worker could not be unpickled by the pool."""
    data = tmp_path / "data"
    data.mkdir()
    sf.write(tmp_path / "good.wav", np.zeros(8000, np.float32), 16000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not audio")
    (data / "wav.scp").write_text(f"a-1 {tmp_path / 'good.wav'}\nb-2 {tmp_path / 'bad.wav'}\n")
    env = dict(tool_env, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "toolkit.bin.dump_feats", "--data", str(data),
                        "--out", str(tmp_path / "dump"), "--nj", "2"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == EXIT_USER, r.stderr
    assert "dump_feats: error: " in r.stderr and "bad.wav: utterance 'b-2': cannot read audio" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "dump" / "feats.scp").exists()


# ---- the CLI wrapper -----------------------------------------------------------------------

def _main_raising(exc):
    def main(argv=None):
        raise exc
    return main


@pytest.mark.parametrize("exc", [InputError("data/x/text", "empty transcript", 3), ConfigError("bad key"),
                                 FileNotFoundError(2, "No such file", "exp/t/model_avg.pt")])
def test_bad_input_is_one_line_and_exit_code_2(exc, capsys):
    assert run_cli(_main_raising(exc), [], prog="demo") == EXIT_USER
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("demo: error: ") and "Traceback" not in err


def test_unexpected_error_is_one_line_exit_1_and_traceback_only_with_verbose(capsys, monkeypatch):
    monkeypatch.delenv("CONCORD_VERBOSE", raising=False)
    main = _main_raising(KeyError("layer"))
    assert run_cli(main, [], prog="demo") == EXIT_UNEXPECTED
    err = capsys.readouterr().err
    assert err == "demo: error: KeyError: 'layer' (rerun with --verbose for the traceback)\n"
    assert run_cli(main, ["--verbose"], prog="demo") == EXIT_UNEXPECTED
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("CONCORD_VERBOSE", "1")
    assert run_cli(main, [], prog="demo") == EXIT_UNEXPECTED
    assert "Traceback" in capsys.readouterr().err


def test_verbose_is_taken_out_before_main_parses_its_arguments():
    seen = []

    @cli
    def main(argv=None):
        seen.append(argv)
        return 0
    assert main(["--x", "1", "--verbose"]) == 0 and seen == [["--x", "1"]]


def test_interrupt_exits_130_and_multiline_messages_become_one_line(capsys):
    assert run_cli(_main_raising(KeyboardInterrupt()), [], prog="demo") == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "demo: interrupted\n"
    assert run_cli(_main_raising(ValueError("first\n  second\n")), [], prog="demo") == EXIT_USER
    assert capsys.readouterr().err == "demo: error: first; second\n"
    assert run_cli(_main_raising(SystemExit("--job must be in 1..2")), [], prog="demo") == EXIT_USER
    assert capsys.readouterr().err == "demo: error: --job must be in 1..2\n"


def test_every_bin_script_runs_under_the_shared_wrapper():
    for info in pkgutil.iter_modules(toolkit.bin.__path__):
        module = importlib.import_module(f"toolkit.bin.{info.name}")
        main = getattr(module, "main")
        assert getattr(main, "__wrapped__", None) is not None, f"toolkit.bin.{info.name}.main has no @cli"


def test_a_reader_that_goes_away_ends_the_cli_quietly(capsys):
    from toolkit.utils.cli import run_cli

    def main(argv):
        raise BrokenPipeError(32, "Broken pipe")  # what print() raises once `| head` has exited

    assert run_cli(main, [], prog="x") == 141
    assert "error" not in capsys.readouterr().err
