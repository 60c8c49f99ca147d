"""The blank penalty lowers the joint's blank logit before normalisation, the same way in
greedy, beam and the ONNX runtime (issue 21 item 5)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toolkit.decode.search import beam_search, greedy_search
from toolkit.export.runtime import lower_blank as lower_blank_numpy
from toolkit.models.hat import hat_log_probs, lower_blank

from test_search import chatty_decoder, encoder_out

PENALTIES = (0.0, 0.5, 1.0, 2.0, 4.0)


def _hat_reference(logits, p):
    """The obvious formula on the logits: blank logsigmoid(b - p), labels logsigmoid(p - b) + log_softmax(z)."""
    b, z = logits[..., :1] - p, logits[..., 1:]
    return torch.cat([F.logsigmoid(b), F.logsigmoid(-b) + z.log_softmax(-1)], -1)


@pytest.mark.parametrize("p", [0.3, 1.0, 5.0, -2.0])
def test_lowering_normalised_log_probs_equals_lowering_the_blank_logit(p):
    logits = torch.randn(50, 9, dtype=torch.float64) * torch.tensor([12.0] + [3.0] * 8, dtype=torch.float64)
    lowered = lower_blank(hat_log_probs(logits), p)
    assert torch.allclose(lowered, _hat_reference(logits, p), atol=1e-9)
    assert torch.allclose(lowered.exp().sum(-1), torch.ones(50, dtype=torch.float64))  # still a distribution


def test_blank_that_takes_nearly_all_the_mass_is_still_lowered_exactly():
    logits = torch.tensor([[30.0, 1.0, -2.0, 0.5]])  # P(blank) = 1 - 1e-13 in float32
    lowered = lower_blank(hat_log_probs(logits), 31.0)
    assert torch.allclose(lowered, _hat_reference(logits.double(), 31.0).float(), atol=1e-4)


def test_numpy_runtime_lowers_blank_as_pytorch():
    logits = torch.randn(40, 7) * 4
    lp = hat_log_probs(logits)
    for p in PENALTIES:
        assert np.allclose(lower_blank_numpy(lp.numpy(), p), lower_blank(lp, p).numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "stateless"])
def test_higher_penalty_never_emits_fewer_labels(kind):
    dec = chatty_decoder(kind, blank_bias=3.0)
    enc, lens = encoder_out(6)
    for search in (lambda p: greedy_search(dec, enc, lens, blank_penalty=p),
                   lambda p: beam_search(dec, enc, lens, beam=4, blank_penalty=p)):
        counts = [sum(map(len, search(p))) for p in PENALTIES]
        assert counts == sorted(counts) and counts[-1] > counts[0], counts


def test_negative_penalty_emits_fewer_labels():
    dec = chatty_decoder("stateless", blank_bias=0.0)
    enc, lens = encoder_out(6)
    assert sum(map(len, greedy_search(dec, enc, lens, blank_penalty=-2.0))) < \
        sum(map(len, greedy_search(dec, enc, lens)))
