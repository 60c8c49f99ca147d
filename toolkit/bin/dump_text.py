"""Dump transcripts as phoneme ids + wordpiece ids into a SeqStore (streaming).

Usage:
    python -m toolkit.bin.dump_text --lang-dir data/lang --bpe-model data/lang/wp256.model \
        --text data/train/text --out dump/train/seq [--oov phonemize|unk] [--utt2lang data/train/utt2lang]

--utt2lang (multilingual lang dir from make_lexicon --merge-phones) picks each
utterance's lexicon; without it the lang dir's (first) language is used. Out-of-lexicon
words are phonemized with espeak (or mapped to <unk> with --oov unk) and counted in the
log. The store is written to a temp dir and renamed to --out when complete.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys

from toolkit.utils.kaldi_map import iter_kaldi_map, read_kaldi_map
from toolkit.text.seqstore import SeqStoreWriter
from toolkit.text.text2ids import TextToIds
from toolkit.utils.fileio import InputError

log = logging.getLogger("dump_text")


def dump_text(lang_dir: str, bpe_model: str, text: str, out: str, oov: str = "phonemize",
              utt2lang: str | None = None, chunk: int = 2000) -> TextToIds:
    """Write the SeqStore; returns the converter (its ``oov_words``/``unk_phones`` counters)."""
    conv = TextToIds(lang_dir, bpe_model, oov=oov)
    langs = read_kaldi_map(utt2lang) if utt2lang else None
    lines = iter_kaldi_map(text)
    n = 0
    with SeqStoreWriter(out) as writer:
        while batch := list(itertools.islice(lines, chunk)):
            utts = []
            for lineno, uttid, words in batch:
                lang = None
                if langs is not None:
                    if uttid not in langs:
                        raise InputError(text, f"utterance '{uttid}' has no language in {utt2lang}", lineno)
                    lang = langs[uttid]
                utts.append((uttid, words, lang))
            try:
                converted = conv.convert(utts)
            except KeyError as e:
                raise InputError(utt2lang, e.args[0]) from None
            for uttid, phones, tokens in converted:
                writer.add(uttid, phones, tokens)
            n += len(batch)
    n_occ = sum(conv.oov_words.values())
    top = ", ".join(f"{w}({c})" for w, c in conv.oov_words.most_common(10))
    log.info("%s: %d utterances; %d out-of-lexicon words (%d occurrences%s); %d phones -> <unk>",
             out, n, len(conv.oov_words), n_occ, f": {top}" if top else "", conv.unk_phones)
    return conv


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--bpe-model", required=True)
    p.add_argument("--text", required=True, help="Kaldi text file")
    p.add_argument("--out", required=True, help="SeqStore dir to write")
    p.add_argument("--oov", default="phonemize", choices=["phonemize", "unk"])
    p.add_argument("--utt2lang", help="uttid -> espeak language code (multilingual lang dir)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        dump_text(args.lang_dir, args.bpe_model, args.text, args.out, args.oov, args.utt2lang)
    except (InputError, ValueError, OSError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
