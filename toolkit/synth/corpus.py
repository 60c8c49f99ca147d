"""Plan and write a synthetic corpus in a real layout (LibriSpeech, MLS, Common Voice).

:func:`plan_corpus` decides everything from the seed (sentences, speakers, ids, file
names); :func:`write_corpus` renders the audio (one forked espeak child per chapter /
book / Common Voice speaker, so the bytes depend on neither ``nj`` nor order) and the
transcripts into a temp dir that is renamed into place, then writes a completion marker.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from toolkit.data.corpora import MLS_LANGUAGES
from toolkit.synth.espeak import TARGET_RATE, Voice, add_recording_conditions, prepare_engine, synthesize_isolated
from toolkit.synth.grammar import Grammar, choose_heldout_words, format_text, generate_sentences
from toolkit.synth.voices import VARIANTS, voices_for_splits
from toolkit.utils.parallel import imap_processes

LAYOUTS = ("librispeech", "mls", "commonvoice")
# Part of the completion marker: bump when the same settings would now give different bytes.
SYNTH_VERSION = 5
# Speaker ids of language i come from [i*10000+100, (i+1)*10000): unique across languages, as
# reader ids are in MLS, so data dirs of several languages can be combined (English: 4 digits).
LANG_ORDER = ("en", "de", "fr", "es", "cmn", "nl", "it", "pt", "pl")
LANGUAGE_NAMES = {code: name for name, code in MLS_LANGUAGES.items()}
CV_LOCALES = {"cmn": "zh-CN"}  # Common Voice names a few languages differently from espeak
LIBRISPEECH_SUBSETS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
CV_COLUMNS = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents",
              "locale", "segment"]
CV_AGES = ["teens", "twenties", "thirties", "fourties", "fifties", "sixties"]


@dataclass(frozen=True)
class UttSpec:
    split: str
    speaker: str
    group: str      # synthesized together: LibriSpeech chapter, MLS book, Common Voice client_id
    uttid: str
    text: str       # as written in the transcript files
    spoken: str     # what espeak reads: cased and punctuated, so all-caps words are not spelled out
    voice: Voice
    seed: int
    relpath: str    # audio path relative to the corpus root


@dataclass
class CorpusPlan:
    layout: str
    lang: str
    root: str                       # top-level path under --out (renamed into place)
    utts: list[UttSpec]
    text_only: list[str]
    text_only_path: str             # relative to --out
    heldout_words: list[str] = dataclasses.field(default_factory=list)  # in no paired training utterance

    @property
    def heldout_path(self) -> str:
        """Where the held-out word list is written (relative to --out): one word a line."""
        return f"{self.root}/HELDOUT_WORDS.TXT"


def _utt_seed(seed: int, uttid: str) -> int:
    return zlib.crc32(f"{seed}:{uttid}".encode()) & 0x7FFFFFFF


def _locate(layout: str, lang: str, split: str, spk: str, num: str, i: int) -> tuple[str, str]:
    """(utterance id, audio path under the corpus root) as the real corpus names them."""
    if layout == "librispeech":
        uttid = f"{spk}-{num}-{i:04d}"
        return uttid, f"{LIBRISPEECH_SUBSETS[split]}/{spk}/{num}/{uttid}.flac"
    if layout == "mls":
        uttid = f"{spk}_{num}_{i:06d}"
        return uttid, f"{split}/audio/{spk}/{num}/{uttid}.flac"
    uttid = f"common_voice_{CV_LOCALES.get(lang, lang)}_{num}{i:03d}"
    return uttid, f"clips/{uttid}.mp3"


def plan_corpus(layout: str, lang: str, seed: int, counts: dict[str, int], num_text_only: int,
                speakers: dict[str, int], utts_per_group: int, heldout_words: int = 0) -> CorpusPlan:
    """Everything but the audio, from ``seed``. ``counts``/``speakers``: per split.

    ``heldout_words`` N > 0: N nouns, places and names (seeded) are spoken in no paired
    training utterance (training sentences holding one are redrawn, so the training set
    keeps its size) but occur in dev, test and the unpaired text as the grammar draws them:
    what only text can teach. The list is written to ``plan.heldout_path``."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}' (choose from {', '.join(LAYOUTS)})")
    if not 1 <= utts_per_group <= 999:
        raise ValueError(f"utterances per chapter/book must be 1..999, got {utts_per_group}")
    # Layout and language in the seed: an MLS and a Common Voice corpus of one language made
    # with the same --seed must not share sentences (one's test set would be the other's train).
    rng = random.Random(f"{seed}:{layout}:{lang}")
    grammar = Grammar.load(lang)
    if heldout_words > 0:
        heldout = choose_heldout_words(grammar, heldout_words, random.Random(f"{seed}:{layout}:{lang}:heldout"))
        train = generate_sentences(grammar, counts["train"], rng, avoid_words=set(heldout))
        paired = train + generate_sentences(grammar, counts["dev"] + counts["test"], rng, exclude=set(train))
    else:  # the draw of every corpus made before held-out words existed
        heldout = []
        paired = generate_sentences(grammar, sum(counts.values()), rng)
    text_only = generate_sentences(grammar, num_text_only, rng, exclude=set(paired))
    voices = voices_for_splits(lang, {s: min(speakers[s], counts[s]) for s in counts}, rng)
    style = {"librispeech": "upper", "mls": "lower", "commonvoice": "written"}[layout]
    block = LANG_ORDER.index(lang) if lang in LANG_ORDER else len(LANG_ORDER) + zlib.crc32(lang.encode()) % 90
    spk_ids = rng.sample(range(block * 10000 + 100, (block + 1) * 10000), sum(len(v) for v in voices.values()))
    group_nums = iter(rng.sample(range(10000, 999999), len(paired)))
    utts: list[UttSpec] = []
    start = 0
    for split in ("train", "dev", "test"):
        sents = paired[start:start + counts[split]]
        start += counts[split]
        for k, voice in enumerate(voices[split]):
            mine = sents[k::len(voices[split])]  # round robin over the split's speakers
            spk = str(spk_ids.pop())
            client = hashlib.sha512(f"{seed}:{lang}:{spk}".encode()).hexdigest()
            for c0 in range(0, len(mine), utts_per_group):
                num = str(next(group_nums))  # chapter / book number
                for i, sent in enumerate(mine[c0:c0 + utts_per_group]):
                    uttid, rel = _locate(layout, lang, split, spk, num, i)
                    utts.append(UttSpec(split, spk, client if layout == "commonvoice" else num, uttid,
                                        format_text(sent, style), format_text(sent, "written"), voice,
                                        _utt_seed(seed, uttid), rel))
    if layout == "librispeech":
        root, lm_rel = "LibriSpeech", "librispeech-lm-norm.txt.gz"
    elif layout == "mls":
        root = f"mls_{LANGUAGE_NAMES.get(lang, lang)}"
        lm_rel = f"{root}/lm_text.txt.gz"
    else:
        root = f"cv-corpus/{CV_LOCALES.get(lang, lang)}"
        lm_rel = f"{root}/text_only.txt.gz"
    return CorpusPlan(layout, lang, root, utts, [format_text(s, style) for s in text_only], lm_rel,
                      [format_text(w, style) for w in heldout])


def _write_audio_group(args) -> float:
    """Synthesize one chapter/book/speaker group in a fresh espeak child; returns seconds of audio."""
    specs, root = args

    def write(i, samples):
        path = Path(root) / specs[i].relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, samples, TARGET_RATE, format="MP3" if path.suffix == ".mp3" else "FLAC")

    try:
        return sum(synthesize_isolated([(u.spoken, u.voice, u.seed) for u in specs], write,
                                       post=add_recording_conditions))
    except RuntimeError as e:
        raise RuntimeError(f"speaker {specs[0].speaker} ({specs[0].voice}): {e}") from None


def _write_text_files(plan: CorpusPlan, stage: Path) -> None:
    root = stage / plan.root
    by_key: dict[str, list[UttSpec]] = {}
    for u in plan.utts:
        by_key.setdefault(u.split if plan.layout != "librispeech" else os.path.dirname(u.relpath), []).append(u)
    if plan.layout == "librispeech":
        for chapter_dir, us in by_key.items():
            spk, ch = chapter_dir.split("/")[-2:]
            (root / chapter_dir).mkdir(parents=True, exist_ok=True)
            (root / chapter_dir / f"{spk}-{ch}.trans.txt").write_text(
                "".join(f"{u.uttid} {u.text}\n" for u in sorted(us, key=lambda u: u.uttid)), encoding="utf-8")
        lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
        for spk, u in sorted({u.speaker: u for u in plan.utts}.items(), key=lambda kv: int(kv[0])):
            sex = {"female": "F", "male": "M"}.get(VARIANTS[u.voice.variant], "M")
            lines.append(f"{spk:<5}| {sex} | {LIBRISPEECH_SUBSETS[u.split]:<16} | 1.00  | {u.voice.espeak_name}")
        (root / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif plan.layout == "mls":
        for split, us in by_key.items():
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / split / "transcripts.txt").write_text(
                "".join(f"{u.uttid}\t{u.text}\n" for u in sorted(us, key=lambda u: u.uttid)), encoding="utf-8")
    else:
        rows_all = []
        for split, us in by_key.items():
            rows = []
            for u in us:
                r = random.Random(u.seed)
                rows.append([u.group, os.path.basename(u.relpath), u.text, str(r.randint(2, 5)),
                             str(r.randint(0, 1)), CV_AGES[int(u.speaker) % len(CV_AGES)],
                             VARIANTS[u.voice.variant], "", CV_LOCALES.get(plan.lang, plan.lang), ""])
            _write_tsv(root / f"{split}.tsv", rows)
            rows_all += rows
        _write_tsv(root / "validated.tsv", sorted(rows_all, key=lambda r: r[1]))
    if plan.heldout_words:
        (stage / plan.heldout_path).write_text("".join(w + "\n" for w in plan.heldout_words), encoding="utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:  # mtime=0: same bytes each run
        gz.write("".join(s + "\n" for s in plan.text_only).encode("utf-8"))
    (stage / plan.text_only_path).parent.mkdir(parents=True, exist_ok=True)
    (stage / plan.text_only_path).write_bytes(buf.getvalue())


def _write_tsv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in [CV_COLUMNS, *rows]), encoding="utf-8")


def marker_path(out: Path, plan: CorpusPlan) -> Path:
    return out / f".synthesize_{plan.layout}_{plan.lang}.done"


def write_corpus(plan: CorpusPlan, out: str | Path, settings: dict, nj: int = 1, overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Render ``plan`` under ``out``; returns stats. Idempotent: a finished identical run is skipped."""
    out = Path(out)
    settings = {**settings, "synth_version": SYNTH_VERSION}
    marker = marker_path(out, plan)
    targets = [out / plan.root] + ([out / plan.text_only_path] if plan.layout == "librispeech" else [])
    if marker.exists() and json.loads(marker.read_text()) == settings and all(t.exists() for t in targets):
        return {"skipped": True}
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s) and are not this exact corpus; "
                              "remove them or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".synth-{plan.layout}-", dir=out))
    try:
        t0 = time.time()
        _write_text_files(plan, stage)
        groups: dict[tuple[str, str], list[UttSpec]] = {}
        for u in plan.utts:
            groups.setdefault((u.speaker, u.group), []).append(u)
        tasks = [(g, str(stage / plan.root)) for g in groups.values()]
        voice_names = sorted({u.voice.espeak_name for u in plan.utts})
        tqdm.monitor_interval = 0  # no tqdm monitor thread: this process forks
        # Checked here, not in a Pool initializer (a failing initializer makes Pool respawn forever);
        # the workers fork from this process and inherit its engine, still unused.
        prepare_engine(voice_names)
        seconds = 0.0
        with tqdm(total=len(plan.utts), desc=f"synthesize {plan.layout}/{plan.lang}", unit="utt",
                  disable=not progress, mininterval=1.0) as bar:
            for task, dur in zip(tasks, imap_processes(_write_audio_group, tasks, nj)):
                seconds += dur
                bar.update(len(task[0]))
        wall = time.time() - t0
        for t in targets:
            if t.exists():
                shutil.rmtree(t) if t.is_dir() else t.unlink()
            t.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / t.relative_to(out), t)
        with open(marker.with_name(marker.name + ".tmp"), "w") as f:
            json.dump(settings, f, sort_keys=True)
        os.replace(marker.with_name(marker.name + ".tmp"), marker)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {"skipped": False, "utterances": len(plan.utts), "audio_seconds": seconds, "wall_seconds": wall,
            "speed": seconds / max(wall, 1e-9), "text_only": len(plan.text_only)}
