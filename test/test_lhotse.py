"""lhotse users: manifests -> `lhotse kaldi export` -> our validation and the stage-4 feature dump."""
import subprocess
import sys
from pathlib import Path

import kaldiio
import pytest
import soundfile as sf

from toolkit.bin import compute_cmvn, dump_feats, synthesize_corpus, validate_data_dir
from toolkit.utils.kaldi_map import read_kaldi_map

lhotse = pytest.importorskip("lhotse")


def lhotse_manifests(corpus: Path, out: Path) -> tuple[Path, Path]:
    """Recording and supervision manifests of the synthesized training set, as a lhotse recipe
    would write them (wav copies: lhotse exports other formats as `ffmpeg ... |` commands)."""
    recordings, supervisions = [], []
    for trans in sorted(corpus.glob("LibriSpeech/train-clean-100/*/*/*.trans.txt")):
        for line in trans.read_text().splitlines():
            uttid, text = line.split(" ", 1)
            samples, rate = sf.read(trans.parent / f"{uttid}.flac")
            sf.write(out / f"{uttid}.wav", samples, rate)
            rec = lhotse.Recording.from_file(out / f"{uttid}.wav", recording_id=uttid)
            recordings.append(rec)
            supervisions.append(lhotse.SupervisionSegment(id=uttid, recording_id=uttid, start=0.0,
                                                          duration=rec.duration, channel=0, text=text,
                                                          speaker=uttid.split("-")[0]))
    paths = out / "recordings.jsonl.gz", out / "supervisions.jsonl.gz"
    lhotse.RecordingSet.from_recordings(recordings).to_file(paths[0])
    lhotse.SupervisionSet.from_segments(supervisions).to_file(paths[1])
    return paths


def test_lhotse_kaldi_export_then_fix_data_dir_feeds_validation_and_feature_dump(tmp_path, tool_env, repo_root):
    """The README's two commands: `lhotse kaldi export` (no spk2utt) then utils/fix_data_dir.sh."""
    corpus = tmp_path / "corpus"
    assert synthesize_corpus.main(["--layout", "librispeech", "--lang", "en", "--out", str(corpus),
                                   "--num-train", "6", "--num-dev", "1", "--num-test", "1",
                                   "--num-text-only", "5", "--num-train-speakers", "2", "--num-dev-speakers", "1",
                                   "--num-test-speakers", "1", "--utts-per-chapter", "3", "--no-progress"]) == 0
    (tmp_path / "manifests").mkdir()
    recordings, supervisions = lhotse_manifests(corpus, tmp_path / "manifests")
    data = tmp_path / "data" / "train"
    lhotse_cli = Path(sys.executable).parent / "lhotse"
    subprocess.run([str(lhotse_cli), "kaldi", "export", str(recordings), str(supervisions), str(data)],
                   check=True, env=tool_env, capture_output=True)
    assert not (data / "spk2utt").exists()
    subprocess.run([str(repo_root / "utils" / "fix_data_dir.sh"), str(data)], check=True, env=tool_env,
                   capture_output=True)
    assert validate_data_dir.main([str(data)]) == 0
    dump = tmp_path / "dump" / "train"
    assert dump_feats.main(["--data", str(data), "--out", str(dump), "--nj", "2"]) == 0
    assert compute_cmvn.main(["--feats", str(dump / "feats.scp"), "--out", str(dump / "cmvn.ark")]) == 0
    text = read_kaldi_map(data / "text")
    frames = read_kaldi_map(dump / "utt2num_frames")
    durations = read_kaldi_map(data / "utt2dur")
    assert sorted(frames) == sorted(text) and len(text) == 6
    for uttid, n in frames.items():  # 10 ms frames over each utterance's duration
        assert abs(int(n) - float(durations[uttid]) * 100) <= 3
        assert kaldiio.load_mat(read_kaldi_map(dump / "feats.scp")[uttid]).shape == (int(n), 80)
