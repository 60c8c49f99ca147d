"""Foundation: atomic writes, Kaldi maps, the config registry."""
import pytest

from toolkit.utils.kaldi_map import read_kaldi_map, write_kaldi_map
from toolkit.utils.config import ConfigError, Registry
from toolkit.utils.fileio import InputError, atomic_write, read_lines


def test_atomic_write_leaves_old_file_when_block_fails(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_kaldi_map_roundtrip_is_c_sorted(tmp_path):
    path = tmp_path / "text"
    write_kaldi_map(path, {"b": "x y", "B": "z", "a-1": "é"})
    assert path.read_text(encoding="utf-8").splitlines() == ["B z", "a-1 é", "b x y"]
    assert read_kaldi_map(path) == {"B": "z", "a-1": "é", "b": "x y"}


def test_kaldi_map_duplicate_key_names_file_and_line(tmp_path):
    path = tmp_path / "utt2spk"
    path.write_text("u1 s1\nu2 s1\nu1 s2\n")
    with pytest.raises(InputError, match=r"utt2spk:3: duplicate key 'u1'"):
        read_kaldi_map(path)


def test_read_lines_reports_non_utf8_line(tmp_path):
    path = tmp_path / "text"
    path.write_bytes(b"u1 fine\nu2 bad \xff\n")
    with pytest.raises(InputError, match=r"text:2: not valid UTF-8"):
        list(read_lines(path))


def test_registry_rejects_unknown_conf_key_by_name():
    reg = Registry("encoder")

    @reg.register("toy")
    class Toy:
        def __init__(self, dim: int = 4, layers: int = 2):
            self.dim, self.layers = dim, layers

    assert reg.build("toy", {"dim": 8}).dim == 8
    assert reg.defaults("toy") == {"dim": 4, "layers": 2}
    with pytest.raises(ConfigError, match="unknown key\\(s\\) dimm"):
        reg.build("toy", {"dimm": 8})
    with pytest.raises(ConfigError, match="unknown encoder 'big'"):
        reg.build("big")


def test_atomic_write_gives_umask_mode_not_0600(tmp_path):
    import os
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_setup_cpu_sets_threads_and_flushes_denormals():
    import torch
    from toolkit.utils.cpu import setup_cpu
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    before = torch.get_num_threads()
    try:
        assert (torch.tensor([1e-30]) * torch.tensor([1e-10])).item() > 0  # a denormal result
        setup_cpu(1)
        assert torch.get_num_threads() == 1
        assert (torch.tensor([1e-30]) * torch.tensor([1e-10])).item() == 0.0  # flushed to zero
        with pytest.raises(ValueError, match="threads"):
            setup_cpu(-1)
    finally:
        torch.set_num_threads(before)
        torch.set_flush_denormal(False)
