"""Wordpieces: the id convention (<blank> 0 never emitted, <unk> 1) and tokens.txt."""
import pytest

from toolkit.bin import train_wordpiece
from toolkit.text.wordpiece import load_wordpiece, reservoir

TEXT = ["u1 THE CAT SAT ON THE MAT", "u2 A DOG ATE THE BONE", "u3 HELLO WORLD HELLO THERE",
        "u4 THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"]


@pytest.fixture(scope="module")
def lang(tmp_path_factory):
    d = tmp_path_factory.mktemp("wp")
    (d / "text").write_text("".join(f"{x}\n" for x in TEXT))
    assert train_wordpiece.main(["--text", str(d / "text"), "--vocab-size", "64", "--out", str(d / "lang")]) == 0
    return d / "lang"


def test_ids_blank_zero_unk_one(lang):
    sp = load_wordpiece(lang / "wp64.model")
    assert sp.id_to_piece(0) == "<blank>" and sp.id_to_piece(1) == "<unk>"
    assert sp.bos_id() == -1 and sp.eos_id() == -1


def test_encoding_never_emits_blank_and_unknown_chars_give_unk(lang):
    sp = load_wordpiece(lang / "wp64.model")
    for line in TEXT:
        ids = sp.encode(line.split(maxsplit=1)[1])
        assert 0 not in ids and 1 not in ids
    assert 1 in sp.encode("ÇÉ")
    assert sp.decode(sp.encode("THE LAZY CAT")) == "THE LAZY CAT"


def test_tokens_txt_matches_model(lang):
    sp = load_wordpiece(lang / "wp64.model")
    rows = [line.rsplit(" ", 1) for line in (lang / "tokens.txt").read_text().splitlines()]
    assert [(p, int(i)) for p, i in rows] == [(sp.id_to_piece(i), i) for i in range(sp.get_piece_size())]


def test_reservoir_keeps_k_distinct_lines_from_stream():
    sample = reservoir((str(i) for i in range(1000)), 10, seed=1)
    assert len(set(sample)) == 10 and all(0 <= int(x) < 1000 for x in sample)
    assert reservoir(iter(["a", "b"]), 10) == ["a", "b"]


def test_model_from_elsewhere_is_rejected(tmp_path):
    import sentencepiece as spm
    (tmp_path / "t").write_text("\n".join(x.split(maxsplit=1)[1] for x in TEXT))
    spm.SentencePieceTrainer.train(input=str(tmp_path / "t"), model_prefix=str(tmp_path / "m"),
                                   vocab_size=30, hard_vocab_limit=False, minloglevel=2)
    with pytest.raises(ValueError, match="<blank> id 0"):
        load_wordpiece(tmp_path / "m.model")
