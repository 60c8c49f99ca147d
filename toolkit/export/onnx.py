"""Export a trained joint model to ONNX: the streaming transducer (encoder chunk with explicit
caches, predictor, joiner) and the full-context one (encoder, predictor, joiner).

Files written to ``out_dir``:

    encoder.onnx, decoder.onnx, joiner.onnx               streaming first pass
    encoder_full.onnx, decoder_full.onnx, joiner_full.onnx full-context second pass
    tokens.txt                                            ``piece id``, blank ``<blank>`` = 0

The streaming trio carries the metadata sherpa-onnx's online conformer transducer reads
(model_type, T, decode_chunk_len, pad_length, left_context, num_encoder_layers,
encoder_dim, cnn_module_kernel; vocab_size and context_size on the decoder). What it does
not express: an LSTM predictor (sherpa-onnx's transducer decoders are stateless, fed the
last ``context_size`` labels): such a model exports for onnxruntime only (the decoder then
takes and returns its LSTM state), and ``sherpa_onnx_compatible`` in the encoder metadata
is 0. Features: the encoders read Kaldi fbank computed as toolkit.features.fbank does
(snip_edges, dither 0, 20 Hz..Nyquist mel bins, povey window, samples scaled to the int16
range); with sherpa-onnx that is ``snip_edges=True, high_freq=0, normalize_samples=False``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from toolkit.export.graphs import (FullEncoder, Joiner, LstmPredictorStep, StatelessPredictorStep,
                                   StreamingEncoderChunk)
from toolkit.models.hat import LstmPredictor, StatelessPredictor
from toolkit.nn.subsampling import Conv2dSubsampling
from toolkit.utils.fileio import InputError, atomic_write

OPSET = 17


def _export(module, args, path: Path, input_names, output_names, dynamic_axes, metadata: dict) -> None:
    import onnx
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no torch.export
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(proto, str(path))


def streaming_metadata(model, chunk: StreamingEncoderChunk, stateless: bool) -> dict:
    lookahead = Conv2dSubsampling.receptive_field - Conv2dSubsampling.stride
    shift = model.chunk_size * model.audio_encoder.frames_per_output
    return {"model_type": "conformer", "model_author": "concord", "num_encoder_layers": len(chunk.dims),
            "T": shift + lookahead, "decode_chunk_len": shift, "pad_length": lookahead,
            "left_context": chunk.cache_frames, "encoder_dim": max(chunk.dims),
            "cnn_module_kernel": max(chunk.kernels), "frames_per_output": model.audio_encoder.frames_per_output,
            "sherpa_onnx_compatible": int(stateless),
            "feature": "kaldi fbank, snip_edges=1, dither=0, low_freq=20, high_freq=0 (Nyquist), povey window, "
                       "samples x 32768 (sherpa-onnx: normalize_samples=False); global CMVN folded in"}


def predictor_graph(decoder, batch: int):
    """(module, example args, input/output names, dynamic axes, metadata) of a decoder's step."""
    p = decoder.predictor
    axes = {"y": {0: "N"}, "decoder_out": {0: "N"}}
    if isinstance(p, StatelessPredictor):
        y = torch.zeros(batch, p.context_size, dtype=torch.long)
        return (StatelessPredictorStep(decoder), (y,), ["y"], ["decoder_out"], axes,
                {"vocab_size": decoder.vocab_size, "context_size": p.context_size})
    if isinstance(p, LstmPredictor):
        y = torch.zeros(batch, 1, dtype=torch.long)
        h = torch.zeros(p.num_layers, batch, p.output_dim)
        axes.update({"h": {1: "N"}, "c": {1: "N"}, "next_h": {1: "N"}, "next_c": {1: "N"}})
        return (LstmPredictorStep(decoder), (y, h, h.clone()), ["y", "h", "c"], ["decoder_out", "next_h", "next_c"],
                axes, {"vocab_size": decoder.vocab_size, "context_size": 1, "predictor": "lstm",
                       "num_layers": p.num_layers, "hidden_dim": p.output_dim})
    raise InputError("predictor", f"{type(p).__name__} has no ONNX export")


def export_onnx(experiment, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the six graphs and tokens.txt; returns {name: path}."""
    model, cmvn, sp = experiment.model.cpu().eval(), experiment.cmvn, experiment.sp
    if cmvn is None:
        raise InputError("cmvn", "the experiment has no CMVN stats to fold into the encoders")
    if model.audio_encoder.conformer.left_chunks < 0:
        raise InputError("left_chunks", "an encoder with unlimited left context (left_chunks -1) has no "
                                        "fixed-size cache to export; train with left_chunks >= 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    feat_dim = len(cmvn.mean)
    chunk = StreamingEncoderChunk(model, cmvn)
    meta = streaming_metadata(model, chunk, isinstance(model.stream_decoder.predictor, StatelessPredictor))
    x = torch.zeros(1, meta["T"], feat_dim)
    attn = torch.zeros(len(chunk.dims), chunk.cache_frames, 1, max(chunk.dims))
    conv = torch.zeros(len(chunk.dims), max(chunk.kernels) - 1, 1, max(chunk.dims))
    paths = {name: out / f"{name}.onnx" for name in
             ("encoder", "decoder", "joiner", "encoder_full", "decoder_full", "joiner_full")}
    with torch.no_grad():
        _export(chunk, (x, attn, conv, torch.zeros(1, dtype=torch.long)), paths["encoder"],
                ["x", "cached_attn", "cached_conv", "processed_frames"],
                ["encoder_out", "next_cached_attn", "next_cached_conv"],
                {"x": {0: "N", 1: "T"}, "cached_attn": {2: "N"}, "cached_conv": {2: "N"},
                 "processed_frames": {0: "N"}, "encoder_out": {0: "N", 1: "t"},
                 "next_cached_attn": {2: "N"}, "next_cached_conv": {2: "N"}}, meta)
        _export(FullEncoder(model, cmvn), (torch.zeros(2, 64, feat_dim), torch.tensor([64, 50])),
                paths["encoder_full"], ["x", "x_lens"], ["encoder_out", "encoder_out_lens"],
                {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "t"},
                 "encoder_out_lens": {0: "N"}},
                {"model_type": "concord_full", "frames_per_output": model.audio_encoder.frames_per_output,
                 "min_frames": model.audio_encoder.min_frames, "feature": meta["feature"]})
        for suffix, mode in (("", "streaming"), ("_full", "full")):
            decoder = model.decoder(mode)
            module, args, names_in, names_out, axes, dmeta = predictor_graph(decoder, batch=1)
            _export(module, args, paths[f"decoder{suffix}"], names_in, names_out, axes, dmeta)
            J = decoder.joiner.enc_proj.out_features
            _export(Joiner(decoder), (torch.zeros(1, J), torch.zeros(1, J)), paths[f"joiner{suffix}"],
                    ["encoder_out", "decoder_out"], ["logit"],
                    {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logit": {0: "N"}},
                    {"joiner_dim": J, "output": "HAT log-probabilities (normalised), blank = 0"})
    paths["tokens"] = out / "tokens.txt"
    with atomic_write(paths["tokens"]) as f:
        f.writelines(f"{sp.id_to_piece(i)} {i}\n" for i in range(sp.get_piece_size()))
    return paths
