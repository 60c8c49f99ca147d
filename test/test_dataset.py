"""Datasets (paired, text-only), collation, language-balanced weights, SpecAugment."""
import logging

import numpy as np
import pytest
import torch

from toolkit.data.collate import collate_paired, collate_text
from toolkit.features.cmvn import GlobalCMVN
from toolkit.train.dataset import PairedDataset, TextDataset
from toolkit.utils.kaldi_map import read_kaldi_map, write_kaldi_map
from toolkit.features.specaug import SpecAugment
from toolkit.text.seqstore import SeqStore
from synthetic_data import write_paired_set, write_seqstore, write_text_set
from toolkit.utils.fileio import InputError


@pytest.fixture
def paired_dir(tmp_path):
    write_paired_set(tmp_path / "train", 6, seed=0)
    return tmp_path / "train"


def test_paired_items_match_features_and_sequences_by_uttid(paired_dir):
    ds = PairedDataset(paired_dir, None)
    store = SeqStore(paired_dir / "seq")
    for i in range(len(ds)):
        item = ds[i]
        _, phones, tokens = store[store.index_of(item["uttid"])]
        assert item["feats"].shape == (ds.num_frames[i], 80)
        assert np.array_equal(item["phones"], phones) and np.array_equal(item["tokens"], tokens)


def test_cmvn_normalises_the_training_set(paired_dir):
    ds = PairedDataset(paired_dir, GlobalCMVN.load(paired_dir / "cmvn.ark"))
    feats = np.concatenate([ds[i]["feats"] for i in range(len(ds))])
    assert np.allclose(feats.mean(0), 0, atol=1e-4) and np.allclose(feats.std(0), 1, atol=1e-3)


def test_mismatched_utterances_are_reported_with_counts(paired_dir, caplog):
    frames = read_kaldi_map(paired_dir / "utt2num_frames")
    store = SeqStore(paired_dir / "seq")
    items = [store[i] for i in range(len(store))]
    items = items[1:] + [("zzz-9-0", np.array([5]), np.array([3])), ("zzz-9-1", np.array([], int), np.array([4]))]
    write_seqstore(paired_dir / "seq", items)  # first utterance loses its text; two text-only extras
    write_kaldi_map(paired_dir / "utt2num_frames", frames)
    scp = (paired_dir / "feats.scp").read_text().splitlines()
    first_feat_line = scp[1].split(maxsplit=1)[1]
    (paired_dir / "feats.scp").write_text("\n".join(scp + [f"zzz-9-1 {first_feat_line}"]) + "\n")
    with open(paired_dir / "utt2num_frames", "a") as f:
        f.write(f"zzz-9-1 {frames[scp[1].split()[0]]}\n")
    with caplog.at_level(logging.WARNING):
        ds = PairedDataset(paired_dir, None)
    r = ds.report
    assert (r.matched, r.feats_without_seq, r.seq_without_feats, r.empty_seq) == (5, 1, 1, 1)
    assert "1 with features but no sequence" in caplog.text and "1 with empty phones/tokens" in caplog.text


def test_missing_utt2num_frames_entry_names_file_and_utterance(paired_dir):
    frames = read_kaldi_map(paired_dir / "utt2num_frames")
    victim = sorted(frames)[2]
    del frames[victim]
    write_kaldi_map(paired_dir / "utt2num_frames", frames)
    with pytest.raises(InputError, match=f"utt2num_frames.*{victim}"):
        PairedDataset(paired_dir, None)


def test_wrong_frame_count_names_the_utterance(paired_dir):
    frames = read_kaldi_map(paired_dir / "utt2num_frames")
    victim = sorted(frames)[0]
    frames[victim] = str(int(frames[victim]) + 1)
    write_kaldi_map(paired_dir / "utt2num_frames", frames)
    ds = PairedDataset(paired_dir, None)
    with pytest.raises(InputError, match=f"{victim}.*utt2num_frames says"):
        ds[ds.uttids.index(victim)]


def test_text_dataset_is_memory_mapped_and_reports_empty_as_zero_length(tmp_path):
    write_text_set(tmp_path / "text_only", 20)
    ds = TextDataset(tmp_path / "text_only" / "seq")
    assert isinstance(ds[3]["phones"], np.memmap)  # a view of the file, not a loaded copy
    assert np.array_equal(ds.lengths(), np.asarray(ds.phone_lens))


def test_collate_pads_with_zero_and_counts_audio_seconds():
    items = [{"uttid": "a", "feats": np.ones((3, 80), np.float32), "phones": np.array([5, 6]), "tokens": np.array([7])},
             {"uttid": "b", "feats": np.ones((5, 80), np.float32), "phones": np.array([5]), "tokens": np.array([8, 9])}]
    batch, meta = collate_paired(items)
    assert batch["kind"] == "paired" and batch["feats"].shape == (2, 5, 80)
    assert batch["feats"][0, 3:].abs().sum() == 0 and batch["feat_lens"].tolist() == [3, 5]
    assert batch["phones"].tolist() == [[5, 6], [5, 0]] and batch["tokens"].tolist() == [[7, 0], [8, 9]]
    assert batch["phones"].dtype == torch.int64 and meta["audio_seconds"] == pytest.approx(0.08)
    assert set(collate_text(items)[0]) == {"kind", "phones", "phone_lens", "tokens", "token_lens"}


def test_specaug_is_deterministic_per_seed_and_leaves_padding_alone():
    feats = torch.randn(3, 120, 80)
    lens = torch.tensor([120, 90, 60])
    feats[1, 90:] = 0
    feats[2, 60:] = 0
    aug = SpecAugment(time_warp_window=5)
    a, b, c = aug(feats, lens, 7), aug(feats, lens, 7), aug(feats, lens, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a[1, 90:].abs().sum() == 0 and a[2, 60:].abs().sum() == 0
    assert (a == 0).any() and a.shape == feats.shape


def test_specaug_masks_are_within_configured_widths():
    feats = torch.ones(1, 100, 80)
    aug = SpecAugment(num_freq_masks=1, freq_mask_width=10, num_time_masks=1, time_mask_width=40,
                      time_mask_max_ratio=0.05)
    for seed in range(30):
        out = aug(feats, torch.tensor([100]), seed)[0]
        zero_cols = int((out == 0).all(0).sum())
        zero_rows = int((out == 0).all(1).sum())
        assert zero_cols <= 10 and zero_rows <= 5  # ratio 0.05 of 100 frames caps the time mask


def test_time_warp_with_window_zero_or_short_input_is_identity():
    x = torch.randn(1, 30, 80)
    none = SpecAugment(num_freq_masks=0, num_time_masks=0, time_warp_window=0)
    assert torch.equal(none(x, torch.tensor([30]), 1), x)
    short = SpecAugment(num_freq_masks=0, num_time_masks=0, time_warp_window=20)
    assert torch.equal(short(x, torch.tensor([30]), 1), x)
