"""The training objective: how the model's terms combine, one switch per idea, and the
alignment kinds of the consistency term checked against brute force."""
import copy
import itertools
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from test_models import make_batch, small_config
from toolkit.losses import alignment_kinds as kinds
from toolkit.losses.best_alignment import best_alignment_loss
from toolkit.models import build_model
from toolkit.train.config import check_and_fill, fill_model_defaults, resolve_config
from toolkit.train.objective import OBJECTIVE_DEFAULTS, Objective
from toolkit.utils.config import ConfigError


def objective_conf(**over):
    obj = copy.deepcopy(OBJECTIVE_DEFAULTS)
    for key, value in over.items():
        node = obj
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return obj


def model_and_objective(**over):
    obj = objective_conf(**over)
    conf = fill_model_defaults(check_and_fill({**small_config(), "objective": obj}))
    torch.manual_seed(0)
    model = build_model(conf)
    return model, Objective.for_model(conf["objective"], model)


def test_paired_loss_is_the_hat_terms_plus_weighted_ctc_and_consistency():
    model, objective = model_and_objective(ctc_weight=0.3, ctc_target="phones", **{"consistency.weight": 0.2})
    model.eval()
    out = objective(model, make_batch("paired"))
    assert {"cons/encoder", "cons/shared.1", "cons/shared.2"} <= set(out)
    cons = torch.stack([out["cons/encoder"], out["cons/shared.1"], out["cons/shared.2"]]).mean()
    assert torch.allclose(out["cons"], cons)
    want = out["hat_stream"] + out["hat_full"] + 0.3 * out["ctc"] + 0.2 * out["cons"]
    assert torch.allclose(out["loss"], want)


def test_text_batch_loss_is_the_text_weight_times_both_hat_terms_and_skips_the_audio_encoder():
    model, objective = model_and_objective(text_weight=0.4)
    model.train()
    out = objective(model, make_batch("text"))
    assert set(out) == {"loss", "hat_text_stream", "hat_text_full"}
    assert torch.allclose(out["loss"], 0.4 * (out["hat_text_stream"] + out["hat_text_full"]))
    out["loss"].backward()
    assert sum(float(p.grad.abs().sum()) for p in model.shared_encoder.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in model.audio_encoder.parameters())


def test_consistency_weight_zero_is_the_one_switch_and_skips_the_text_pass(monkeypatch):
    model, objective = model_and_objective(**{"consistency.weight": 0.0})
    calls = []
    monkeypatch.setattr(model.text_encoder, "forward", lambda *a, **k: calls.append(1))
    out = objective(model, make_batch("paired"))
    assert "cons" not in out and not calls
    assert torch.allclose(out["loss"], out["hat_stream"] + out["hat_full"])


def test_consistency_warmup_is_off_then_ramps_linearly():
    _, objective = model_and_objective(**{"consistency.weight": 0.5,
                                          "consistency.warmup": {"start_step": 10, "ramp_steps": 4}})
    # step = optimizer steps already taken: the first 10 steps have none, the next 4 ramp up
    assert [objective.consistency_weight(s) for s in (0, 9, 10, 11, 13, 100)] == [0.0, 0.0, 0.125, 0.25, 0.5, 0.5]
    assert objective.consistency_weight(None) == 0.5  # validation: the full weight


def test_every_consistency_term_sends_gradient_into_both_encoders():
    for alignment in ("best", "uniform", "soft", "forced"):
        model, objective = model_and_objective(ctc_weight=0.5, ctc_target="phones",
                                               **{"consistency.alignment": alignment})
        model.train()
        out = objective(model, make_batch("paired"))
        out["cons"].backward()
        for part in (model.audio_encoder, model.text_encoder):
            assert sum(float(p.grad.abs().sum()) for p in part.parameters() if p.grad is not None) > 0, alignment


def test_alignment_kinds_order_as_their_definitions_say():
    # best is the minimum over alignments, soft a smoothed minimum below it, uniform one alignment
    model, _ = model_and_objective()
    model.eval()
    out = {}
    for alignment in ("best", "uniform", "soft"):
        _, objective = model_and_objective(**{"consistency.alignment": alignment, "consistency.soft_gamma": 0.5})
        with torch.no_grad():
            out[alignment] = objective(model, make_batch("paired"))["cons"]
    assert out["soft"] < out["best"] < out["uniform"]


def train_consistency(weight, steps=60):
    """A small model trained on a few fixed batches; -> its consistency on a held-out batch."""
    model, objective = model_and_objective(**{"consistency.weight": weight})
    _, probe = model_and_objective(**{"consistency.weight": 1.0})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = [make_batch("paired", seed=s) for s in range(4)]
    model.train()
    for step in range(steps):
        loss = objective(model, batches[step % 4])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return float(probe(model, make_batch("paired", seed=99))["cons"])


def test_training_with_consistency_lowers_the_consistency_term_against_training_without():
    torch.set_num_threads(1)
    on, off = train_consistency(1.0), train_consistency(0.0)
    assert on < 0.7 * off, (on, off)


@pytest.mark.parametrize("feature_norm", [True, False])
def test_consistency_cannot_be_lowered_by_shrinking_both_paths(feature_norm):
    model, objective = model_and_objective(**{"consistency.feature_norm": feature_norm})
    model.eval()
    batch = make_batch("paired")
    with torch.no_grad():
        before = objective(model, batch)["cons/encoder"]
        for enc in (model.audio_encoder.conformer, model.text_encoder.conformer):
            enc.layers[-1].norm_out.weight.mul_(0.1)
            enc.layers[-1].norm_out.bias.mul_(0.1)
        after = objective(model, batch)["cons/encoder"]
    if feature_norm:
        assert torch.allclose(before, after, rtol=1e-3)
    else:
        assert after < 0.05 * before


def test_forced_alignment_needs_the_aligners_durations_in_the_batch():
    model, objective = model_and_objective(**{"consistency.alignment": "forced"})
    assert objective.needs_durations
    batch = make_batch("paired")
    del batch["durations"]
    with pytest.raises(ValueError, match="durations"):
        objective(model, batch)


def test_forced_alignment_pulls_along_the_aligners_durations():
    model, objective = model_and_objective(**{"consistency.alignment": "forced", "consistency.weight": 1.0})
    model.eval()
    batch = make_batch("paired")
    with torch.no_grad():
        out = model(batch, cons_layers=["shared.1"])
        got = objective._consistency(out, "shared.1")
        path = kinds.durations_path(batch["durations"], out["speech_lens"], out["speech_layers"]["shared.1"].shape[1])
        per_utt = kinds.path_loss(*(kinds_inputs := (
            torch.nn.functional.layer_norm(out["speech_layers"]["shared.1"], (16,)), out["speech_lens"],
            torch.nn.functional.layer_norm(out["text_layers"]["shared.1"], (16,)), out["text_lens"])), path)
    assert torch.allclose(got, per_utt.mean())
    # frame t goes to the phone whose duration span holds it
    assert path.tokens[1, :16].tolist() == [j for j, d in enumerate(batch["durations"][1, :6].tolist())
                                            for _ in range(d)]


def test_infeasible_utterances_are_left_out_of_the_consistency_and_ctc_terms():
    # example 2 gets 11 encoder frames for 12 phones: no alignment gives every phone a frame
    model, objective = model_and_objective(ctc_weight=0.5, ctc_target="phones")
    model.eval()
    batch = make_batch("paired")
    batch["phones"] = torch.randint(4, 15, (3, 12), generator=torch.Generator().manual_seed(3))
    batch["phone_lens"] = torch.tensor([9, 6, 12])
    with torch.no_grad():
        full = objective(model, batch)
        keep = {k: (v[:2] if torch.is_tensor(v) and v.shape[:1] == (3,) else v) for k, v in batch.items()}
        keep["phones"] = batch["phones"][:2, :9]
        two = objective(model, keep)
    assert objective.infeasible == 1
    for term in ("cons/encoder", "cons/shared.1", "ctc"):
        assert torch.allclose(full[term], two[term], rtol=1e-4, atol=1e-5), term


@pytest.mark.parametrize("yaml_text, named", [
    ("model_conf: {cons_weight: 0.1}", "objective.consistency.weight"),   # moved keys say where they went
    ("cons_warmup: {start_step: 1, ramp_steps: 1}", "objective.consistency.warmup"),
    ("objective: {consistency: {wieght: 0.1}}", "wieght"),                 # unknown keys are named
    ("objective: {consistency: {alignment: upsample}}", "upsample"),       # so are bad choices
])
def test_bad_objective_settings_are_refused_by_name(tmp_path, yaml_text, named):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model_config: model_tiny.yaml\n{yaml_text}\n")
    with pytest.raises(ConfigError, match=named):
        resolve_config(cfg)


def test_the_ctc_head_follows_the_objective():
    for weight, target, head in ((0.0, "phones", "none"), (0.5, "phones", "phones"), (0.5, "tokens", "tokens")):
        conf = fill_model_defaults(check_and_fill({**small_config(), "objective": objective_conf(
            ctc_weight=weight, ctc_target=target)}))
        assert conf["model_conf"]["ctc_head"] == head
    with pytest.raises(ConfigError, match="ctc_head"):
        fill_model_defaults(check_and_fill({**small_config(ctc_head="tokens"), "objective": objective_conf()}))


def test_the_transducer_loss_is_chosen_in_the_objective_and_builds_the_simple_joiner():
    conf = fill_model_defaults(check_and_fill({**small_config(), "objective": objective_conf(
        transducer="pruned", **{"transducer_conf.prune_range": 3})}))
    assert conf["model_conf"]["transducer"] == "pruned"
    model = build_model(conf)
    assert model.full_decoder.transducer == "pruned" and model.full_decoder.transducer_conf["prune_range"] == 3
    assert model.full_decoder.simple_am_proj is not None
    with pytest.raises(ConfigError, match="transducer"):
        fill_model_defaults(check_and_fill({**small_config(transducer="pruned"), "objective": objective_conf()}))


# --- the alignment kinds against brute force ------------------------------------------------

def all_frames_to_tokens_paths(n, m):
    """Every non-decreasing map of n frames onto m positions starting at 0, ending at m-1,
    with steps of 0 or 1."""
    for steps in itertools.product((0, 1), repeat=n - 1):
        if sum(steps) == m - 1:
            yield [0] + list(itertools.accumulate(steps))


def pair_cost(a, t):
    return ((a[:, None, :] - t[None, :, :]) ** 2).sum(-1).double()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 8), m=st.integers(1, 5), gamma=st.sampled_from([0.1, 1.0, 5.0]), seed=st.integers(0, 999))
def test_soft_alignment_equals_the_soft_minimum_over_every_path(n, m, gamma, seed):
    if m > n:
        return
    g = torch.Generator().manual_seed(seed)
    a, t = torch.randn(1, n + 2, 3, generator=g), torch.randn(1, m + 1, 3, generator=g)
    c = pair_cost(a[0, :n], t[0, :m])
    totals = torch.tensor([sum(float(c[i, j]) for i, j in enumerate(p)) for p in all_frames_to_tokens_paths(n, m)],
                          dtype=torch.float64)
    g_raw = gamma * 3  # gamma is per dimension: the temperature of costs summed over d = 3
    want = -g_raw * torch.logsumexp(-totals / g_raw, 0)
    got = kinds.soft_alignment_loss(a, torch.tensor([n]), t, torch.tensor([m]), gamma, normalize="none")
    assert math.isclose(float(got), float(want), rel_tol=1e-4, abs_tol=1e-4)


def test_soft_alignment_tends_to_the_best_as_gamma_shrinks_and_has_finite_gradients():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 12, 4, generator=g, requires_grad=True)
    t = torch.randn(3, 6, 4, generator=g, requires_grad=True)
    n, m = torch.tensor([12, 9, 6]), torch.tensor([6, 4, 6])
    best, _ = best_alignment_loss(a, n, t, m, normalize="frames")
    soft = kinds.soft_alignment_loss(a, n, t, m, gamma=1e-3)
    assert torch.allclose(soft, best, atol=1e-2)
    soft.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(t.grad).all()
    assert a.grad[1, 9:].abs().sum() == 0 and t.grad[1, 4:].abs().sum() == 0  # padding gets nothing


def test_soft_alignment_at_the_default_temperature_is_not_the_best_alignment():
    # layer-normalised features of width 144 give costs of about 2 d per cell: a temperature of
    # 1 in raw units would make the soft minimum the hard one
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.layer_norm(torch.randn(4, 60, 144, generator=g), (144,))
    t = torch.nn.functional.layer_norm(torch.randn(4, 20, 144, generator=g), (144,))
    n, m = torch.tensor([60, 50, 45, 40]), torch.tensor([20, 18, 15, 20])
    best, _ = best_alignment_loss(a, n, t, m, normalize="frames")
    soft = kinds.soft_alignment_loss(a, n, t, m, gamma=OBJECTIVE_DEFAULTS["consistency"]["soft_gamma"])
    assert (soft < best - 0.05 * best.abs()).all(), (soft, best)


@given(n=st.integers(1, 40), m=st.integers(1, 40))
def test_uniform_path_is_floor_of_i_m_over_n(n, m):
    path = kinds.uniform_path(torch.tensor([n, 1]), torch.tensor([m, 1]), 41)
    assert path.tokens[0, :n].tolist() == [i * m // n for i in range(n)]
    assert path.tokens[0, n:].eq(-1).all() and path.frames[0, :n].tolist() == list(range(n))
    if n >= m:  # every position used, monotonic steps of 0 or 1: a frames_to_tokens path
        assert set(path.tokens[0, :n].tolist()) == set(range(m))


def test_path_loss_along_the_best_path_equals_the_best_alignment_loss():
    g = torch.Generator().manual_seed(1)
    a, t = torch.randn(2, 10, 5, generator=g), torch.randn(2, 4, 5, generator=g)
    n, m = torch.tensor([10, 7]), torch.tensor([4, 3])
    best, path = best_alignment_loss(a, n, t, m)
    assert torch.allclose(kinds.path_loss(a, n, t, m, path), best)


def ctc_viterbi_brute_force(lp, labels):
    """Best CTC alignment by enumerating every frame labelling (small T) -> positions per frame."""
    T, V = lp.shape
    best, best_pos = -math.inf, None
    for seq in itertools.product(range(V), repeat=T):
        collapsed, prev = [], None
        for s in seq:
            if s != prev and s != 0:
                collapsed.append(s)
            prev = s
        if collapsed != labels:
            continue
        score = sum(float(lp[i, s]) for i, s in enumerate(seq))
        if score > best:
            pos, k, prev = [], -1, None
            for s in seq:
                if s != 0 and s != prev:
                    k += 1
                pos.append(max(k, 0))
                prev = s
            best, best_pos = score, pos
    return best_pos


@settings(max_examples=30, deadline=None)
@given(T=st.integers(2, 6), labels=st.lists(st.integers(1, 3), min_size=1, max_size=3), seed=st.integers(0, 999))
def test_ctc_forced_path_is_the_viterbi_alignment(T, labels, seed):
    g = torch.Generator().manual_seed(seed)
    lp = torch.randn(1, T + 1, 4, generator=g).log_softmax(-1)
    want = ctc_viterbi_brute_force(lp[0, :T], labels)
    path, fallbacks = kinds.ctc_forced_path(lp, torch.tensor([T]), torch.tensor([labels + [2]]),
                                            torch.tensor([len(labels)]))
    if want is None:  # too few frames for these labels: the uniform path instead, counted
        assert fallbacks == [0]
        assert path.tokens[0, :T].tolist() == [i * len(labels) // T for i in range(T)]
    else:
        assert fallbacks == []
        assert path.tokens[0, :T].tolist() == want
        assert path.tokens[0, T:].eq(-1).all()
