"""Streaming sessions and the decode CLI, with a tiny untrained joint model (real build_model)."""
import re

import numpy as np
import pytest
import torch

from toolkit.bin import decode as decode_cli
from toolkit.bin import score as score_cli
from toolkit.decode import jobs, runner
from toolkit.decode.search import beam_search, greedy_search
from toolkit.decode.session import StreamingSession
from toolkit.models.experiment import load_experiment
from toolkit.features.fbank import FbankExtractor
from toolkit.scoring import read_trn
from toolkit.utils.fileio import InputError

from conftest import SENTENCES, make_tiny_recipe, waveform

@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A recipe dir with data/test (wav + text), feats, CMVN, wordpieces and an untrained exp."""
    return make_tiny_recipe(tmp_path_factory.mktemp("recipe"))


@pytest.fixture(scope="module")
def experiment(recipe):
    return load_experiment(recipe["exp"])


def whole_utterance(exp, wav, method, mode="streaming"):
    feats = torch.from_numpy(exp.cmvn(FbankExtractor().compute(wav)))[None]  # (1, T, 80)
    enc, lens = exp.model.encode(feats, torch.tensor([feats.shape[1]]), mode=mode)
    search = greedy_search if method == "greedy" else (lambda d, e, l: beam_search(d, e, l, beam=3))
    return enc[0], search(exp.model.decoder(mode), enc, lens)[0]


def stream(session, wav, rng):
    """Feed ``wav`` in random-sized pieces (0 to 0.3 s, including empty ones)."""
    session.reset()
    frames = []
    accept = session.search.accept
    session.search.accept = lambda f: (frames.append(f.clone()), accept(f))
    pos, partials = 0, []
    while pos < len(wav):
        n = int(rng.integers(0, 4800))
        partials.append(session.accept_waveform(wav[pos:pos + n]))
        pos += n
    final = session.finalize()
    return torch.cat(frames) if frames else None, session.token_ids(), partials, final


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_streaming_session_equals_whole_utterance_streaming_decode(experiment, method):
    session = StreamingSession(experiment.model, experiment.cmvn, experiment.sp, method=method, beam=3)
    rng = np.random.default_rng(1)
    emitted = 0
    for seed in range(3):
        wav = waveform(10 + seed, 0.9 + 0.4 * seed)
        enc_ref, tokens_ref = whole_utterance(experiment, wav, method)
        enc, tokens, _, final = stream(session, wav, rng)
        assert enc.shape == enc_ref.shape
        torch.testing.assert_close(enc, enc_ref, atol=1e-4, rtol=1e-4)
        assert tokens == tokens_ref
        assert final == experiment.sp.decode(tokens_ref)
        emitted += len(tokens)
    assert emitted > 0, "the test model emitted nothing: the token comparison would be vacuous"


def test_greedy_partial_hypotheses_only_grow(experiment):
    session = StreamingSession(experiment.model, experiment.cmvn, experiment.sp)
    _, tokens, partials, final = stream(session, waveform(5, 2.0), np.random.default_rng(2))
    texts = partials + [final]
    assert all(final.replace(" ", "").startswith(p.replace(" ", "")) for p in texts)
    assert len(session.chunk_compute_s) == len(partials) + 1


def test_session_refuses_audio_after_finalize(experiment):
    session = StreamingSession(experiment.model, experiment.cmvn, experiment.sp)
    session.accept_waveform(waveform(0, 0.3))
    session.finalize()
    with pytest.raises(RuntimeError, match="reset"):
        session.accept_waveform(waveform(0, 0.1))


def test_full_batches_give_the_same_hypotheses_as_one_at_a_time(experiment, recipe):
    feats = runner.load_features(recipe["feats"], recipe["ids"])
    batched = runner.decode_full(experiment, feats, batch_size=4)
    single = runner.decode_full(experiment, feats, batch_size=1)
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.uttid for r in batched] == recipe["ids"]
    assert all(r.audio_s > 0.5 and r.compute_s > 0 for r in batched)


def decode_args(recipe, out, mode, *extra):
    return ["--exp", str(recipe["exp"]), "--data", str(recipe["data"]), "--feats", str(recipe["feats"]),
            "--mode", mode, "--out", str(out), *extra]


def test_decode_cli_jobs_then_merge_write_trn_and_rtf(recipe, experiment, monkeypatch, capsys):
    monkeypatch.chdir(recipe["root"])  # config.yaml paths are relative to the recipe dir
    out = recipe["exp"] / "decode_full_test"
    for job in (1, 2):
        assert decode_cli.main(decode_args(recipe, out, "full", "--nj", "2", "--job", str(job))) == 0
    assert not (out / "hyp.trn").exists()
    assert decode_cli.main(["--merge", "--out", str(out), "--nj", "2"]) == 0  # as egs/TEMPLATE/asr.sh calls it
    assert "full (greedy): RTF" in capsys.readouterr().out
    refs, hyps = read_trn(out / "ref.trn"), read_trn(out / "hyp.trn")
    assert list(refs) == list(hyps) == recipe["ids"]
    assert refs["spk0-utt0"] == SENTENCES[0]
    expected = runner.decode_full(experiment, runner.load_features(recipe["feats"], recipe["ids"]))
    assert hyps == {r.uttid: " ".join(r.text.split()) for r in expected}
    rtf = dict(line.split(" ", 1) for line in (out / "rtf.txt").read_text().splitlines())
    assert rtf["mode"] == "full" and int(rtf["utterances"]) == len(SENTENCES) and float(rtf["rtf"]) > 0
    assert score_cli.main(["--ref", str(out / "ref.trn"), "--hyp", str(out / "hyp.trn"),
                           "--out", str(out / "score_wer")]) == 0


def test_decode_cli_streaming_reports_latency_and_chunk_times(recipe, experiment, monkeypatch, capsys):
    monkeypatch.chdir(recipe["root"])
    out = recipe["exp"] / "decode_streaming_test"
    assert decode_cli.main(decode_args(recipe, out, "streaming", "--chunk-ms", "200")) == 0
    printed = capsys.readouterr().out
    rtf = dict(line.split(" ", 1) for line in (out / "rtf.txt").read_text().splitlines())
    latency = 10 * (experiment.model.chunk_size_frames + experiment.model.lookahead_frames)
    assert rtf["algorithmic_latency_ms"] == f"{latency:.0f}" and "algorithmic latency" in printed
    assert float(rtf["chunk_compute_ms_p95"]) >= float(rtf["chunk_compute_ms_median"]) > 0
    session = StreamingSession(experiment.model, experiment.cmvn, experiment.sp)
    hyps = read_trn(out / "hyp.trn")
    for uttid, wav in runner.load_audio(recipe["data"], recipe["ids"][:2]):
        session.reset()
        session.accept_waveform(wav)
        assert hyps[uttid] == " ".join(session.finalize().split())


def test_merge_with_a_missing_job_is_an_error(recipe, monkeypatch, capsys):
    monkeypatch.chdir(recipe["root"])
    out = recipe["root"] / "decode_missing"
    assert decode_cli.main(decode_args(recipe, out, "full", "--nj", "3", "--job", "1")) == 0
    assert decode_cli.main(["--merge", "--out", str(out), "--nj", "3"]) == 2
    assert re.search(r"^decode: error: .*hyp\.2\.trn", capsys.readouterr().err, re.M)
    assert not (out / "hyp.trn").exists()


def test_merge_refuses_a_stale_job_of_an_earlier_decode_with_other_options(recipe, monkeypatch, capsys):
    monkeypatch.chdir(recipe["root"])
    out = recipe["root"] / "decode_stale"
    for job in ("1", "2"):  # an earlier decode, greedy
        assert decode_cli.main(decode_args(recipe, out, "full", "--nj", "2", "--job", job)) == 0
    # a rerun with other options: job 2 finishes, job 1 was killed before it started
    assert decode_cli.main(decode_args(recipe, out, "full", "--nj", "2", "--job", "2",
                                       "--method", "beam", "--beam", "2")) == 0
    capsys.readouterr()
    assert decode_cli.main(["--merge", "--out", str(out), "--nj", "2"]) == 2
    err = capsys.readouterr().err
    assert "options.2.json: job 2 ran with other options than job 1 (settings" in err and "beam2" in err
    assert not (out / "hyp.trn").exists()


def test_a_job_that_starts_removes_its_old_outputs(recipe, monkeypatch):
    monkeypatch.chdir(recipe["root"])
    out = recipe["root"] / "decode_restart"
    assert decode_cli.main(decode_args(recipe, out, "full", "--nj", "2", "--job", "1")) == 0
    hyp, timing, options = jobs.job_files(out, 1)
    jobs.start_job(out, 1, {"nj": 2, "mode": "full"})  # as a rerun does before it decodes
    assert not hyp.exists() and not timing.exists() and options.exists()


def test_decode_with_a_truncated_model_is_one_line(recipe, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(recipe["root"])
    model = tmp_path / "model_avg.pt"
    torch.save({"w": torch.zeros(100)}, model)
    model.write_bytes(model.read_bytes()[:200])
    assert decode_cli.main(decode_args(recipe, tmp_path / "d", "full", "--model", str(model))) == 2
    err = capsys.readouterr().err
    assert err.startswith("decode: error: ") and "model_avg.pt: cannot load model" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_merge_names_an_utterance_without_hypothesis(tmp_path):
    jobs.start_job(tmp_path, 1, {"nj": 1})
    jobs.write_job(tmp_path, 1, [runner.UttDecode("a-1", "x", 1.0, 0.1)])
    with pytest.raises(InputError, match="'a-2'"):
        jobs.merge_jobs(tmp_path, 1, {"a-1": "x", "a-2": "y"}, "full")
    assert not (tmp_path / "hyp.trn").exists() and not (tmp_path / "rtf.txt").exists()


def test_merge_with_another_nj_than_the_jobs_is_an_error(recipe, monkeypatch, capsys):
    monkeypatch.chdir(recipe["root"])
    out = recipe["root"] / "decode_nj"
    assert decode_cli.main(decode_args(recipe, out, "full", "--nj", "2", "--job", "1")) == 0
    assert decode_cli.main(["--merge", "--out", str(out), "--nj", "3"]) == 2
    assert "--nj 2" in capsys.readouterr().err
