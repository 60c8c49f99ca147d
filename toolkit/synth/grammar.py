"""Sentence generator: a small random grammar with gender agreement, read from YAML.

A grammar file (``toolkit/resources/grammar/<lang>.yaml``) holds

- ``words``: plain word lists per category (``agent_m: [farmer, ...]``). An entry may be
  several words ("in the kitchen") or inflected forms ``m|f|n`` picked by gender.
- ``rules``: upper-case symbols, each a list of alternatives. In an alternative,
  ``{name}`` expands a rule or picks a word, ``[ ... ]`` is an optional segment.
- ``genders``: e.g. ``[m, f, n]``. Each alternative draws one gender that all its slots
  agree on: ``{agent}`` reads ``agent_<g>`` when that list exists, ``a|b|c`` entries give
  the form of gender ``g``. Nested rules draw their own gender.
- ``rewrites``: regex substitutions applied to the finished sentence (elision, "de le"->"du").

Sentences come out lower-case with punctuation ("," "?" "." from the rules); callers
format them per corpus layout with :func:`format_text`.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from toolkit.data.corpora import normalize_sentence
from toolkit.utils.config import load_yaml

GRAMMAR_DIR = Path(__file__).resolve().parents[1] / "resources" / "grammar"
_SLOT = re.compile(r"\{([A-Za-z_]+)\}")
_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
_PUNCT = re.compile(r"[^\w\s']", re.UNICODE)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
MAX_DEPTH = 8


def available_languages() -> list[str]:
    return sorted(p.stem for p in GRAMMAR_DIR.glob("*.yaml"))


@dataclass
class Grammar:
    lang: str
    words: dict[str, list[str]]
    rules: dict[str, list[str]]
    genders: list[str]
    rewrites: list[tuple[re.Pattern, str]]
    start: str = "S"
    optional_p: float = 0.5
    word_separator: str = " "   # "" for languages written without spaces (Chinese)
    max_words: int = 20         # after normalisation (Chinese: characters)

    @classmethod
    def load(cls, lang: str, path: str | Path | None = None) -> "Grammar":
        path = Path(path) if path is not None else GRAMMAR_DIR / f"{lang}.yaml"
        if not path.exists():
            raise FileNotFoundError(f"no grammar for language '{lang}' ({path}); have: {available_languages()}")
        cfg = load_yaml(path)
        for cat, entries in cfg["words"].items():
            bad = [w for w in entries if not isinstance(w, str)]
            if bad:  # YAML 1.1 reads on/off/yes/no as booleans: such words must be quoted
                raise ValueError(f"{path}: words.{cat}: {bad} are not strings (quote them)")
        words = {k: [str(w).strip().lower() for w in v] for k, v in cfg["words"].items()}
        g = cls(lang=cfg.get("language", lang), words=words,
                rules={k: [str(a) for a in v] for k, v in cfg["rules"].items()},
                genders=[str(x) for x in cfg.get("genders", [])],
                rewrites=[(re.compile(a), b) for a, b in cfg.get("rewrites", [])],
                optional_p=float(cfg.get("optional_p", 0.5)), word_separator=str(cfg.get("word_separator", " ")),
                max_words=int(cfg.get("max_words", 20)))
        g.check(path)
        return g

    def _slot_list(self, name: str, gender: str | None) -> list[str] | None:
        if gender is not None and f"{name}_{gender}" in self.words:
            return self.words[f"{name}_{gender}"]
        return self.words.get(name)

    def _genders_for(self, alternative: str) -> list[str | None]:
        """Genders every word slot of this alternative can agree on."""
        if not self.genders:
            return [None]
        names = [n for n in _SLOT.findall(alternative) if n not in self.rules]
        return [g for g in self.genders if all(self._slot_list(n, g) is not None for n in names)]

    def check(self, path) -> None:
        """Every slot resolves, every word list is reachable, no alternative is impossible."""
        used = set()
        for sym, alts in self.rules.items():
            for alt in alts:
                for name in _SLOT.findall(alt):
                    if name in self.rules:
                        continue
                    lists = [k for k in self.words
                             if k == name or (k.rsplit("_", 1)[0] == name and k.rsplit("_", 1)[-1] in self.genders)]
                    if not lists:
                        raise ValueError(f"{path}: rule {sym}: slot {{{name}}} is neither a rule nor a word list")
                    used.update(lists)
                if not self._genders_for(alt):
                    raise ValueError(f"{path}: rule {sym}: no gender fits every slot of '{alt}'")
        for cat, entries in self.words.items():
            bad = [e for e in entries if "|" in e and len(e.split("|")) != len(self.genders)]
            if bad:
                raise ValueError(f"{path}: words.{cat}: {bad[0]!r} needs one form per gender {self.genders}")
        unused = sorted(set(self.words) - used)
        if unused:
            raise ValueError(f"{path}: word lists never used by a rule: {unused}")
        if self.start not in self.rules:
            raise ValueError(f"{path}: no start rule '{self.start}'")

    def vocabulary(self) -> set[str]:
        """Every word the lists can produce (inflected forms split, punctuation dropped)."""
        vocab = set()
        for entries in self.words.values():
            for entry in entries:
                vocab.update(_PUNCT.sub(" ", entry.replace("|", " ")).split())
        return vocab

    def expand(self, symbol: str, rng: random.Random, depth: int = 0) -> str:
        if depth > MAX_DEPTH:
            raise RecursionError(f"grammar {self.lang}: rule {symbol} recurses deeper than {MAX_DEPTH}")
        alt = rng.choice(self.rules[symbol])
        gender = rng.choice(self._genders_for(alt))
        alt = _OPTIONAL.sub(lambda m: m.group(1) if rng.random() < self.optional_p else "", alt)

        def fill(m: re.Match) -> str:
            name = m.group(1)
            if name in self.rules:
                return self.expand(name, rng, depth + 1)
            entry = rng.choice(self._slot_list(name, gender))
            if "|" in entry:
                forms = entry.split("|")
                entry = forms[self.genders.index(gender)]
            return entry

        return _SLOT.sub(fill, alt)

    def sentence(self, rng: random.Random) -> str:
        """One sentence, lower-case, single-spaced, punctuation attached to words."""
        text = " ".join(self.expand(self.start, rng).split())
        text = re.sub(r"\s+([,.?!，。？！])", r"\1", text)
        for pattern, repl in self.rewrites:
            text = pattern.sub(repl, text)
        return text if self.word_separator == " " else text.replace(" ", self.word_separator)


def format_text(sentence: str, style: str) -> str:
    """``upper`` (LibriSpeech), ``lower`` (MLS) or ``written`` (Common Voice: capitalised, punctuated)."""
    if style == "upper":
        return normalize_sentence(sentence).upper()
    if style == "lower":
        return normalize_sentence(sentence)
    if style == "written":
        s = sentence.strip()
        first = next((i for i, c in enumerate(s) if c.isalpha()), 0)  # "¿dónde" -> "¿Dónde"
        s = s[:first] + s[first:first + 1].upper() + s[first + 1:]
        if s[-1:] in ".?!。？！":
            return s
        return s + ("。" if _HAN.search(s) else ".")
    raise ValueError(f"unknown text style '{style}'")


def generate_sentences(grammar: Grammar, n: int, rng: random.Random, exclude: set[str] | None = None,
                       min_words: int = 3, max_words: int | None = None,
                       avoid_words: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """``n`` distinct sentences (by their normalised words), none of them in ``exclude`` and
    none holding a word of ``avoid_words`` (normalised: lower-case)."""
    max_words = max_words or grammar.max_words
    seen = {normalize_sentence(s) for s in exclude or ()}
    out: list[str] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise RuntimeError(f"grammar {grammar.lang}: only {len(out)} distinct sentences after {tries} tries")
        s = grammar.sentence(rng)
        key = normalize_sentence(s)
        words = key.split()
        if key in seen or not (min_words <= len(words) <= max_words) or not avoid_words.isdisjoint(words):
            continue
        seen.add(key)
        out.append(s)
    return out


# word lists whose entries may be held out of the paired speech: nouns, places, names
HELDOUT_CATEGORIES = ("agent", "thing", "place", "name")


def choose_heldout_words(grammar: Grammar, n: int, rng: random.Random) -> list[str]:
    """``n`` single words from the noun, place and name lists, spread over them in proportion
    to their sizes (at least one from each while n allows), sorted. Multi-word and inflected
    (``m|f``) entries are never chosen."""
    pools = {}
    for cat in HELDOUT_CATEGORIES:
        lists = [k for k in grammar.words
                 if k == cat or (k.rsplit("_", 1)[0] == cat and k.rsplit("_", 1)[-1] in grammar.genders)]
        pools[cat] = sorted({e for k in lists for e in grammar.words[k] if "|" not in e and len(e.split()) == 1})
    total = sum(len(p) for p in pools.values())
    if n > total:
        raise ValueError(f"grammar {grammar.lang}: cannot hold out {n} words, its noun/place/name lists have {total}")
    share = {c: (min(1, n) if len(p) else 0) for c, p in pools.items()}
    while sum(share.values()) < n:  # give the next word to the list furthest below its share
        c = max(pools, key=lambda c: (len(pools[c]) * n / total - share[c]) if share[c] < len(pools[c]) else -1e9)
        share[c] += 1
    chosen = set()
    for c in HELDOUT_CATEGORIES:
        chosen.update(rng.sample([w for w in pools[c] if w not in chosen], share[c]))
    return sorted(chosen)
