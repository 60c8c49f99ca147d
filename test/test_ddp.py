"""Two gloo ranks (CPU, spawned) compute the same gradients as one process on the same
global batch, through the trainer's own DDP wrapping, sharded sampler and accumulation."""
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from toolkit.features.cmvn import GlobalCMVN
from toolkit.train.dataset import PairedDataset, TextDataset
from toolkit.data.sampler import InterleavedBatchSampler
from toolkit.train.config import check_and_fill, fill_data_paths
from toolkit.train.distributed import DistInfo
from synthetic_data import write_lang_dir, write_paired_set, write_text_set
from toolkit.train.trainer import Trainer

WORLD = 2


def make_trainer(root: Path, info: DistInfo) -> Trainer:
    from test_trainer import StandInJoint
    conf = check_and_fill({"model": "stand_in", "model_conf": {"dropout": 0.0, "mask_rate": 0.0},
                           "batching": {"max_frames": 600, "max_tokens": 300, "text_ratio": 1.0, "num_workers": 0},
                           "tensorboard": False, "progress_bar": False})
    conf = fill_data_paths(conf, lang_dir=root / "lang")
    torch.manual_seed(0)
    model = StandInJoint(conf)
    paired = PairedDataset(root / "train", GlobalCMVN.load(root / "train" / "cmvn.ark"))
    return Trainer(conf, root / f"exp{info.rank}", info, model, paired, TextDataset(root / "text_only" / "seq"))


def first_batches(trainer: Trainer, rank: int, n: int = 2) -> list:
    """The first ``n`` batches rank ``rank`` of WORLD trains on (a paired, then a text batch)."""
    s = trainer.sampler
    shard = InterleavedBatchSampler(s.paired_lengths, s.max_frames, text_lengths=trainer.fetcher.text.lengths(),
                                    max_tokens=s.max_tokens, text_ratio=s.text_ratio, seed=s.seed,
                                    rank=rank, world_size=WORLD)
    return [trainer.fetcher[spec] for spec in shard.epoch_plan(0)[:n]]


def grads_of(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _rank_main(rank: int, root: str, init_file: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        trainer = make_trainer(Path(root), DistInfo(rank, WORLD, 0, torch.device("cpu")))
        mine = [trainer.fetcher[spec] for spec in trainer.sampler.epoch_plan(0)[:2]]
        assert [m["kind"] for _, m in mine] == [m["kind"] for _, m in first_batches(trainer, rank)]
        for i, (batch, _) in enumerate(mine):  # accumulation: no all-reduce until the last micro-batch
            trainer.forward_backward(batch, 0.5, sync=i == len(mine) - 1)
        torch.save(grads_of(trainer.model), Path(root) / f"grads{rank}.pt")
        trainer.optimizer_step(loss_finite=True)
        torch.save(trainer.model.state_dict(), Path(root) / f"after{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    write_paired_set(root / "train", 16, seed=0)
    write_text_set(root / "text_only", 30)
    write_lang_dir(root / "lang")
    mp.spawn(_rank_main, args=(str(root), str(root / "init")), nprocs=WORLD, join=True)
    return root


def test_two_gloo_ranks_match_one_process_on_the_global_batch(root):
    single = make_trainer(root, DistInfo(0, 1, 0, torch.device("cpu")))
    for rank in range(WORLD):  # the same 2 x 2 micro-batches, each weighted 1 / (ranks * accum)
        for batch, _ in first_batches(single, rank):
            single.forward_backward(batch, 0.5 / WORLD)
    expected = grads_of(single.model)
    for rank in range(WORLD):
        got = torch.load(root / f"grads{rank}.pt", weights_only=True)
        assert got.keys() == expected.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_ranks_hold_identical_weights_after_a_step(root):
    a, b = (torch.load(root / f"after{r}.pt", weights_only=True) for r in range(WORLD))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ranks_saw_different_data(root):
    single = make_trainer(root, DistInfo(0, 1, 0, torch.device("cpu")))
    b0, b1 = (first_batches(single, r, 1)[0][1]["uttids"] for r in range(WORLD))
    assert not set(b0) & set(b1)


@pytest.mark.slow
def test_torchrun_with_one_process_trains_through_ddp(tmp_path):
    """torchrun --nproc_per_node 1 joins a process group and wraps the model in DDP (gloo here,
    NCCL on a GPU: concord-gpu-check's ddp_torchrun step), rather than silently training unwrapped."""
    from toolkit.bench.gpu_steps import torchrun_training
    ok, figures, notes = torchrun_training(tmp_path, ngpu=0, steps=2, timeout=600)
    got = dict(figures)
    assert got["wrapped in DDP"] == "True (gloo)" and got["steps"] == "2 of 2" and got["exit"] == 0, (figures, notes)
    assert ok


def test_without_torchrun_variables_no_process_group_is_started(monkeypatch):
    from toolkit.train.distributed import init_distributed, launched_by_torchrun
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert not launched_by_torchrun()
    info = init_distributed(0)
    assert (info.rank, info.world_size) == (0, 1) and not dist.is_initialized()
