"""ONNX export: onnxruntime reproduces PyTorch, and sherpa-onnx decodes the streaming transducer."""
import re

import numpy as np
import pytest
import torch

from toolkit.bin import export_onnx as export_cli
from toolkit.decode import runner
from toolkit.decode.session import StreamingSession
from toolkit.models.experiment import load_experiment
from toolkit.features.fbank import FbankExtractor

from conftest import waveform

pytest.importorskip("onnxruntime")
from toolkit.export.runtime import OnnxTransducer  # noqa: E402

WAVS = [waveform(40 + i, 0.6 + 0.45 * i) for i in range(4)]


@pytest.fixture(scope="module")
def experiment(tiny_recipe):
    return load_experiment(tiny_recipe["exp"])


@pytest.fixture(scope="module")
def exported(tiny_recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    assert export_cli.main([str(tiny_recipe["exp"]), str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def ort(exported):
    return OnnxTransducer(exported)


def projected(exp, fbank, mode):
    """PyTorch: encoder frames (t, J) of one utterance, projected for the mode's joiner."""
    x = torch.from_numpy(exp.cmvn(fbank))[None]
    with torch.no_grad():
        enc, _ = exp.model.encode(x, torch.tensor([x.shape[1]]), mode=mode)
        return exp.model.decoder(mode).joiner.enc_proj(enc)[0].numpy()


@pytest.mark.parametrize("mode", ["streaming", "full"])
def test_onnxruntime_encoder_frames_equal_pytorch(experiment, ort, mode):
    for wav in WAVS:
        fbank = FbankExtractor().compute(wav)
        got = ort.encode_streaming(fbank) if mode == "streaming" else ort.encode_full(fbank)
        want = projected(experiment, fbank, mode)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


# 0: the recipe's usual case; negative: the tiny model emits labels freely, so raise blank
@pytest.mark.parametrize("penalty", [0.0, -4.0, -8.0])
def test_onnxruntime_greedy_tokens_equal_concord_greedy_with_and_without_a_blank_penalty(experiment, ort, penalty):
    session = StreamingSession(experiment.model, experiment.cmvn, experiment.sp, blank_penalty=penalty)
    emitted = changed = 0
    for wav in WAVS:
        fbank = FbankExtractor().compute(wav)
        session.reset()
        session.accept_waveform(wav)
        session.finalize()
        assert ort.greedy_streaming(fbank, blank_penalty=penalty)[0] == session.token_ids()
        full = runner.decode_full(experiment, [("u", fbank)], blank_penalty=penalty)[0].text
        assert experiment.sp.decode(ort.greedy_full(fbank, blank_penalty=penalty)[0]) == full
        emitted += len(session.token_ids())
        changed += session.token_ids() != ort.greedy_streaming(fbank)[0]
    if penalty:
        assert changed  # the penalty changed the output, so the agreement is not the trivial one
    else:
        assert emitted > 0  # ...and without one, labels came out to compare


def test_encoder_metadata_is_what_sherpa_onnx_conformer_reads(ort, experiment):
    meta = dict(ort.encoder.get_modelmeta().custom_metadata_map)
    for key in ("model_type", "num_encoder_layers", "T", "decode_chunk_len", "left_context", "encoder_dim",
                "pad_length", "cnn_module_kernel"):
        assert key in meta
    assert meta["model_type"] == "conformer" and meta["sherpa_onnx_compatible"] == "1"
    assert int(meta["decode_chunk_len"]) == experiment.model.chunk_size_frames
    decoder = dict(ort.predictor["streaming"].session.get_modelmeta().custom_metadata_map)
    assert decoder["vocab_size"] == str(experiment.sp.get_piece_size()) and decoder["context_size"] == "2"


def test_sherpa_onnx_decodes_the_export_as_concord_greedy_streaming(exported, experiment):
    """sherpa-onnx: one token per frame at most, whole chunks only: compare like with like."""
    pytest.importorskip("sherpa_onnx")
    from toolkit.export.sherpa_check import compare_with_sherpa
    res = compare_with_sherpa(experiment, exported, [(f"w{i}", w) for i, w in enumerate(WAVS)])
    assert res.identical == res.total == len(WAVS) and res.words > 0, res.examples

def test_lstm_predictor_exports_for_onnxruntime_only(experiment, tmp_path):
    from toolkit.models.experiment import Experiment
    from toolkit.export.onnx import export_onnx
    from toolkit.models import build_model
    config = dict(experiment.config, model_conf=dict(experiment.config["model_conf"], predictor="lstm",
                                                     predictor_conf={"embed_dim": 16, "hidden_dim": 16,
                                                                     "dropout": 0.0}))
    torch.manual_seed(1)
    model = build_model(config).eval()
    with torch.no_grad():
        model.stream_decoder.joiner.out.bias[0] = -4.0
    lstm = Experiment(model, experiment.cmvn, experiment.sp, config)
    export_onnx(lstm, tmp_path)
    ort = OnnxTransducer(tmp_path)
    assert ort.encoder.get_modelmeta().custom_metadata_map["sherpa_onnx_compatible"] == "0"
    session = StreamingSession(model, experiment.cmvn, experiment.sp)
    session.accept_waveform(WAVS[2])
    session.finalize()
    assert session.token_ids() and ort.greedy_streaming(FbankExtractor().compute(WAVS[2]))[0] == session.token_ids()


def test_export_cli_checks_itself_against_sherpa_onnx_on_a_data_dir(tiny_recipe, tmp_path, capsys):
    pytest.importorskip("sherpa_onnx")
    rc = export_cli.main([str(tiny_recipe["exp"]), str(tmp_path / "onnx"), "--check-data", str(tiny_recipe["data"]),
                          "--check-num", "4"])
    out = capsys.readouterr().out
    m = re.search(r"sherpa-onnx = Concord greedy streaming on 4/4 utterances \((\d+) words\)", out)
    assert rc == 0 and m and int(m.group(1)) > 0
