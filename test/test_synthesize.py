"""The embedded corpus synthesizer: espeak TTS, grammars, layouts, determinism, held-out voices."""
import gzip
import random
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.bin import synthesize_corpus
from toolkit.data.corpora import normalize_sentence
from toolkit.synth.corpus import plan_corpus
from toolkit.synth.espeak import Voice, add_recording_conditions, prepare_engine, synthesize_isolated
from toolkit.synth.grammar import Grammar, available_languages, format_text, generate_sentences

SMALL = ["--num-train", "8", "--num-dev", "3", "--num-test", "3", "--num-text-only", "40",
         "--num-train-speakers", "3", "--num-dev-speakers", "2", "--num-test-speakers", "2",
         "--utts-per-chapter", "3", "--no-progress", "--nj", "2"]


def synth(out, layout="librispeech", lang="en", seed=1, extra=()):
    argv = ["--layout", layout, "--lang", lang, "--out", str(out), "--seed", str(seed), *SMALL, *extra]
    assert synthesize_corpus.main(argv) == 0
    return Path(out)


@pytest.fixture(scope="module")
def libri(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("libri"))


def transcripts(root: Path) -> dict[str, str]:
    out = {}
    for trans in sorted(root.glob("LibriSpeech/*/*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            uttid, text = line.split(" ", 1)
            out[uttid] = text
    return out


def test_librispeech_layout_has_flac_per_transcript_line_upper_case(libri):
    for subset, n in [("train-clean-100", 8), ("dev-clean", 3), ("test-clean", 3)]:
        trans = list((libri / "LibriSpeech" / subset).glob("*/*/*.trans.txt"))
        lines = [ln for t in trans for ln in t.read_text().splitlines()]
        assert len(lines) == n
        for t in trans:
            spk, chapter = t.parent.parent.name, t.parent.name
            assert t.name == f"{spk}-{chapter}.trans.txt"
            for line in t.read_text().splitlines():
                uttid, text = line.split(" ", 1)
                assert re.fullmatch(rf"{spk}-{chapter}-\d{{4}}", uttid)
                assert (t.parent / f"{uttid}.flac").is_file()
                assert text == text.upper() and re.fullmatch(r"[A-Z' ]+", text)


def test_audio_is_16k_mono_with_plausible_duration(libri):
    texts = transcripts(libri)
    for uttid, text in texts.items():
        spk, chapter, _ = uttid.split("-")
        path = next(libri.glob(f"LibriSpeech/*/{spk}/{chapter}/{uttid}.flac"))
        wav, sr = sf.read(path, dtype="int16")
        assert sr == 16000 and wav.ndim == 1
        seconds = len(wav) / sr
        assert 0.3 < seconds < 15
        assert 0.12 < seconds / len(text.split()) < 1.2, (uttid, seconds, text)
        peak = np.abs(wav.astype(np.int32))
        assert peak.max() > 1000 and (peak >= 32767).mean() < 1e-4  # speech, not silence, not clipped


def test_recorded_audio_has_no_digital_silence_and_pads_both_ends(libri):
    path = next(libri.glob("LibriSpeech/train-clean-100/*/*/*.flac"))
    wav, _ = sf.read(path, dtype="int16")
    frames = wav[: len(wav) // 400 * 400].reshape(-1, 400).astype(np.float64)  # 25 ms frames
    assert (frames.std(axis=1) > 0).all()  # a noise floor everywhere, as a microphone gives
    edges = np.abs(wav[:800]).max(), np.abs(wav[-800:]).max()  # 50 ms at each end: only noise
    assert max(edges) < 0.05 * np.abs(wav).max()


def test_recording_conditions_are_deterministic_and_keep_the_speech():
    speech = (np.sin(np.arange(8000) / 5.0) * 8000).astype(np.int16)
    speech[3000:4000] = 0  # an espeak pause: digital silence
    a, b = add_recording_conditions(speech, 7), add_recording_conditions(speech, 7)
    assert np.array_equal(a, b) and not np.array_equal(a, add_recording_conditions(speech, 8))
    assert 8000 + 2 * 800 <= len(a) <= 8000 + 2 * 5600  # 0.05 .. 0.35 s of silence each side
    x, ref = a.astype(np.float64), speech.astype(np.float64)
    err = [np.mean((x[k:k + 8000] - ref) ** 2) for k in range(len(a) - 8000 + 1)]
    lead = int(np.argmin(err))  # where the speech sits inside the padded signal
    snr = 10 * np.log10(np.mean(ref ** 2) / err[lead])
    assert 800 <= lead <= 5600 and 29 < snr < 51  # the speech is there, under 30-50 dB SNR noise
    assert a[lead + 3000: lead + 4000].std() > 0  # the pause is no longer digital zero


def test_speaker_ids_differ_across_languages():
    counts, speakers = {"train": 30, "dev": 4, "test": 4}, {"train": 10, "dev": 2, "test": 2}
    ids = {lang: {u.speaker for u in plan_corpus("mls", lang, 1, counts, 0, speakers, 5).utts}
           for lang in ("en", "de", "fr", "es", "cmn")}
    assert all(len(v) == 14 for v in ids.values())
    assert len(set.union(*ids.values())) == 70
    assert all(len(s) <= 4 for s in ids["en"]) and all(len(s) == 5 for s in ids["de"])  # LibriSpeech-like


def test_layouts_of_one_language_do_not_share_sentences():
    counts, speakers = {"train": 300, "dev": 30, "test": 30}, {"train": 10, "dev": 2, "test": 2}
    mls, cv = (plan_corpus(layout, "de", 1, counts, 0, speakers, 5) for layout in ("mls", "commonvoice"))
    assert not {u.text for u in mls.utts} & {normalize_sentence(u.text) for u in cv.utts}


def test_longer_sentence_takes_longer_to_say():
    prepare_engine(["en+m3"])
    voice = Voice("en", "m3", 50, 170, 50)
    short, long_ = synthesize_isolated([("hello there", voice, 1),
                                        ("the old farmer carried a heavy basket of apples to the market "
                                         "on a cold tuesday morning", voice, 1)], lambda i, s: None)
    assert long_ > 3 * short


def test_isolated_synthesis_does_not_depend_on_what_was_said_before(tmp_path):
    prepare_engine(["en+f2", "en+klatt"])
    voice = Voice("en", "f2", 60, 160, 40)

    def say(text, v, name):  # the writer runs in the forked child: keep the samples in a file
        synthesize_isolated([(text, v, 3)], lambda i, s: np.save(tmp_path / name, s))
        return np.load(tmp_path / f"{name}.npy")

    first = say("a quiet song", voice, "first")
    say("something entirely different was said in between", Voice("en", "klatt", 30, 190, 70), "other")
    again = say("a quiet song", voice, "again")
    assert np.array_equal(first, again)
    assert not np.array_equal(first, say("a quiet song", Voice("en", "f2", 40, 160, 40), "lower"))


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(ValueError, match="en\\+nosuchvariant"):
        prepare_engine(["en+nosuchvariant"])


def test_same_seed_gives_identical_bytes_and_other_seed_differs(libri, tmp_path):
    again = synth(tmp_path / "again", extra=["--nj", "1"])
    files = sorted(p.relative_to(libri) for p in libri.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (libri / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = synth(tmp_path / "other", seed=2)
    assert set(transcripts(other).values()) != set(transcripts(libri).values())


def test_dev_and_test_voices_are_unseen_in_training():
    plan = plan_corpus("librispeech", "en", 3, {"train": 60, "dev": 20, "test": 20}, 0,
                       {"train": 12, "dev": 4, "test": 4}, 5)
    variants = {s: {u.voice.variant for u in plan.utts if u.split == s} for s in ("train", "dev", "test")}
    speakers = {s: {u.speaker for u in plan.utts if u.split == s} for s in ("train", "dev", "test")}
    assert len(speakers["train"]) == 12 and len(speakers["dev"]) == 4
    assert not variants["train"] & variants["dev"] and not variants["train"] & variants["test"]
    assert not variants["dev"] & variants["test"]
    voices = {u.voice for u in plan.utts}
    assert len(voices) == 20  # every speaker sounds different


def test_text_only_sentences_are_new(libri):
    with gzip.open(libri / "librispeech-lm-norm.txt.gz", "rt", encoding="utf-8") as f:
        lm = f.read().splitlines()
    assert len(lm) == 40 and len(set(lm)) == 40
    assert all(s == s.upper() for s in lm)
    assert not set(lm) & set(transcripts(libri).values())


def test_rerun_is_skipped_and_other_settings_need_overwrite(libri, capsys):
    synth(libri)
    assert "skipped" in capsys.readouterr().out
    argv = ["--layout", "librispeech", "--lang", "en", "--out", str(libri), "--seed", "5", *SMALL]
    assert synthesize_corpus.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_mls_layout_lower_case_tab_separated(tmp_path):
    root = synth(tmp_path, layout="mls", lang="de") / "mls_german"
    for split, n in [("train", 8), ("dev", 3), ("test", 3)]:
        lines = (root / split / "transcripts.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == n
        for line in lines:
            key, text = line.split("\t")
            spk, book, utt = key.split("_")
            assert len(utt) == 6 and text == text.lower()
            info = sf.info(root / split / "audio" / spk / book / f"{key}.flac")
            assert info.samplerate == 16000 and 0.3 < info.duration < 15
    assert (root / "lm_text.txt.gz").is_file()


def test_commonvoice_layout_has_real_columns_and_mp3(tmp_path):
    root = synth(tmp_path, layout="commonvoice", lang="fr") / "cv-corpus" / "fr"
    header = "client_id path sentence up_votes down_votes age gender accents locale segment".split()
    rows = {}
    for split in ("train", "dev", "test", "validated"):
        lines = (root / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        assert lines[0].split("\t") == header
        rows[split] = [dict(zip(header, ln.split("\t"))) for ln in lines[1:]]
    assert len(rows["validated"]) == 14
    assert not {r["client_id"] for r in rows["train"]} & {r["client_id"] for r in rows["test"]}
    r = rows["train"][0]
    assert r["locale"] == "fr" and r["sentence"][0].isupper() and r["sentence"][-1] in ".?"
    wav, sr = sf.read(root / "clips" / r["path"], dtype="int16")
    assert sr == 16000 and 0.3 < len(wav) / sr < 15


@pytest.mark.parametrize("lang", ["en", "de", "fr", "es", "cmn"])
def test_every_language_ships_500_words_and_varied_sentences(lang):
    assert lang in available_languages()
    g = Grammar.load(lang)
    assert len(g.vocabulary()) >= 500
    sents = generate_sentences(g, 2000, random.Random(0))
    assert len({normalize_sentence(s) for s in sents}) == 2000
    used = {w for s in sents for w in normalize_sentence(s).split()}
    assert len(used) >= 400  # the lists are actually reachable, not just long


def test_generated_sentences_avoid_the_excluded_ones():
    g = Grammar.load("fr")  # punctuated sentences ("le lundi, ...") must be excluded too
    first = generate_sentences(g, 300, random.Random(5))
    assert any("," in s or "?" in s for s in first)
    again = generate_sentences(g, 300, random.Random(5), exclude=set(first))
    assert not {normalize_sentence(s) for s in first} & {normalize_sentence(s) for s in again}


def test_french_and_spanish_contractions_are_applied():
    for lang, bad in [("fr", r"\b(le|la) [aeiouéèê]"), ("es", r"\b(a|de) el\b")]:
        g = Grammar.load(lang)
        rng = random.Random(1)
        for _ in range(3000):
            assert not re.search(bad, g.sentence(rng))


def test_mandarin_is_written_without_spaces_and_normalised_to_characters():
    g = Grammar.load("cmn")
    s = g.sentence(random.Random(3))
    assert " " not in s
    written, words = format_text(s, "written"), format_text(s, "lower")
    assert written[-1] in "。？" and words.split() == [c for c in s if c.isalpha()]


def test_text_styles():
    assert format_text("¿dónde está el gato?", "written") == "¿Dónde está el gato?"
    assert format_text("the cat, it sat", "upper") == "THE CAT IT SAT"
    assert format_text("l'arbre, vert.", "lower") == "l'arbre vert"


def test_grammar_file_errors_name_the_problem(tmp_path):
    cases = {"rules: {S: ['{nothing}']}\nwords: {a: [x]}": "neither a rule nor a word list",
             "rules: {S: ['{a}']}\nwords: {a: [x], b: [y]}": "never used",
             "rules: {S: ['{a}']}\nwords: {a: [yes, on]}": "quote them",
             "genders: [m, f]\nrules: {S: ['{a}']}\nwords: {a: [x|y|z]}": "one form per gender"}
    for text, message in cases.items():
        path = tmp_path / "xx.yaml"
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            Grammar.load("xx", path)


def test_heldout_words_are_spoken_in_no_paired_training_utterance_but_occur_in_text_and_test():
    from toolkit.data.corpora import normalize_sentence
    from toolkit.synth.corpus import plan_corpus
    from toolkit.synth.grammar import HELDOUT_CATEGORIES, Grammar
    plan = plan_corpus("librispeech", "en", 1, {"train": 300, "dev": 50, "test": 200}, 2000,
                       {"train": 8, "dev": 2, "test": 2}, 25, heldout_words=30)
    held = {w.lower() for w in plan.heldout_words}
    assert len(held) == 30
    words = lambda text: set(normalize_sentence(text).split())  # noqa: E731
    assert sum(u.split == "train" for u in plan.utts) == 300  # redrawn, not dropped
    assert not any(words(u.text) & held for u in plan.utts if u.split == "train")
    assert any(words(u.text) & held for u in plan.utts if u.split == "test")
    assert sum(len(words(s) & held) for s in plan.text_only) > 100
    grammar = Grammar.load("en")
    spread = {c for c in HELDOUT_CATEGORIES for w in held if w in grammar.words.get(c, [])}
    assert spread == set(HELDOUT_CATEGORIES)  # nouns, places and names all give some


def test_a_corpus_without_heldout_words_draws_the_same_sentences_as_before_the_option():
    from toolkit.synth.corpus import plan_corpus
    args = ("librispeech", "en", 1, {"train": 40, "dev": 5, "test": 5}, 50, {"train": 4, "dev": 1, "test": 1}, 25)
    assert [u.text for u in plan_corpus(*args).utts] == [u.text for u in plan_corpus(*args, heldout_words=0).utts]
