"""Front end: Kaldi fbank (vs kaldi-native-fbank and a numpy reference), online == whole,
ark/scp dumping and merging, speed perturbation, global CMVN, and bad-input errors."""
import kaldi_native_fbank as knf
import kaldiio
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.bin import compute_cmvn, dump_feats
from toolkit.features.cmvn import GlobalCMVN, accumulate_stats
from toolkit.features.dump import dump_job, merge_jobs
from toolkit.features.fbank import FbankExtractor, OnlineFbank
from toolkit.utils.fileio import InputError

RNG = np.random.RandomState(0)
AUDIO = (RNG.randn(16000) * 0.1).astype(np.float32)  # 1 s of noise at 16 kHz


def kaldi_fbank_reference(x, sr=16000, bins=80):
    """Kaldi's compute-fbank-feats written out in numpy, float64, frame by frame."""
    x = np.asarray(x, np.float64) * 32768
    n = 1 + (len(x) - 400) // 160
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)) ** 0.85  # povey
    mel = lambda f: 1127 * np.log(1 + f / 700)  # noqa: E731
    edges = np.linspace(mel(20), mel(sr / 2), bins + 2)
    fft_mel = mel(np.arange(256) * sr / 512)  # Kaldi drops the Nyquist bin
    banks = np.zeros((bins, 256))
    for b in range(bins):
        left, center, right = edges[b:b + 3]
        up, down = (fft_mel - left) / (center - left), (right - fft_mel) / (right - center)
        banks[b] = np.where((fft_mel > left) & (fft_mel < right), np.where(fft_mel <= center, up, down), 0)
    out = []
    for t in range(n):
        f = x[t * 160: t * 160 + 400].copy()
        f -= f.mean()
        f[1:] -= 0.97 * f[:-1].copy()
        f[0] -= 0.97 * f[0]
        power = np.abs(np.fft.rfft(f * window, 512)[:256]) ** 2
        out.append(np.log(np.maximum(banks @ power, np.finfo(np.float32).eps)))
    return np.array(out)


def test_fbank_equals_kaldi_native_fbank_on_same_samples():
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0
    opts.mel_opts.num_bins = 80
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, AUDIO * 32768)
    fb.input_finished()
    expect = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    np.testing.assert_array_equal(FbankExtractor().compute(AUDIO, 16000), expect)


def test_fbank_matches_numpy_kaldi_reference():
    x = (RNG.randn(4000) * 0.05 + 0.3 * np.sin(np.arange(4000) * 0.2)).astype(np.float32)
    got = FbankExtractor().compute(x)
    assert got.shape == (23, 80) and got.dtype == np.float32
    np.testing.assert_allclose(got, kaldi_fbank_reference(x), rtol=1e-4, atol=2e-3)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 2500), min_size=1, max_size=12))
def test_online_fbank_equals_whole_utterance(chunks):
    online, got, pos = OnlineFbank(), [], 0
    for size in chunks:
        online.accept_waveform(AUDIO[pos:pos + size])
        got.append(online.read_frames())
        pos += size
    online.input_finished()
    got.append(online.read_frames())
    np.testing.assert_array_equal(np.concatenate(got), FbankExtractor().compute(AUDIO[:pos]))


def test_other_sample_rates_are_resampled_to_16k():
    x22 = (RNG.randn(22050) * 0.1).astype(np.float32)
    expect = FbankExtractor().compute(soxr.resample(x22, 22050, 16000, quality="HQ"))
    np.testing.assert_array_equal(FbankExtractor().compute(x22, 22050), expect)


def make_data(tmp_path, n=4, rate=16000, extra_wav=(), text=True):
    (tmp_path / "data").mkdir(exist_ok=True)
    wav, audio = [], {}
    for i in range(n):
        x = (RNG.randn(rate // 2 + 800 * i) * 0.1).astype(np.float32)
        sf.write(tmp_path / f"a{i}.flac", x, rate)
        audio[f"s-u{i}"] = sf.read(tmp_path / f"a{i}.flac", dtype="float32")[0]
        wav.append(f"s-u{i} {tmp_path / f'a{i}.flac'}")
    (tmp_path / "data" / "wav.scp").write_text("\n".join(wav + list(extra_wav)) + "\n")
    if text:
        ids = [w.split()[0] for w in wav + list(extra_wav)]
        (tmp_path / "data" / "text").write_text("".join(f"{u} HELLO\n" for u in ids))
    return tmp_path / "data", audio


def test_dump_writes_kaldiio_readable_ark_scp_and_num_frames(tmp_path):
    data, audio = make_data(tmp_path, n=3)
    assert dump_feats.main(["--data", str(data), "--out", str(tmp_path / "dump"), "--nj", "2"]) == 0
    feats = dict(kaldiio.load_scp(str(tmp_path / "dump" / "feats.scp")))
    assert sorted(feats) == ["s-u0", "s-u1", "s-u2"]
    frames = dict(line.split() for line in (tmp_path / "dump" / "utt2num_frames").read_text().splitlines())
    for utt, x in audio.items():
        np.testing.assert_array_equal(feats[utt], FbankExtractor().compute(x))
        assert int(frames[utt]) == len(feats[utt])


def test_compressed_dump_is_close(tmp_path):
    data, audio = make_data(tmp_path, n=1)
    assert dump_feats.main(["--data", str(data), "--out", str(tmp_path / "d"), "--compress"]) == 0
    got = kaldiio.load_mat(next(iter(dict(
        line.split() for line in (tmp_path / "d" / "feats.scp").read_text().splitlines()).values())))
    np.testing.assert_allclose(got, FbankExtractor().compute(audio["s-u0"]), atol=0.1)


def test_speed_perturbation_ids_and_lengths(tmp_path):
    data, audio = make_data(tmp_path, n=1, rate=22050)
    assert dump_feats.main(["--data", str(data), "--out", str(tmp_path / "d"), "--speed-perturb", "0.9,1.0,1.1"]) == 0
    feats = dict(kaldiio.load_scp(str(tmp_path / "d" / "feats.scp")))
    assert sorted(feats) == ["s-u0", "sp0.9-s-u0", "sp1.1-s-u0"]
    np.testing.assert_array_equal(feats["s-u0"], FbankExtractor().compute(audio["s-u0"], 22050))
    n16 = len(audio["s-u0"]) * 16000 / 22050
    for f, key in ((0.9, "sp0.9-s-u0"), (1.1, "sp1.1-s-u0")):
        expect = FbankExtractor().compute(soxr.resample(audio["s-u0"], 22050, 16000 / f, quality="HQ"))
        np.testing.assert_array_equal(feats[key], expect)
        assert abs(len(feats[key]) - (n16 / f - 240) / 160) <= 2


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_audio_formats_libsndfile_reads(tmp_path, ext):
    data, _ = make_data(tmp_path, n=0, extra_wav=[f"s-x {tmp_path / ('x.' + ext)}"])
    sf.write(tmp_path / f"x.{ext}", AUDIO, 16000)
    dump_job(data, tmp_path / "d", progress=False)
    expect = FbankExtractor().compute(sf.read(tmp_path / f"x.{ext}", dtype="float32")[0])
    np.testing.assert_array_equal(kaldiio.load_scp(str(tmp_path / "d" / "feats.1.scp"))["s-x"], expect)


def test_segments_and_pipes(tmp_path):
    data, audio = make_data(tmp_path, n=1, text=False)
    (data / "wav.scp").write_text(f"rec cat {tmp_path / 'a0.flac'} |\n")
    (data / "segments").write_text("rec-a rec 0.0 0.2\nrec-b rec 0.2 -1\n")
    assert dump_feats.main(["--data", str(data), "--out", str(tmp_path / "d")]) == 0
    feats = dict(kaldiio.load_scp(str(tmp_path / "d" / "feats.scp")))
    np.testing.assert_array_equal(feats["rec-a"], FbankExtractor().compute(audio["s-u0"][:3200]))
    np.testing.assert_array_equal(feats["rec-b"], FbankExtractor().compute(audio["s-u0"][3200:]))


@pytest.mark.parametrize("make_bad, message", [
    (lambda p: p.joinpath("bad.wav").write_bytes(b"RIFF not audio"), r"bad.wav: utterance 'z-bad': cannot read audio"),
    (lambda p: sf.write(p / "bad.wav", np.zeros(0, np.float32), 16000), r"bad.wav: utterance 'z-bad': 0 samples"),
    (lambda p: sf.write(p / "bad.wav", np.zeros(4000, np.float32), 4000), r"utterance 'z-bad': sample rate 4000 Hz"),
    (lambda p: None, r"bad.wav: utterance 'z-bad': no such file"),  # missing file
])
def test_bad_audio_names_utterance_and_file(tmp_path, make_bad, message):
    make_bad(tmp_path)
    data, _ = make_data(tmp_path, n=1, extra_wav=[f"z-bad {tmp_path / 'bad.wav'}"])
    with pytest.raises(InputError, match=message):
        dump_job(data, tmp_path / "d", progress=False)


def test_failing_pipe_names_command(tmp_path):
    data, _ = make_data(tmp_path, n=0, extra_wav=["z-bad false |"])
    with pytest.raises(InputError, match=r"false: utterance 'z-bad': command exited with 1"):
        dump_job(data, tmp_path / "d", progress=False)


def test_transcript_without_audio_is_rejected(tmp_path):
    data, _ = make_data(tmp_path, n=2)
    with open(data / "text", "a") as f:
        f.write("s-u9 ORPHAN\n")
    with pytest.raises(InputError, match=r"text:3: utterance 's-u9' has a transcript but no audio"):
        dump_job(data, tmp_path / "d", progress=False)


def test_non_utf8_line_names_file_and_line(tmp_path):
    data, _ = make_data(tmp_path, n=1)
    with open(data / "wav.scp", "ab") as f:
        f.write(b"s-u\xff x.wav\n")
    with pytest.raises(InputError, match=r"wav.scp:2: not valid UTF-8"):
        dump_job(data, tmp_path / "d", progress=False)


def test_failed_job_leaves_no_complete_looking_feats_scp(tmp_path):
    data, _ = make_data(tmp_path, n=2)
    assert dump_feats.main(["--data", str(data), "--out", str(tmp_path / "d"), "--nj", "2"]) == 0
    (tmp_path / "a1.flac").write_bytes(b"corrupted")  # job 2's utterance
    assert dump_feats.main(["--data", str(data), "--out", str(tmp_path / "d"), "--nj", "2", "--job", "2"]) == 2
    assert not (tmp_path / "d" / "feats.scp").exists()  # the old one would point into rewritten arks
    assert not (tmp_path / "d" / "feats.2.scp").exists()
    with pytest.raises(InputError, match=r"jobs did not finish \(missing .*feats.2.scp"):
        merge_jobs(data, tmp_path / "d", nj=2)
    assert not (tmp_path / "d" / "feats.scp").exists()
    assert sorted(p.name for p in (tmp_path / "d").iterdir() if p.name.startswith(".")) == []  # no temp files


def test_merge_rejects_jobs_from_another_split(tmp_path):
    data, _ = make_data(tmp_path, n=3)
    dump_job(data, tmp_path / "d", nj=3, job=1, progress=False)
    dump_job(data, tmp_path / "d", nj=3, job=2, progress=False)
    # jobs 1, 2 of a 3-way split exist, so a 2-way merge finds its files, but they cover u0, u1 only
    with pytest.raises(InputError, match=r"dump_conf.1: job options .* from --nj 2"):
        merge_jobs(data, tmp_path / "d", nj=2)
    assert not (tmp_path / "d" / "feats.scp").exists()


def test_run_pl_style_jobs_then_merge_with_recorded_speeds(tmp_path):
    data, _ = make_data(tmp_path, n=3)
    out = str(tmp_path / "d")
    for job in ("1", "2"):
        assert dump_feats.main(["--data", str(data), "--out", out, "--nj", "2", "--job", job,
                                "--speed-perturb", "0.9,1.0"]) == 0
        assert not (tmp_path / "d" / "feats.scp").exists()
    assert dump_feats.main(["--data", str(data), "--out", out, "--nj", "2", "--merge"]) == 0
    keys = [line.split()[0] for line in (tmp_path / "d" / "feats.scp").read_text().splitlines()]
    assert keys == ["s-u0", "s-u1", "s-u2", "sp0.9-s-u0", "sp0.9-s-u1", "sp0.9-s-u2"]
    assert dump_feats.main(["--data", str(data), "--out", out, "--nj", "2", "--merge", "--speed-perturb", "1.1"]) == 2


def test_cmvn_stats_match_numpy_and_normalise(tmp_path):
    mats = [RNG.randn(t, 5).astype(np.float32) * 3 + 7 for t in (4, 9, 1)]
    stats = accumulate_stats(mats)
    allx = np.concatenate(mats).astype(np.float64)
    np.testing.assert_allclose(stats[0, :-1], allx.sum(0))
    np.testing.assert_allclose(stats[1, :-1], (allx ** 2).sum(0))
    assert stats[0, -1] == 14 and stats[1, -1] == 0
    cmvn = GlobalCMVN.from_stats(stats)
    np.testing.assert_allclose(cmvn.mean, allx.mean(0), rtol=1e-6)
    np.testing.assert_allclose(cmvn.std, allx.std(0), rtol=1e-5)
    normed = cmvn(allx.astype(np.float32))
    np.testing.assert_allclose(normed.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normed.std(0), 1, atol=1e-5)
    np.testing.assert_allclose(cmvn(torch.from_numpy(allx.astype(np.float32))).numpy(), normed, atol=1e-6)


def test_compute_cmvn_cli_writes_kaldi_stats(tmp_path):
    data, audio = make_data(tmp_path, n=2)
    assert dump_feats.main(["--data", str(data), "--out", str(tmp_path / "d")]) == 0
    assert compute_cmvn.main(["--feats", str(tmp_path / "d" / "feats.scp"), "--out", str(tmp_path / "cmvn.ark")]) == 0
    stats = kaldiio.load_mat(str(tmp_path / "cmvn.ark"))
    allx = np.concatenate([FbankExtractor().compute(x) for x in audio.values()]).astype(np.float64)
    assert stats.shape == (2, 81) and stats.dtype == np.float64
    np.testing.assert_allclose(stats[0, :-1], allx.sum(0), rtol=1e-9)
    np.testing.assert_allclose(GlobalCMVN.load(tmp_path / "cmvn.ark").mean, allx.mean(0), rtol=1e-5)


def test_cmvn_load_rejects_other_files(tmp_path):
    (tmp_path / "x.ark").write_bytes(b"garbage")
    with pytest.raises(InputError, match="x.ark: cannot read CMVN stats"):
        GlobalCMVN.load(tmp_path / "x.ark")


def test_missing_data_dir_is_a_clean_error(tmp_path, capsys):
    assert dump_feats.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "d")]) == 2
    assert "nope/wav.scp" in capsys.readouterr().err


# ---- audio that used to give silently wrong features ----------------------------------------
def one_utt_data(tmp_path, audio_path, transcript="HELLO"):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "wav.scp").write_text(f"s-u0 {audio_path}\n")
    (data / "text").write_text(f"s-u0 {transcript}\n")
    return data


def test_truncated_wav_is_an_error_naming_declared_and_held_samples(tmp_path):
    sf.write(tmp_path / "full.wav", (RNG.randn(32000) * 0.1).astype(np.float32), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])  # header intact, data cut in half
    with pytest.raises(InputError, match=r"cut.wav: utterance 's-u0': truncated audio: the WAV header declares "
                                         r"32000 samples \(2.00 s\), the file holds 15989"):
        dump_job(one_utt_data(tmp_path, tmp_path / "cut.wav"), tmp_path / "d", progress=False)


def test_truncated_wav_through_a_pipe_is_an_error_too(tmp_path):
    sf.write(tmp_path / "full.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:20000])
    with pytest.raises(InputError, match="truncated audio"):
        dump_job(one_utt_data(tmp_path, f"cat {tmp_path / 'cut.wav'} |"), tmp_path / "d", progress=False)


def test_multichannel_audio_is_mixed_down_not_read_from_channel_0(tmp_path, caplog):
    speech = (RNG.randn(8000) * 0.1).astype(np.float32)
    stereo = np.stack([np.zeros_like(speech), speech], axis=1)  # speech in channel 1 only
    sf.write(tmp_path / "st.wav", stereo, 16000, subtype="FLOAT")
    with caplog.at_level("INFO"):
        dump_job(one_utt_data(tmp_path, tmp_path / "st.wav"), tmp_path / "d", progress=False)
    got = dict(kaldiio.load_scp(str(tmp_path / "d" / "feats.1.scp")))["s-u0"]
    np.testing.assert_array_equal(got, FbankExtractor().compute(stereo.mean(axis=1, dtype=np.float32)))
    assert "mixed_down 1" in caplog.text
    assert (tmp_path / "d" / "dump_stats.1").read_text() == "mixed_down 1\n"


def test_resampling_is_reported_in_the_job_log_and_the_merge_summary(tmp_path, caplog):
    sf.write(tmp_path / "n8k.wav", (RNG.randn(8000) * 0.1).astype(np.float32), 8000)
    with caplog.at_level("INFO"):
        assert dump_feats.main(["--data", str(one_utt_data(tmp_path, tmp_path / "n8k.wav")),
                                "--out", str(tmp_path / "d")]) == 0
    assert "8000 Hz audio is resampled to 16000 Hz" in caplog.text
    assert caplog.text.count("resampled_from_8000_hz 1") == 2  # the job's line and the merge's summary


def test_audio_implausibly_short_for_its_transcript_is_warned_and_counted(tmp_path, caplog):
    sf.write(tmp_path / "short.wav", (RNG.randn(4000) * 0.1).astype(np.float32), 16000)  # 0.25 s, 23 frames
    data = one_utt_data(tmp_path, tmp_path / "short.wav", transcript="A VERY LONG SENTENCE FOR A QUARTER SECOND")
    with caplog.at_level("INFO"):
        dump_job(data, tmp_path / "d", progress=False)
    assert "utterance 's-u0': 23 frames for a 34-character transcript" in caplog.text
    assert "implausibly_short 1" in (tmp_path / "d" / "dump_stats.1").read_text()


def test_rerun_of_a_killed_job_removes_the_temp_files_it_left(tmp_path):
    data, _ = make_data(tmp_path, n=2)
    out = tmp_path / "d"
    out.mkdir()
    left = [out / ".feats.1.ark.abc123.tmp", out / ".utt2num_frames.1.x9.tmp"]
    other_job = out / ".feats.2.ark.zz.tmp"  # another job's, maybe still running: not ours to remove
    for p in left + [other_job]:
        p.write_bytes(b"partial")
    dump_job(data, out, nj=2, job=1, progress=False)
    assert not any(p.exists() for p in left) and other_job.exists()
