"""Long recordings (issue 21 item 3): cut at pauses into bounded speech segments, decoded
as a batch, times mapped back to the file; a live full-context stream decodes each
finished segment once; one bad file never costs the others their output."""
import logging

import numpy as np
import pytest
import soundfile as sf

from toolkit import Transcriber
from toolkit.bin import transcribe as transcribe_cli
from toolkit.features.segment import (FRAME_MS, SAMPLE_RATE, SegmentConfig, drop_short_runs, speech_frames,
                                      speech_segments, split_speech)

from conftest import waveform


def quiet(seconds, seed=0):
    """Room noise: what a pause sounds like to the VAD (never digital zeros)."""
    return (1e-3 * np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


def recording(lengths, pause=1.0):
    """Speech-like pieces of the given seconds, separated by ``pause`` s of noise: (samples, piece spans)."""
    parts, spans, pos = [quiet(pause)], [], int(pause * SAMPLE_RATE)
    for k, seconds in enumerate(lengths):
        w = waveform(60 + k, seconds)
        parts += [w, quiet(pause, k + 1)]
        spans.append((pos, pos + len(w)))
        pos += len(w) + int(pause * SAMPLE_RATE)
    return np.concatenate(parts), spans


def test_split_covers_all_speech_in_spans_no_longer_than_the_limit_cut_at_the_longest_pause():
    speech = np.array([1] * 6 + [0] * 2 + [1] * 3 + [0] * 5 + [1] * 4 + [0] + [1] * 3, dtype=bool)
    spans = split_speech(speech, max_frames=12)
    assert all(b - a <= 12 for a, b in spans)
    covered = np.zeros_like(speech)
    for a, b in spans:
        covered[a:b] = True
    assert (covered >= speech).all()
    assert spans[0] == (0, 11)  # the 5-frame pause, not the 2-frame one, was the first cut
    assert split_speech(np.ones(30, bool), 12) == [(0, 12), (12, 24), (24, 30)]  # no pause: hard cuts
    assert split_speech(np.zeros(30, bool), 12) == []


def test_speech_runs_shorter_than_the_minimum_are_not_speech():
    speech = np.array([1, 1, 0, 0, 1, 1, 1, 1, 0, 1], dtype=bool)
    assert drop_short_runs(speech, 3).astype(int).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]


def test_vad_finds_speech_pieces_separated_by_pauses():
    samples, spans = recording([1.5, 2.0, 1.2])
    frames = speech_frames(samples)
    step = SAMPLE_RATE * FRAME_MS // 1000
    for a, b in spans:  # most of each piece is speech, most of each pause is not
        assert frames[a // step:b // step].mean() > 0.8
    assert frames[: spans[0][0] // step].mean() < 0.2
    segments = speech_segments(samples, SegmentConfig(max_s=3.0, pad_s=0.2))
    assert len(segments) == 3
    for (a, b), (sa, sb) in zip(spans, segments):
        assert sa <= a + step and sb >= b - step and sb - sa <= 3.0 * SAMPLE_RATE


@pytest.mark.parametrize("mode", ["full", "streaming"])
def test_long_recording_is_decoded_by_segments_with_file_times(tiny_recipe, mode):
    samples, _ = recording([1.5, 2.0, 1.2])
    asr = Transcriber.from_pretrained(tiny_recipe["exp"], mode=mode, max_segment_s=3.0)
    segments = speech_segments(samples, SegmentConfig(max_s=3.0))
    alone = [asr.transcribe(samples[a:b]) for a, b in segments]
    got = asr.transcribe(samples, batch_size=1)  # (batched, padding may flip the untrained model's near-ties)
    assert got.text == " ".join(r.text for r in alone if r.text) and got.words
    assert got.duration == pytest.approx(len(samples) / SAMPLE_RATE)
    want = [(w.text, w.start + a / SAMPLE_RATE) for (a, _), r in zip(segments, alone) for w in r.words]
    assert [(w.text, pytest.approx(w.start)) for w in got.words] == want
    whole = Transcriber.from_pretrained(tiny_recipe["exp"], mode=mode, max_segment_s=0).transcribe(samples)
    assert whole.text != got.text  # cutting off: one piece, decoded whole
    assert asr.transcribe(samples, batch_size=4).words  # segments decoded as one batch


def test_full_mode_stream_decodes_each_finished_segment_once(tiny_recipe, monkeypatch):
    asr = Transcriber.from_pretrained(tiny_recipe["exp"], max_segment_s=2.0)
    samples, _ = recording([1.5] * 8)
    decoded = []
    full_batch = asr._full_batch
    monkeypatch.setattr(asr, "_full_batch", lambda batch: decoded.extend(len(s) for _, s in batch) or full_batch(batch))
    stream, most = asr.stream(mode="full"), 0
    for k in range(0, len(samples), 1600):
        stream.accept_waveform(samples[k:k + 1600])
        most = max(most, stream.pending_len)
    final = stream.finalize()
    assert sum(decoded) <= len(samples) and len(decoded) >= 4  # no audio decoded twice
    assert most <= 1.5 * 2.0 * SAMPLE_RATE + 1600  # the buffer stays bounded
    assert final.text and final.duration == pytest.approx(len(samples) / SAMPLE_RATE)
    starts = [w.start for w in final.words]
    assert starts == sorted(starts) and starts[-1] < final.duration


def test_one_too_short_or_unreadable_file_costs_the_others_nothing(tiny_recipe, tmp_path, capsys, caplog):
    long, _ = recording([1.5, 2.0, 1.2])
    sf.write(tmp_path / "long.wav", long, SAMPLE_RATE)
    sf.write(tmp_path / "tiny.wav", waveform(2, 0.04), SAMPLE_RATE)
    sf.write(tmp_path / "ok.wav", waveform(3, 1.4), SAMPLE_RATE)
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    asr = Transcriber.from_pretrained(tiny_recipe["exp"], max_segment_s=3.0)
    want = {u: asr.transcribe(str(tmp_path / f"{u}.wav")).text for u in ("long", "ok")}
    with caplog.at_level(logging.WARNING):
        rc = transcribe_cli.main([str(tiny_recipe["exp"]), *(str(tmp_path / f"{u}.wav") for u in
                                  ("long", "tiny", "bad", "ok")), "--max-segment-s", "3.0", "--batch-size", "4"])
    out, err = capsys.readouterr()
    assert rc == 1 and "bad" in err
    assert out.splitlines() == [f"long\t{want['long']}", "tiny\t", f"ok\t{want['ok']}"]
    assert any("tiny" in r.getMessage() and "too short" in r.getMessage() for r in caplog.records)


def test_bench_transcribe_prints_time_and_memory_per_length_and_the_sentence_comparison(tiny_recipe, tmp_path,
                                                                                          capsys):
    from toolkit.bin import bench_transcribe
    assert bench_transcribe.main([str(tiny_recipe["exp"]), "--minutes", "0.05", "0.1", "--work", str(tmp_path),
                                  "--sentences", str(tiny_recipe["data"])]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    lengths = [r for r in rows if r[0].strip() in ("full", "streaming") and len(r) == 8]
    assert [(r[0].strip(), r[1].strip()) for r in lengths] == [("full", "0.05"), ("full", "0.1"),
                                                              ("streaming", "0.05"), ("streaming", "0.1")]
    assert all(float(r[4]) > 0.05 and float(r[2]) > 0 for r in lengths)  # peak RSS GB, RTF
    assert [float(lengths[0][5]), float(lengths[2][5])] == [1.0, 1.0]  # ratios to the first length
    sentences = [r for r in rows if len(r) == 4 and r[0].strip() in ("full", "streaming")]
    assert len(sentences) == 2 and all(float(x) >= 0 for r in sentences for x in r[1:])
