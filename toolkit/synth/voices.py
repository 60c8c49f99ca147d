"""Synthetic speakers: espeak variants crossed with pitch, rate and pitch range.

Held-out speakers: the variants are split three ways, so dev and test speakers use
variants that no training speaker uses (unseen voices, not just unseen prosody).
"""
from __future__ import annotations

import random

from toolkit.synth.espeak import Voice

# espeak-ng variants (voices/!v) that sound like ordinary speakers, with a gender for the
# Common Voice ``gender`` column ("" where the variant is not clearly either).
VARIANTS: dict[str, str] = {
    "f1": "female", "f2": "female", "f3": "female", "f4": "female", "f5": "female",
    "Annie": "female", "belinda": "female", "linda": "female", "anika": "female", "aunty": "female",
    "m1": "male", "m2": "male", "m3": "male", "m4": "male", "m5": "male", "m6": "male", "m7": "male",
    "Alex": "male", "adam": "male", "benjamin": "male", "david": "male", "edward": "male",
    "john": "male", "max": "male", "norbert": "male",
    "klatt": "", "klatt2": "", "klatt3": "", "klatt4": "",
}
PITCH = (25, 75)
RATE = (140, 195)
RANGE = (30, 80)
VOLUME = (35, 55)  # above ~60 the loudest variants (john, klatt4) can clip


def split_variants(rng: random.Random, n_dev: int, n_test: int) -> dict[str, list[str]]:
    """Disjoint variant lists for train/dev/test; held-out splits get about one variant per 2 speakers."""
    names = sorted(VARIANTS)
    rng.shuffle(names)
    k_dev = min(max(1, (n_dev + 1) // 2), 4) if n_dev else 0
    k_test = min(max(1, (n_test + 1) // 2), 4) if n_test else 0
    return {"test": names[:k_test], "dev": names[k_test:k_test + k_dev], "train": names[k_test + k_dev:]}


def make_voices(lang: str, variants: list[str], n: int, rng: random.Random) -> list[Voice]:
    """``n`` distinct voices cycling over ``variants`` with random prosody."""
    if n and not variants:
        raise ValueError("no variants left for this split")
    voices: list[Voice] = []
    seen = set()
    while len(voices) < n:
        v = Voice(lang, variants[len(voices) % len(variants)], rng.randint(*PITCH), rng.randint(*RATE),
                  rng.randint(*RANGE), rng.randint(*VOLUME))
        if (v.variant, v.pitch, v.rate) not in seen:
            seen.add((v.variant, v.pitch, v.rate))
            voices.append(v)
    return voices


def voices_for_splits(lang: str, counts: dict[str, int], rng: random.Random) -> dict[str, list[Voice]]:
    """Voices per split (``counts`` = speakers per split), dev/test variants unseen in train."""
    parts = split_variants(rng, counts.get("dev", 0), counts.get("test", 0))
    return {split: make_voices(lang, parts[split], n, rng) for split, n in counts.items()}
