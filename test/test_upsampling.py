"""Text length at the shared encoder (none / repeat / durations), the duration predictor,
the explicit aligner and its durations files: checked against closed forms and brute force."""
import json
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from synthetic_data import write_lang_dir, write_paired_set
from test_models import make_batch, small_config
from toolkit.data.durations import durations_file, read_durations, write_durations
from toolkit.losses import alignment_kinds as kinds
from toolkit.models import build_model
from toolkit.models.upsampling import DurationPredictor, upsample
from toolkit.train.config import check_and_fill, fill_model_defaults
from toolkit.train.dataset import PairedDataset
from toolkit.train.launch import resolve_repeat
from toolkit.utils.config import ConfigError
from toolkit.utils.fileio import InputError


def upsample_reference(x, lens, durations):
    """Per example, torch.repeat_interleave of the valid positions."""
    outs = [x[b, : int(lens[b])].repeat_interleave(durations[b, : int(lens[b])], dim=0) for b in range(x.shape[0])]
    return outs


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 4), m=st.integers(1, 7), seed=st.integers(0, 9999))
def test_upsample_repeats_each_valid_position_by_its_duration(B, m, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, m, 3, generator=g)
    lens = torch.randint(1, m + 1, (B,), generator=g)
    d = torch.randint(0, 4, (B, m), generator=g)
    d[:, 0] = 1  # every example at least one frame
    y, y_lens = upsample(x, lens, d)
    for b, ref in enumerate(upsample_reference(x, lens, d)):
        assert int(y_lens[b]) == ref.shape[0] == int(d[b, : int(lens[b])].sum())  # durations sum to the length
        assert torch.equal(y[b, : ref.shape[0]], ref)
        assert y[b, ref.shape[0]:].abs().sum() == 0


def test_repeat_is_exact_repetition_r_times():
    model = build_model(small_config(text_upsampling="repeat", text_upsampling_conf={"repeat": 3}))
    x, lens = torch.randn(2, 5, 16), torch.tensor([5, 2])
    y, y_lens = model._upsample_text(x, lens)
    assert y_lens.tolist() == [15, 6]
    assert torch.equal(y[0], x[0].repeat_interleave(3, dim=0))
    assert torch.equal(y[1, :6], x[1, :2].repeat_interleave(3, dim=0))


def test_repeat_zero_is_resolved_from_the_paired_data_as_mean_frames_per_phone(tmp_path):
    write_paired_set(tmp_path / "train", 12, seed=3)
    ds = PairedDataset(tmp_path / "train")
    conf = fill_model_defaults(check_and_fill({**small_config(text_upsampling="repeat")}))
    assert conf["model_conf"]["text_upsampling_conf"]["repeat"] == 0
    phones = np.asarray(ds.store.phone_lens)[ds.seq_index]
    want = round(ds.encoder_frames().sum() / phones.sum())
    assert resolve_repeat(conf, ds)["model_conf"]["text_upsampling_conf"]["repeat"] == max(1, want)
    with pytest.raises(ConfigError, match="repeat"):
        build_model(conf)  # unresolved: a model cannot be built with r = 0


def test_text_only_batches_enter_the_shared_encoder_upsampled(monkeypatch):
    seen = []
    for kind, conf in (("none", {}), ("repeat", {"repeat": 2}), ("durations", {})):
        torch.manual_seed(0)
        model = build_model(small_config(text_upsampling=kind, text_upsampling_conf=conf))
        model.train()
        orig = model.shared_encoder.forward
        monkeypatch.setattr(model.shared_encoder, "forward", lambda x, lens, **k: (seen.append(lens.tolist()),
                                                                                orig(x, lens, **k))[1])
        model(make_batch("text"))
    assert seen[0] == [9, 6, 4] and seen[1] == [18, 12, 8]
    assert all(a >= b for a, b in zip(seen[2], [9, 6, 4]))  # predicted durations: at least one frame each


def test_durations_model_trains_its_predictor_on_the_aligner_durations_only():
    torch.manual_seed(0)
    model = build_model(small_config(text_upsampling="durations"))
    out = model(make_batch("paired"), cons_layers=["encoder"])
    assert out["text_lens"].tolist() == [21, 16, 11]  # the aligner's durations: text at speech length
    out["duration"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.text_encoder.parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.duration_predictor.parameters()) > 0


def test_duration_predictor_overfits_a_toy_set():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 8)
    lens = torch.tensor([6, 5, 4, 6])
    target = torch.randint(1, 6, (4, 6))
    pred = DurationPredictor(8, channels=32)
    opt = torch.optim.Adam(pred.parameters(), lr=1e-2)
    for _ in range(300):
        loss = pred.loss(x, lens, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    got = pred.durations(x, lens)
    mask = torch.arange(6)[None] < lens[:, None]
    assert torch.equal(got[mask], target[mask])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 9999))
def test_durations_path_and_durations_from_path_invert_each_other(seed):
    rng = random.Random(seed)
    m = rng.randint(1, 6)
    d = [rng.randint(1, 4) for _ in range(m)]
    n = sum(d)
    path = kinds.durations_path(torch.tensor([d + [0]]), torch.tensor([n]), n + 2)
    assert kinds.durations_from_path(path, torch.tensor([m])) == [d]


def test_ctc_viterbi_durations_sum_to_the_frames_and_cover_every_phone():
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(2, 12, 6, generator=g).log_softmax(-1)
    labels, label_lens, frames = torch.tensor([[1, 2, 2, 3], [4, 5, 0, 0]]), torch.tensor([4, 2]), torch.tensor([12, 7])
    path, fallbacks = kinds.ctc_forced_path(lp, frames, labels, label_lens)
    d = kinds.durations_from_path(path, label_lens)
    assert fallbacks == [] and [sum(x) for x in d] == [12, 7] and all(min(x) >= 1 for x in d)


def test_durations_files_round_trip_and_bad_lines_name_the_utterance(tmp_path):
    path = durations_file(tmp_path, "dump/train")
    assert path.name == "durations_train.txt"
    write_durations(path, {"b": [1, 2], "a": [3]})
    got = read_durations(path)
    assert list(got) == ["a", "b"] and got["b"].tolist() == [1, 2]
    path.write_text("a 1 x\n")
    with pytest.raises(InputError, match="utterance a"):
        read_durations(path)


def test_paired_dataset_refuses_durations_that_do_not_fit_its_utterances(tmp_path):
    uttids = write_paired_set(tmp_path / "train", 3, seed=1)
    ds = PairedDataset(tmp_path / "train")
    good = {}
    for i, u in enumerate(ds.uttids):
        m, n = int(ds.store.phone_lens[ds.seq_index[i]]), int(ds.encoder_frames()[i])
        good[u] = [(j + 1) * n // m - j * n // m for j in range(m)] if n >= m else [1] * m
    write_durations(tmp_path / "d.txt", good)
    if not ds.infeasible:
        assert PairedDataset(tmp_path / "train", durations=tmp_path / "d.txt")[0]["durations"].sum() > 0
    bad = dict(good)
    bad[uttids[0]] = good[uttids[0]][:-1]
    write_durations(tmp_path / "d.txt", bad)
    with pytest.raises(InputError, match=uttids[0]):
        PairedDataset(tmp_path / "train", durations=tmp_path / "d.txt")


def test_the_aligner_learns_and_its_durations_fit_the_data(tmp_path):
    """A few epochs on synthetic features: its CTC loss falls and every utterance gets durations
    summing to its encoder frames (the end-to-end path of toolkit.bin.train_aligner)."""
    from toolkit.bin.train_aligner import main
    torch.set_num_threads(1)
    for name, n, seed in (("train", 16, 0), ("dev", 4, 1)):
        write_paired_set(tmp_path / name, n, seed=seed, num_phones=8, min_frames=120, max_frames=160)
    write_lang_dir(tmp_path / "lang", num_phones=8)
    args = ["--train-data", str(tmp_path / "train"), "--valid-data", str(tmp_path / "dev"), "--cmvn",
            str(tmp_path / "train" / "cmvn.ark"), "--lang-dir", str(tmp_path / "lang"), "--out", str(tmp_path / "al"),
            "--align-data", str(tmp_path / "train"), "--align-data", str(tmp_path / "dev"), "--epochs", "3",
            "--num-threads", "1"]
    assert main(args) == 0
    assert "phone error rate" in (tmp_path / "al" / "report.md").read_text()
    losses = json.loads((tmp_path / "al" / "report.json").read_text())["epoch_ctc_per_phone"]
    assert losses[-1] < losses[0]
    ds = PairedDataset(tmp_path / "dev", durations=tmp_path / "al" / "durations_dev.txt")
    assert len(ds.durations) == 4
    assert main(args) == 0  # a finished run with the same settings is skipped
