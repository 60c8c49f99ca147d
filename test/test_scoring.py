"""Built-in sclite-compatible scorer: alignment choices, counts, reports, CLI."""
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from toolkit.bin import score as score_cli
from toolkit.scoring import align, read_trn, score, write_trn
from toolkit.scoring.align import COST_DEL, COST_INS, COST_SUB, alignment_cost, fold_case
from toolkit.scoring.report import format_dtl, format_pra, format_sys
from toolkit.scoring.sclite import parse_pra, parse_sys
from toolkit.utils.fileio import InputError


def ops(ref: str, hyp: str) -> str:
    return "".join(p.op for p in align(ref.split(), hyp.split()))


# --- alignment choices (each checked against the real sclite 2.10 by hand) ---------------

def test_identical_sequences_are_all_correct():
    assert ops("the cat sat", "the cat sat") == "CCC"


def test_substitution_is_preferred_over_a_deletion_insertion_pair():
    # sub costs 4 < del + ins = 6
    assert ops("a b c", "a x c") == "CSC"


def test_tie_between_deletion_and_substitutions_puts_the_deletion_first():
    # a b c / x y: DSS, SDS and SSD all cost 11; sclite reports D S S
    assert ops("a b c", "x y") == "DSS"


def test_extra_reference_word_at_the_end_is_deleted_after_the_substitution():
    assert ops("a b c", "x b") == "SCD"


def test_deletion_insertion_tie_keeps_the_shared_word_correct():
    # a b / b c: sclite gives D C I (cost 6), not S S (cost 8)
    assert ops("a b", "b c") == "DCI"


def test_insertion_and_substitution_example_from_sclite():
    assert ops("the cat sat on the mat", "the cat sit on mat mat extra") == "CCSCSCI"


def test_empty_hypothesis_deletes_every_word():
    assert ops("a b c", "") == "DDD"


def test_empty_reference_inserts_every_word():
    assert ops("", "a b") == "II"


def test_both_empty_is_an_empty_alignment():
    assert align([], []) == []


def test_comparison_ignores_ascii_case_only_like_sclite():
    assert ops("Hello WORLD", "hello world") == "CC"
    assert ops("Über", "über") == "S"     # sclite folds ASCII letters only


def test_unicode_words_align_by_identity():
    assert ops("日本 語 straße", "日本 語 strasse") == "CCS"


def test_case_sensitive_mode_distinguishes_case():
    assert [p.op for p in align(["Hello"], ["hello"], case_sensitive=True)] == ["S"]


# --- the DP against a brute-force enumeration of all alignments --------------------------

def brute_force_cost(ref, hyp):
    """Minimum cost over every alignment, by exhaustive recursion (tiny inputs only)."""
    if not ref:
        return COST_INS * len(hyp)
    if not hyp:
        return COST_DEL * len(ref)
    diag = (0 if fold_case(ref[0]) == fold_case(hyp[0]) else COST_SUB) + brute_force_cost(ref[1:], hyp[1:])
    return min(diag, COST_DEL + brute_force_cost(ref[1:], hyp), COST_INS + brute_force_cost(ref, hyp[1:]))


words = st.lists(st.sampled_from(["a", "b", "c", "A", "ü"]), max_size=6)


@settings(max_examples=300, deadline=None)
@given(words, words)
def test_alignment_is_minimal_cost_and_covers_both_sequences(ref, hyp):
    pairs = align(ref, hyp)
    assert alignment_cost(pairs) == brute_force_cost(ref, hyp)
    assert [p.ref for p in pairs if p.ref is not None] == ref
    assert [p.hyp for p in pairs if p.hyp is not None] == hyp
    for p in pairs:
        assert (p.op == "C") == (p.ref is not None and p.hyp is not None and fold_case(p.ref) == fold_case(p.hyp))


# --- counts, speakers, errors ------------------------------------------------------------

def test_score_counts_per_utterance_speaker_and_total():
    res = score({"s1-a": "a b c", "s1-b": "d e", "s2-a": "f"}, {"s1-a": "a x c", "s1-b": "d e", "s2-a": ""})
    assert res.utts["s1-a"].counts.as_tuple() == (1, 3, 2, 1, 0, 0, 1)
    assert list(res.speakers) == ["s1", "s2"]
    assert res.speakers["s1"].as_tuple() == (2, 5, 4, 1, 0, 0, 1)
    assert res.total.as_tuple() == (3, 6, 4, 1, 1, 0, 2)
    assert res.wer == pytest.approx(100 * 2 / 6)


def test_speaker_is_the_id_up_to_the_first_dash():
    res = score({"spk-ch-1": "a", "spk-ch-2": "b", "other": "c"}, {"spk-ch-1": "a", "spk-ch-2": "b", "other": "c"})
    assert list(res.speakers) == ["spk", "other"]


def test_missing_hypothesis_is_an_error_naming_the_utterance():
    with pytest.raises(ValueError, match="s1-b"):
        score({"s1-a": "a", "s1-b": "b"}, {"s1-a": "a"})


def test_extra_hypothesis_is_an_error_naming_the_utterance():
    with pytest.raises(ValueError, match="s9-z"):
        score({"s1-a": "a"}, {"s1-a": "a", "s9-z": "b"})


def test_cer_splits_characters_and_drops_spaces():
    res = score({"s-1": "ab cd"}, {"s-1": "abc d"}, cer=True)
    assert res.total.as_tuple() == (1, 4, 4, 0, 0, 0, 0)
    res = score({"s-1": "über"}, {"s-1": "uber"}, cer=True)
    assert (res.total.corr, res.total.sub) == (3, 1)


def test_wer_with_no_reference_words():
    assert score({"s-1": ""}, {"s-1": ""}).wer == 0.0
    assert score({"s-1": ""}, {"s-1": "x"}).wer == float("inf")


# --- .trn files ---------------------------------------------------------------------------

def test_trn_round_trip_keeps_order_and_empty_transcripts(tmp_path):
    path = tmp_path / "x.trn"
    write_trn(path, {"b-2": "hello  world", "a-1": ""})
    assert path.read_text() == "hello world (b-2)\n (a-1)\n"
    assert list(read_trn(path).items()) == [("b-2", "hello world"), ("a-1", "")]


def test_trn_line_without_id_names_file_and_line(tmp_path):
    path = tmp_path / "bad.trn"
    path.write_text("a b (s-1)\nno id here\n")
    with pytest.raises(InputError, match=r"bad.trn:2"):
        read_trn(path)


def test_trn_duplicate_id_is_an_error(tmp_path):
    path = tmp_path / "dup.trn"
    path.write_text("a (s-1)\nb (s-1)\n")
    with pytest.raises(InputError, match="duplicate utterance 's-1'"):
        read_trn(path)


# --- reports (expected text produced by the real sclite 2.10 on the same input) ---------------

REFS = {"spk1-utt1": "the cat sat on the mat", "spk1-utt2": "hello world", "spk2-utt1": "a b c",
        "spk2-utt2": "", "spk3-u1": "Über straße"}
HYPS = {"spk1-utt1": "the cat sit on mat mat extra", "spk1-utt2": "HELLO", "spk2-utt1": "x y",
        "spk2-utt2": "foo", "spk3-u1": "über STRASSE"}

SCLITE_SYS = """\



                     SYSTEM SUMMARY PERCENTAGES by SPEAKER                      

       ,----------------------------------------------------------------.
       |                            hyp.trn                             |
       |----------------------------------------------------------------|
       | SPKR   | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |
       |--------+-------------+-----------------------------------------|
       | spk1   |    2      8 | 62.5   25.0   12.5   12.5   50.0  100.0 |
       |--------+-------------+-----------------------------------------|
       | spk2   |    2      3 |  0.0   66.7   33.3   33.3  133.3  100.0 |
       |--------+-------------+-----------------------------------------|
       | spk3   |    1      2 |  0.0  100.0    0.0    0.0  100.0  100.0 |
       |================================================================|
       | Sum/Avg|    5     13 | 38.5   46.2   15.4   15.4   76.9  100.0 |
       |================================================================|
       |  Mean  |  1.7    4.3 | 20.8   63.9   15.3   15.3   94.4  100.0 |
       |  S.D.  |  0.6    3.2 | 36.1   37.6   16.8   16.8   41.9    0.0 |
       | Median |  2.0    3.0 |  0.0   66.7   12.5   12.5  100.0  100.0 |
       `----------------------------------------------------------------'
"""


def test_sys_table_matches_sclite_layout():
    assert format_sys(score(REFS, HYPS, title="hyp.trn")) == SCLITE_SYS


def test_sys_table_marks_speakers_without_reference_words():
    text = format_sys(score({"a-1": "x y", "z-1": ""}, {"a-1": "x", "z-1": "foo bar"}))
    assert "| z      |    1      0 |    0*     0*     0*     2*     2* 100.0 |" in text
    assert "|  Mean  |  1.0    1.0 | 50.0+   0.0+  50.0+   0.0+  50.0+ 100.0 |" in text


def test_pra_marks_errors_upper_case_and_gaps_with_stars():
    text = format_pra(score(REFS, HYPS, title="hyp.trn"))
    assert ("id: (spk1-utt1)\nScores: (#C #S #D #I) 4 2 0 1\n"
            "REF:  the cat SAT on THE mat ***** \n"
            "HYP:  the cat SIT on MAT mat EXTRA \n"
            "Eval:         S      S       I     \n") in text
    assert "REF:  A B C \nHYP:  * X Y \nEval: D S S \n" in text


def test_pra_and_sys_read_back_to_the_same_counts():
    res = score(REFS, HYPS, title="hyp.trn")
    back = parse_pra(format_pra(res))
    assert {u: [p.op for p in a] for u, a in back.items()} == \
        {u: [p.op for p in s.alignment] for u, s in res.utts.items()}
    assert parse_sys(format_sys(res))["Sum/Avg"] == (5, 13, 38.5, 46.2, 15.4, 15.4, 76.9, 100.0)


def test_dtl_lists_confusions_insertions_and_deletions_by_count():
    res = score({"s-1": "a b c", "s-2": "z b c", "s-3": "z b c", "s-4": "q"},
                {"s-1": "x b", "s-2": "y b", "s-3": "y b", "s-4": "q r r"})
    text = format_dtl(res)
    assert "   1:    2  ->  z ==> y\n   2:    1  ->  a ==> x\n" in text
    assert "INSERTIONS" in text and "   1:    2  ->  r\n" in text
    assert "   1:    3  ->  c\n" in text
    assert "Percent Total Error       =   80.0%   (   8)" in text


# --- CLI -----------------------------------------------------------------------------------

def test_cli_writes_the_three_reports(tmp_path, capsys):
    write_trn(tmp_path / "ref.trn", REFS)
    write_trn(tmp_path / "hyp.trn", HYPS)
    assert score_cli.main(["--ref", str(tmp_path / "ref.trn"), "--hyp", str(tmp_path / "hyp.trn"),
                           "--out", str(tmp_path / "score_wer")]) == 0
    assert (tmp_path / "score_wer" / "result.txt").read_text() == SCLITE_SYS
    assert (tmp_path / "score_wer" / "result.pra").exists() and (tmp_path / "score_wer" / "result.dtl").exists()
    assert "%WER 76.92 [ 10 / 13, 2 ins, 2 del, 6 sub ]" in capsys.readouterr().out


def test_cli_missing_hypothesis_names_the_utterance_and_writes_nothing(tmp_path, capsys):
    write_trn(tmp_path / "ref.trn", REFS)
    write_trn(tmp_path / "hyp.trn", dict(itertools.islice(HYPS.items(), 4)))
    assert score_cli.main(["--ref", str(tmp_path / "ref.trn"), "--hyp", str(tmp_path / "hyp.trn"),
                           "--out", str(tmp_path / "score_wer")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("score: error: ") and "spk3-u1" in err and "Traceback" not in err
    assert not (tmp_path / "score_wer").exists()


# --- RESULTS.md ----------------------------------------------------------------------------

def scored_decode(exp, name, refs, hyps, utt2lang=None):
    d = exp / name
    write_trn(d / "ref.trn", refs)
    write_trn(d / "hyp.trn", hyps)
    score_cli.main(["--ref", str(d / "ref.trn"), "--hyp", str(d / "hyp.trn"), "--out", str(d / "score_wer")])
    if utt2lang:
        (d / "utt2lang").write_text("".join(f"{u} {lang}\n" for u, lang in utt2lang.items()))


def test_make_results_tabulates_each_mode_and_set(tmp_path):
    from toolkit.bin import make_results
    exp = tmp_path / "exp" / "tag"
    scored_decode(exp, "decode_full_test_clean", REFS, HYPS)
    scored_decode(exp, "decode_streaming_test_clean", REFS, REFS)
    (exp / "config.yaml").write_text("model: joint\n")
    (exp / "decode_streaming_test_clean" / "rtf.txt").write_text(
        "mode streaming\nmethod greedy\nalgorithmic_latency_ms 350\nrtf 0.0914\n"
        "chunk_compute_ms_median 22.95\nchunk_compute_ms_p95 48.38\n")
    assert make_results.main(["--exp", str(exp)]) == 0
    text = (exp / "RESULTS.md").read_text()
    assert "### WER: full\n\n|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|\n|---|" in text
    assert "|test_clean|5|13|38.5|46.2|15.4|15.4|76.9|100.0|" in text
    assert "### WER: streaming" in text and "|test_clean|5|13|100.0|0.0|0.0|0.0|0.0|0.0|" in text
    assert "|test_clean|greedy|0.0914|350|22.95|48.38|" in text
    assert "- torch version: `" in text and "config.yaml`" in text


def test_make_results_records_the_toolkit_version_and_git_hash(tmp_path):
    from toolkit import __version__
    from toolkit.bin import make_results
    from toolkit.utils.version import git_revision
    exp = tmp_path / "exp" / "tag"
    scored_decode(exp, "decode_full_test_clean", REFS, HYPS)
    text = make_results.make_results(exp)
    assert f"- toolkit version: `{__version__}`" in text
    assert f"- git hash: `{git_revision()}`" in text and git_revision() != "unknown"


def test_make_results_adds_per_language_and_pooled_rows(tmp_path):
    from toolkit.scoring.results import make_results
    exp = tmp_path / "tag"
    refs = {"en1-1": "a b", "en1-2": "c d", "de1-1": "e f g h"}
    hyps = {"en1-1": "a b", "en1-2": "c x", "de1-1": "e"}
    scored_decode(exp, "decode_full_dev", refs, hyps, {"en1-1": "en", "en1-2": "en", "de1-1": "de"})
    text = make_results(exp)
    assert "|language|Snt|Wrd|" in text
    assert "|de|1|4|25.0|0.0|75.0|0.0|75.0|100.0|" in text
    assert "|en|2|4|75.0|25.0|0.0|0.0|25.0|50.0|" in text
    assert "|pooled|3|8|50.0|12.5|37.5|0.0|50.0|66.7|" in text


def test_per_language_rows_use_each_languages_own_scoring_unit(tmp_path):
    from toolkit.bin import score as score_cli_
    from toolkit.scoring.results import make_results
    exp = tmp_path / "tag"
    refs = {"de1-1": "e f g h", "zh1-1": "我们 走"}
    hyps = {"de1-1": "e f", "zh1-1": "我们 走"}
    scored_decode(exp, "decode_full_test", refs, hyps, {"de1-1": "de", "zh1-1": "cmn"})
    d = exp / "decode_full_test"
    score_cli_.main(["--ref", str(d / "ref.trn"), "--hyp", str(d / "hyp.trn"), "--out", str(d / "score_cer"), "--cer"])
    (d / "lang2unit").write_text("cmn char\nde word\n")
    text = make_results(exp)
    wer_part, _, cer_part = text.partition("### CER")
    assert "|de|1|4|50.0|" in wer_part and "|cmn|" not in wer_part
    assert "|cmn|1|" in cer_part and "|de|" not in cer_part.split("per language")[1]


def test_make_results_without_scores_is_an_error(tmp_path):
    from toolkit.scoring.results import make_results
    (tmp_path / "decode_full_x").mkdir()
    with pytest.raises(InputError, match="no decode_"):
        make_results(tmp_path)


def test_heldout_scores_count_hits_misses_and_false_alarms_from_the_alignment():
    from toolkit.scoring.heldout import heldout_scores
    refs = {"u1": "THE BARN WAS RED", "u2": "A CAT SAT", "u3": "BARN AND BOAT"}
    hyps = {"u1": "THE BARN WAS RED", "u2": "A BOAT SAT", "u3": "BORN AND BOAT"}
    s = heldout_scores(refs, hyps, ["barn", "boat"])
    # u1: barn hit; u2: boat substituted for cat (false alarm); u3: barn missed, boat hit
    assert (s["occurrences"], s["hits"], s["false_alarms"]) == (3, 2, 1)
    assert s["per_utt"] == {"u1": [1, 1, 0], "u2": [0, 0, 1], "u3": [2, 1, 0]}
    assert (s["utts"], s["words"], s["errors"]) == (2, 7, 1)  # only u1 and u3 hold a held-out word
    assert abs(s["recall"] - 200 / 3) < 1e-9
