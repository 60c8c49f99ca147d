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
"""
from __future__ import annotations

import argparse
import sys

from toolkit.utils.cli import cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="experiment dir (exp/<tag>) or packed model")
    p.add_argument("out", help="output directory")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from toolkit.decode.transcriber import load_model
    from toolkit.export.onnx import export_onnx
    paths = export_onnx(load_model(args.model), args.out)
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
