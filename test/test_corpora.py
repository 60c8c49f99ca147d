"""Corpus readers: synthesized LibriSpeech / MLS / Common Voice trees -> data dirs; broken trees -> errors."""
import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.bin import prepare_data, synthesize_corpus
from toolkit.data.corpora import (normalize_sentence, read_commonvoice, read_librispeech, read_mls,
                                  write_text_only)
from toolkit.data.datadir import DataDir
from toolkit.utils.kaldi_map import c_sort_key
from toolkit.utils.fileio import InputError

SMALL = ["--num-train", "6", "--num-dev", "2", "--num-test", "2", "--num-text-only", "25",
         "--num-train-speakers", "2", "--num-dev-speakers", "1", "--num-test-speakers", "1",
         "--utts-per-chapter", "3", "--no-progress", "--seed", "4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    for layout, lang in [("librispeech", "en"), ("mls", "es"), ("commonvoice", "de"), ("commonvoice", "cmn")]:
        assert synthesize_corpus.main(["--layout", layout, "--lang", lang, "--out", str(out), *SMALL]) == 0
    return out


def assert_c_sorted(path: Path):
    keys = [ln.split(" ", 1)[0] for ln in path.read_text(encoding="utf-8").splitlines()]
    assert keys == sorted(keys, key=c_sort_key) and len(set(keys)) == len(keys)


def test_librispeech_data_dir_matches_transcripts(corpus, tmp_path):
    out = tmp_path / "train"
    assert prepare_data.main(["--layout", "librispeech", "--corpus", str(corpus / "LibriSpeech"), "--subset", "train-clean-100",
                                     "--out", str(out)]) == 0
    d = DataDir.load(out)
    expected = {}
    for trans in (corpus / "LibriSpeech" / "train-clean-100").glob("*/*/*.trans.txt"):
        expected.update(ln.split(" ", 1) for ln in trans.read_text().splitlines())
    assert d.text == expected
    for utt, path in d.wav_scp.items():
        assert path == str((Path(path)).resolve()) and Path(path).name == f"{utt}.flac"
        assert d.utt2spk[utt] == utt.split("-")[0]
        assert sf.info(path).samplerate == 16000
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        assert_c_sorted(out / name)


def test_lm_text_streams_with_numbered_ids(corpus, tmp_path):
    lm = corpus / "librispeech-lm-norm.txt.gz"
    assert prepare_data.main(["--layout", "librispeech", "--text-only", str(lm), "--out", str(tmp_path / "to"), "--max-lines", "10"]) == 0
    lines = (tmp_path / "to" / "text").read_text().splitlines()
    with gzip.open(lm, "rt") as f:
        source = f.read().splitlines()
    assert lines == [f"lm-{i:09d} {s}" for i, s in enumerate(source[:10])]
    plain = tmp_path / "lm.txt"
    plain.write_text("A B\n\n  C   D \n")
    assert write_text_only(plain, tmp_path / "plain") == 2
    assert (tmp_path / "plain" / "text").read_text() == "lm-000000000 A B\nlm-000000001 C D\n"


def test_mls_ids_are_speaker_prefixed_with_language(corpus, tmp_path):
    out = tmp_path / "dev"
    assert prepare_data.main(["--layout", "mls", "--corpus", str(corpus / "mls_spanish"), "--subset", "train", "--out", str(out)]) == 0
    d = DataDir.load(out)
    lines = (corpus / "mls_spanish" / "train" / "transcripts.txt").read_text(encoding="utf-8").splitlines()
    expected = {k.replace("_", "-"): t for k, t in (ln.split("\t") for ln in lines)}
    assert d.text == expected
    assert set(d.utt2lang.values()) == {"es"}
    assert all(d.utt2spk[u] == u.split("-")[0] for u in d.text)


def test_commonvoice_text_is_normalised_and_speakers_hashed(corpus, tmp_path):
    root = corpus / "cv-corpus" / "de"
    out = tmp_path / "train"
    assert prepare_data.main(["--layout", "commonvoice", "--corpus", str(root), "--subset", "train", "--out", str(out)]) == 0
    d = DataDir.load(out)
    rows = [ln.split("\t") for ln in (root / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    assert len(d) == len(rows) == 6
    for client, clip, sentence, *_ in rows:
        spk = hashlib.sha1(client.encode()).hexdigest()[:12]
        utt = f"{spk}-{clip[:-4]}"
        assert d.utt2spk[utt] == spk and d.utt2lang[utt] == "de"
        assert d.text[utt] == normalize_sentence(sentence) and d.text[utt] != sentence
    rc = prepare_data.main(["--layout", "commonvoice", "--text-only", str(root / "text_only.txt.gz"), "--out", str(tmp_path / "to")])
    text_only = (tmp_path / "to" / "text").read_text(encoding="utf-8").splitlines()
    assert rc == 0 and len(text_only) == 25 and not any("." in ln or ln != ln.lower() for ln in text_only)


def test_commonvoice_chinese_locale_maps_to_espeak_code_and_characters(corpus, tmp_path):
    utts = read_commonvoice(corpus / "cv-corpus" / "zh-CN", "dev")
    assert len(utts) == 2 and {u.lang for u in utts} == {"cmn"}
    assert all(len(w) == 1 for u in utts for w in u.text.split())


@pytest.mark.parametrize("raw,words", [("我们走吧！", "我 们 走 吧"), ("Zoom 会议", "zoom 会 议"), ("Hello, World!", "hello world"), ("'Quoted' l’arbre.", "quoted l'arbre"),
                                       ("¿Dónde está?", "dónde está"), ("Straße — Öl", "straße öl")])
def test_normalize_sentence(raw, words):
    assert normalize_sentence(raw) == words


# ---- hand-made broken trees -------------------------------------------------------------

def flac(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(1600, np.int16), 16000)


def libri_tree(tmp_path, lines: bytes, audio=("1-2-0000", "1-2-0001")):
    ch = tmp_path / "LS" / "dev" / "1" / "2"
    for a in audio:
        flac(ch / f"{a}.flac")
    (ch / "1-2.trans.txt").write_bytes(lines)
    return tmp_path / "LS"


@pytest.mark.parametrize("lines,audio,where,message", [
    (b"1-2-0000 A B\n1-2-0001 C\n1-2-0002 D\n", ("1-2-0000", "1-2-0001"), "1-2.trans.txt:3", "not found"),
    (b"1-2-0000 A B\n", ("1-2-0000", "1-2-0001"), "1-2-0001.flac", "audio without transcript"),
    (b"1-2-0000 A B\n1-2-0001\n", ("1-2-0000", "1-2-0001"), "1-2.trans.txt:2", "malformed"),
    (b"1-2-0000 A \xff\n", ("1-2-0000",), "1-2.trans.txt:1", "UTF-8"),
    (b"9-2-0000 A\n", ("9-2-0000",), "1-2.trans.txt:1", "not of the form"),
])
def test_broken_librispeech_trees_name_file_and_line(tmp_path, lines, audio, where, message):
    root = libri_tree(tmp_path, lines, audio)
    with pytest.raises(InputError, match=message) as e:
        read_librispeech(root, "dev")
    assert where in str(e.value)


def test_librispeech_chapter_without_transcript_file(tmp_path):
    flac(tmp_path / "LS" / "dev" / "1" / "2" / "1-2-0000.flac")
    with pytest.raises(InputError, match="1-2.trans.txt is missing"):
        read_librispeech(tmp_path / "LS", "dev")


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    root = libri_tree(tmp_path, b"1-2-0000 A\n1-2-0001 B\n1-2-0009 C\n")
    assert prepare_data.main(["--layout", "librispeech", "--corpus", str(root), "--subset", "dev",
                              "--out", str(tmp_path / "d")]) == 2
    assert re.search(r"^prepare_data: error: .*1-2.trans.txt:3", capsys.readouterr().err)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("lines,audio,where,message", [
    (b"10_20_000001\thola\n10_20_000002\tadios\n", ["10_20_000001"], "transcripts.txt:2", "not found"),
    (b"10_20_000001\thola\n", ["10_20_000001", "10_20_000002"], "10_20_000002.flac", "without transcript"),
    (b"10_20_000001 hola\n", ["10_20_000001"], "transcripts.txt:1", "malformed"),
    (b"10_20_000001\thola\n10_20\tb\n", ["10_20_000001"], "transcripts.txt:2", "malformed"),
    (b"10_20_000001\t\xe9t\xe9\n", ["10_20_000001"], "transcripts.txt:1", "UTF-8"),
])
def test_broken_mls_trees_name_file_and_line(tmp_path, lines, audio, where, message):
    root = tmp_path / "mls_spanish"
    for a in audio:
        flac(root / "dev" / "audio" / "10" / "20" / f"{a}.flac")
    (root / "dev" / "transcripts.txt").write_bytes(lines)
    with pytest.raises(InputError, match=message) as e:
        read_mls(root, "dev")
    assert where in str(e.value)


@pytest.mark.parametrize("tsv,where,message", [
    (b"client_id\tsentence\nabc\tHi.\n", "test.tsv:1", "missing column.*path"),
    (b"client_id\tpath\tsentence\tlocale\nabc\tmissing.mp3\tHi.\tfr\n", "test.tsv:2", "not found"),
    (b"client_id\tpath\tsentence\tlocale\nabc\ta.mp3\tHi.\n", "test.tsv:2", "3 fields"),
    (b"client_id\tpath\tsentence\tlocale\nabc\ta.mp3\t?!\tfr\n", "test.tsv:2", "empty transcript"),
    (b"client_id\tpath\tsentence\tlocale\nabc\ta.mp3\tH\xe9\tfr\n", "test.tsv:2", "UTF-8"),
])
def test_broken_commonvoice_tsv_names_file_and_line(tmp_path, tsv, where, message):
    flac(tmp_path / "clips" / "a.mp3")  # the reader only checks the file exists
    (tmp_path / "test.tsv").write_bytes(tsv)
    with pytest.raises(InputError, match=message) as e:
        read_commonvoice(tmp_path, "test")
    assert where in str(e.value)


def test_non_utf8_lm_text_names_the_line(tmp_path):
    lm = tmp_path / "lm.txt.gz"
    with gzip.open(lm, "wb") as f:
        f.write(b"GOOD LINE\nBAD \xff LINE\n")
    with pytest.raises(InputError, match=r"lm.txt.gz:2: not valid UTF-8"):
        write_text_only(lm, tmp_path / "to")
    assert not (tmp_path / "to").exists()
