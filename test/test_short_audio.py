"""One rule for too-short audio everywhere (issue 21 item 4): fewer feature frames than the
subsampling needs -> an empty hypothesis and a warning naming the utterance; the others
decode as if it were not there. An empty test set is a scoring error, not WER 0."""
import logging

import pytest

from toolkit import Transcriber
from toolkit.bin import score as score_cli
from toolkit.decode import runner
from toolkit.features.fbank import FbankExtractor
from toolkit.models.experiment import load_experiment
from toolkit.scoring.wer import score

from conftest import waveform

SHORT = waveform(1, 0.05)  # 3 fbank frames; the encoder needs min_frames (7)
LONG = [waveform(50 + i, 0.9 + 0.3 * i) for i in range(3)]


@pytest.fixture(scope="module")
def exp(tiny_recipe):
    return load_experiment(tiny_recipe["exp"])


def named(items):
    return [(f"utt{k}", w) for k, w in enumerate(items)]


def warned_about(caplog, uttid):
    return any(uttid in r.getMessage() and "too short" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


def test_full_decode_batch_with_a_too_short_utterance_decodes_the_others(exp, caplog):
    fbank = FbankExtractor()
    alone = [runner.decode_full(exp, [("u", fbank.compute(w))])[0].text for w in LONG]
    feats = [(u, fbank.compute(w)) for u, w in named([LONG[0], SHORT, LONG[1], LONG[2]])]
    assert len(feats[1][1]) < exp.model.audio_encoder.min_frames
    with caplog.at_level(logging.WARNING):
        got = runner.decode_full(exp, feats, batch_size=4)
    assert [r.uttid for r in got] == ["utt0", "utt1", "utt2", "utt3"]
    assert [r.text for r in got] == [alone[0], "", alone[1], alone[2]]
    assert warned_about(caplog, "utt1") and not warned_about(caplog, "utt0")


def test_streaming_decode_gives_too_short_audio_an_empty_hypothesis_and_names_it(exp, caplog):
    with caplog.at_level(logging.WARNING):
        got = runner.decode_streaming(exp, named([SHORT, LONG[0]]))
    assert got[0].text == "" and warned_about(caplog, "utt0")
    assert got[1].text == runner.decode_streaming(exp, [("x", LONG[0])])[0].text
    assert not warned_about(caplog, "utt1")


@pytest.mark.parametrize("mode", ["full", "streaming"])
def test_transcriber_gives_too_short_audio_an_empty_transcript_and_names_it(tiny_recipe, mode, caplog):
    asr = Transcriber.from_pretrained(tiny_recipe["exp"], mode=mode)
    alone = asr.transcribe_named([("a", LONG[0])])[0].text
    with caplog.at_level(logging.WARNING):
        got = asr.transcribe_named([("tiny", SHORT), ("a", LONG[0])])
    assert [r.text for r in got] == ["", alone]
    assert got[0].words == () and warned_about(caplog, "tiny")


def test_an_empty_test_set_is_a_scoring_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="empty test set"):
        score({}, {})
    (tmp_path / "ref.trn").write_text("")
    (tmp_path / "hyp.trn").write_text("")
    rc = score_cli.main(["--ref", str(tmp_path / "ref.trn"), "--hyp", str(tmp_path / "hyp.trn"),
                         "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 2 and "ref.trn" in err and "empty test set" in err
    assert not (tmp_path / "s" / "result.txt").exists()
