"""toolkit.data: DataDir, validate (one test per problem kind), fix, subset, combine, split."""
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from toolkit.bin import validate_data_dir as validate_cli
from toolkit.data.datadir import DataDir
from toolkit.utils.kaldi_map import Segment
from toolkit.data.fix import fix_data_dir
from toolkit.data.split import NotContiguousError, split_contiguous, split_data_dir, split_keep_groups
from toolkit.data.subset import combine_data_dirs, subset_data_dir
from toolkit.data.validate import validate_data_dir
from toolkit.utils.fileio import InputError

FILES = {
    "wav.scp": "a-1 {audio}\na-2 {audio}\nb-1 sox b1.flac -t wav - |\nc-1 {audio}\n",
    "text": "a-1 HELLO WORLD\na-2 THERE\nb-1 HI\nc-1 BYE NOW\n",
    "utt2spk": "a-1 a\na-2 a\nb-1 b\nc-1 c\n",
    "spk2utt": "a a-1 a-2\nb b-1\nc c-1\n",
}


def make_dir(root: Path, name="train", **override) -> Path:
    """A valid 4-utterance, 3-speaker data dir; override={file: content or None to omit}."""
    d = root / "data" / name
    d.mkdir(parents=True)
    audio = root / "a.wav"
    audio.write_bytes(b"RIFF")
    for fname, content in {**FILES, **override}.items():
        if content is not None:
            (d / fname).write_text(content.format(audio=audio), encoding="utf-8")
    return d


def messages(d: Path, **kw) -> list[str]:
    return [str(p) for p in validate_data_dir(d, **kw)]


# ---------------------------------------------------------------- DataDir

def test_load_reads_every_file_and_knows_pipes(tmp_path):
    d = DataDir.load(make_dir(tmp_path))
    assert d.utt_ids == ["a-1", "a-2", "b-1", "c-1"] and len(d) == 4
    assert d.spk2utt == {"a": ("a-1", "a-2"), "b": ("b-1",), "c": ("c-1",)}
    assert d.wav_scp["b-1"] == "sox b1.flac -t wav - |" and d.segments is None and d.utt2lang is None


def test_load_derives_spk2utt_and_reads_segments(tmp_path):
    d = DataDir.load(make_dir(tmp_path, spk2utt=None, segments="a-1 r1 0 1.5\na-2 r1 1.5 3\n"))
    assert d.spk2utt["a"] == ("a-1", "a-2")
    assert d.segments["a-2"] == Segment("r1", 1.5, 3.0) and d.recording_of("a-2") == "r1"


def test_load_names_duplicate_key_file_and_line(tmp_path):
    with pytest.raises(InputError, match=r"train/utt2spk:3: duplicate key 'a-1'"):
        DataDir.load(make_dir(tmp_path, utt2spk="a-1 a\na-2 a\na-1 b\n"))


def test_save_refuses_to_replace_a_non_data_dir(tmp_path):
    d = DataDir.load(make_dir(tmp_path))
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "model.pt").write_text("x")
    with pytest.raises(InputError, match="refusing to replace"):
        d.save(tmp_path / "precious")
    assert (tmp_path / "precious" / "model.pt").exists()


# ---------------------------------------------------------------- validate: one test per kind

def test_valid_dir_has_no_problems(tmp_path):
    assert validate_data_dir(make_dir(tmp_path)) == []


def test_missing_required_file(tmp_path):
    d = make_dir(tmp_path, spk2utt=None)
    assert messages(d) == [f"{d}/spk2utt: missing (required); create it with utils/utt2spk_to_spk2utt.pl"]


def test_unsorted_keys_name_the_line(tmp_path):
    d = make_dir(tmp_path, text="a-1 X\nb-1 Y\na-2 Z\nc-1 W\n")
    assert messages(d) == [f"{d}/text:3: not sorted (C locale): 'a-2' comes after 'b-1' on line 2; "
                           f"run utils/fix_data_dir.sh"]


def test_c_locale_order_puts_upper_case_first(tmp_path):
    d = make_dir(tmp_path, text="a-1 X\nB-9 Y\n")
    assert f"{d}/text:2: not sorted (C locale)" in messages(d)[0]


def test_duplicate_key_names_both_lines(tmp_path):
    d = make_dir(tmp_path, utt2spk="a-1 a\na-2 a\na-2 a\nb-1 b\nc-1 c\n")
    assert messages(d) == [f"{d}/utt2spk:3: duplicate key 'a-2' (first on line 2)"]


def test_id_in_text_but_not_utt2spk_and_back(tmp_path):
    d = make_dir(tmp_path, text="a-1 X\na-2 Y\nb-1 Z\nd-1 W\n")
    assert messages(d) == [f"{d}/text:4: utterance 'd-1' is not in utt2spk",
                           f"{d}/utt2spk:4: utterance 'c-1' is not in text"]


def test_id_in_wav_scp_but_not_utt2spk(tmp_path):
    d = make_dir(tmp_path, **{"wav.scp": "a-1 {audio}\na-2 {audio}\nb-1 {audio}\nc-1 {audio}\nc-2 {audio}\n"})
    assert messages(d) == [f"{d}/wav.scp:5: utterance 'c-2' is not in utt2spk"]


def test_without_utt2spk_text_and_wav_scp_are_still_compared(tmp_path):
    d = make_dir(tmp_path, utt2spk=None, spk2utt=None, text="a-1 X\na-2 Y\nb-1 Z\n")
    assert messages(d) == [f"{d}/utt2spk: missing (required)",
                           f"{d}/spk2utt: missing (required); create it with utils/utt2spk_to_spk2utt.pl",
                           f"{d}/wav.scp:4: utterance 'c-1' is not in text"]


def test_segments_replace_wav_scp_as_the_utterance_list(tmp_path):
    d = make_dir(tmp_path, **{"wav.scp": "r1 {audio}\n"}, segments="a-1 r1 0 1\na-2 r1 1 2\nb-1 r1 2 3\n")
    assert messages(d) == [f"{d}/utt2spk:4: utterance 'c-1' is not in segments"]


def test_utt2lang_must_cover_the_same_utterances(tmp_path):
    d = make_dir(tmp_path, utt2lang="a-1 en\na-2 en\nb-1 de\n")
    assert messages(d) == [f"{d}/utt2spk:4: utterance 'c-1' is not in utt2lang"]


def test_spk2utt_with_wrong_speaker(tmp_path):
    d = make_dir(tmp_path, spk2utt="a a-1\nb b-1 a-2\nc c-1\n")
    assert messages(d) == [f"{d}/spk2utt:2: utterance 'a-2' is listed under speaker 'b' but utt2spk line 2 says 'a'"]


def test_spk2utt_missing_utterance_and_unknown_and_repeated(tmp_path):
    d = make_dir(tmp_path, spk2utt="a a-1 a-1 x-9\nb b-1\nc c-1\n")
    assert messages(d) == [f"{d}/spk2utt:1: utterance 'a-1' listed twice (also on line 1)",
                           f"{d}/spk2utt:1: utterance 'x-9' of speaker 'a' is not in utt2spk",
                           f"{d}/utt2spk:2: utterance 'a-2' (speaker 'a') is missing from spk2utt"]


def test_empty_transcript(tmp_path):
    d = make_dir(tmp_path, text="a-1 X\na-2\nb-1 Z\nc-1 W\n")
    assert messages(d) == [f"{d}/text:2: 'a-2' has no transcript (empty)"]
    assert validate_data_dir(d, allow_empty_text=True) == []


def test_missing_audio_file_but_pipes_are_not_run(tmp_path):
    d = make_dir(tmp_path, **{"wav.scp": "a-1 {audio}\na-2 /nonexistent/x.wav\nb-1 false |\nc-1 {audio}\n"})
    assert messages(d) == [f"{d}/wav.scp:2: audio file '/nonexistent/x.wav' of 'a-2' does not exist"]
    assert validate_data_dir(d, check_audio=False) == []


def test_ark_offset_audio_checks_the_archive(tmp_path):
    d = make_dir(tmp_path, **{"wav.scp": "a-1 {audio}\na-2 /no/wav.ark:123\nb-1 {audio}\nc-1 {audio}\n"})
    assert messages(d) == [f"{d}/wav.scp:2: audio file '/no/wav.ark' of 'a-2' does not exist"]


def test_segments_bad_times_and_unknown_recording(tmp_path):
    d = make_dir(tmp_path, **{"wav.scp": "r1 {audio}\nr2 {audio}\n"},
                 segments="a-1 r1 -0.5 1\na-2 r1 2 2\nb-1 r9 0 1\nc-1 r1 x 1\n")
    assert messages(d) == [
        f"{d}/segments:1: segment 'a-1' starts before 0 (-0.5)",
        f"{d}/segments:2: segment 'a-2' ends (2.0) at or before its start (2.0)",
        f"{d}/segments:3: segment 'b-1' refers to unknown recording 'r9' (not in wav.scp)",
        f"{d}/segments:4: start/end times must be numbers, got 'x' '1'",
        f"{d}/wav.scp:2: warning: recording 'r2' is used by no segment",
    ]


def test_utterance_not_prefixed_by_speaker_is_a_warning(tmp_path):
    d = make_dir(tmp_path, text="a-1 X\na-2 Y\nb-1 Z\nzz W\n", utt2spk="a-1 a\na-2 a\nb-1 b\nzz c\n",
                 spk2utt="a a-1 a-2\nb b-1\nc zz\n", **{"wav.scp": "a-1 {audio}\na-2 {audio}\nb-1 {audio}\nzz {audio}\n"})
    (problem,) = validate_data_dir(d)
    assert problem.severity == "warning" and problem.line == 4
    assert str(problem) == (f"{d}/utt2spk:4: warning: utterance id 'zz' does not start with its speaker id 'c' "
                            f"(Kaldi sorting needs speaker-prefixed ids)")


def test_non_utf8_line_is_reported_not_raised(tmp_path):
    d = make_dir(tmp_path)
    (d / "text").write_bytes(b"a-1 X\na-2 \xff\nb-1 Z\nc-1 W\n")
    assert any(m.startswith(f"{d}/text:2: not valid UTF-8") for m in messages(d))


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    d = make_dir(tmp_path, text="b-1 Z\na-1\na-1 Q\nc-1 W\n", **{"wav.scp": "a-1 /no.wav\na-2 {audio}\n"
                                                                        "b-1 {audio}\nc-1 {audio}\n"})
    got = messages(d)
    assert f"{d}/text:2: 'a-1' has no transcript (empty)" in got
    assert f"{d}/text:2: not sorted (C locale): 'a-1' comes after 'b-1' on line 1; run utils/fix_data_dir.sh" in got
    assert f"{d}/text:3: duplicate key 'a-1' (first on line 2)" in got
    assert f"{d}/utt2spk:2: utterance 'a-2' is not in text" in got
    assert f"{d}/wav.scp:1: audio file '/no.wav' of 'a-1' does not exist" in got


def test_cli_prints_problems_and_exit_status(tmp_path, capsys):
    good = make_dir(tmp_path, "good")
    bad = make_dir(tmp_path, "bad", text="a-1 X\na-2 Y\nb-1 Z\n")
    assert validate_cli.main([str(good)]) == 0
    assert validate_cli.main([str(bad)]) == 2
    assert f"{bad}/utt2spk:4: utterance 'c-1' is not in text" in capsys.readouterr().err


def test_cli_warnings_fail_only_with_strict(tmp_path, capsys):
    d = make_dir(tmp_path, **{"wav.scp": "r1 {audio}\nr2 {audio}\n"},
                 segments="a-1 r1 0 1\na-2 r1 1 2\nb-1 r1 2 3\nc-1 r1 3 4\n")
    assert validate_cli.main([str(d)]) == 0
    assert validate_cli.main(["--strict", str(d)]) == 2
    assert "wav.scp:2: warning:" in capsys.readouterr().err


# ---------------------------------------------------------------- fix

def test_fix_sorts_intersects_rebuilds_spk2utt_and_backs_up(tmp_path):
    d = make_dir(tmp_path, text="c-1 W\na-1 X\nb-1\nd-1 extra\na-1 dup\n",
                 spk2utt="a a-1\nb b-1\nc c-1\n")
    report = fix_data_dir(d)
    assert (report.before, report.kept) == (4, 2)
    assert (d / "text").read_text() == "a-1 X\nc-1 W\n"
    assert (d / "utt2spk").read_text() == "a-1 a\nc-1 c\n"
    assert (d / "spk2utt").read_text() == "a a-1\nc c-1\n"
    assert (d / "wav.scp").read_text().count("\n") == 2
    assert report.removed["text"] == {"empty transcript": 1, "duplicate key": 1, "utterance not in every file": 1}
    assert report.removed["utt2spk"] == {"utterance not in every file": 2}
    assert (d / ".backup" / "text").read_text() == "b-1\na-1 dup\nd-1 extra\n"
    assert validate_data_dir(d) == []


def test_fix_twice_removes_nothing_more(tmp_path):
    d = make_dir(tmp_path, text="a-1 X\na-2 Y\nb-1 Z\n")
    fix_data_dir(d)
    before = {p.name: p.read_text() for p in d.iterdir() if p.is_file()}
    report = fix_data_dir(d)
    assert report.removed == {} and report.kept == 3
    assert {p.name: p.read_text() for p in d.iterdir() if p.is_file()} == before
    assert (d / ".backup" / "utt2spk").read_text() == "c-1 c\n"


def test_fix_drops_bad_segments_and_unused_recordings(tmp_path):
    d = make_dir(tmp_path, **{"wav.scp": "r1 {audio}\nr2 {audio}\nr3 {audio}\n"},
                 segments="a-1 r1 0 1\na-2 r1 3 2\nb-1 r2 0 1\nc-1 r9 0 1\n")
    report = fix_data_dir(d)
    assert report.kept == 2
    assert (d / "segments").read_text() == "a-1 r1 0 1\nb-1 r2 0 1\n"
    assert [line.split()[0] for line in (d / "wav.scp").read_text().splitlines()] == ["r1", "r2"]
    assert report.removed["segments"] == {"bad segment times": 1, "unknown recording": 1}
    assert validate_data_dir(d) == []


def test_fix_rebuilds_utt2spk_from_spk2utt(tmp_path):
    d = make_dir(tmp_path, utt2spk=None)
    fix_data_dir(d)
    assert (d / "utt2spk").read_text() == FILES["utt2spk"]


# ---------------------------------------------------------------- subset / combine

def test_subset_first_n_utt_list_and_speakers(tmp_path):
    src = make_dir(tmp_path)
    assert subset_data_dir(src, tmp_path / "f2", first=2).utt_ids == ["a-1", "a-2"]
    assert subset_data_dir(src, tmp_path / "u", utt_list=["c-1", "a-2"]).utt_ids == ["a-2", "c-1"]
    sub = subset_data_dir(src, tmp_path / "s", speakers=["b", "a"])
    assert sub.utt_ids == ["a-1", "a-2", "b-1"] and list(sub.wav_scp) == ["a-1", "a-2", "b-1"]
    assert (tmp_path / "s" / "spk2utt").read_text() == "a a-1 a-2\nb b-1\n"
    assert validate_data_dir(tmp_path / "s") == []


def test_subset_unknown_id_is_named(tmp_path):
    with pytest.raises(ValueError, match="not in utt2spk: zz-1"):
        subset_data_dir(make_dir(tmp_path), tmp_path / "out", utt_list=["a-1", "zz-1"])
    assert not (tmp_path / "out").exists()


def test_subset_keeps_only_recordings_its_segments_use(tmp_path):
    src = make_dir(tmp_path, **{"wav.scp": "r1 {audio}\nr2 {audio}\n"},
                   segments="a-1 r1 0 1.25\na-2 r1 1.25 2\nb-1 r2 0 1\nc-1 r2 1 2\n", utt2lang="a-1 en\na-2 en\nb-1 de\nc-1 de\n")
    sub = subset_data_dir(src, tmp_path / "out", speakers=["a"])
    assert list(sub.wav_scp) == ["r1"] and sub.utt2lang == {"a-1": "en", "a-2": "en"}
    assert (tmp_path / "out" / "segments").read_text() == "a-1 r1 0 1.25\na-2 r1 1.25 2\n"


def test_combine_merges_and_regenerates_spk2utt(tmp_path):
    src = make_dir(tmp_path)
    a = subset_data_dir(src, tmp_path / "p1", speakers=["a", "c"])
    b = subset_data_dir(src, tmp_path / "p2", speakers=["b"])
    out = combine_data_dirs(tmp_path / "all", [a.path, b.path])
    assert out.utt_ids == ["a-1", "a-2", "b-1", "c-1"]
    assert (tmp_path / "all" / "spk2utt").read_text() == FILES["spk2utt"]
    assert validate_data_dir(tmp_path / "all") == []


def test_combine_duplicate_utterance_names_both_sources(tmp_path):
    src = make_dir(tmp_path)
    subset_data_dir(src, tmp_path / "x", first=2)
    subset_data_dir(src, tmp_path / "y", speakers=["a"])
    with pytest.raises(ValueError, match=f"utterance 'a-1' is in both {tmp_path}/x and {tmp_path}/y"):
        combine_data_dirs(tmp_path / "all", [tmp_path / "x", tmp_path / "y"])
    assert not (tmp_path / "all").exists()


def test_combine_conflicting_recording_is_an_error(tmp_path):
    one = dict(text="a-1 X\n", utt2spk="a-1 a\n", spk2utt="a a-1\n", segments="a-1 r1 0 1\n")
    x = make_dir(tmp_path, "x", **one, **{"wav.scp": "r1 {audio}\n"})
    y = make_dir(tmp_path, "y", **{k: v.replace("a-1", "a-2") for k, v in one.items()}, **{"wav.scp": "r1 b.wav\n"})
    with pytest.raises(ValueError, match=f"recording 'r1' has different wav.scp entries in {x} and {y}"):
        combine_data_dirs(tmp_path / "all", [x, y])
    (y / "wav.scp").write_text((x / "wav.scp").read_text())  # the same recording twice is fine
    assert combine_data_dirs(tmp_path / "all", [x, y]).segments["a-2"] == Segment("r1", 0.0, 1.0)


# ---------------------------------------------------------------- split

@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60))
def test_split_contiguous_matches_kaldi_sizes(n_items, n_parts):
    if n_items < n_parts:
        with pytest.raises(ValueError):
            split_contiguous(n_items, n_parts)
        return
    parts = split_contiguous(n_items, n_parts)
    assert [i for p in parts for i in p] == list(range(n_items))
    sizes = [len(p) for p in parts]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] - sizes[-1] <= 1


def _best_max_part(sizes, n_parts):
    """Slow reference: the smallest achievable largest part over every way to cut the groups."""
    best = None
    for cuts in itertools.combinations(range(1, len(sizes)), n_parts - 1):
        bounds = (0, *cuts, len(sizes))
        worst = max(sum(sizes[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
        best = worst if best is None else min(best, worst)
    return best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=9), st.integers(1, 5))
def test_split_keep_groups_never_cuts_a_group_and_stays_balanced(sizes, n_parts):
    groups = [g for g, size in enumerate(sizes) for _ in range(size)]
    if len(sizes) < n_parts:
        with pytest.raises(ValueError):
            split_keep_groups(groups, n_parts)
        return
    parts = split_keep_groups(groups, n_parts)
    assert len(parts) == n_parts and all(len(p) > 0 for p in parts)
    assert [i for p in parts for i in p] == list(range(len(groups)))
    assert all(groups[p.start - 1] != groups[p.start] for p in parts[1:])
    assert max(len(p) for p in parts) <= _best_max_part(sizes, n_parts) + max(sizes)


def test_split_keep_groups_rejects_a_split_up_group():
    with pytest.raises(NotContiguousError, match="item 3: group 'a'"):
        split_keep_groups(["a", "b", "a"], 2)


def test_split_data_dir_by_speaker_and_per_utt(tmp_path):
    src = make_dir(tmp_path)
    parts = split_data_dir(src, 2)
    assert parts == [src / "split2" / "1", src / "split2" / "2"]
    assert [DataDir.load(p).utt_ids for p in parts] == [["a-1", "a-2"], ["b-1", "c-1"]]
    assert all(validate_data_dir(p) == [] for p in parts)
    per_utt = split_data_dir(src, 4, by_speaker=False)
    assert [DataDir.load(p).utt_ids for p in per_utt] == [["a-1"], ["a-2"], ["b-1"], ["c-1"]]
    assert per_utt[0].parent.name == "split4utt"
    with pytest.raises(ValueError, match="3 group"):
        split_data_dir(src, 4)


def test_split_data_dir_rerun_replaces_old_parts(tmp_path):
    src = make_dir(tmp_path)
    split_data_dir(src, 2)
    (src / "split2" / "1" / "stale").write_text("x")
    (src / "split2" / "3").mkdir()  # a part from some other split
    parts = split_data_dir(src, 2)
    assert [DataDir.load(p).utt_ids for p in parts] == [["a-1", "a-2"], ["b-1", "c-1"]]
    assert sorted(p.name for p in (src / "split2").iterdir()) == ["1", "2"]
    assert not (src / "split2" / "1" / "stale").exists()


def test_clis_report_errors_with_exit_status_1(tmp_path, capsys):
    from toolkit.bin import combine_data, fix_data_dir as fix_cli, split_data, subset_data_dir as subset_cli
    src = make_dir(tmp_path)
    (tmp_path / "ids").write_text("a-1\nzz-9\n")
    assert subset_cli.main(["--utt-list", str(tmp_path / "ids"), str(src), str(tmp_path / "s")]) == 2
    assert "zz-9" in capsys.readouterr().err
    assert combine_data.main([str(tmp_path / "all"), str(src), str(src)]) == 2
    assert f"utterance 'a-1' is in both {src} and {src}" in capsys.readouterr().err
    assert split_data.main([str(src), "9"]) == 2 and "cannot split 3 group(s)" in capsys.readouterr().err
    assert fix_cli.main([str(tmp_path / "nowhere")]) == 2 and "nowhere/wav.scp: missing" in capsys.readouterr().err
    assert subset_cli.main(["--first", "3", str(src), str(tmp_path / "s")]) == 0
    assert "wrote 3 utterances, 2 speakers" in capsys.readouterr().out


def test_cli_missing_input_file_is_one_line_error(tmp_path, capsys):
    from toolkit.bin import split_scp, subset_data_dir as subset_cli
    assert split_scp.main([str(tmp_path / "no.scp"), str(tmp_path / "o1")]) == 2
    assert "no.scp" in capsys.readouterr().err
    assert subset_cli.main(["--utt-list", str(tmp_path / "no.list"), str(make_dir(tmp_path)), str(tmp_path / "s")]) == 2
    assert "no.list" in capsys.readouterr().err
