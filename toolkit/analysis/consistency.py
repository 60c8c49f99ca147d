"""Per-layer consistency analysis: speech-text distance under the best alignment vs baselines.

For each layer in ``model.consistency_representations(...)`` and each utterance it
measures the mean squared speech-text distance (normalised like the loss) under
  best        the best frames_to_tokens alignment (the consistency loss itself),
  uniform     the frame-wise uniform stretch: frame i -> token floor(i m / n),
  random      uniformly random valid frames_to_tokens alignments (mean of a few),
  mismatched  the best alignment to another utterance's text (the next in the batch).
best <= uniform and best <= random hold by construction (both are valid alignments of
the same pattern), so they say nothing alone; what tells models apart is how far best
sits below mismatched (``best/mismatched``, the per-utterance ratio, mean and standard
deviation over utterances: 1 means the representation does not know which transcript
belongs to the audio) and how that changes with training and depth. Utterances with fewer
frames than text positions are left out and counted.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from toolkit.losses.alignment_kinds import uniform_path
from toolkit.losses.best_alignment import AlignmentPath, best_alignment_loss, normalize_cost, path_cost
from toolkit.utils.fileio import atomic_write

KINDS = ("best", "uniform", "random", "mismatched")


def random_path(n_lens: torch.Tensor, m_lens: torch.Tensor, K: int, generator: torch.Generator) -> AlignmentPath:
    """A uniformly random monotone alignment per example: each token >= 1 frame (needs n >= m)."""
    B = len(n_lens)
    tokens = torch.full((B, K), -1, dtype=torch.long)
    for b, (n, m) in enumerate(zip(n_lens.tolist(), m_lens.tolist())):
        step = torch.zeros(n, dtype=torch.long)
        step[1 + torch.randperm(n - 1, generator=generator)[: m - 1]] = 1  # frames where the token advances
        tokens[b, :n] = torch.cumsum(step, 0)
    frames = torch.where(tokens >= 0, torch.arange(K)[None, :], -1)
    return AlignmentPath(frames, tokens, n_lens.clone(), torch.full((B,), math.nan))


def layer_distances(reps: Sequence[tuple], normalize: str = "frames", n_random: int = 4,
                    generator: torch.Generator | None = None) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """reps: the list from ``model.consistency_representations``: (name, speech (B, n, d),
    speech_lens (B,), text (B, m, d), text_lens (B,)). Returns per layer
    ``(name, {kind: (B,) float32})``; NaN where an utterance has n < m (or B == 1 for
    "mismatched")."""
    generator = generator or torch.Generator().manual_seed(0)
    out = []
    with torch.no_grad():
        for name, speech, s_lens, text, t_lens in reps:
            speech, text = speech.float().cpu(), text.float().cpu()
            s_lens, t_lens = s_lens.long().cpu(), t_lens.long().cpu()
            B, n, d = speech.shape
            ok = s_lens >= t_lens  # (B,)
            res = {k: torch.full((B,), math.nan) for k in KINDS}
            if ok.any():
                sp, sl, tx, tl = speech[ok], s_lens[ok], text[ok], t_lens[ok]
                res["best"][ok] = best_alignment_loss(sp, sl, tx, tl, normalize=normalize)[0]
                uni = path_cost(sp, tx, uniform_path(sl, tl, n))
                res["uniform"][ok] = normalize_cost(uni, sl, tl, d, normalize)
                rand = sum(path_cost(sp, tx, random_path(sl, tl, n, generator)) for _ in range(n_random))
                res["random"][ok] = normalize_cost(rand / n_random, sl, tl, d, normalize)
            if B > 1:
                other = torch.roll(torch.arange(B), -1)  # utterance b against the text of b + 1
                res["mismatched"] = best_alignment_loss(speech, s_lens, text[other], t_lens[other],
                                                        normalize=normalize, fallback="dtw")[0]
                res["mismatched"][~ok] = math.nan
            out.append((name, res))
    return out


@dataclass(frozen=True)
class LayerSummary:
    layer: str
    utterances: int
    best: float
    uniform: float
    random: float
    mismatched: float
    matched_ratio: float = math.nan      # mean over utterances of best / mismatched
    matched_ratio_sd: float = math.nan   # its standard deviation over utterances


class ConsistencyTable:
    """Accumulates :func:`layer_distances` over batches; ``rows()`` gives per-layer means."""

    def __init__(self):
        self._values: dict[str, dict[str, list[torch.Tensor]]] = {}

    def add(self, distances: list[tuple[str, dict[str, torch.Tensor]]]) -> None:
        for name, res in distances:
            layer = self._values.setdefault(name, {k: [] for k in KINDS})
            for k in KINDS:
                layer[k].append(res[k])

    def rows(self) -> list[LayerSummary]:
        rows = []
        for name, layer in self._values.items():
            vals = {k: torch.cat(v) for k, v in layer.items()}
            used = int((~vals["best"].isnan()).sum())
            ratio = vals["best"] / vals["mismatched"]
            ratio = ratio[~ratio.isnan()]
            sd = float(ratio.std()) if len(ratio) > 1 else math.nan
            rows.append(LayerSummary(name, used, *(float(vals[k].nanmean()) for k in KINDS),
                                     float(ratio.mean()) if len(ratio) else math.nan, sd))
        return rows


def write_report(rows: Sequence[LayerSummary], out_dir: str | os.PathLike, title: str = "") -> dict[str, Path]:
    """Write consistency.{tsv,md,json,png} into ``out_dir``."""
    out = Path(out_dir)
    header = ["layer", "utterances", *KINDS, "best/uniform", "best/mismatched (sd)"]
    lines = [[r.layer, str(r.utterances), *(f"{getattr(r, k):.6g}" for k in KINDS),
              f"{r.best / r.uniform:.3f}" if r.uniform else "nan",
              f"{r.matched_ratio:.3f} ({r.matched_ratio_sd:.3f})"] for r in rows]
    paths = {"tsv": out / "consistency.tsv", "md": out / "consistency.md", "png": out / "consistency.png",
             "json": out / "consistency.json"}
    with atomic_write(paths["json"]) as f:
        json.dump({"title": title, "layers": [dataclasses.asdict(r) for r in rows]}, f, indent=1)
    with atomic_write(paths["tsv"]) as f:
        f.write("\t".join(header) + "\n" + "".join("\t".join(x) + "\n" for x in lines))
    with atomic_write(paths["md"]) as f:
        f.write(f"# Consistency per layer{': ' + title if title else ''}\n\n"
                "Mean squared speech-text distance (normalised like the loss); lower is closer.\n\n"
                "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
                + "".join("| " + " | ".join(x) + " |\n" for x in lines))
    _plot(rows, paths["png"], title)
    return paths


def _plot(rows, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(rows) + 2), 3.6))
    x = range(len(rows))
    for k, style in zip(KINDS, ("o-", "s--", "^:", "x-.")):
        ax.plot(x, [getattr(r, k) for r in rows], style, label=k)
    ax.set_xticks(list(x), [r.layer for r in rows], rotation=30, ha="right")
    ax.set_ylabel("mean consistency distance")
    ax.set_title(title or "consistency per layer")
    ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
