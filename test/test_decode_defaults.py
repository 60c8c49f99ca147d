"""The recipe's decode settings travel with the model (issue 21 item 9): the decode stage
records them in the experiment dir, packs carry them, concord-transcribe and Transcriber
use them unless told otherwise."""
import shutil

import pytest

from toolkit import Transcriber
from toolkit.bin import decode as decode_cli
from toolkit.bin import transcribe as transcribe_cli
from toolkit.decode import runner
from toolkit.decode.defaults import FILENAME, load_defaults
from toolkit.decode.package import load_package, pack_model
from toolkit.features.fbank import FbankExtractor
from toolkit.utils.fileio import InputError

from conftest import waveform

# the tiny model emits labels freely: a negative penalty (blank more likely) changes its output
RECIPE = ["--method", "beam", "--beam", "3", "--blank-penalty", "-4"]


@pytest.fixture
def exp_dir(tiny_recipe, tmp_path, monkeypatch):
    """A writable copy of the tiny recipe whose decode stage saved RECIPE as its defaults."""
    root = tmp_path / "recipe"
    shutil.copytree(tiny_recipe["root"], root, symlinks=True)
    monkeypatch.chdir(root)
    exp = root / tiny_recipe["exp"].relative_to(tiny_recipe["root"])
    assert decode_cli.main(["--exp", str(exp), *RECIPE, "--save-defaults"]) == 0
    return exp


def full_text(exp, wav, **search):
    return runner.decode_full(exp, [("u", FbankExtractor().compute(wav))], **search)[0].text


def test_decode_stage_records_its_search_settings(exp_dir):
    assert load_defaults(exp_dir) == {"method": "beam", "beam": 3, "blank_penalty": -4.0, "ilm_weight": 0.0}


def test_transcriber_decodes_with_the_saved_settings_and_arguments_override_them(exp_dir):
    asr = Transcriber.from_pretrained(exp_dir)
    assert (asr.method, asr.beam, asr.blank_penalty) == ("beam", 3, -4.0)
    wavs = [waveform(30 + i, 1.0 + 0.4 * i) for i in range(3)]
    recipe = [full_text(asr.experiment, w, method="beam", beam=3, blank_penalty=-4.0) for w in wavs]
    plain = [full_text(asr.experiment, w) for w in wavs]
    assert recipe != plain, "the saved settings do not change the output: the test is vacuous"
    assert [r.text for r in asr.transcribe(wavs)] == recipe
    overridden = Transcriber.from_pretrained(exp_dir, method="greedy", blank_penalty=0.0)
    assert [r.text for r in overridden.transcribe(wavs)] == plain


def test_cli_without_decoding_flags_uses_the_saved_settings(exp_dir, tmp_path, capsys):
    import soundfile as sf
    wav = waveform(44, 1.6)
    sf.write(tmp_path / "a.wav", wav, 16000)
    exp = Transcriber.from_pretrained(exp_dir).experiment
    assert transcribe_cli.main([str(exp_dir), str(tmp_path / "a.wav")]) == 0
    assert capsys.readouterr().out == f"a\t{full_text(exp, wav, method='beam', beam=3, blank_penalty=-4.0)}\n"
    assert transcribe_cli.main([str(exp_dir), str(tmp_path / "a.wav"), "--method", "greedy",
                                "--blank-penalty", "0"]) == 0
    assert capsys.readouterr().out == f"a\t{full_text(exp, wav)}\n"


def test_packed_model_carries_the_decode_settings(exp_dir, tmp_path):
    pack = pack_model(exp_dir, tmp_path / "m.concord")
    assert load_package(pack).decode_defaults == load_defaults(exp_dir)
    asr = Transcriber.from_pretrained(pack)
    assert (asr.method, asr.beam, asr.blank_penalty) == ("beam", 3, -4.0)


def test_experiment_without_saved_settings_decodes_greedily(tiny_recipe):
    asr = Transcriber.from_pretrained(tiny_recipe["exp"])
    assert (asr.method, asr.blank_penalty) == ("greedy", 0.0)


@pytest.mark.parametrize("text, message", [("methd: beam\n", "unknown decode setting"),
                                           ("beam: four\n", "beam: expected int"),
                                           ("method: viterbi\n", "method must be")])
def test_a_bad_decode_defaults_file_is_refused_naming_it(exp_dir, text, message):
    (exp_dir / FILENAME).write_text(text)
    with pytest.raises(InputError, match=message) as e:
        Transcriber.from_pretrained(exp_dir)
    assert FILENAME in str(e.value)
