"""Training throughput (seconds of audio per second) with the consistency loss on and off.

Usage:
    python -m toolkit.bin.bench_train                 # tiny: 6 steps, paper scale: 2 steps (CPU)
    python -m toolkit.bin.bench_train --steps 20 --configs tiny --batch 16x400
    python -m toolkit.bin.bench_train --ngpu 1 --steps 20 --batch 32x1200   # GPU, bf16 autocast

For each model config (toolkit/resources/conf/model_<name>.yaml) it trains on synthetic
random features and phone/token sequences (no corpus needed): full paired steps
(forward, backward, clipping, AdamW) through the trainer's own step code. Steps with
the consistency loss on and off alternate, so load on a shared machine hits both alike;
the first step of each is a warm-up (numba compilation) and is not timed. Prints audio
s/s for both and the overhead ratio (target <= 1.10x), split into its two parts by a third
setting that runs the consistency branch with the alignment loss replaced by zero: the
text pass (the paired phonemes through the text and shared encoders, forward and
backward) and the best-alignment loss itself (cost matrices, DP, path loss). On CPU the paper-scale model runs
a tiny batch for a couple of steps: its numbers say little about GPU training.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import numpy as np
import torch

from toolkit.data.collate import collate_paired
from toolkit.train.config import RESOURCE_CONF, check_and_fill, fill_model_defaults
from toolkit.train.distributed import DistInfo
from toolkit.utils.config import load_yaml
from toolkit.utils.cli import cli
from toolkit.utils.cpu import setup_cpu


NUM_SPECIAL_PHONES = 4  # <pad> <unk> <mask> <wb> (docs/formats.md)


def random_sequences(rng: np.random.Generator, n_frames: int, vocab_size: int, num_phones: int):
    """Phones about one per 8 frames (so n/4 subsampled frames >= phones), tokens fewer."""
    n_ph = max(1, n_frames // 8)
    phones = rng.integers(NUM_SPECIAL_PHONES, num_phones, size=n_ph)
    tokens = rng.integers(2, vocab_size, size=max(1, n_ph // 3))
    return phones, tokens


class _Batches:
    """``n`` distinct random paired batches of B utterances with 75-100% of T frames."""

    def __init__(self, n, batch_size, frames, vocab_size, num_phones, seed=0):
        rng = np.random.default_rng(seed)
        self.batches = []
        for _ in range(n):
            items = []
            for i in range(batch_size):
                t = int(rng.integers(int(frames * 0.75), frames + 1))
                ph, tk = random_sequences(rng, t, vocab_size, num_phones)
                items.append({"uttid": f"u{i}", "feats": rng.standard_normal((t, 80)).astype(np.float32),
                              "phones": ph, "tokens": tk})
            self.batches.append(collate_paired(items))

    def __getitem__(self, i):
        return self.batches[i % len(self.batches)]


def bench_one(name: str, steps: int, batch_size: int, frames: int, vocab_size: int, device: torch.device) -> dict:
    from toolkit.models import build_model
    from toolkit.train.objective import Objective
    from toolkit.train.trainer import build_optimizer
    import toolkit.losses.best_alignment as ba
    real_loss = ba.best_alignment_loss
    conf = check_and_fill({**load_yaml(RESOURCE_CONF / f"model_{name}.yaml"), "vocab_size": vocab_size,
                           "num_phones": 64})
    conf = fill_model_defaults(conf)
    torch.manual_seed(0)
    model = build_model(conf).to(device)
    off = copy.deepcopy(conf["objective"])
    off["consistency"]["weight"] = 0.0
    objectives = {"on": Objective.for_model(conf["objective"], model), "off": Objective.for_model(off, model)}
    objectives["text"] = objectives["on"]
    opt = build_optimizer(model, conf["optim"], conf["optim_conf"])
    amp = torch.bfloat16 if device.type == "cuda" else None
    data = _Batches(4, batch_size, frames, vocab_size, 64)
    settings = ("on", "off", "text")
    times = {c: [] for c in settings}
    audio = {c: 0.0 for c in settings}
    try:  # the stand-in must not outlive the benchmark (tests call main() in-process)
        for i in range(steps + 1):  # step 0: warm-up for every setting
            for cons in settings:
                ba.best_alignment_loss = _zero_alignment_loss if cons == "text" else real_loss
                batch, meta = data[i]
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss = objectives[cons](model, batch)["loss"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), conf["grad_clip"])
                opt.step()
                opt.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i > 0:
                    times[cons].append(time.perf_counter() - t0)
                    audio[cons] += meta["audio_seconds"]
    finally:
        ba.best_alignment_loss = real_loss
    rate = {c: audio[c] / sum(times[c]) for c in settings}
    return {"name": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "on": rate["on"], "off": rate["off"], "ratio": rate["off"] / rate["on"],
            "text_ratio": rate["off"] / rate["text"], "align_ratio": rate["text"] / rate["on"],
            **{f"step_{c}": statistics.median(times[c]) for c in settings}}


def _zero_alignment_loss(speech, speech_lens, text, text_lens, **kwargs):
    """Stand-in for best_alignment_loss that keeps both inputs in the graph at no cost."""
    return (speech.sum() + text.sum()).mul(0.0).expand(speech.shape[0]), None


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=None, help="timed steps per setting (default: 6 tiny, 2 paper)")
    p.add_argument("--configs", default="tiny,paper", help="model configs: model_<name>.yaml")
    p.add_argument("--batch", default=None, help="BxT: utterances x max frames (default: 8x400 tiny; 2x300 paper"
                                                 " on CPU, 16x1000 on GPU)")
    p.add_argument("--vocab-size", type=int, default=256)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    setup_cpu(args.threads or 0)  # as training does
    device = torch.device("cuda" if args.ngpu > 0 else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --ngpu 1 but no CUDA device", file=sys.stderr)
        return 2
    where = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads; paper scale with a tiny batch: indicative only)"
    print(f"device: {where}")
    print(f"{'config':8} {'params':>8} {'batch':>9} {'steps':>5} {'cons on':>12} {'cons off':>12} "
          f"{'overhead':>9} {'text pass':>9} {'alignment':>9}")
    for name in args.configs.split(","):
        default_batch = "8x400" if name == "tiny" else ("16x1000" if device.type == "cuda" else "2x300")
        b, t = (int(x) for x in (args.batch or default_batch).split("x"))
        steps = args.steps or (6 if name == "tiny" else 2)
        r = bench_one(name, steps, b, t, args.vocab_size, device)
        print(f"{name:8} {r['params_m']:7.1f}M {b:>4}x{t:<4} {steps:>5} {r['on']:9.1f} s/s {r['off']:9.1f} s/s "
              f"{r['ratio']:8.3f}x {r['text_ratio']:8.3f}x {r['align_ratio']:8.3f}x", flush=True)
    print("audio seconds trained per wall second; overhead = (cons off) / (cons on), target <= 1.10x;\n"
          "overhead = text pass x alignment: text pass = paired phonemes through the text and shared\n"
          "encoders (forward + backward), alignment = cost matrices + DP + path loss")
    return 0


if __name__ == "__main__":
    sys.exit(main())
