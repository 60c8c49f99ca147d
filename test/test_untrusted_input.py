"""Input from someone else: file names that look like commands, FIFOs, devices, packed models.

A path given as a file is a file (only a wav.scp value may be Kaldi's ``cmd |``); a packed
model is checked before anything in it is inflated or built.
"""
import contextlib
import os
import shutil
import signal

import numpy as np
import pytest
import soundfile as sf

from toolkit import Transcriber
from toolkit.bin import transcribe as transcribe_cli
from toolkit.features.audio import read_audio_file, read_recording
from toolkit.features.dump import dump_job
from toolkit.utils.fileio import InputError

from conftest import waveform


@pytest.fixture(scope="module")
def asr(tiny_recipe):
    return Transcriber.from_pretrained(tiny_recipe["exp"])


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, waveform(3, 1.1), 16000)
    return path


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the test run) if the block blocks longer than ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---- a file name is never a command ------------------------------------------------------------
@pytest.mark.parametrize("as_type", [str, os.PathLike])
def test_transcriber_reads_a_file_named_like_a_command_as_audio_and_runs_nothing(asr, wav, tmp_path,
                                                                                  monkeypatch, as_type):
    monkeypatch.chdir(tmp_path)
    shutil.copy(wav, tmp_path / "touch PWNED |")
    name = "touch PWNED |" if as_type is str else tmp_path / "touch PWNED |"
    r = asr.transcribe(name)
    assert not (tmp_path / "PWNED").exists()
    assert r.uttid == "touch PWNED |" and r.text == asr.transcribe(wav).text
    assert abs(r.duration - 1.1) < 0.01


def test_cli_reads_a_file_named_like_a_command_as_audio_and_runs_nothing(tiny_recipe, asr, wav, tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(wav, tmp_path / "touch PWNED |")
    assert transcribe_cli.main([str(tiny_recipe["exp"]), "touch PWNED |"]) == 0
    assert not (tmp_path / "PWNED").exists()
    assert capsys.readouterr().out == f"touch PWNED |\t{asr.transcribe(wav).text}\n"


def test_cli_says_no_such_file_for_a_missing_file_named_like_a_command(tiny_recipe, tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    assert transcribe_cli.main([str(tiny_recipe["exp"]), "touch PWNED |"]) == 1
    assert not (tmp_path / "PWNED").exists()
    assert "touch PWNED |: utterance 'touch PWNED |': no such file" in capsys.readouterr().err


def test_a_wav_scp_command_still_runs_because_the_wav_scp_asks_for_it(tiny_recipe, asr, wav, tmp_path, capsys):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"u1 cat {wav} |\n")
    assert transcribe_cli.main([str(tiny_recipe["exp"]), "--wav-scp", str(scp)]) == 0
    assert capsys.readouterr().out == f"u1\t{asr.transcribe(wav).text}\n"


# ---- the name as given: spaces kept, bytes decoded -----------------------------------------------
def test_leading_and_trailing_spaces_are_part_of_the_file_name(wav, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(wav, tmp_path / " lead.wav")
    samples, rate = read_audio_file(" lead.wav", "u")
    assert rate == 16000 and len(samples) == len(sf.read(wav)[0])
    with pytest.raises(InputError, match="no such file"):  # 'speech.wav ' is not 'speech.wav'
        read_audio_file("speech.wav ", "u")


def test_a_bytes_path_is_decoded_and_transcribed_as_one_file(asr, wav):
    r = asr.transcribe(os.fsencode(wav))
    assert r.uttid == "speech" and r.text == asr.transcribe(str(wav)).text
    listed = asr.transcribe([os.fsencode(wav), str(wav)])
    assert [x.uttid for x in listed] == ["speech", "speech"]


def test_something_that_is_not_a_path_is_refused_by_type():
    with pytest.raises(TypeError, match="must be str, bytes or os.PathLike"):
        read_audio_file(3, "u")  # an int would otherwise be read as file descriptor 3


# ---- only regular files are read -----------------------------------------------------------------
def test_a_fifo_is_refused_at_once_by_the_transcriber_naming_it(asr, tmp_path):
    fifo = tmp_path / "live.wav"
    os.mkfifo(fifo)
    with deadline(20), pytest.raises(InputError, match=r"live.wav: utterance 'live': is a FIFO"):
        asr.transcribe(fifo)


def test_a_fifo_is_refused_by_the_cli_and_the_other_files_are_transcribed(tiny_recipe, wav, tmp_path, capsys):
    os.mkfifo(tmp_path / "live.wav")
    with deadline(60):
        rc = transcribe_cli.main([str(tiny_recipe["exp"]), str(tmp_path / "live.wav"), str(wav)])
    out, err = capsys.readouterr()
    assert rc == 1 and "live.wav: utterance 'live': is a FIFO (named pipe), not an audio file" in err
    assert out.startswith("speech\t")


def test_a_fifo_in_a_wav_scp_fails_the_dump_at_once_and_leaves_no_temp_file(tmp_path):
    os.mkfifo(tmp_path / "live.wav")
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"s-u0 {tmp_path / 'live.wav'}\n")
    (data / "text").write_text("s-u0 HELLO\n")
    with deadline(20), pytest.raises(InputError, match="is a FIFO"):
        dump_job(data, tmp_path / "dump", progress=False)
    assert not [p.name for p in (tmp_path / "dump").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("path,kind", [("/dev/zero", "a character device"), (".", "a directory")])
def test_devices_and_directories_are_refused_naming_the_path(path, kind):
    with deadline(20), pytest.raises(InputError, match=f"{path}: utterance 'u': is {kind}"):
        read_audio_file(path, "u")
    with deadline(20), pytest.raises(InputError, match=f"is {kind}"):
        read_recording(f" {path} ", "u")  # a wav.scp value naming one: the same refusal


def test_a_wav_scp_path_value_is_read_with_its_separating_spaces_stripped(wav):
    samples, rate = read_recording(f"  {wav}  ", "u")
    assert rate == 16000 and np.array_equal(samples, read_audio_file(wav, "u")[0])
