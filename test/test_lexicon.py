"""Lexicon: espeak phones for real words, the per-language cache, fallbacks, phone tables."""
import pytest

from toolkit.bin import make_lexicon
from toolkit.text.langdir import build_lang_dir, build_multilingual_lang_dir
from toolkit.text.lexicon import SPECIAL_PHONES, merge_lang_dirs, read_lexicon, read_phones
from toolkit.text.phonemize import WordPhonemizer, is_speakable
from toolkit.utils.fileio import InputError


def write_text(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_real_words_get_plausible_ipa():
    lex = WordPhonemizer("en-us")(["CAT", "SHE", "THE", "DOG"])
    assert lex["CAT"] == ["k", "æ", "t"]
    assert lex["SHE"][0] == "ʃ"
    assert lex["THE"][0] == "ð"
    assert lex["DOG"][0] == "d" and lex["DOG"][-1] in ("ɡ", "g")


def test_other_language_uses_its_rules():
    lex = WordPhonemizer("de")(["schön"])
    assert lex["schön"][0] == "ʃ" and "øː" in lex["schön"]


def test_batched_parallel_equals_one_by_one():
    words = ["APPLE", "BANANA", "CHERRY", "DELTA", "ECHO", "FOXTROT", "GOLF"]
    together = WordPhonemizer("en-us", nj=2, batch_size=2)(words)
    alone = {w: WordPhonemizer("en-us")([w])[w] for w in words}
    assert together == alone


def test_junk_words_fall_back_instead_of_crashing():
    ph = WordPhonemizer("en-us")
    lex = ph(["HELLO", "42", "@@", "X1"])
    assert lex["42"] == ph(["FOUR"])["FOUR"] + ph(["TWO"])["TWO"]  # spelled digit by digit
    assert lex["@@"] == ["<unk>"]
    assert ph.fallbacks == {"42": "spelled", "@@": "unk", "X1": "spelled"}
    assert "HELLO" not in ph.fallbacks


def test_is_speakable():
    assert is_speakable("DON'T") and is_speakable("naïve") and is_speakable("中国")
    assert not is_speakable("42") and not is_speakable("'") and not is_speakable("A+B")


def test_rerun_with_cache_phonemizes_only_new_words(tmp_path):
    text = write_text(tmp_path / "text", ["u1 HELLO WORLD", "u2 GOOD MORNING"])
    cache = tmp_path / "cache"
    first = build_lang_dir([text], "en-us", tmp_path / "lang", cache=cache)
    assert first.n_phonemized > 0
    again = build_lang_dir([text], "en-us", tmp_path / "lang", cache=cache)
    assert again.n_phonemized == 0
    more = write_text(tmp_path / "text2", ["u3 HELLO EVENING"])
    bigger = build_lang_dir([text, more], "en-us", tmp_path / "lang", cache=cache)
    assert bigger.n_phonemized == 1  # only "evening"
    assert set(read_lexicon(tmp_path / "lang" / "lexicon.txt")) == {"EVENING", "GOOD", "HELLO", "MORNING", "WORLD"}


def test_cli_writes_lexicon_and_phone_table(tmp_path):
    text = write_text(tmp_path / "text", ["u1 THE CAT", "u2 THE 7"])
    assert make_lexicon.main(["--text", str(text), "--lang", "en-us", "--out", str(tmp_path / "lang")]) == 0
    lex = read_lexicon(tmp_path / "lang" / "lexicon.txt")
    table = read_phones(tmp_path / "lang" / "phones.txt")
    assert [table[s] for s in SPECIAL_PHONES] == [0, 1, 2, 3]
    assert all(p in table for ps in lex.values() for p in ps)
    assert (tmp_path / "lang" / "fallbacks.txt").read_text() == "7 spelled\n"
    assert (tmp_path / "lang" / "language").read_text() == "en-us\n"


def test_merge_gives_one_inventory_over_languages(tmp_path):
    build_lang_dir([write_text(tmp_path / "en", ["a THE CAT"])], "en-us", tmp_path / "l_en")
    build_lang_dir([write_text(tmp_path / "de", ["b schön"])], "de", tmp_path / "l_de")
    table = merge_lang_dirs([tmp_path / "l_en", tmp_path / "l_de"], tmp_path / "lang")
    assert read_phones(tmp_path / "lang" / "phones.txt") == table
    for lang in ("en-us", "de"):
        lex = read_lexicon(tmp_path / "lang" / f"lexicon.{lang}.txt")
        assert all(p in table for ps in lex.values() for p in ps)
    assert {"ð", "øː"} <= set(table)
    assert (tmp_path / "lang" / "languages").read_text() == "en-us\nde\n"


def test_non_utf8_text_names_file_and_line(tmp_path):
    bad = tmp_path / "text"
    bad.write_bytes(b"u1 HELLO\nu2 CAF\xe9\n")
    with pytest.raises(InputError, match=r"text:2: not valid UTF-8"):
        build_lang_dir([bad], "en-us", tmp_path / "lang")


def test_read_phones_rejects_wrong_special_ids(tmp_path):
    (tmp_path / "phones.txt").write_text("<unk> 0\n<pad> 1\n<mask> 2\n<wb> 3\n")
    with pytest.raises(InputError, match="'<pad>' must have id 0"):
        read_phones(tmp_path / "phones.txt")


def test_one_run_with_utt2lang_gives_per_language_lexicons(tmp_path):
    text = write_text(tmp_path / "text", ["a1 DIE KATZE", "b1 LE CHAT"])
    only = write_text(tmp_path / "only", ["t1 DIE HUNDE"])
    write_text(tmp_path / "utt2lang", ["a1 de", "b1 fr-fr"])
    assert make_lexicon.main(["--text", str(text), "--text", str(only), "--utt2lang", str(tmp_path / "utt2lang"),
                              "--langs", "de,fr-fr", "--lang", "de", "--out", str(tmp_path / "lang")]) == 0
    de = read_lexicon(tmp_path / "lang" / "lexicon.de.txt")
    fr = read_lexicon(tmp_path / "lang" / "lexicon.fr-fr.txt")
    assert set(de) == {"DIE", "KATZE", "HUNDE"} and set(fr) == {"LE", "CHAT"}
    assert fr["CHAT"][0] == "ʃ" and de["KATZE"][-1] == "ə"
    table = read_phones(tmp_path / "lang" / "phones.txt")
    assert all(p in table for lex in (de, fr) for ps in lex.values() for p in ps)


def test_utt2lang_language_outside_langs_is_an_error(tmp_path):
    text = write_text(tmp_path / "text", ["a1 DIE KATZE"])
    write_text(tmp_path / "utt2lang", ["a1 de"])
    with pytest.raises(InputError, match=r"utt2lang: languages \['de'\] are not in --langs fr-fr"):
        build_multilingual_lang_dir([text], tmp_path / "utt2lang", ["fr-fr"], tmp_path / "lang")
    without = write_text(tmp_path / "t2", ["x9 HALLO"])
    with pytest.raises(InputError, match=r"t2:1: utterance 'x9' has no language in utt2lang"):
        build_multilingual_lang_dir([without], tmp_path / "utt2lang", None, tmp_path / "lang")


def test_unknown_language_is_rejected_up_front():
    with pytest.raises(ValueError, match="espeak-ng has no language 'xx-yy'"):
        WordPhonemizer("xx-yy")


def test_espeak_error_costs_only_the_failing_word(monkeypatch):
    from toolkit.text import phonemize

    class Flaky:  # fails any call that contains "BOOM", like espeak choking on one input
        def phonemize(self, words, **kw):
            if "boom" in words:
                raise RuntimeError("espeak crashed")
            return [" ".join(w) for w in words]

    monkeypatch.setattr(phonemize, "_backend", lambda lang, stress: Flaky())
    assert phonemize.espeak_batch(("en-us", False, ["ab", "boom", "cd"])) == [["a", "b"], [], ["c", "d"]]
    ph = WordPhonemizer("en-us")
    lex = ph(["AB", "BOOM"])
    assert lex == {"AB": ["a", "b"], "BOOM": ["b", "o", "o", "m"]} and ph.fallbacks == {"BOOM": "spelled"}
