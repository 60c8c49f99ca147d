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


# ---- packed models: the manifest first, every member bounded, sizes checked before building ------
@pytest.fixture(scope="module")
def packed(tiny_recipe, tmp_path_factory):
    from toolkit.decode.package import pack_model
    return pack_model(tiny_recipe["exp"], tmp_path_factory.mktemp("pack") / "tiny.concord")


def repack(src, dst, members=None, streamed=None, manifest=None):
    """Copy a package, replacing ``members`` ({name: bytes}), adding ``streamed`` ({name: (chunk,
    count)}: written chunk by chunk, never held whole) and editing the manifest with ``manifest``
    (a function of the parsed manifest; default: it lists the replaced members honestly)."""
    import hashlib
    import json
    import zipfile
    members = dict(members or {})
    with zipfile.ZipFile(src) as z:
        data = {n: z.read(n) for n in z.namelist()}
    data.update(members)
    listed = json.loads(data["manifest.json"])
    for name, blob in members.items():
        listed["files"][name] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    if manifest is not None:
        manifest(listed)
    data["manifest.json"] = json.dumps(listed).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in data.items():
            if name not in (streamed or {}):
                z.writestr(name, blob)
        for name, (chunk, count) in (streamed or {}).items():
            with z.open(name, "w", force_zip64=True) as f:
                for _ in range(count):
                    f.write(chunk)
    return dst


def load_with_peak_memory(path):
    """(the exception load_package raised, peak Python-allocated bytes while loading)."""
    import tracemalloc
    from toolkit.decode.package import load_package
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as e:
            load_package(path)
        return e.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


BOMB = (bytes(1 << 20), 128)  # 128 MiB of zeros: about 128 KiB deflated


def test_a_member_larger_than_its_declared_size_is_refused_without_inflating_it(packed, tmp_path):
    bomb = repack(packed, tmp_path / "bomb.concord", streamed={"model.pt": BOMB})  # manifest: the real size
    err, peak = load_with_peak_memory(bomb)
    assert "model.pt: 134217728 bytes, more than the" in str(err) and "its manifest allows" in str(err)
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB allocated while refusing a 128 MiB member"


def test_a_member_declared_as_large_as_a_zip_bomb_is_refused_by_its_compression_ratio(packed, tmp_path):
    def declare_it(m):
        m["files"]["model.pt"]["size"] = BOMB[1] << 20
    bomb = repack(packed, tmp_path / "bomb.concord", streamed={"model.pt": BOMB}, manifest=declare_it)
    err, peak = load_with_peak_memory(bomb)
    assert "model.pt: 134217728 bytes compressed into" in str(err) and "zip bomb" in str(err)
    assert peak < 16 << 20


def test_an_old_format_pack_still_loads_and_is_bounded_by_the_zip_sizes(packed, tmp_path, asr):
    def old_format(m):
        m["format"] = "concord-packed-model/1"
        m["files"] = {n: e["sha256"] for n, e in m["files"].items()}
    old = repack(packed, tmp_path / "old.concord", manifest=old_format)
    wav = waveform(9, 1.0)
    assert Transcriber.from_pretrained(old).transcribe(wav).text == asr.transcribe(wav).text
    err, _ = load_with_peak_memory(repack(old, tmp_path / "old_bomb.concord", streamed={"model.pt": BOMB}))
    assert "zip bomb" in str(err)


def test_a_member_the_manifest_does_not_list_is_refused_not_inflated(packed, tmp_path):
    extra = repack(packed, tmp_path / "extra.concord", streamed={"payload.bin": BOMB})
    err, peak = load_with_peak_memory(extra)
    assert "not listed in manifest.json: payload.bin" in str(err)
    assert peak < 16 << 20


def test_a_file_in_a_packed_dir_the_manifest_does_not_list_is_refused(tiny_recipe, tmp_path):
    from toolkit.bin import pack_model as pack_cli
    from toolkit.decode.package import load_package
    assert pack_cli.main([str(tiny_recipe["exp"]), str(tmp_path / "pack_dir")]) == 0
    (tmp_path / "pack_dir" / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not listed in manifest.json: notes.txt"):
        load_package(tmp_path / "pack_dir")


def test_a_config_naming_a_huge_model_is_refused_before_the_model_is_built(packed, tmp_path, monkeypatch):
    import torch
    import yaml
    import zipfile
    import toolkit.models
    with zipfile.ZipFile(packed) as z:
        config = yaml.safe_load(z.read("config.yaml"))
    for part in ("audio_encoder_conf", "text_encoder_conf", "shared_encoder_conf", "cascaded_encoder_conf"):
        config["model_conf"][part]["d_model"] = 100000  # about 160 GB of weights if it were built
    huge = repack(packed, tmp_path / "huge.concord", members={"config.yaml": yaml.safe_dump(config).encode()})
    real_build, built_on = toolkit.models.build_model, []

    def build_only_on_meta(cfg, *a, **k):
        built_on.append(str(torch.get_default_device()))
        if built_on[-1] != "meta":
            raise AssertionError("a model was built with real memory before its sizes were checked")
        return real_build(cfg, *a, **k)
    monkeypatch.setattr(toolkit.models, "build_model", build_only_on_meta)
    from toolkit.decode.package import load_package
    with pytest.raises(InputError, match=r"model.pt does not fit the config: .*config.yaml makes \(100000"):
        load_package(huge)
    assert built_on == ["meta"]


def test_expect_sha256_refuses_any_other_package_and_accepts_the_published_one(tiny_recipe, packed, tmp_path,
                                                                               wav, capsys):
    import hashlib
    published = hashlib.sha256(packed.read_bytes()).hexdigest()
    assert transcribe_cli.main([str(packed), str(wav), "--expect-sha256", "0" * 64]) == 2
    err = capsys.readouterr().err
    assert err.startswith("concord-transcribe: error: ") and f"sha256 of the file is {published}" in err
    assert "not the published model; refused" in err
    assert transcribe_cli.main([str(packed), str(wav), "--expect-sha256", published.upper()]) == 0
    assert capsys.readouterr().out.startswith("speech\t")
    assert transcribe_cli.main([str(tiny_recipe["exp"]), str(wav), "--expect-sha256", published]) == 2
    assert "checks a packed model; this is not one" in capsys.readouterr().err


def test_pack_model_prints_the_digest_to_publish_and_never_says_verified(tiny_recipe, tmp_path, capsys):
    import hashlib
    from toolkit.bin import pack_model as pack_cli
    assert pack_cli.main([str(tiny_recipe["exp"]), str(tmp_path / "m.concord")]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {hashlib.sha256((tmp_path / 'm.concord').read_bytes()).hexdigest()}" in out
    assert "verified" not in out.lower()
    assert "corruption, not tampering" in pack_cli.__doc__ and "verified" not in pack_cli.__doc__


def test_compressed_records_inside_model_pt_are_refused(packed, tmp_path):
    import io
    import zipfile
    with zipfile.ZipFile(packed) as z:
        model_pt = z.read("model.pt")
    inner = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(model_pt)) as zin, zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item))  # torch.save stores; this deflates
    bad = repack(packed, tmp_path / "nested.concord", members={"model.pt": inner.getvalue()})
    err, _ = load_with_peak_memory(bad)
    assert "model.pt has" in str(err) and "compressed record(s)" in str(err)
