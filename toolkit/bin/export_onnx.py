r"""Export a trained model (experiment dir or packed model) to ONNX for onnxruntime and sherpa-onnx.

Usage:
    concord-export-onnx egs/mini/exp/train exp/train/onnx
    concord-export-onnx mini.concord mini-onnx/

Writes encoder.onnx (one streaming chunk, caches as explicit inputs and outputs),
decoder.onnx and joiner.onnx (the streaming transducer: sherpa-onnx's online conformer
transducer layout and metadata), encoder_full.onnx, decoder_full.onnx and
joiner_full.onnx (the full-context second pass) and tokens.txt. CMVN is folded into the
encoders: feed raw Kaldi fbank as toolkit.features.fbank computes it. With sherpa-onnx
(Python):

    sherpa_onnx.OnlineRecognizer.from_transducer(tokens="out/tokens.txt", encoder="out/encoder.onnx",
        decoder="out/decoder.onnx", joiner="out/joiner.onnx", snip_edges=True, high_freq=0.0,
        normalize_samples=False, decoding_method="greedy_search")

sherpa-onnx emits at most one token per encoder frame and decodes only complete chunks:
add tail padding (e.g. 0.5 s of silence) before input_finished(), as its examples do.
A model with an LSTM predictor exports for onnxruntime only (toolkit.export.runtime).

Check the export with the real runtime (sherpa-onnx) on a data dir's first N utterances:
    concord-export-onnx egs/mini/exp/train exp/train/onnx --check-data egs/mini/data/test_clean --check-num 200
It prints sherpa-onnx's text next to Concord's greedy streaming text (one token per frame,
whole chunks) and exits 1 if any utterance differs.
"""
from __future__ import annotations

import argparse
import sys

from toolkit.utils.cli import cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="experiment dir (exp/<tag>) or packed model")
    p.add_argument("out", help="output directory")
    p.add_argument("--check-data", help="data dir (wav.scp): decode it with sherpa-onnx and with Concord, compare")
    p.add_argument("--check-num", type=int, default=100, help="utterances of --check-data to compare")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from toolkit.decode.transcriber import load_model
    from toolkit.export.onnx import export_onnx
    experiment = load_model(args.model)
    paths = export_onnx(experiment, args.out)
    for name, path in paths.items():
        print(f"{name}\t{path}")
    if args.check_data:
        from toolkit.decode.runner import load_audio, read_references
        from toolkit.export.sherpa_check import compare_with_sherpa
        ids = list(read_references(args.check_data))[:args.check_num]
        res = compare_with_sherpa(experiment, args.out, load_audio(args.check_data, ids))
        for uttid, sherpa, concord in res.examples:
            print(f"{uttid}\n  sherpa-onnx: {sherpa}\n  concord:     {concord}")
        print(f"sherpa-onnx = Concord greedy streaming on {res.identical}/{res.total} utterances "
              f"({res.words} words)" + (f"; differ: {' '.join(res.differing[:10])}" if res.differing else ""))
        return 0 if res.identical == res.total else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
