"""bench_decode: every runtime decodes the same audio to the same greedy words, the streaming
chunk loop over onnxruntime matches the whole-utterance one, and the part timer leaves the model as it was."""
import json
import re

import numpy as np
import pytest

from toolkit.bench.decode_speed import time_concord_streaming, time_onnxruntime_streaming
from toolkit.models.experiment import load_experiment

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def experiment(tiny_recipe):
    return load_experiment(tiny_recipe["exp"])


@pytest.fixture(scope="module")
def audio(tiny_recipe):
    from toolkit.decode.runner import load_audio
    return list(load_audio(tiny_recipe["data"], tiny_recipe["ids"][:3]))


def test_onnxruntime_fed_in_pieces_gives_the_whole_utterance_greedy_tokens(experiment, audio, tmp_path):
    from toolkit.export.onnx import export_onnx
    from toolkit.export.runtime import OnnxTransducer
    from toolkit.features.fbank import FbankExtractor
    export_onnx(experiment, tmp_path)
    ort = OnnxTransducer(tmp_path)
    got = time_onnxruntime_streaming(ort, experiment.sp, audio, piece=1234)   # pieces cut across chunks
    for uttid, samples in audio:
        ids, _ = ort.greedy_streaming(FbankExtractor().compute(samples))
        assert got.texts[uttid] == experiment.sp.decode(ids)
    assert len(got.chunk_s) == sum(-(-len(s) // 1234) + 1 for _, s in audio)   # every piece + the flush


def test_part_timer_splits_the_whole_time_and_leaves_the_model_unpatched(experiment, audio):
    plain = time_concord_streaming(experiment, audio, piece=2000)
    timed = time_concord_streaming(experiment, audio, piece=2000, breakdown=True)
    assert timed.texts == plain.texts
    assert set(timed.parts) == {"encoder chunk", "predictor", "joiner", "fbank", "python and glue"}
    assert sum(timed.parts.values()) == pytest.approx(timed.compute_s)
    assert all(v > 0 for k, v in timed.parts.items() if k != "python and glue")
    decoder = experiment.model.decoder("streaming")
    assert "encode_chunk" not in vars(experiment.model) and "step" not in vars(decoder)


@pytest.mark.slow
def test_bench_decode_prints_every_method_with_its_ratio_to_sherpa_onnx(tiny_recipe, tmp_path, capsys):
    pytest.importorskip("sherpa_onnx")
    from toolkit.bin.bench_decode import main
    rc = main(["--exp", str(tiny_recipe["exp"]), "--data", str(tiny_recipe["data"]), "--num-utts", "3",
               "--repeat", "1", "--onnx-dir", str(tmp_path / "onnx"), "--json", str(tmp_path / "d.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in ("sherpa-onnx greedy", "onnxruntime greedy", "concord greedy", "concord beam4"):
        assert re.search(rf"^  {name} +\d+\.\d+ .* \d+\.\d+x", out, re.M), name
    # the same model, greedy, one token per frame at most: every runtime writes the same words
    assert re.search(r"^  onnxruntime greedy .* 3/3$", out, re.M) and re.search(r"^  concord greedy .* 3/3$", out, re.M)
    assert re.search(r"^target: concord greedy within 1.5x of sherpa-onnx per piece: (met|NOT met)", out, re.M)
    assert "encoder chunk" in out and re.search(r"identical hypotheses 3/3$", out, re.M)
    assert (tmp_path / "onnx" / "encoder.onnx").exists()
    assert np.isfinite(json.loads((tmp_path / "d.json").read_text())["greedy"]["rtf"])
