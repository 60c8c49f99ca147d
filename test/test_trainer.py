"""Trainer: config checks, schedules, checkpoints (corrupt, rotation, averaging), the loop.

Most tests train ``StandInJoint``: a few-parameter module with the joint model's
dict-in/dict-out API that draws from the global RNG (dropout, phone masking) like the
real model, so RNG handling is exercised. One test runs the real model when it exists.
"""
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from toolkit.bin.train import main as train_main
from toolkit.train import checkpoint as ckpt
from toolkit.train.config import check_and_fill, resolve_config
from toolkit.train.schedule import LRSchedule
from synthetic_data import write_lang_dir, write_paired_set, write_text_set
from toolkit.utils.config import ConfigError, dump_yaml
from toolkit.utils.fileio import InputError

REPO = Path(__file__).resolve().parents[1]


class StandInJoint(nn.Module):
    """Bag-of-frames / bag-of-phones classifier with the JointSpeechText forward API."""

    def __init__(self, conf: dict):
        super().__init__()
        d = conf["model_conf"].get("dim", 8)
        self.nan_steps = set(conf["model_conf"].get("nan_at_calls", []))
        self.sleep = conf["model_conf"].get("sleep", 0.0)  # lets tests kill a run mid-way
        self.calls = 0
        self.audio = nn.Linear(80, d)
        self.text = nn.Embedding(conf["num_phones"], d)
        self.out = nn.Linear(d, conf["vocab_size"])
        self.drop = nn.Dropout(conf["model_conf"].get("dropout", 0.2))
        self.mask_rate = conf["model_conf"].get("mask_rate", 0.15)

    def _token_ce(self, h, tokens, token_lens):  # h (B, D); tokens (B, U)
        logp = self.out(h).log_softmax(-1)  # (B, V)
        mask = torch.arange(tokens.shape[1])[None, :] < token_lens[:, None]
        nll = -logp.gather(1, tokens) * mask
        return (nll.sum(1) / token_lens).mean()

    def _text_rep(self, phones, phone_lens):
        keep = (torch.rand(phones.shape) >= self.mask_rate) & (torch.arange(phones.shape[1])[None] < phone_lens[:, None])
        return (self.text(phones) * keep[..., None]).sum(1) / phone_lens[:, None]  # (B, D)

    def forward(self, batch):
        self.calls += 1
        time.sleep(self.sleep)
        txt = self._text_rep(batch["phones"], batch["phone_lens"])
        if batch["kind"] == "text":
            loss = self._token_ce(self.drop(txt), batch["tokens"], batch["token_lens"])
            return {"loss": loss, "hat_text_stream": loss.detach()}
        mask = torch.arange(batch["feats"].shape[1])[None] < batch["feat_lens"][:, None]
        sp = (self.audio(batch["feats"]) * mask[..., None]).sum(1) / batch["feat_lens"][:, None]  # (B, D)
        hat = self._token_ce(self.drop(sp), batch["tokens"], batch["token_lens"])
        cons = ((sp - txt) ** 2).mean()
        loss = hat + 0.1 * cons
        if self.calls in self.nan_steps:
            loss = loss * float("nan")
        return {"loss": loss, "hat_stream": hat.detach(), "cons": cons.detach(), "cons/layer0": cons.detach()}


def build_stand_in(conf):
    return StandInJoint(conf)


def tiny_config(path: Path, **over) -> Path:
    conf = {"model": "stand_in", "model_conf": {}, "seed": 3, "max_epochs": 2,
            "batching": {"max_frames": 600, "max_tokens": 300, "text_ratio": 0.5, "num_workers": 0},
            "scheduler_conf": {"warmup_steps": 3}, "save_every_steps": 4, "keep_last": 2,
            "log_every_steps": 2, "tensorboard": False, "progress_bar": False}
    for k, v in over.items():
        if v is None:
            conf.pop(k, None)
        elif isinstance(v, dict) and isinstance(conf.get(k), dict):
            conf[k] = {**conf[k], **v}
        else:
            conf[k] = v
    dump_yaml(conf, path)
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_paired_set(root / "train", 16, seed=0)
    write_paired_set(root / "dev", 4, seed=9, prefix="dev")
    write_text_set(root / "text_only", 30)
    write_lang_dir(root / "lang")
    return root


def train_args(data: Path, config: Path, exp: Path, *extra) -> list[str]:
    return ["--config", str(config), "--train-data", str(data / "train"), "--valid-data", str(data / "dev"),
            "--text-data", str(data / "text_only"), "--lang-dir", str(data / "lang"),
            "--cmvn", str(data / "train" / "cmvn.ark"), "--exp", str(exp), *extra]


# ---- configuration -----------------------------------------------------------------
def test_unknown_top_level_key_is_rejected_by_name(tmp_path):
    with pytest.raises(ConfigError, match="max_epoch\\b"):
        resolve_config(tiny_config(tmp_path / "c.yaml", max_epoch=3))


def test_unknown_nested_key_is_rejected_by_name(tmp_path):
    with pytest.raises(ConfigError, match="batching.*max_frame\\b"):
        resolve_config(tiny_config(tmp_path / "c.yaml", batching={"max_frame": 3}))


def test_unknown_key_via_set_fails_the_cli(tmp_path, capsys):
    rc = train_main(["--config", str(tiny_config(tmp_path / "c.yaml")), "--set", "optim_conf.learning_rate=1",
                     "--print-config"])
    assert rc == 2
    assert "learning_rate" in capsys.readouterr().err


def test_bad_yaml_in_set_is_one_line_not_a_traceback(tmp_path, capsys):
    rc = train_main(["--config", str(tiny_config(tmp_path / "c.yaml")), "--set", "optim_conf={lr: [1,", "--exp",
                     str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("train: error: --set optim_conf={lr: [1,: invalid YAML")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_yaml_key_given_twice_is_an_error_not_last_one_wins(tmp_path):
    from toolkit.utils.config import load_yaml
    (tmp_path / "c.yaml").write_text("max_epochs: 3\nbatching:\n  max_frames: 10\nmax_epochs: 30\n")
    with pytest.raises(InputError, match=r"c.yaml: invalid YAML: .*key 'max_epochs' appears twice \(first on line 1\)"):
        load_yaml(tmp_path / "c.yaml")


def test_the_optimizer_is_always_fused_and_fused_is_not_a_config_key(tmp_path):
    from toolkit.train.trainer import build_optimizer
    opt = build_optimizer(nn.Linear(2, 2), "adamw", check_and_fill({})["optim_conf"])
    assert opt.defaults["fused"] is True
    with pytest.raises(ConfigError, match="optim_conf.*fused"):
        resolve_config(tiny_config(tmp_path / "c.yaml", optim_conf={"fused": False}))


def test_print_config_fills_defaults_and_lang_sizes(tmp_path, tiny_data, capsys):
    rc = train_main(["--config", str(tiny_config(tmp_path / "c.yaml")), "--lang-dir", str(tiny_data / "lang"),
                     "--set", "optim_conf.lr=2e-3", "--print-config"])
    assert rc == 0
    import yaml
    conf = yaml.safe_load(capsys.readouterr().out)
    assert conf["optim_conf"]["lr"] == 2e-3          # "2e-3" (a YAML string) coerced to float
    assert conf["grad_clip"] == 5.0                  # a default filled in
    assert conf["vocab_size"] == 32 and conf["num_phones"] == 24
    assert conf["lang_dir"] == str((tiny_data / "lang").resolve())


def test_model_config_is_included_and_inline_keys_win(tmp_path):
    dump_yaml({"model": "joint", "model_conf": {"a": 1, "b": 2}}, tmp_path / "model_x.yaml")
    path = tiny_config(tmp_path / "train.yaml", model=None, model_config="model_x.yaml", model_conf={"b": 5})
    conf = resolve_config(path)
    assert conf["model"] == "joint" and conf["model_conf"] == {"a": 1, "b": 5}
    assert "model_config" not in conf


def test_wrong_value_type_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="max_epochs"):
        resolve_config(tiny_config(tmp_path / "c.yaml", max_epochs="many"))


@pytest.mark.parametrize("name", ["noam", "warmup_cosine", "warmup_linear", "constant"])
def test_schedules_warm_up_linearly_to_peak(name):
    s = LRSchedule(name, warmup_steps=10, total_steps=100, min_lr_ratio=0.1)
    assert [round(s(i), 6) for i in range(3)] == [0.1, 0.2, 0.3]
    assert s(9) == pytest.approx(1.0)
    assert s(50) <= 1.0


def test_consistency_warmup_is_off_then_ramps_linearly_then_stays_at_one():
    from toolkit.train.schedule import delayed_ramp
    assert [delayed_ramp(s, 3, 4) for s in range(9)] == [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    assert [delayed_ramp(s, 2, 0) for s in range(4)] == [0, 0, 1, 1]
    assert delayed_ramp(0, 0, 0) == 1.0


def test_cosine_schedule_ends_at_min_ratio():
    s = LRSchedule("warmup_cosine", warmup_steps=10, total_steps=100, min_lr_ratio=0.1)
    assert s(99) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    assert s(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 46 / 90)))


# ---- checkpoints ---------------------------------------------------------------------
def test_checkpoint_roundtrip_with_rng_under_weights_only(tmp_path):
    torch.manual_seed(0)
    import random
    import numpy as np
    weights = nn.Linear(2, 2).state_dict()
    state = {"step": 3, "rng": ckpt.rng_state(), "model": weights}
    path = ckpt.save_checkpoint(tmp_path, 3, state)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = ckpt.load_checkpoint(path)  # weights_only=True inside
    ckpt.set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_keep_last_rotates_old_checkpoints(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(tmp_path, step, {"step": step}, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [3, 4]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_corrupt_latest_checkpoint_is_reported_and_previous_used(tmp_path, caplog):
    ckpt.save_checkpoint(tmp_path, 10, {"step": 10})
    path = ckpt.save_checkpoint(tmp_path, 20, {"step": 20, "w": torch.zeros(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level("ERROR"):
        state, used = ckpt.load_latest(tmp_path)
    assert state["step"] == 10 and used.name == "ckpt-10.pt"
    assert "ckpt-20.pt" in caplog.text and "unreadable" in caplog.text


def _age(path: Path, seconds: float) -> None:
    """Make a file look written ``seconds`` ago (rotation orders by write time)."""
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t))


def test_rotation_never_keeps_unreadable_checkpoints_and_never_deletes_them(tmp_path):
    for step in (10, 12):  # an earlier run's files, all damaged, with higher step numbers than what follows
        path = ckpt.save_checkpoint(tmp_path, step, {"step": step})
        path.write_bytes(b"not a checkpoint")
        _age(path, 60)
    for step in (2, 4, 6):
        ckpt.save_checkpoint(tmp_path, step, {"step": step}, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 6]
    assert sorted(p.name for p in tmp_path.glob("*.unreadable")) == ["ckpt-10.pt.unreadable", "ckpt-12.pt.unreadable"]


def test_rotation_never_removes_a_checkpoint_newer_by_write_than_those_it_keeps(tmp_path):
    _age(ckpt.save_checkpoint(tmp_path, 100, {"step": 100}), 60)  # stale: a high step written long ago
    for step in (2, 4):
        ckpt.save_checkpoint(tmp_path, step, {"step": step}, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 4]


def test_resume_with_every_checkpoint_unreadable_stops_and_changes_nothing(tmp_path, tiny_data, capsys):
    exp = tmp_path / "exp"
    cfg = tiny_config(tmp_path / "c.yaml", max_epochs=1)
    assert train_main(train_args(tiny_data, cfg, exp), build_model=build_stand_in) == 0
    for _, path in ckpt.list_checkpoints(exp / "checkpoints"):
        path.write_bytes(path.read_bytes()[:300])  # truncated
    before = {p.name: p.read_bytes() for p in (exp / "checkpoints").iterdir()}
    losses = (exp / "losses.tsv").read_text()
    capsys.readouterr()
    assert train_main(train_args(tiny_data, cfg, exp, "--resume"), build_model=build_stand_in) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("train: error: ") and "none of the 2 checkpoint(s) is readable" in err
    assert "new --exp" in err
    assert {p.name: p.read_bytes() for p in (exp / "checkpoints").iterdir()} == before
    assert (exp / "losses.tsv").read_text() == losses


def test_average_checkpoints_is_the_elementwise_mean(tmp_path):
    sds = [{"w": torch.full((2, 2), float(i)), "n": torch.tensor(i)} for i in (1, 2, 6)]
    paths = [ckpt.save_checkpoint(tmp_path / "checkpoints", i, {"model": sd}) for i, sd in enumerate(sds)]
    avg = ckpt.average_state_dicts(paths)
    assert torch.equal(avg["w"], torch.full((2, 2), 3.0)) and int(avg["n"]) == 6
    out = tmp_path / "avg.pt"
    r = subprocess.run([sys.executable, "-m", "toolkit.bin.average_checkpoints", "--exp", str(tmp_path),
                        "--num", "2", "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert torch.equal(torch.load(out, weights_only=True)["w"], torch.full((2, 2), 4.0))


# ---- the loop --------------------------------------------------------------------------
def test_training_writes_a_self_describing_experiment(tmp_path, tiny_data):
    exp = tmp_path / "exp"
    assert train_main(train_args(tiny_data, tiny_config(tmp_path / "c.yaml"), exp), build_model=build_stand_in) == 0
    conf = resolve_config(exp / "config.yaml")  # the resolved config loads back as it is
    assert conf["vocab_size"] == 32 and Path(conf["cmvn"]).is_absolute()
    assert "toolkit.bin.train" in (exp / "run.sh").read_text()
    log = (exp / "train.log").read_text()
    for needle in ("paired/hat_stream", "paired/cons/layer0", "text/hat_text_stream", "lr ", "s audio/s", "ETA",
                   "epoch 0 validation: cons"):
        assert needle in log
    steps = [s for s, _ in ckpt.list_checkpoints(exp / "checkpoints")]
    assert len(steps) == 2  # keep_last
    lines = (exp / "losses.tsv").read_text().splitlines()
    assert int(lines[-1].split("\t")[0]) == steps[-1]
    assert all(math.isfinite(float(l.split("\t")[4])) for l in lines)


def test_existing_experiment_needs_resume(tmp_path, tiny_data, capsys):
    exp = tmp_path / "exp"
    cfg = tiny_config(tmp_path / "c.yaml", max_epochs=1)
    assert train_main(train_args(tiny_data, cfg, exp), build_model=build_stand_in) == 0
    assert train_main(train_args(tiny_data, cfg, exp), build_model=build_stand_in) == 2
    assert "--resume" in capsys.readouterr().err


def test_nonfinite_loss_steps_are_skipped_then_training_stops(tmp_path, tiny_data, capsys):
    exp = tmp_path / "exp"
    cfg = tiny_config(tmp_path / "c.yaml", model_conf={"dim": 8, "nan_at_calls": [2, 5, 6, 7, 8]},
                      nonfinite_patience=3, batching={"text_ratio": 0.0})
    assert train_main(train_args(tiny_data, cfg, exp), build_model=build_stand_in) == 1
    assert "train: error: NonFiniteLossError: 3 non-finite steps in a row" in capsys.readouterr().err
    log = (exp / "train.log").read_text()
    assert "step 2 skipped: non-finite loss (1 in a row)" in log
    assert "step 7 skipped: non-finite loss (3 in a row)" in log


@pytest.mark.slow
def test_real_model_trains_and_validates_with_greedy_wer(tmp_path, tiny_data):
    exp = tmp_path / "exp"
    cfg = tiny_config(tmp_path / "c.yaml", model=None, model_conf=None, max_epochs=1, valid_max_batches=1,
                      batching={"max_frames": 4000, "max_tokens": 2000},
                      model_config=str(REPO / "toolkit/resources/conf/model_tiny.yaml"))
    assert train_main(train_args(tiny_data, cfg, exp)) == 0
    losses = [float(l.split("\t")[4]) for l in (exp / "losses.tsv").read_text().splitlines()]
    assert len(losses) >= 2 and all(math.isfinite(x) for x in losses)
    log = (exp / "train.log").read_text()
    assert "paired/hat_full" in log and "epoch 0 validation:" in log and " wer " in log


def test_resume_skips_a_corrupt_latest_checkpoint_and_matches_a_clean_run(tmp_path, tiny_data, caplog):
    clean, exp = tmp_path / "clean", tmp_path / "exp"
    sched = {"warmup_steps": 3, "total_steps": 20}  # the same schedule for the 1- and the 2-epoch run
    cfg2 = tiny_config(tmp_path / "c2.yaml", scheduler_conf=sched)
    assert train_main(train_args(tiny_data, cfg2, clean), build_model=build_stand_in) == 0
    cfg1 = tiny_config(tmp_path / "c1.yaml", max_epochs=1, scheduler_conf=sched)
    assert train_main(train_args(tiny_data, cfg1, exp), build_model=build_stand_in) == 0
    (previous, _), (latest, path) = ckpt.list_checkpoints(exp / "checkpoints")[-2:]
    path.write_bytes(path.read_bytes()[:500])  # truncated
    with caplog.at_level("INFO"):
        assert train_main(train_args(tiny_data, cfg2, exp, "--resume"),
                          build_model=build_stand_in) == 0
    assert f"{path} is unreadable" in caplog.text
    assert f"resumed from {exp / 'checkpoints' / f'ckpt-{previous}.pt'}: step {previous}" in caplog.text
    assert (exp / "losses.tsv").read_text() == (clean / "losses.tsv").read_text()


def test_language_balanced_sampling_from_utt2lang(tmp_path, tiny_data, capsys):
    from toolkit.utils.kaldi_map import read_kaldi_map, write_kaldi_map
    utts = list(read_kaldi_map(tiny_data / "train" / "utt2num_frames"))
    utt2lang, text_utt2lang = tmp_path / "utt2lang", tmp_path / "text_utt2lang"
    write_kaldi_map(utt2lang, {u: ("en" if i < 12 else "de") for i, u in enumerate(utts)})
    write_kaldi_map(text_utt2lang, {f"text-{i:06d}": ("en" if i < 25 else "de") for i in range(30)})
    cfg = tiny_config(tmp_path / "c.yaml", max_epochs=1, batching={
        "utt2lang": str(utt2lang), "text_utt2lang": str(text_utt2lang), "lang_balance_alpha": 0.0})
    assert train_main(train_args(tiny_data, cfg, tmp_path / "ok"), build_model=build_stand_in) == 0
    log = (tmp_path / "ok" / "train.log").read_text()
    assert "language balance (alpha 0), paired: de " in log and "-> 50.0%" in log
    assert "language balance (alpha 0), text-only: de " in log
    write_kaldi_map(utt2lang, {u: "en" for u in utts[1:]})  # one utterance without a language
    assert train_main(train_args(tiny_data, cfg, tmp_path / "bad"), build_model=build_stand_in) == 2
    assert f"{utt2lang}: 1 of 16 utterances have no language, e.g. '{utts[0]}'" in capsys.readouterr().err


def test_fewer_batches_than_ranks_is_a_clear_error(tmp_path, tiny_data):
    from toolkit.train.dataset import PairedDataset
    from toolkit.train.config import check_and_fill
    from toolkit.train.distributed import DistInfo
    from toolkit.train.trainer import Trainer
    conf = check_and_fill({"batching": {"max_frames": 100000, "text_ratio": 0.0}})
    paired = PairedDataset(tiny_data / "train", None)  # 16 utterances: one batch
    with pytest.raises(ConfigError, match="fewer batches than the 2 rank"):
        Trainer(conf, tmp_path, DistInfo(0, 2, 0, torch.device("cpu")), nn.Linear(1, 1), paired)


class StepRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def set_step(self, step):
        self.seen.append(step)


def test_modules_with_set_step_are_told_the_training_step(tmp_path, tiny_data):
    """Step-scheduled losses (the pruned transducer's warm-up) read the step from the trainer."""
    built = []

    def build(conf):
        model = StandInJoint(conf)
        model.recorder = StepRecorder()
        built.append(model)
        return model
    cfg = tiny_config(tmp_path / "c.yaml", max_epochs=1)
    assert train_main(train_args(tiny_data, cfg, tmp_path / "exp"), build_model=build) == 0
    seen = built[-1].recorder.seen
    assert seen[0] == 0 and seen == sorted(seen) and seen[-1] > 0
