"""The benchmark CLIs run on small settings and print every figure they promise.

No timing is asserted here (speed targets are read off the full benchmark runs); what is
checked is that each method ran, the alignment methods agree on the path cost, and the
ratio columns are there and finite.
"""
import json
import math
import re

import pytest


def test_bench_alignment_quick_runs_every_method_and_they_agree(tmp_path, capsys):
    pytest.importorskip("monotonic_align")
    from toolkit.bin import bench_alignment
    out_json = tmp_path / "bench.json"
    assert bench_alignment.main(["--quick", "--repeat", "1", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    for row in ("plain bmm (floor)", "cost matrix", "ours DP+backtrace", "pytorch frame loop",
                "monotonic_align (MAS)", "consistency loss forward ", "consistency loss forward+backward"):
        assert row in text
    assert re.search(r"forward .*x cost matrix \+ DP, [0-9.]+x plain bmm", text)
    assert re.search(r"forward\+backward .*\(([0-9.]+)x plain bmm", text)
    assert "same path cost: False" not in text and "same path cost: True" in text
    results = json.loads(out_json.read_text())
    rows = results if isinstance(results, list) else results["shapes"]
    assert rows and all(r["paths_equal_cost"] and math.isfinite(r["mas_over_ours"]) for r in rows)


def test_bench_alignment_without_monotonic_align_says_how_to_get_it(monkeypatch, capsys):
    import sys
    from toolkit.bin import bench_alignment
    monkeypatch.setitem(sys.modules, "monotonic_align", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "monotonic_align.core", None)
    assert bench_alignment.main(["--shapes", "2,40,12,16,1", "--repeat", "1"]) == 0
    out, err = capsys.readouterr()
    assert "pip install 'monotonic-align" in err and "monotonic_align (MAS)" not in out


def test_bench_train_prints_the_overhead_and_its_two_parts_and_restores_the_real_loss(capsys):
    import toolkit.losses.best_alignment as ba
    from toolkit.bin import bench_train
    real = ba.best_alignment_loss
    assert bench_train.main(["--steps", "1", "--configs", "tiny", "--batch", "2x120", "--threads", "1"]) == 0
    assert ba.best_alignment_loss is real  # the zero stand-in of the "text" setting does not leak
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("tiny"))
    ratios = [float(x) for x in re.findall(r"(\d+\.\d+)x", row)]
    assert len(ratios) == 3 and all(math.isfinite(r) and r > 0 for r in ratios)


def test_bench_frontend_compares_the_dump_with_bare_fbank(capsys):
    from toolkit.bin import bench_frontend
    assert bench_frontend.main(["--seconds", "6", "--file-seconds", "3", "--repeat", "1"]) == 0
    text = capsys.readouterr().out
    m = re.search(r"ratio dump / bare: ([0-9.]+)", text)
    assert m and float(m.group(1)) > 0


def test_bench_transducer_tiny_runs_every_method_and_prints_ratios_to_pruned(tmp_path, capsys):
    pytest.importorskip("warprnnt_numba")
    from toolkit.bin import bench_transducer
    out_json = tmp_path / "bench.json"
    assert bench_transducer.main(["--shapes", "tiny", "--repeat", "1", "--threads", "1", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line for line in text.splitlines()[2:]}
    assert set(rows) == {"full", "full_whole", "pruned", "warprnnt"}
    for line in rows.values():
        ratios = [float(x) for x in re.findall(r"(\d+\.\d+)x", line)]
        assert len(ratios) == 2 and all(r > 0 and math.isfinite(r) for r in ratios)
    methods = json.loads(out_json.read_text())[0]["methods"]
    assert all(m["seconds"] > 0 and m["peak_bytes"] >= 0 for m in methods.values())
