"""Pruned HAT transducer loss: the simple joiner's loss is exact, the window bounds are valid,
and a window covering every symbol gives the full loss in value and gradient."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from toolkit.losses.pruned_transducer import (loss_scales, prune_ranges, pruned_hat_loss, simple_hat_log_probs,
                                              simple_hat_loss)
from toolkit.losses.transducer import hat_transducer_loss, transducer_loss
from toolkit.models.hat import HatDecoder, HatJoiner, LstmPredictor, hat_log_probs
from toolkit.utils.config import ConfigError


def _problem(B, T, U, V, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    am = (torch.randn(B, T, V, generator=g, dtype=dtype) * 2).requires_grad_(True)
    lm = (torch.randn(B, U + 1, V, generator=g, dtype=dtype) * 2).requires_grad_(True)
    targets = torch.randint(1, V, (B, U), generator=g)
    t_lens = torch.randint(1, T + 1, (B,), generator=g)
    t_lens[0] = T
    u_lens = torch.randint(0, U + 1, (B,), generator=g)
    u_lens[0] = U
    return am, lm, targets, t_lens, u_lens


def _naive_simple_log_probs(am, lm, targets, lm_scale, am_scale):
    """The T x (U+1) x V way: HAT head on am + lm, on lm alone and on am alone, mixed."""
    B, T, V = am.shape
    U1 = lm.shape[1]
    lattices = [hat_log_probs(am[:, :, None] + lm[:, None]), hat_log_probs(lm)[:, None].expand(B, T, U1, V),
                hat_log_probs(am)[:, :, None].expand(B, T, U1, V)]
    lp = sum(w * x for w, x in zip((1 - lm_scale - am_scale, lm_scale, am_scale), lattices))
    idx = targets[:, None, :, None].expand(B, T, U1 - 1, 1)
    return lp[..., 0], lp[:, :, : U1 - 1].gather(3, idx)[..., 0], lp


@pytest.mark.parametrize("lm_scale, am_scale", [(0.0, 0.0), (0.25, 0.0), (0.2, 0.1)])
def test_simple_loss_equals_the_naive_lattice_computation(lm_scale, am_scale):
    am, lm, targets, tl, ul = _problem(3, 6, 4, 7, 0)
    blank, label = simple_hat_log_probs(am, lm, targets, lm_scale, am_scale)
    want_blank, want_label, lattice = _naive_simple_log_probs(am, lm, targets, lm_scale, am_scale)
    torch.testing.assert_close(blank, want_blank)
    torch.testing.assert_close(label, want_label)
    got, _ = simple_hat_loss(am, lm, targets, tl, ul, lm_scale, am_scale)
    want = transducer_loss(lattice, targets, tl, ul)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    g_got = torch.autograd.grad(got.sum(), (am, lm))
    g_want = torch.autograd.grad(want.sum(), (am, lm))
    for x, y in zip(g_got, g_want):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_simple_loss_survives_logits_far_apart():
    """The matmul log-sum-exp shifts by each side's max: large logits do not overflow."""
    am, lm, targets, tl, ul = _problem(2, 5, 3, 6, 1, dtype=torch.float32)
    loss, occupancy = simple_hat_loss(am * 40, lm * 40, targets, tl, ul)
    assert torch.isfinite(loss).all() and torch.isfinite(occupancy).all()


def _window_logits(enc_p, pred_p, starts, S, joiner):
    pos = (starts[..., None] + torch.arange(S)).clamp(max=pred_p.shape[1] - 1)  # (B, T, S)
    B, T, J = enc_p.shape
    pred_w = pred_p.gather(1, pos.reshape(B, T * S, 1).expand(-1, -1, J)).reshape(B, T, S, J)
    return joiner.logits_projected(enc_p[:, :, None], pred_w)


@pytest.mark.parametrize("extra", [0, 3])
def test_pruned_loss_equals_full_loss_when_the_window_holds_every_symbol(extra):
    torch.manual_seed(0)
    joiner = HatJoiner(6, 5, 9, 8).double()
    B, T, U = 4, 7, 5
    enc_p = torch.randn(B, T, 8, dtype=torch.float64, requires_grad=True)
    pred_p = torch.randn(B, U + 1, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, 9, (B, U))
    tl, ul = torch.tensor([7, 4, 1, 6]), torch.tensor([5, 2, 0, 3])
    full = hat_transducer_loss(joiner.logits_projected(enc_p[:, :, None], pred_p[:, None]), targets, tl, ul)
    S = U + 1 + extra
    starts = prune_ranges(torch.rand(B, T, U + 1, dtype=torch.float64), tl, ul, S)
    assert (starts == 0).all()
    pruned = pruned_hat_loss(_window_logits(enc_p, pred_p, starts, S, joiner), targets, starts, tl, ul)
    torch.testing.assert_close(pruned, full)
    w = torch.rand(B, dtype=torch.float64)
    for x, y in zip(torch.autograd.grad((pruned * w).sum(), (enc_p, pred_p)),
                    torch.autograd.grad((full * w).sum(), (enc_p, pred_p))):
        torch.testing.assert_close(x, y)


@st.composite
def lattices(draw):
    B = draw(st.integers(1, 4))
    S = draw(st.integers(2, 6))
    T = draw(st.integers(1, 12))
    t_lens = [draw(st.integers(1, T)) for _ in range(B)]
    u_lens = [draw(st.integers(0, t * (S - 1))) for t in t_lens]
    seed = draw(st.integers(0, 2 ** 31))
    return S, torch.tensor(t_lens), torch.tensor(u_lens), seed


@settings(max_examples=60, deadline=None)
@given(lattices())
def test_prune_bounds_are_monotone_in_range_and_chain_into_a_path(problem):
    S, tl, ul, seed = problem
    B, T, U = len(tl), int(tl.max()), int(ul.max())
    g = torch.Generator().manual_seed(seed)
    occupancy = torch.rand(B, T, U + 1, generator=g) ** 4  # peaky, like real posteriors
    starts = prune_ranges(occupancy, tl, ul, S)
    for b in range(B):
        s, t_b, hi = starts[b, : tl[b]], int(tl[b]), max(0, int(ul[b]) + 1 - S)
        steps = s[1:] - s[:-1]
        assert s[0] == 0 and s[-1] == hi and int(s.max()) <= hi
        assert (steps >= 0).all() and (steps <= S - 1).all()
        assert (starts[b, t_b:] == hi).all()
    # the window lattice holds a path: the pruned loss is finite on any logits
    logits = torch.randn(B, T, S, 7, generator=g)
    targets = torch.randint(1, 7, (B, U), generator=g)
    assert torch.isfinite(pruned_hat_loss(logits, targets, starts, tl, ul)).all()


def test_prune_bounds_follow_the_occupancy():
    """A lattice whose mass lies on one diagonal path gets windows around that path."""
    T, U, S = 10, 8, 3
    occupancy = torch.zeros(1, T, U + 1)
    for t in range(T):
        occupancy[0, t, min(U, t)] = 1.0
    starts = prune_ranges(occupancy, torch.tensor([T]), torch.tensor([U]), S)[0]
    for t in range(T):
        assert starts[t] <= min(U, t) < starts[t] + S


def test_prune_range_too_small_for_the_targets_is_refused():
    with pytest.raises(ValueError, match="per frame"):
        prune_ranges(torch.rand(1, 2, 8), torch.tensor([2]), torch.tensor([7]), 3)
    with pytest.raises(ValueError, match=">= 2"):
        prune_ranges(torch.rand(1, 2, 2), torch.tensor([2]), torch.tensor([1]), 1)


def test_loss_scales_warm_up_from_the_simple_loss_to_the_pruned_one():
    assert loss_scales(0, 0.5, 2000) == (1.0, pytest.approx(0.1))
    assert loss_scales(1000, 0.5, 2000) == (pytest.approx(0.75), pytest.approx(0.55))
    assert loss_scales(5000, 0.5, 2000) == (0.5, 1.0) == loss_scales(0, 0.5, 0)


def _decoders(**conf):
    torch.manual_seed(0)
    pred, join = LstmPredictor(11, 8, 8), HatJoiner(6, 8, 11, 12)
    return (HatDecoder(pred, join, 11).eval(),
            HatDecoder(pred, join, 11, transducer="pruned", transducer_conf=conf).eval())


def test_pruned_decoder_with_a_wide_window_is_the_full_loss_plus_the_weighted_simple_loss():
    full, pruned = _decoders(prune_range=6, simple_scale=0.3)
    pruned.set_step(10 ** 6)
    enc = torch.randn(4, 9, 6, requires_grad=True)
    tl, tokens, ul = torch.tensor([9, 5, 7, 2]), torch.randint(1, 11, (4, 5)), torch.tensor([5, 0, 3, 2])
    conf = pruned.transducer_conf
    pred_out = pruned.predictor(torch.nn.functional.pad(tokens, (1, 0)))
    simple, _ = simple_hat_loss(pruned.simple_am_proj(enc), pruned.simple_lm_proj(pred_out), tokens, tl, ul,
                                conf["lm_scale"], conf["am_scale"])
    got = pruned.loss(enc, tl, tokens, ul)
    torch.testing.assert_close(got, full.loss(enc, tl, tokens, ul) + 0.3 * simple, rtol=1e-5, atol=1e-5)
    got.sum().backward()
    assert pruned.simple_am_proj.weight.grad.abs().sum() > 0 and torch.isfinite(enc.grad).all()


def test_pruned_decoder_sub_batches_give_the_same_loss():
    _, pruned = _decoders(prune_range=3)
    enc = torch.randn(4, 9, 6)
    tl, tokens, ul = torch.tensor([9, 5, 7, 2]), torch.randint(1, 11, (4, 5)), torch.tensor([5, 0, 3, 2])
    whole = pruned.loss(enc, tl, tokens, ul)
    pruned.max_lattice_elems = 1
    torch.testing.assert_close(pruned.loss(enc, tl, tokens, ul), whole)


def test_pruned_decoder_widens_a_window_too_narrow_for_the_targets():
    _, pruned = _decoders(prune_range=2)
    enc = torch.randn(1, 2, 6)
    loss = pruned.loss(enc, torch.tensor([2]), torch.randint(1, 11, (1, 5)), torch.tensor([5]))
    assert torch.isfinite(loss).all()


def test_simple_joiner_exists_only_when_pruned_and_bad_settings_are_named():
    full, pruned = _decoders()
    assert not hasattr(full, "simple_am_proj") and hasattr(pruned, "simple_lm_proj")
    with pytest.raises(ConfigError, match="prune_rnge"):
        _decoders(prune_rnge=4)
    with pytest.raises(ConfigError, match="transducer must be"):
        HatDecoder(LstmPredictor(5, 4, 4), HatJoiner(3, 4, 5, 4), 5, transducer="k2")
