"""HAT search: beam=1 == greedy, streaming == whole-sequence search, batching, ILM, blank penalty."""
import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st

from toolkit.decode.search import StreamingSearch, beam_search, greedy_search
from toolkit.models.hat import HatDecoder, HatJoiner, LstmPredictor, StatelessPredictor

V = 12


def chatty_decoder(kind, seed=0, vocab=V, blank_bias=0.5):
    """A random decoder biased towards labels, so searches emit several symbols per frame."""
    torch.manual_seed(seed)
    pred = LstmPredictor(vocab, 16, 16) if kind == "lstm" else StatelessPredictor(vocab, 16, 2)
    dec = HatDecoder(pred, HatJoiner(8, 16, vocab, 16), vocab).eval()
    with torch.no_grad():
        dec.joiner.out.weight.mul_(3)
        dec.joiner.out.bias[0] = blank_bias
    return dec


def encoder_out(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 20, 8, generator=g) * 3, torch.tensor([20, 13, 7])


@pytest.mark.parametrize("kind", ["lstm", "stateless"])
def test_beam_of_one_equals_greedy(kind):
    dec = chatty_decoder(kind)
    enc, lens = encoder_out()
    greedy = greedy_search(dec, enc, lens, max_sym_per_frame=3)
    assert sum(map(len, greedy)) > 5  # the comparison is not between empty outputs
    assert beam_search(dec, enc, lens, beam=1, max_sym_per_frame=3) == greedy


def test_batched_greedy_equals_one_utterance_at_a_time():
    dec = chatty_decoder("lstm")
    enc, lens = encoder_out(1)
    batched = greedy_search(dec, enc, lens)
    for b in range(3):
        assert greedy_search(dec, enc[b: b + 1, : lens[b]], lens[b: b + 1]) == [batched[b]]


@pytest.mark.parametrize("max_sym", [1, 2])
def test_max_symbols_per_frame_bounds_the_output(max_sym):
    dec = chatty_decoder("stateless")
    enc, lens = encoder_out(2)
    for hyps in (greedy_search(dec, enc, lens, max_sym), beam_search(dec, enc, lens, 3, max_sym)):
        assert all(len(h) <= max_sym * int(n) for h, n in zip(hyps, lens))


@settings(max_examples=8, deadline=None)
@given(cuts=st.lists(st.integers(0, 20), max_size=4), method=st.sampled_from(["greedy", "beam"]),
       kind=st.sampled_from(["lstm", "stateless"]), bp=st.sampled_from([0.0, 0.7]))
def test_streaming_search_over_pieces_equals_whole_search(cuts, method, kind, bp):
    dec = chatty_decoder(kind)
    enc, lens = encoder_out(3)
    frames = enc[0]  # (20, D)
    whole = (greedy_search(dec, enc[:1], lens[:1], blank_penalty=bp) if method == "greedy"
             else beam_search(dec, enc[:1], lens[:1], beam=3, ilm_weight=0.2, blank_penalty=bp))[0]
    s = StreamingSearch(dec, method=method, beam=3, ilm_weight=0.2, blank_penalty=bp)
    bounds = [0] + sorted(cuts) + [20]
    for a, b in zip(bounds, bounds[1:]):
        s.accept(frames[a:b])
    assert s.hyp() == whole and s.num_frames == 20


def exhaustive_best(dec, frames, max_sym):
    """Best label sequence by summing every time-synchronous alignment: per frame emit
    k < max_sym labels then a blank, or exactly max_sym labels and no blank."""
    memo = {(): dec.step(torch.zeros(1, dtype=torch.long), dec.init_state(1))}

    def predictor_out(seq):
        if seq not in memo:
            _, state = predictor_out(seq[:-1]), memo[seq[:-1]][1]
            memo[seq] = dec.step(torch.tensor([seq[-1]]), state)
        return memo[seq][0]

    seq_scores = {(): 0.0}  # label sequence -> log-prob summed over alignments so far
    for frame in frames:
        nxt = {}
        frontier = dict(seq_scores)
        for k in range(max_sym + 1):
            grown = {}
            for seq, score in frontier.items():
                lp = dec.log_probs(frame[None], predictor_out(seq))[0]
                if k < max_sym:
                    nxt[seq] = float(torch.logaddexp(torch.tensor(nxt.get(seq, float("-inf"))), score + lp[0]))
                    for y in range(1, dec.vocab_size):
                        grown[seq + (y,)] = float(score + lp[y])
                else:
                    nxt[seq] = float(torch.logaddexp(torch.tensor(nxt.get(seq, float("-inf"))), torch.tensor(score)))
            frontier = grown
        seq_scores = nxt
    return list(max(seq_scores, key=seq_scores.get))


@pytest.mark.parametrize("kind", ["lstm", "stateless"])
def test_unpruned_beam_finds_the_exhaustive_best_sequence(kind):
    dec = chatty_decoder(kind, seed=4, vocab=4, blank_bias=-2.0)
    enc, _ = encoder_out(4)
    frames = enc[0, :3]
    with torch.no_grad():
        want = exhaustive_best(dec, frames, max_sym=2)
    assert len(want) >= 2
    assert beam_search(dec, enc[:1, :3], torch.tensor([3]), beam=10 ** 4, max_sym_per_frame=2)[0] == want


def test_ilm_subtraction_changes_label_scores_only():
    dec = chatty_decoder("lstm")
    pred, _ = dec.step(torch.zeros(2, dtype=torch.long), dec.init_state(2))
    ilm = dec.ilm_log_probs(pred)
    assert torch.all(ilm[:, 0] == 0)
    assert torch.allclose(ilm[:, 1:].exp().sum(-1), torch.ones(2), atol=1e-5)
    enc, lens = encoder_out(5)
    plain = beam_search(dec, enc, lens, beam=3)
    assert plain == beam_search(dec, enc, lens, beam=3, ilm_weight=0.0)
    assert beam_search(dec, enc, lens, beam=3, ilm_weight=2.0) != plain


def _with_lower_blank_logit(dec, p):
    """Reference: a copy of the decoder whose joint's blank logit is p lower."""
    ref = copy.deepcopy(dec)
    with torch.no_grad():
        ref.joiner.out.bias[dec.blank_id] -= p
    return ref


@pytest.mark.parametrize("kind", ["lstm", "stateless"])
def test_blank_penalty_searches_as_if_the_blank_logit_were_lower(kind):
    dec = chatty_decoder(kind, blank_bias=3.0)  # blank-happy: few labels without a penalty
    enc, lens = encoder_out(6)
    ref = _with_lower_blank_logit(dec, 1.5)
    for p_hyps, ref_hyps in (
            (greedy_search(dec, enc, lens, blank_penalty=1.5), greedy_search(ref, enc, lens)),
            (beam_search(dec, enc, lens, beam=3, blank_penalty=1.5), beam_search(ref, enc, lens, beam=3))):
        assert p_hyps == ref_hyps
    plain = greedy_search(dec, enc, lens)
    penalised = greedy_search(dec, enc, lens, blank_penalty=1.5)
    assert sum(map(len, penalised)) > sum(map(len, plain))  # fewer blanks, more labels
    assert beam_search(dec, enc, lens, beam=1, blank_penalty=1.5) == penalised
    # no blank can win against an enormous penalty: every frame emits max_sym labels
    flood = beam_search(dec, enc, lens, beam=2, max_sym_per_frame=2, blank_penalty=1e4)
    assert [len(h) for h in flood] == [2 * int(n) for n in lens]


def test_bad_search_arguments_are_rejected():
    dec = chatty_decoder("lstm")
    enc, lens = encoder_out()
    with pytest.raises(ValueError, match="beam"):
        beam_search(dec, enc, lens, beam=0)
    with pytest.raises(ValueError, match="method"):
        StreamingSearch(dec, method="viterbi")
