"""The joint model: config, shapes, padding, streaming encoder, both batch kinds, masking."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toolkit.bin import print_model_config
from toolkit.models import build_model, count_parameters, resolve_model_config
from toolkit.models.encoders import MASK_ID
from toolkit.utils.config import ConfigError, load_yaml

CONF_DIR = Path(__file__).resolve().parents[1] / "toolkit" / "resources" / "conf"


def small_config(**model_conf):
    conf = {"chunk_size": 3, "left_chunks": 2,
            "audio_encoder_conf": {"d_model": 16, "n_layers": 1, "n_heads": 2, "subsampling_channels": 4,
                                   "conv_kernel": 5, "dropout": 0.0},
            "text_encoder_conf": {"d_model": 16, "n_layers": 1, "n_heads": 2, "conv_kernel": 5, "dropout": 0.0},
            "shared_encoder_conf": {"d_model": 16, "n_layers": 2, "n_heads": 2, "conv_kernel": 5, "dropout": 0.0},
            "cascaded_encoder_conf": {"d_model": 16, "n_layers": 1, "n_heads": 2, "conv_kernel": 5, "dropout": 0.0},
            "predictor_conf": {"embed_dim": 16, "hidden_dim": 16, "dropout": 0.0},
            "joiner_conf": {"joint_dim": 16}}
    conf.update(model_conf)
    return {"model": "joint", "model_conf": conf, "vocab_size": 20, "num_phones": 15}


def make_batch(kind="paired", seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {"kind": kind, "phones": torch.randint(4, 15, (3, 9), generator=g),
             "phone_lens": torch.tensor([9, 6, 4]),
             "tokens": torch.randint(1, 20, (3, 5), generator=g), "token_lens": torch.tensor([5, 3, 0])}
    if kind == "paired":
        batch.update(feats=torch.randn(3, 90, 80, generator=g), feat_lens=torch.tensor([90, 70, 50]))
        # an aligner's frames per phone: a proportional split of the 21 / 16 / 11 encoder frames
        batch["durations"] = proportional_durations([21, 16, 11], [9, 6, 4], 9)
    return batch


def proportional_durations(frames, phones, width):
    """(B, width) durations: phone j of m gets floor((j+1) n / m) - floor(j n / m) of n frames."""
    d = torch.zeros(len(frames), width, dtype=torch.int64)
    for b, (n, m) in enumerate(zip(frames, phones)):
        d[b, :m] = torch.tensor([(j + 1) * n // m - j * n // m for j in range(m)])
    return d


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(small_config())


def test_encode_shapes_and_lengths(model):
    model.eval()
    b = make_batch()
    for mode in ("streaming", "full"):
        enc, lens = model.encode(b["feats"], b["feat_lens"], mode=mode)
        assert enc.shape == (3, 21, 16) and lens.tolist() == [21, 16, 11]


@pytest.mark.parametrize("mode", ["streaming", "full"])
def test_padding_never_changes_valid_encoder_outputs(model, mode):
    model.eval()
    b = make_batch()
    enc, lens = model.encode(b["feats"], b["feat_lens"], mode=mode)
    for i in range(3):
        n = int(b["feat_lens"][i])
        alone, _ = model.encode(b["feats"][i: i + 1, :n], b["feat_lens"][i: i + 1], mode=mode)
        assert torch.allclose(enc[i, : lens[i]], alone[0], atol=1e-5)


@pytest.mark.parametrize("pieces", [[1] * 60, [7, 13, 2, 30, 8], [60]])
def test_streaming_encoder_equals_whole_utterance(model, pieces):
    model.eval()
    feats = make_batch()["feats"][:1, :60]
    whole, _ = model.encode(feats, torch.tensor([60]), mode="streaming")
    state, outs, start = model.init_stream(1), [], 0
    for n in pieces:
        y, state = model.encode_chunk(feats[:, start: start + n], state)
        assert y.shape[1] % model.chunk_size == 0  # only complete chunks become final
        outs.append(y)
        start += n
    tail, state = model.encode_chunk_final(state)
    streamed = torch.cat(outs + [tail], dim=1)
    assert streamed.shape == whole.shape
    assert torch.allclose(streamed, whole, atol=1e-5)


def test_streaming_encoder_ignores_future_features(model):
    model.eval()
    feats = make_batch()["feats"][:1, :60]
    y, _ = model.encode(feats, torch.tensor([60]), mode="streaming")
    changed = feats.clone()
    cut = model.chunk_size_frames * 2 + model.lookahead_frames  # inputs of the first two chunks
    changed[:, cut:] = torch.randn_like(changed[:, cut:]) * 5
    y2, _ = model.encode(changed, torch.tensor([60]), mode="streaming")
    assert torch.allclose(y[:, : 2 * model.chunk_size], y2[:, : 2 * model.chunk_size], atol=1e-5)
    assert not torch.allclose(y[:, 2 * model.chunk_size:], y2[:, 2 * model.chunk_size:], atol=1e-3)


def test_phoneme_masking_only_in_train_mode_and_only_valid_positions(model):
    enc = model.text_encoder
    phones = torch.randint(4, 15, (64, 50))
    lens = torch.randint(1, 51, (64,))
    masked = enc.mask_phones(phones, lens)
    valid = torch.arange(50)[None] < lens[:, None]
    changed = masked != phones
    assert torch.all(masked[changed] == MASK_ID) and not changed[~valid].any()
    rate = changed[valid].float().mean().item()
    assert 0.1 < rate < 0.3  # mask_rate 0.2 with spans of 2


def test_text_batches_are_masked_and_the_consistency_text_is_not(model):
    seen = []
    hook = model.text_encoder.embed.register_forward_hook(lambda m, inp, out: seen.append(inp[0].clone()))
    try:
        model.train()
        torch.manual_seed(0)
        model(make_batch("text"))
        model(make_batch("paired"), cons_layers=["encoder"])
    finally:
        hook.remove()
    text_ids, paired_ids = seen  # make_batch draws phones from 4..14: MASK_ID only comes from masking
    assert (text_ids == MASK_ID).sum() >= 2 and not (paired_ids == MASK_ID).any()


def test_consistency_representations_cover_every_layer(model):
    model.eval()
    b = make_batch()
    reps = model.consistency_representations(b["feats"], b["feat_lens"], b["phones"], b["phone_lens"])
    assert [r[0] for r in reps] == ["encoder", "shared.1", "shared.2", "cascaded.1"]
    for _, speech, s_lens, text, t_lens in reps:
        assert speech.shape == (3, 21, 16) and text.shape == (3, 9, 16)
        assert s_lens.tolist() == [21, 16, 11] and t_lens.tolist() == [9, 6, 4]


@pytest.mark.parametrize("where,conf", [
    ("model_conf", {"chunk_sise": 4}),
    ("shared_encoder_conf", {"shared_encoder_conf": {"n_layer": 2}}),
    ("predictor_conf", {"predictor": "stateless", "predictor_conf": {"hidden_dim": 8}}),
])
def test_unknown_config_key_is_rejected_by_name(where, conf):
    cfg = small_config()
    cfg["model_conf"] = conf
    bad = next(iter(conf)) if where == "model_conf" else next(iter(next(iter(conf.values())) if where != "predictor_conf" else conf["predictor_conf"]))
    with pytest.raises(ConfigError, match=rf"{where}.*{bad}"):
        build_model(cfg)


def test_keys_the_model_sets_are_rejected_in_component_conf():
    with pytest.raises(ConfigError, match="input_dim"):
        build_model(small_config(cascaded_encoder_conf={"input_dim": 3}))
    with pytest.raises(ConfigError, match="vocab_size"):
        build_model({"model_conf": {}, "num_phones": 5})


def test_resolved_config_rebuilds_the_same_model():
    cfg = small_config(predictor="stateless", predictor_conf={"embed_dim": 16})
    resolved = resolve_model_config(cfg)
    assert resolved["model_conf"]["predictor_conf"] == {"embed_dim": 16, "context_size": 2, "dropout": 0.1}
    assert resolved["model_conf"]["audio_encoder_conf"]["feat_dim"] == 80
    a, b = build_model(cfg), build_model(resolved)
    assert count_parameters(a) == count_parameters(b)


def test_shared_decoder_is_counted_once():
    model = build_model(small_config(share_decoder=True))
    assert model.decoder("streaming") is model.decoder("full")
    counts = count_parameters(model)
    assert counts["full_decoder"] == 0
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_shipped_configs_build_with_expected_sizes():
    tiny = load_yaml(CONF_DIR / "model_tiny.yaml") | {"vocab_size": 256, "num_phones": 60}
    assert 1e6 < count_parameters(build_model(tiny))["total"] < 6e6
    paper = resolve_model_config(load_yaml(CONF_DIR / "model_paper.yaml"))
    assert paper["model_conf"]["shared_encoder_conf"]["d_model"] == 512


def test_print_model_config_names_a_misspelt_key(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model_conf:\n  audio_encoder_conf: {d_modle: 3}\n")
    assert print_model_config.main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "audio_encoder_conf" in err and "d_modle" in err


def test_print_model_config_cli_writes_defaults(tmp_path):
    run = subprocess.run([sys.executable, "-m", "toolkit.bin.print_model_config", "--out", str(tmp_path / "m.yaml")],
                         capture_output=True, text=True)
    assert run.returncode == 0
    printed = load_yaml(tmp_path / "m.yaml")
    assert printed["model_conf"]["cascaded_encoder_conf"]["n_layers"] == 2 and printed["model"] == "joint"


def test_frame_stacking_halves_the_rate_and_still_streams_exactly():
    torch.manual_seed(0)
    cfg = small_config()
    cfg["model_conf"]["audio_encoder_conf"]["stack_frames"] = 2
    model = build_model(cfg).eval()
    assert model.chunk_size_frames == 3 * 8
    feats = make_batch()["feats"][:1, :70]
    whole, lens = model.encode(feats, torch.tensor([70]), mode="streaming")
    assert lens.tolist() == [16 // 2] and whole.shape[1] == 8
    state, outs, start = model.init_stream(1), [], 0
    for n in [5, 11, 1, 30, 23]:
        y, state = model.encode_chunk(feats[:, start: start + n], state)
        outs.append(y)
        start += n
    tail, _ = model.encode_chunk_final(state)
    assert torch.allclose(torch.cat(outs + [tail], dim=1), whole, atol=1e-5)


def test_pruned_transducer_is_selected_from_the_model_config():
    torch.manual_seed(0)
    m = build_model(small_config(transducer="pruned", transducer_conf={"prune_range": 3})).train()
    assert m.stream_decoder.transducer == m.full_decoder.transducer == "pruned"
    out = m(make_batch("paired"))
    loss = out["hat_stream"] + out["hat_full"]
    assert torch.isfinite(loss)
    loss.backward()
    assert m.full_decoder.simple_am_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("recipe", ["librispeech", "multilingual"])
def test_paper_scale_recipes_train_with_the_pruned_transducer(recipe):
    from toolkit.train.config import fill_model_defaults, resolve_config
    conf = resolve_config(Path(__file__).resolve().parents[1] / "egs" / recipe / "conf" / "train.yaml")
    assert conf["objective"]["transducer"] == "pruned"  # the joint network dominates at 4k wordpieces
    model_conf = fill_model_defaults(conf)["model_conf"]
    assert model_conf["transducer"] == "pruned" and model_conf["transducer_conf"]["prune_range"] == 5
