"""What a new user meets first: a wrong model path, a stage run too early in a fresh copy,
one name on every concord-transcribe message, word times in a CTM."""
import shutil
import subprocess
from pathlib import Path

import pytest

from toolkit.bin import transcribe as transcribe_cli
from toolkit.decode.transcriber import WORD_TAIL_S, timed_units

from conftest import waveform

REPO = Path(__file__).resolve().parents[1]


# ---- the model path --------------------------------------------------------------------------------
def test_a_model_path_that_does_not_exist_says_no_such_path(tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(b"")
    assert transcribe_cli.main([str(tmp_path / "exp" / "trian"), str(tmp_path / "a.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"concord-transcribe: error: {tmp_path / 'exp' / 'trian'}: no such path")


def test_the_exp_dir_above_an_experiment_names_the_experiments_in_it(tiny_recipe, tmp_path, capsys):
    shutil.copytree(tiny_recipe["exp"], tmp_path / "exp" / "train")
    (tmp_path / "a.wav").write_bytes(b"")
    assert transcribe_cli.main([str(tmp_path / "exp"), str(tmp_path / "a.wav")]) == 2
    assert f"(experiment dirs in it: {tmp_path / 'exp' / 'train'})" in capsys.readouterr().err


def test_every_concord_transcribe_message_starts_with_its_name(tiny_recipe, tmp_path, capsys):
    import soundfile as sf
    sf.write(tmp_path / "ok.wav", waveform(1, 0.8), 16000)
    assert transcribe_cli.main([str(tiny_recipe["exp"])]) == 2  # no audio
    assert transcribe_cli.main([str(tiny_recipe["exp"]), str(tmp_path / "ok.wav"), "--mode", "fast"]) == 2
    assert transcribe_cli.main([str(tiny_recipe["exp"]), str(tmp_path / "ok.wav"), str(tmp_path / "gone.wav")]) == 1
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line[:1].strip() and not line.startswith("usage")]
    assert len(lines) >= 4 and all(line.startswith("concord-transcribe: ") for line in lines), lines


# ---- CTM word times ----------------------------------------------------------------------------------
class Pieces:
    """A sentencepiece stand-in: ids index PIECES, '▁' starts a word."""
    PIECES = ["<blk>", "\u2581a", "b", "\u2581c", "\u2581d", "e", "\u2581f"]

    def id_to_piece(self, i):
        return self.PIECES[i]

    def decode(self, ids):
        return "".join(self.PIECES[i] for i in ids).replace("\u2581", " ").strip()


def test_a_word_lasts_from_its_first_token_until_the_next_word_starts():
    frame = 0.04  # tokens a b | c | d e | f at frames 2 3 | 10 | 30 31 | 90, audio 4 s
    tokens, words = timed_units(Pieces(), [1, 2, 3, 4, 5, 6], [2, 3, 10, 30, 31, 90], frame, audio_s=4.0)
    assert [w.text for w in words] == ["ab", "c", "de", "f"]
    spans = [(round(w.start, 3), round(w.end, 3)) for w in words]
    assert spans[0] == (0.08, 0.40)   # to c's start, past its own last token (b ends at 0.16)
    assert spans[1] == (0.40, round(11 * frame + WORD_TAIL_S, 3))  # one token, not one frame long; a pause
    assert spans[2] == (1.20, round(32 * frame + WORD_TAIL_S, 3))  # follows: WORD_TAIL_S past the last token
    assert spans[3] == (3.60, 4.0)    # the last word: capped by the audio's end


def test_words_never_overlap_and_cover_their_tokens_in_a_real_ctm(tiny_recipe, tmp_path):
    import soundfile as sf
    sf.write(tmp_path / "long.wav", waveform(6, 3.0), 16000)
    assert transcribe_cli.main([str(tiny_recipe["exp"]), str(tmp_path / "long.wav"),
                                "--ctm", str(tmp_path / "out.ctm")]) == 0
    rows = [line.split() for line in (tmp_path / "out.ctm").read_text().splitlines()]
    assert len(rows) >= 2, "the tiny model emitted fewer than two words: nothing to compare"
    starts, durs = [float(r[2]) for r in rows], [float(r[3]) for r in rows]
    for k in range(len(rows) - 1):
        assert starts[k] + durs[k] <= starts[k + 1] + 1e-6
        if starts[k + 1] > starts[k]:  # (words emitted in one frame can only get zero length)
            assert durs[k] > 0
    assert durs[-1] > 0 and starts[-1] + durs[-1] <= 3.0 + 1e-6


# ---- a stage run too early ----------------------------------------------------------------------------
STAGE_OUTPUTS = {1: ["data/train/text"], 2: ["data/lang/phones.txt"],
                 3: ["data/lang/wp256.model", "dump/train/seq/", "dump/dev_clean/seq/", "dump/test_clean/seq/"],
                 4: ["dump/train/feats.scp", "dump/train/cmvn.ark", "dump/dev_clean/feats.scp",
                     "dump/test_clean/feats.scp"]}


def recipe_copy(root: Path, done: int) -> Path:
    """egs/mini's run.sh, conf and local/ in ``root``, with the outputs of stages 1..``done``."""
    (root / "egs" / "TEMPLATE").mkdir(parents=True)
    (root / "egs" / "TEMPLATE" / "asr.sh").symlink_to(REPO / "egs" / "TEMPLATE" / "asr.sh")
    recipe = root / "egs" / "mini"
    shutil.copytree(REPO / "egs" / "mini" / "conf", recipe / "conf")
    shutil.copytree(REPO / "egs" / "mini" / "local", recipe / "local", symlinks=True)
    for name in ("run.sh", "cmd.sh"):
        shutil.copy(REPO / "egs" / "mini" / name, recipe / name)
    (recipe / "path.sh").write_text(f'export PATH="{REPO / "utils"}:$PATH"\n')
    for stage in range(1, done + 1):
        for out in STAGE_OUTPUTS[stage]:
            (recipe / out).parent.mkdir(parents=True, exist_ok=True)
            (recipe / out).mkdir() if out.endswith("/") else (recipe / out).write_text("")
    return recipe


@pytest.mark.parametrize("stage, done, expected", [
    (6, 0, "stage 6 needs exp/t/model_avg.pt, which stage 5 (training) makes, and no stage has run here yet: "
        "run from stage 0 (./run.sh --stage 0)"),
    (6, 2, "stage 6 needs exp/t/model_avg.pt, which stage 5 (training) makes, and stage 3 (wordpieces + token "
        "dumps) has not run either: run ./run.sh --stage 3 first"),
    (6, 4, "stage 6 needs exp/t/model_avg.pt, which stage 5 (training) makes: run ./run.sh --stage 5 first"),
    (7, 4, "stage 7 needs exp/t/decode_streaming_dev_clean/hyp.trn, which stage 6 (decoding) makes, and stage 5 "
           "(training) has not run either: run ./run.sh --stage 5 first"),
    (8, 4, "stage 8 needs exp/t/model_avg.pt, which stage 5 (training) makes: run ./run.sh --stage 5 first"),
])
def test_a_stage_run_too_early_names_the_first_stage_that_has_not_run(tmp_path, stage, done, expected):
    recipe = recipe_copy(tmp_path, done)
    out = subprocess.run(["./run.sh", "--stage", str(stage), "--stop-stage", str(stage), "--tag", "t"], cwd=recipe,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.strip() == f"asr.sh: error: {expected}"
    assert not (recipe / "exp" / "t").exists()
