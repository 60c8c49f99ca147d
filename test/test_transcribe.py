"""Using a trained model: the Transcriber API, concord-transcribe, packed models, the README example."""
import json
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from toolkit import Transcriber
from toolkit.bin import pack_model as pack_cli
from toolkit.bin import transcribe as transcribe_cli
from toolkit.decode import runner
from toolkit.decode.package import load_package, pack_model
from toolkit.decode.session import StreamingSession
from toolkit.utils.fileio import InputError

from conftest import REPO, waveform


@pytest.fixture(scope="module")
def asr(tiny_recipe):
    return Transcriber.from_pretrained(tiny_recipe["exp"])


@pytest.fixture(scope="module")
def packed(tiny_recipe, tmp_path_factory):
    return pack_model(tiny_recipe["exp"], tmp_path_factory.mktemp("pack") / "tiny.concord")


def reference_full(exp, wav):
    """What the decode stage's full-context path says for one 16 kHz waveform."""
    from toolkit.features.fbank import FbankExtractor
    return runner.decode_full(exp, [("u", FbankExtractor().compute(wav))])[0].text


def test_full_mode_equals_the_decode_stage(asr, tiny_recipe):
    wavs = [waveform(20 + i, 0.8 + 0.3 * i) for i in range(3)]
    results = asr.transcribe(wavs, batch_size=2)
    assert [r.uttid for r in results] == ["utt0", "utt1", "utt2"]
    assert [r.text for r in results] == [reference_full(asr.experiment, w) for w in wavs]
    assert any(r.tokens for r in results), "the tiny model emitted nothing: the comparison is vacuous"


def test_streaming_mode_equals_a_streaming_session(asr):
    wav = waveform(7, 1.7)
    session = StreamingSession(asr.model, asr.experiment.cmvn, asr.sp)
    session.accept_waveform(wav)
    assert asr.transcribe(wav, mode="streaming").text == session.finalize()


def test_other_sample_rates_and_stereo_are_resampled_and_mixed_down(asr, tmp_path):
    import soxr
    wav16 = waveform(3, 1.2)
    wav44 = soxr.resample(wav16, 16000, 44100).astype(np.float32)
    sf.write(tmp_path / "stereo44.flac", np.stack([wav44, wav44], axis=1), 44100)
    from_file = asr.transcribe(tmp_path / "stereo44.flac")
    from_array = asr.transcribe(wav44, sample_rate=44100)
    assert from_file.uttid == "stereo44" and from_file.text == from_array.text
    assert abs(from_file.duration - 1.2) < 0.01


def test_token_and_word_times_are_ordered_and_within_the_audio(asr):
    r = asr.transcribe(waveform(4, 2.0))
    assert r.tokens and r.words
    starts = [t.start for t in r.tokens]
    assert starts == sorted(starts) and all(t.end > t.start for t in r.tokens)
    assert r.tokens[-1].end <= r.duration + asr.frame_s
    assert " ".join(w.text for w in r.words) == " ".join(r.text.split())
    assert r.words[0].start == r.tokens[0].start


@pytest.mark.parametrize("mode", ["streaming", "full"])
def test_beam_search_dates_its_tokens_like_greedy(tiny_recipe, mode):
    beam = Transcriber.from_pretrained(tiny_recipe["exp"], method="beam", beam=3)
    r = beam.transcribe(waveform(8, 1.4), mode=mode)
    assert r.tokens and [t.start for t in r.tokens] == sorted(t.start for t in r.tokens)
    assert r.tokens[-1].end <= r.duration + beam.frame_s


@pytest.mark.parametrize("mode", ["streaming", "full"])
def test_stream_partials_then_final_text(asr, mode):
    wav = waveform(9, 1.6)
    stream = asr.stream(mode=mode)
    for s in range(0, len(wav), 4000):
        stream.accept_waveform(wav[s:s + 4000])
    final = stream.finalize()
    assert stream.result() == final.text
    assert final.text == asr.transcribe(wav, mode=mode).text  # full: the second pass re-decodes it all


def test_cli_prints_text_json_and_ctm_and_reports_unreadable_files(tiny_recipe, asr, tmp_path, capsys):
    wav = tiny_recipe["root"] / f"{tiny_recipe['ids'][0]}.wav"
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    rc = transcribe_cli.main([str(tiny_recipe["exp"]), str(wav), str(bad), "--ctm", str(tmp_path / "out.ctm")])
    out, err = capsys.readouterr()
    assert rc == 1 and "broken.wav" in err and "1 of 2" in err
    expected = asr.transcribe(wav).text
    assert out == f"{tiny_recipe['ids'][0]}\t{expected}\n"
    ctm = (tmp_path / "out.ctm").read_text().splitlines()
    assert [line.split()[4] for line in ctm] == expected.split()
    assert transcribe_cli.main([str(tiny_recipe["exp"]), "--wav-scp", str(tiny_recipe["data"] / "wav.scp"),
                                "--json", "--mode", "streaming"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["utt"] for r in rows] == tiny_recipe["ids"]
    assert all({"text", "words", "tokens", "duration"} <= set(r) for r in rows)


def test_packed_model_transcribes_without_the_recipe_dir(tiny_recipe, packed, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere.concord"
    shutil.copy(packed, moved)
    monkeypatch.chdir(tmp_path)
    wav = waveform(11, 1.3)
    from_pack = Transcriber.from_pretrained(moved)
    assert from_pack.transcribe(wav).text == Transcriber.from_pretrained(tiny_recipe["exp"]).transcribe(wav).text
    with zipfile.ZipFile(moved) as z:
        names = set(z.namelist())
        readme = z.read("README.md").decode()
    assert {"config.yaml", "model.pt", "cmvn.ark", "wp.model", "tokens.txt", "manifest.json"} <= names
    assert "git hash:" in readme and "toolkit version:" in readme


def test_packed_model_as_a_directory(tiny_recipe, tmp_path, capsys):
    assert pack_cli.main([str(tiny_recipe["exp"]), str(tmp_path / "tiny_dir")]) == 0
    assert "tiny_dir" in capsys.readouterr().out
    exp = load_package(tmp_path / "tiny_dir")
    assert exp.config["cmvn"] == "cmvn.ark" and "train_data" not in exp.config


def rewrite_member(src, dst, name, data=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            if item == name:
                if data is not None:
                    zout.writestr(item, data)
            else:
                zout.writestr(item, zin.read(item))


@pytest.mark.parametrize("member,data,message", [
    ("model.pt", None, "missing part.*model.pt"),
    ("cmvn.ark", b"\x00B garbage", "cmvn.ark: .*changed or truncated"),
])
def test_a_damaged_package_is_a_clear_error_on_load(packed, tmp_path, member, data, message):
    bad = tmp_path / "bad.concord"
    rewrite_member(packed, bad, member, data)
    with pytest.raises(InputError, match=message):
        Transcriber.from_pretrained(bad)


def test_a_package_whose_vocabulary_disagrees_is_refused(packed, tmp_path):
    import hashlib
    with zipfile.ZipFile(packed) as z:
        tokens = z.read("tokens.txt") + b"extra 999\n"
        manifest = json.loads(z.read("manifest.json"))
    manifest["files"]["tokens.txt"] = {"sha256": hashlib.sha256(tokens).hexdigest(), "size": len(tokens)}
    step = tmp_path / "step.concord"
    rewrite_member(packed, step, "tokens.txt", tokens)
    bad = tmp_path / "bad.concord"
    rewrite_member(step, bad, "manifest.json", json.dumps(manifest))
    with pytest.raises(InputError, match="vocabulary sizes disagree"):
        load_package(bad)


def test_a_state_dict_from_another_model_is_refused(tiny_recipe, tmp_path):
    exp = tmp_path / "exp" / "other"
    shutil.copytree(tiny_recipe["exp"], exp)
    state = torch.load(exp / "model_avg.pt", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("cascaded_encoder.")}
    torch.save(state, exp / "model_avg.pt")
    for d in ("data", "dump"):
        shutil.copytree(tiny_recipe["root"] / d, tmp_path / d)
    with pytest.raises(InputError, match="model.pt does not fit the config"):
        pack_model(exp, tmp_path / "other.concord")


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no ```python example"
    return blocks[0]


def test_the_readme_python_example_runs_as_written(tiny_recipe, tmp_path):
    """The README names egs/mini/exp/train and some.flac; here they are the tiny model and a flac."""
    code = readme_python_example()
    assert len(code.strip().splitlines()) <= 6
    (tmp_path / "egs" / "mini" / "exp").mkdir(parents=True)
    shutil.copytree(tiny_recipe["exp"], tmp_path / "egs" / "mini" / "exp" / "train")
    for d in ("data", "dump"):
        shutil.copytree(tiny_recipe["root"] / d, tmp_path / "egs" / "mini" / d)
    sf.write(tmp_path / "some.flac", waveform(5, 1.5), 16000)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
