r"""How a held-out-word corpus treats its held-out words: where they occur, whether the lexicon
has them, how the wordpiece model spells them.

Usage (from a recipe dir after stage 3):
    python -m toolkit.analysis.heldout_data                       # prints the summary
    python -m toolkit.analysis.heldout_data --out study/heldout_data/<data version>.json

Reads ``data/heldout_words.txt``, every ``data/<set>/text``, ``data/lang/lexicon.txt`` and the
wordpiece model in ``data/lang`` (``wp<N>.model``). For each set: held-out word tokens and the
utterances holding one. Lexicon: how many held-out words have an entry (stage 2 phonemizes every
word of the paired *and* unpaired text, so the text encoder sees their phonemes). Wordpieces:
pieces per held-out word, the words that are one piece, and the pieces of held-out words that
never occur in the paired training text (the HAT decoder learns to emit those from text-only
batches alone). ``study run`` writes the JSON for the report, keyed by the data version.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

from toolkit.scoring.align import fold_case, upper_ascii
from toolkit.scoring.heldout import read_heldout_words
from toolkit.utils.fileio import atomic_write
from toolkit.utils.kaldi_map import iter_kaldi_map


def summarize(recipe: Path, paired_set: str = "train") -> dict:
    """The summary (see the module doc) of the recipe's data; needs data/heldout_words.txt."""
    from toolkit.text.lexicon import read_lexicon
    from toolkit.text.wordpiece import load_wordpiece

    recipe = Path(recipe)
    words = read_heldout_words(recipe / "data" / "heldout_words.txt")
    heldout = sorted(words)
    sets = {}
    for text in sorted((recipe / "data").glob("*/text")):
        occ = utts = total = 0
        for _, _, value in iter_kaldi_map(text):
            k = sum(fold_case(w) in words for w in value.split())
            occ, utts, total = occ + k, utts + (k > 0), total + 1
        sets[text.parent.name] = {"occurrences": occ, "utts": utts, "of": total}
    if paired_set not in sets:
        raise FileNotFoundError(f"{recipe / 'data' / paired_set / 'text'}: no paired training text")
    lang = recipe / "data" / "lang"
    lexicon = {fold_case(w) for w in read_lexicon(lang / "lexicon.txt")}
    models = sorted(lang.glob("wp*.model"))
    if len(models) != 1:
        raise FileNotFoundError(f"{lang}: expected one wp<N>.model, found {len(models)}")
    sp = load_wordpiece(models[0])
    paired_pieces = Counter(p for _, _, value in iter_kaldi_map(recipe / "data" / paired_set / "text")
                            for p in sp.encode(value, out_type=str))
    spelled = {w: sp.encode(upper_ascii(w), out_type=str) for w in heldout}
    unseen = sorted({p for ps in spelled.values() for p in ps if not paired_pieces[p]})
    lengths = [len(ps) for ps in spelled.values()]
    return {"words": len(heldout), "paired_set": paired_set, "sets": sets,
            "in_lexicon": sum(w in lexicon for w in heldout), "wordpiece_model": models[0].name,
            "pieces_per_word": {"mean": statistics.mean(lengths), "min": min(lengths), "max": max(lengths)},
            "one_piece": [w for w, ps in spelled.items() if len(ps) == 1],
            "pieces_not_in_paired_text": unseen,
            "words_using_them": [w for w, ps in spelled.items() if any(p in unseen for p in ps)]}


def describe(s: dict) -> list[str]:
    """Markdown lines for the report and the command line."""
    where = "; ".join(f"{name} {v['occurrences']} in {v['utts']} of {v['of']}" for name, v in s["sets"].items())
    pieces = s["pieces_per_word"]
    return [f"The {s['words']} held-out words (tokens, in utterances of the set): {where}. "
            f"Lexicon: {s['in_lexicon']} of {s['words']} have an entry (stage 2 phonemizes the paired and the "
            f"unpaired text). Wordpieces (`{s['wordpiece_model']}`; stage 3 trains it on both texts unless "
            f"`--bpe-train-text-only false`): "
            f"{pieces['mean']:.1f} pieces a word ({pieces['min']}-{pieces['max']}); "
            f"{len(s['one_piece'])} are one piece ({', '.join(s['one_piece']).lower() or 'none'}); "
            f"{len(s['pieces_not_in_paired_text'])} of their pieces never occur in the paired text "
            f"({' '.join(s['pieces_not_in_paired_text']) or 'none'}; used by "
            f"{len(s['words_using_them'])} words): the decoder learns those from text-only batches alone."]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=".", help="recipe dir (default: .)")
    ap.add_argument("--paired-set", default="train", help="the paired training set's data dir name")
    ap.add_argument("--out", help="also write the summary as JSON here (temp name, then renamed)")
    args = ap.parse_args(argv)
    try:
        s = summarize(Path(args.recipe), args.paired_set)
    except (OSError, ValueError) as e:
        print(f"heldout_data: {e}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.out) as f:
            json.dump(s, f, indent=1, sort_keys=True)
    print("\n".join(describe(s)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
