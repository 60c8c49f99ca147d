"""SeqStore: round trip, memory mapping, atomic replacement, and dump_text end to end."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.bin import make_lexicon, train_wordpiece
from toolkit.bin import dump_text as dump_text_cli
from toolkit.text.text2ids import dump_text
from toolkit.text.lexicon import read_lexicon, read_phones
from toolkit.text.seqstore import SeqStore, SeqStoreWriter
from toolkit.utils.fileio import InputError

ids = st.lists(st.integers(-2**31, 2**31 - 1), max_size=20)
utts = st.lists(st.tuples(ids, ids), max_size=15)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(utts)
def test_round_trip(tmp_path, data):
    out = tmp_path / "seq"
    with SeqStoreWriter(out) as w:
        for i, (ph, tk) in enumerate(data):
            w.add(f"utt{i:03d}", ph, tk)
    s = SeqStore(out)
    assert len(s) == len(data)
    assert list(s.phone_lens) == [len(ph) for ph, _ in data]
    assert list(s.token_lens) == [len(tk) for _, tk in data]
    for i, (ph, tk) in enumerate(data):
        uttid, p, t = s[i]
        assert uttid == f"utt{i:03d}" and s.index_of(uttid) == i
        assert p.dtype == np.int32 and t.dtype == np.int32
        assert p.tolist() == ph and t.tolist() == tk


def test_arrays_are_memory_mapped(tmp_path):
    with SeqStoreWriter(tmp_path / "seq") as w:
        w.add("a", [1, 2, 3], [4])
    _, p, _ = SeqStore(tmp_path / "seq")[0]
    assert isinstance(p, np.memmap)
    assert (tmp_path / "seq" / "phones.int32").read_bytes() == np.array([1, 2, 3], "<i4").tobytes()


def test_failed_write_leaves_old_store_untouched(tmp_path):
    with SeqStoreWriter(tmp_path / "seq") as w:
        w.add("old", [1], [1])
    with pytest.raises(ValueError, match="duplicate utterance id 'x'"):
        with SeqStoreWriter(tmp_path / "seq") as w:
            w.add("x", [1], [1])
            w.add("x", [2], [2])
    assert SeqStore(tmp_path / "seq").uttids == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]  # no temp dirs left


def test_incomplete_dir_is_not_a_store(tmp_path):
    (tmp_path / "seq").mkdir()
    with pytest.raises(InputError, match="uttids.txt: missing: not a complete SeqStore"):
        SeqStore(tmp_path / "seq")


def test_unknown_uttid_names_store(tmp_path):
    with SeqStoreWriter(tmp_path / "seq") as w:
        w.add("a", [], [])
    with pytest.raises(KeyError, match="no utterance 'b'"):
        SeqStore(tmp_path / "seq").index_of("b")


@pytest.fixture(scope="module")
def lang(tmp_path_factory):
    d = tmp_path_factory.mktemp("lang")
    (d / "text").write_text("u1 THE CAT SAT\nu2 A DOG SAT ON THE MAT\n")
    assert make_lexicon.main(["--text", str(d / "text"), "--out", str(d / "lang")]) == 0
    assert train_wordpiece.main(["--text", str(d / "text"), "--vocab-size", "40", "--out", str(d / "lang")]) == 0
    return d


def test_dump_text_phones_follow_lexicon_with_word_boundaries(lang, tmp_path):
    (tmp_path / "text").write_text("x1 THE CAT\nx2 SAT\n")
    dump_text(lang / "lang", lang / "lang" / "wp40.model", tmp_path / "text", tmp_path / "seq")
    lex, table = read_lexicon(lang / "lang" / "lexicon.txt"), read_phones(lang / "lang" / "phones.txt")
    s = SeqStore(tmp_path / "seq")
    expect = [table[p] for p in lex["THE"]] + [table["<wb>"]] + [table[p] for p in lex["CAT"]]
    assert s[0][1].tolist() == expect
    assert s[1][1].tolist() == [table[p] for p in lex["SAT"]]
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(lang / "lang" / "wp40.model"))
    assert s[0][2].tolist() == sp.encode("THE CAT") and s.uttids == ["x1", "x2"]


def test_dump_text_counts_oov_words(lang, tmp_path):
    (tmp_path / "text").write_text("x1 THE ZEBRA\nx2 ZEBRA 42\n")
    conv = dump_text(lang / "lang", lang / "lang" / "wp40.model", tmp_path / "text", tmp_path / "seq",
                               oov="unk", chunk=1)
    assert conv.oov_words == {"ZEBRA": 2, "42": 1}
    assert SeqStore(tmp_path / "seq")[0][1].tolist()[-2:] == [3, 1]  # ... <wb> <unk>


def test_dump_text_names_utterances_with_no_known_phone_and_gives_them_none(lang, tmp_path, caplog):
    # all-<unk> phones (a transcript that normalises to nothing) would train CTC and the text
    # encoder on a lie: no phones, so training drops and counts them
    (tmp_path / "text").write_text("x1 THE ZEBRA\nx2 ZEBRA 42\n")
    with caplog.at_level("WARNING"):
        conv = dump_text(lang / "lang", lang / "lang" / "wp40.model", tmp_path / "text", tmp_path / "seq", oov="unk")
    assert conv.unsayable == ["x2"] and "x2" in caplog.text
    store = SeqStore(tmp_path / "seq")
    assert store[1][1].tolist() == [] and len(store[1][2]) > 0


def test_dump_text_bad_line_names_file_and_line(lang, tmp_path):
    (tmp_path / "text").write_text("x1 THE CAT\nx2\n")
    rc = dump_text_cli.main(["--lang-dir", str(lang / "lang"), "--bpe-model", str(lang / "lang" / "wp40.model"),
                         "--text", str(tmp_path / "text"), "--out", str(tmp_path / "seq")])
    assert rc == 2 and not (tmp_path / "seq").exists()
    with pytest.raises(InputError, match=r"text:2: key 'x2' has no value"):
        dump_text(lang / "lang", lang / "lang" / "wp40.model", tmp_path / "text", tmp_path / "seq")


def test_dump_text_utt2lang_picks_each_language_lexicon(tmp_path):
    (tmp_path / "en").write_text("a1 THE CAT\n")
    (tmp_path / "de").write_text("b1 schön\n")
    make_lexicon.main(["--text", str(tmp_path / "en"), "--lang", "en-us", "--out", str(tmp_path / "l_en")])
    make_lexicon.main(["--text", str(tmp_path / "de"), "--lang", "de", "--out", str(tmp_path / "l_de")])
    make_lexicon.main(["--merge-phones", str(tmp_path / "l_en"), str(tmp_path / "l_de"), "--out", str(tmp_path / "lang")])
    (tmp_path / "all").write_text("a1 THE CAT\nb1 schön\n")
    train_wordpiece.main(["--text", str(tmp_path / "all"), "--vocab-size", "30", "--out", str(tmp_path / "lang")])
    (tmp_path / "utt2lang").write_text("a1 en-us\nb1 de\n")
    dump_text(tmp_path / "lang", tmp_path / "lang" / "wp30.model", tmp_path / "all", tmp_path / "seq",
                        utt2lang=tmp_path / "utt2lang")
    table = read_phones(tmp_path / "lang" / "phones.txt")
    de = read_lexicon(tmp_path / "lang" / "lexicon.de.txt")
    s = SeqStore(tmp_path / "seq")
    assert s[s.index_of("b1")][1].tolist() == [table[p] for p in de["schön"]]
    (tmp_path / "utt2lang").write_text("a1 en-us\nb1 fr-fr\n")
    with pytest.raises(InputError, match="utterance 'b1': language 'fr-fr' not in the lang dir"):
        dump_text(tmp_path / "lang", tmp_path / "lang" / "wp30.model", tmp_path / "all",
                            tmp_path / "seq2", utt2lang=tmp_path / "utt2lang")
    assert not (tmp_path / "seq2").exists()
