"""Conformer blocks: masks, padding invariance, causality, streaming == chunked forward."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from toolkit.nn.attention import chunk_attention_mask, rotate
from toolkit.nn.conformer import ConformerStack
from toolkit.nn.subsampling import Conv2dSubsampling, subsampled_lengths


def tiny_stack(causal, chunk_size=0, left_chunks=-1, seed=0):
    torch.manual_seed(seed)
    return ConformerStack(12, 16, n_layers=2, n_heads=2, ff_mult=2, conv_kernel=5, dropout=0.0,
                          causal=causal, chunk_size=chunk_size, left_chunks=left_chunks).eval()


def test_chunk_mask_matches_definition():
    lens = torch.tensor([7, 4])
    mask = chunk_attention_mask(lens, 7, chunk_size=2, left_chunks=1)
    for b in range(2):
        for i in range(7):
            for j in range(7):
                want = (j < lens[b] and 0 <= i // 2 - j // 2 <= 1) or i == j
                assert bool(mask[b, i, j]) == want, (b, i, j)


def test_full_context_mask_hides_only_padded_keys():
    lens = torch.tensor([5, 3])
    mask = chunk_attention_mask(lens, 5, chunk_size=0, left_chunks=-1)
    assert mask.dtype == torch.bool and mask.shape == (2, 1, 5)
    assert mask[:, 0].tolist() == [[True] * 5, [True] * 3 + [False] * 2]


@pytest.mark.parametrize("left", [-1, 0, 2])
def test_chunk_mask_is_bool_and_equals_the_definition_for_long_inputs(left):
    lens, T, chunk = torch.tensor([300, 123]), 300, 16
    mask = chunk_attention_mask(lens, T, chunk_size=chunk, left_chunks=left)
    assert mask.dtype == torch.bool
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    diff = i // chunk - j // chunk
    want = (diff >= 0) & ((diff <= left) if left >= 0 else True)
    for b in range(2):
        assert torch.equal(mask[b], (want & (j < lens[b])) | (i == j))


def test_rotary_scores_depend_only_on_distance():
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    s1 = (rotate(q, torch.tensor([5])) * rotate(k, torch.tensor([2]))).sum()
    s2 = (rotate(q, torch.tensor([103])) * rotate(k, torch.tensor([100]))).sum()
    assert torch.allclose(s1, s2, atol=1e-5)


@pytest.mark.parametrize("causal,chunk", [(False, 0), (True, 3), (True, 1)])
def test_padding_never_changes_valid_outputs(causal, chunk):
    stack = tiny_stack(causal, chunk, left_chunks=2)
    x = torch.randn(3, 11, 12)
    lens = torch.tensor([11, 6, 1])
    batched = stack(x, lens)
    for b in range(3):
        n = int(lens[b])
        alone = stack(x[b: b + 1, :n], lens[b: b + 1])
        assert torch.allclose(batched[b, :n], alone[0], atol=1e-5)


@pytest.mark.parametrize("chunk,left", [(1, -1), (3, 1), (4, 0)])
def test_chunked_stack_never_sees_beyond_its_chunk(chunk, left):
    stack = tiny_stack(True, chunk, left)
    x = torch.randn(1, 13, 12)
    y = stack(x, torch.tensor([13]))
    for j in range(13):
        x2 = x.clone()
        x2[:, j:] += torch.randn(1, 13 - j, 12) * 10
        y2 = stack(x2, torch.tensor([13]))
        first_chunk_seeing_j = (j // chunk) * chunk
        assert torch.allclose(y[:, :first_chunk_seeing_j], y2[:, :first_chunk_seeing_j], atol=1e-5)
        assert not torch.allclose(y[:, j], y2[:, j], atol=1e-3)


@settings(max_examples=12, deadline=None)
@given(T=st.integers(1, 20), chunk=st.integers(1, 5), left=st.integers(-1, 3), seed=st.integers(0, 100))
def test_streaming_forward_equals_chunked_forward(T, chunk, left, seed):
    stack = tiny_stack(True, chunk, left, seed)
    x = torch.randn(2, T, 12)
    full = stack(x, torch.tensor([T, T]))
    cache, outs = stack.init_cache(), []
    for s in range(0, T, chunk):
        y, cache = stack.forward_chunk(x[:, s: s + chunk], cache)
        outs.append(y)
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)


def test_streaming_cache_keeps_only_left_context():
    stack = tiny_stack(True, 2, left_chunks=1)
    cache = stack.init_cache()
    for s in range(4):
        _, cache = stack.forward_chunk(torch.randn(1, 2, 12), cache)
    k, v, conv = cache["layers"][0]
    assert k.shape[2] == 2 and v.shape[2] == 2 and conv.shape[2] == 4  # kernel 5 - 1
    assert cache["offset"] == 8


def test_full_context_stack_refuses_streaming():
    with pytest.raises(RuntimeError, match="causal"):
        tiny_stack(False).forward_chunk(torch.randn(1, 2, 12), {"offset": 0, "layers": [None, None]})


def test_subsampling_lengths_and_streaming_pieces():
    torch.manual_seed(0)
    sub = Conv2dSubsampling(20, 16, 4).eval()
    assert subsampled_lengths(torch.tensor([6, 7, 10, 11, 100])).tolist() == [0, 1, 1, 2, 24]
    x = torch.randn(1, 53, 20)
    full, lens = sub(x, torch.tensor([53]))
    assert full.shape == (1, 12, 16) and lens.tolist() == [12]
    buf, outs = None, []
    for a, b in [(0, 3), (3, 4), (4, 20), (20, 21), (21, 53)]:
        y, buf = sub.forward_stream(x[:, a:b], buf)
        outs.append(y)
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)
