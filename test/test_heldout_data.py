"""How a held-out-word corpus treats its held-out words: occurrences per set, lexicon, wordpieces;
saved by the grid runner per data version and described in the study report."""
import json

import pytest

from toolkit.analysis import heldout_data, study
from toolkit.bin import train_wordpiece
from toolkit.text.wordpiece import load_wordpiece

PAIRED = ["p1 THE CAT SAT ON THE MAT", "p2 A DOG ATE THE BONE", "p3 THE CAT ATE"]
UNPAIRED = ["t1 THE ZEBRA SAT ON THE MAT", "t2 A QUOKKA ATE THE ZEBRA", "t3 THE DOG SAT",
            "t4 ZEBRA ZEBRA ZEBRA ZEBRA", "t5 QUOKKA QUOKKA QUOKKA"]
TEST = ["x1 THE ZEBRA ATE", "x2 THE DOG SAT", "x3 A QUOKKA AND A ZEBRA"]


def _text(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x}\n" for x in lines))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    r = tmp_path_factory.mktemp("recipe")
    _text(r / "data" / "train" / "text", PAIRED)
    _text(r / "data" / "text_only" / "text", UNPAIRED)
    _text(r / "data" / "test" / "text", TEST)
    (r / "data" / "heldout_words.txt").write_text("zebra\nquokka\n")  # any case: folded as sclite does
    words = sorted({w for x in PAIRED + UNPAIRED for w in x.split()[1:]} - {"QUOKKA"})  # one missing
    _text(r / "data" / "lang" / "lexicon.txt", [f"{w} {' '.join(w.lower())}" for w in words])
    assert train_wordpiece.main(["--text", str(r / "data" / "train" / "text"), "--text",
                                 str(r / "data" / "text_only" / "text"), "--vocab-size", "40",
                                 "--out", str(r / "data" / "lang")]) == 0
    return r


def test_occurrences_lexicon_and_pieces_against_a_direct_count(recipe):
    s = heldout_data.summarize(recipe)
    assert s["words"] == 2 and s["in_lexicon"] == 1
    assert s["sets"] == {"train": {"occurrences": 0, "utts": 0, "of": 3},
                         "text_only": {"occurrences": 10, "utts": 4, "of": 5},
                         "test": {"occurrences": 3, "utts": 2, "of": 3}}
    sp = load_wordpiece(recipe / "data" / "lang" / "wp40.model")
    spelled = {w: sp.encode(w, out_type=str) for w in ("QUOKKA", "ZEBRA")}
    paired = {p for x in PAIRED for p in sp.encode(x.split(maxsplit=1)[1], out_type=str)}
    assert s["pieces_not_in_paired_text"] == sorted({p for ps in spelled.values() for p in ps} - paired)
    assert s["one_piece"] == [w.lower() for w, ps in sorted(spelled.items()) if len(ps) == 1]
    assert s["pieces_per_word"]["max"] == max(len(ps) for ps in spelled.values())
    assert s["words_using_them"] == [w.lower() for w, ps in sorted(spelled.items())
                                     if set(ps) - paired]
    line = heldout_data.describe(s)[0]
    assert "test 3 in 2 of 3" in line and "Lexicon: 1 of 2 have an entry" in line


def test_the_command_prints_and_saves_and_names_a_missing_paired_set(recipe, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert heldout_data.main(["--recipe", str(recipe), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["sets"]["test"]["occurrences"] == 3
    assert "The 2 held-out words" in capsys.readouterr().out
    assert heldout_data.main(["--recipe", str(recipe), "--paired-set", "nope"]) == 1
    assert "data/nope/text: no paired training text" in capsys.readouterr().err


def test_the_grid_saves_it_per_data_version_and_the_report_describes_it(recipe, tmp_path):
    saved = study.save_heldout_data(recipe)
    assert saved == recipe / "study" / "heldout_data" / f"{study.data_version(recipe)}.json"
    assert study.heldout_data(recipe)[saved.stem]["words"] == 2
    assert study.save_heldout_data(tmp_path) is None  # no held-out words: nothing to say
    from test_study_report import HELDOUT_GRID, study_cells
    from toolkit.analysis.study_report import write_study_report
    cells = study_cells(with_p=False)
    described = write_study_report(HELDOUT_GRID, cells, tmp_path / "S.md", heldout_data={"d1": heldout_data.summarize(recipe)})
    assert "The 2 held-out words (tokens, in utterances of the set): test 3 in 2 of 3;" in described.read_text()
    other = write_study_report(HELDOUT_GRID, cells, tmp_path / "T.md", heldout_data={"d2": heldout_data.summarize(recipe)})
    assert "held-out words (tokens" not in other.read_text()  # another data version's summary is not these cells'
