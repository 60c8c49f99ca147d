"""Per-layer consistency analysis: the measures on random tensors, the report, and the CLI."""
import json
import math

import numpy as np
import pytest
import torch

from conftest import TINY as CONFTEST_TINY
from toolkit.analysis.consistency import (KINDS, ConsistencyTable, layer_distances, random_path, uniform_path,
                                          write_report)
from toolkit.losses.best_alignment import path_cost


def random_reps(seed=0, layers=("encoder", "shared.1", "shared.2")):
    g = torch.Generator().manual_seed(seed)
    s_lens, t_lens = torch.tensor([12, 9, 7, 4, 10]), torch.tensor([5, 4, 7, 6, 3])  # example 3 has n < m
    return [(name, torch.randn(5, 12, 8, generator=g), s_lens, torch.randn(5, 7, 8, generator=g), t_lens)
            for name in layers]


def _is_valid_frames_to_tokens(tokens, n, m):
    t = tokens[:n].tolist()
    steps = np.diff(t)
    return t[0] == 0 and t[-1] == m - 1 and set(steps.tolist()) <= {0, 1} and (tokens[n:] == -1).all()


def test_uniform_and_random_paths_are_valid_alignments():
    n_lens, m_lens = torch.tensor([9, 5, 6, 1]), torch.tensor([4, 5, 1, 1])
    g = torch.Generator().manual_seed(1)
    for path in [uniform_path(n_lens, m_lens, 9)] + [random_path(n_lens, m_lens, 9, g) for _ in range(20)]:
        for b in range(4):
            assert _is_valid_frames_to_tokens(path.tokens[b], int(n_lens[b]), int(m_lens[b]))
            assert path.frames[b, : n_lens[b]].tolist() == list(range(n_lens[b]))


def test_random_paths_cover_every_alignment():
    g = torch.Generator().manual_seed(2)
    seen = {tuple(random_path(torch.tensor([5]), torch.tensor([3]), 5, g).tokens[0].tolist()) for _ in range(300)}
    assert len(seen) == math.comb(4, 2)  # all C(n-1, m-1) alignments are drawn


def test_short_examples_are_left_out_and_random_is_the_mean_of_its_draws():
    reps = random_reps()
    for (name, speech, s_lens, text, t_lens), (_, res) in zip(reps, layer_distances(reps, n_random=3,
                                                                                     generator=torch.Generator().manual_seed(5))):
        ok = torch.tensor([True, True, True, False, True])
        for k in KINDS:
            assert res[k][~ok].isnan().all() and not res[k][ok].isnan().any(), (name, k)
        g = torch.Generator().manual_seed(5)  # the same draws, by hand
        sp, sl, tx, tl = speech[ok], s_lens[ok], text[ok], t_lens[ok]
        draws = [path_cost(sp, tx, random_path(sl, tl, speech.shape[1], g)) / sl for _ in range(3)]
        assert torch.allclose(res["random"][ok], sum(draws) / 3, rtol=1e-5)
        if name == "encoder":
            break  # one layer's draws: the generator is shared across layers after that


def test_speech_that_repeats_its_text_has_zero_best_distance_but_not_mismatched():
    g = torch.Generator().manual_seed(3)
    text = torch.randn(3, 4, 6, generator=g)
    repeat = torch.tensor([0, 0, 1, 2, 2, 2, 3, 3])  # a monotone stretch of the 4 positions
    speech = text[:, repeat]  # (3, 8, 6)
    (_, res), = layer_distances([("shared.1", speech, torch.tensor([8, 8, 8]), text, torch.tensor([4, 4, 4]))])
    assert torch.allclose(res["best"], torch.zeros(3), atol=1e-5)
    assert (res["uniform"] > 1e-3).all() and (res["mismatched"] > 1e-2).all()


def test_table_means_over_batches_and_report_files(tmp_path):
    table = ConsistencyTable()
    first, second = layer_distances(random_reps(0)), layer_distances(random_reps(1))
    table.add(first)
    table.add(second)
    rows = table.rows()
    assert [r.layer for r in rows] == ["encoder", "shared.1", "shared.2"]
    both = torch.cat([first[1][1]["best"], second[1][1]["best"]])
    assert rows[1].utterances == 8 and rows[1].best == pytest.approx(float(both.nanmean()))
    paths = write_report(rows, tmp_path / "out", title="random")
    tsv = paths["tsv"].read_text().splitlines()
    assert tsv[0].split("\t") == ["layer", "utterances", *KINDS, "best/uniform", "best/mismatched (sd)"]
    assert len(tsv) == 4
    ratio = torch.cat([first[1][1]["best"] / first[1][1]["mismatched"], second[1][1]["best"] / second[1][1]["mismatched"]])
    assert rows[1].matched_ratio == pytest.approx(float(ratio.nanmean()), rel=1e-5)
    saved = json.loads(paths["json"].read_text())["layers"][1]
    assert saved["layer"] == "shared.1" and saved["matched_ratio"] == pytest.approx(rows[1].matched_ratio)
    assert "| shared.2 | 8 |" in paths["md"].read_text()
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 2000


def test_single_utterance_batch_has_no_mismatched_value():
    (_, res), = layer_distances([("encoder", torch.randn(1, 6, 4), torch.tensor([6]), torch.randn(1, 3, 4),
                                  torch.tensor([3]))])
    assert res["mismatched"].isnan().all() and not res["best"].isnan().any()


# ---- the CLI on an untrained tiny model (needs the model code) ------------------------------
# conftest's tiny model with two shared layers (the analysis compares layers)
TINY = {**CONFTEST_TINY, "shared_encoder_conf": {**CONFTEST_TINY["shared_encoder_conf"], "n_layers": 2}}


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    import kaldiio

    from toolkit import models
    from toolkit.train.config import check_and_fill, fill_model_defaults

    from toolkit.features.cmvn import accumulate_stats, write_stats
    from toolkit.text.seqstore import SeqStoreWriter
    from toolkit.text.wordpiece import train_wordpiece
    from toolkit.utils.config import dump_yaml

    root = tmp_path_factory.mktemp("analysis")
    rng = np.random.default_rng(0)
    dump = root / "dump" / "test"
    dump.mkdir(parents=True)
    ids = [f"spk1-utt{i}" for i in range(5)]
    feats = {u: rng.normal(size=(60 + 13 * i, 80)).astype(np.float32) for i, u in enumerate(ids)}
    with kaldiio.WriteHelper(f"ark,scp:{dump / 'feats.ark'},{dump / 'feats.scp'}") as w:
        for u in ids:
            w(u, feats[u])
    (dump / "utt2num_frames").write_text("".join(f"{u} {len(feats[u])}\n" for u in ids))
    write_stats(dump / "cmvn.ark", accumulate_stats(feats.values()))
    with SeqStoreWriter(dump / "seq") as w:
        for i, u in enumerate(ids[:4]):  # the last utterance has no sequence: skipped with a warning
            w.add(u, rng.integers(4, 20, 5 + i), rng.integers(2, 10, 3))
    (root / "text").write_text("the cat sat on the mat\na dog ran in the park\nhello world\n")
    bpe = train_wordpiece([root / "text"], 30, root / "lang")
    import sentencepiece as spm
    config = {"model": "joint", "model_conf": TINY, "num_phones": 20,
              "vocab_size": spm.SentencePieceProcessor(model_file=str(bpe)).get_piece_size(),
              "bpe_model": str(bpe), "cmvn": str(dump / "cmvn.ark")}
    config = fill_model_defaults(check_and_fill(config))  # as the trainer saves it: every default filled
    exp = root / "exp" / "tiny"
    exp.mkdir(parents=True)
    dump_yaml(config, exp / "config.yaml")
    torch.manual_seed(0)
    model = models.build_model(config)
    torch.save(model.state_dict(), exp / "model_avg.pt")
    return {"exp": exp, "data": dump, "layers": model.layer_names}


def test_cli_writes_table_and_plot_for_every_layer(tiny_experiment, tmp_path, capsys):
    from toolkit.bin import analyze_alignment
    out = tmp_path / "analysis"
    rc = analyze_alignment.main(["--exp", str(tiny_experiment["exp"]), "--data", str(tiny_experiment["data"]),
                                 "--out", str(out), "--batch-size", "3", "--n-random", "2"])
    assert rc == 0
    rows = [line.split("\t") for line in (out / "consistency.tsv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == [n for n in tiny_experiment["layers"] if n in {r[0] for r in rows}]
    assert {"encoder", "shared.1", "shared.2"} <= {r[0] for r in rows}
    for r in rows:
        assert r[1] == "4"  # four utterances have sequences
    saved = json.loads((out / "consistency.json").read_text())["layers"]
    assert [x["layer"] for x in saved] == [r[0] for r in rows]
    assert all(float(r[2]) == pytest.approx(x["best"], rel=1e-5) for r, x in zip(rows, saved))
    assert (out / "consistency.png").stat().st_size > 2000
    assert "| encoder |" in capsys.readouterr().out


def test_cli_names_a_missing_feature_file(tiny_experiment, tmp_path):
    from toolkit.bin import analyze_alignment
    rc = analyze_alignment.main(["--exp", str(tiny_experiment["exp"]), "--data", str(tmp_path),
                                 "--seq", str(tiny_experiment["data"] / "seq"), "--out", str(tmp_path / "o")])
    assert rc == 2 and not (tmp_path / "o" / "consistency.tsv").exists()
