"""The study report's plots: WER by condition (dots per seed), per-layer consistency over training."""
from __future__ import annotations

import statistics
from pathlib import Path

from toolkit.utils.fileio import atomic_write


def plot_wer(by_cond, order, decodes, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = [d for d in decodes if "dev" not in d] or decodes
    fig, axes = plt.subplots(1, len(tests), figsize=(4.5 * len(tests), 3.6), squeeze=False)
    for ax, d in zip(axes[0], tests):
        for i, name in enumerate(order):
            wers = [c["decodes"][d]["wer"] for c in by_cond[name]]
            ax.errorbar([i], [statistics.mean(wers)], yerr=[statistics.stdev(wers) if len(wers) > 1 else 0],
                        fmt="o", capsize=4)
            ax.plot([i] * len(wers), wers, ".", color="grey", alpha=0.6)
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
        ax.set_title(d)
        ax.set_ylabel("WER %")
    fig.tight_layout()
    with atomic_write(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def plot_over_training(over: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(over), figsize=(5 * len(over), 3.6), squeeze=False, sharey=True)
    for ax, (name, steps) in zip(axes[0], over.items()):
        order = sorted(steps, key=int)
        for layer in [r["layer"] for r in steps[order[0]]["layers"]]:
            ys = [next(r["matched_ratio"] for r in steps[s]["layers"] if r["layer"] == layer) for s in order]
            ax.plot([int(s) for s in order], ys, "o-", label=layer)
        ax.set_title(f"{name}: best / mismatched")
        ax.set_xlabel("training step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
