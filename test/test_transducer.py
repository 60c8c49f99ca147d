"""Transducer loss on HAT log-probs: brute force agreement, gradients, lattice chunking."""
import itertools
import math

import numpy as np
import pytest
import torch
from conftest import cuda_kernel_env, needs_cuda_device, nvvm_available
from hypothesis import given, settings, strategies as st

from toolkit.losses.transducer import transducer_loss
from toolkit.models.hat import HatDecoder, HatJoiner, LstmPredictor, hat_log_probs


def brute_force_nll(lp, target, T):
    """-log sum over every alignment: all orders of T blanks and U labels ending in blank."""
    U = len(target)
    total = -math.inf
    for label_slots in itertools.combinations(range(T + U - 1), U):  # last symbol is blank
        t = u = 0
        score = 0.0
        for i in range(T + U):
            if i in label_slots:
                score += lp[t, u, target[u]]
                u += 1
            else:
                score += lp[t, u, 0]
                t += 1
        total = np.logaddexp(total, score)
    return -total


def random_lattice(B, T, U, V, seed):
    g = torch.Generator().manual_seed(seed)
    return hat_log_probs(torch.randn(B, T, U + 1, V, generator=g, dtype=torch.float64) * 2)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 4), U=st.integers(0, 3), V=st.integers(2, 5), seed=st.integers(0, 10 ** 6))
def test_loss_equals_brute_force_enumeration(T, U, V, seed):
    lp = random_lattice(2, T + 1, U + 1, V, seed)  # padded beyond (T, U) for example 0
    g = torch.Generator().manual_seed(seed + 1)
    targets = torch.randint(1, V, (2, U + 1), generator=g)
    lens_t, lens_u = torch.tensor([T, T + 1]), torch.tensor([U, U + 1])
    got = transducer_loss(lp, targets, lens_t, lens_u)
    for b in range(2):
        want = brute_force_nll(lp[b].numpy(), targets[b, : lens_u[b]].tolist(), int(lens_t[b]))
        assert got[b].item() == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_gradient_matches_finite_differences():
    lp = random_lattice(1, 3, 2, 4, 0).requires_grad_(True)
    targets, tl, ul = torch.tensor([[1, 3]]), torch.tensor([3]), torch.tensor([2])
    # the loss takes lp as free log-probs here, so finite differences on lp itself apply
    assert torch.autograd.gradcheck(lambda x: transducer_loss(x, targets, tl, ul), (lp,), eps=1e-6, atol=1e-6)


def test_hat_rows_sum_to_one():
    lp = hat_log_probs(torch.randn(2, 5, 3, 7) * 5)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(2, 5, 3), atol=1e-5)


def test_decoder_loss_is_the_same_with_and_without_lattice_chunking():
    torch.manual_seed(0)
    pred, join = LstmPredictor(11, 8, 8), HatJoiner(6, 8, 11, 12)
    dec = HatDecoder(pred, join, 11).eval()
    enc = torch.randn(4, 9, 6, requires_grad=True)
    enc_lens, tokens = torch.tensor([9, 5, 7, 2]), torch.randint(1, 11, (4, 4))
    tok_lens = torch.tensor([4, 0, 3, 2])
    whole = dec.loss(enc, enc_lens, tokens, tok_lens)
    (g_whole,) = torch.autograd.grad(whole.sum(), enc)
    dec.max_lattice_elems = 1  # one utterance per sub-batch, recomputed in backward
    pieces = dec.loss(enc, enc_lens, tokens, tok_lens)
    (g_pieces,) = torch.autograd.grad(pieces.sum(), enc)
    assert torch.allclose(whole, pieces, atol=1e-5)
    assert torch.allclose(g_whole, g_pieces, atol=1e-5)
    assert torch.isfinite(g_whole).all() and g_whole.abs().sum() > 0


def test_bad_lengths_are_rejected():
    lp = random_lattice(1, 3, 2, 4, 0)
    with pytest.raises(ValueError, match="logit_lens"):
        transducer_loss(lp, torch.tensor([[1, 2]]), torch.tensor([4]), torch.tensor([2]))
    with pytest.raises(ValueError, match="target_lens"):
        transducer_loss(lp, torch.tensor([[1, 2]]), torch.tensor([3]), torch.tensor([3]))


def test_parallel_and_serial_kernels_agree(monkeypatch):
    from toolkit.losses import transducer
    lp = random_lattice(5, 6, 4, 7, 3).requires_grad_(True)
    targets = torch.randint(1, 7, (5, 4), generator=torch.Generator().manual_seed(0))
    tl, ul = torch.tensor([6, 5, 1, 6, 3]), torch.tensor([4, 0, 2, 3, 4])
    results = []
    for threshold in (0, 10 ** 9):  # parallel, then serial
        monkeypatch.setattr(transducer, "PARALLEL_MIN_CELLS", threshold)
        loss = transducer_loss(lp, targets, tl, ul)
        results.append((loss, torch.autograd.grad(loss.sum(), lp)[0]))
    assert torch.allclose(results[0][0], results[1][0]) and torch.allclose(results[0][1], results[1][1])


def test_agrees_with_warprnnt_numba_through_a_hat_head():
    """warprnnt applies log_softmax itself: on normalised HAT log-probs the loss is the same,
    and its extra softmax gradient term vanishes once chained through the HAT head."""
    warprnnt = pytest.importorskip("warprnnt_numba")
    import numba
    crit = warprnnt.RNNTLossNumba(blank=0, reduction="none")
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 6, 4, 7, generator=g) * 2).requires_grad_(True)
    targets = torch.randint(1, 7, (3, 3), generator=g)
    tl, ul = torch.tensor([6, 4, 2]), torch.tensor([3, 2, 0])
    threads = numba.get_num_threads()
    try:
        ref = crit(hat_log_probs(logits), targets.int(), tl.int(), ul.int())
    finally:  # warprnnt sets numba's thread count for the whole process and leaves it
        numba.set_num_threads(threads)
    mine = transducer_loss(hat_log_probs(logits), targets, tl, ul)
    assert torch.allclose(ref, mine, atol=1e-4)
    g_ref = torch.autograd.grad(ref.sum(), logits)[0]
    g_mine = torch.autograd.grad(mine.sum(), logits)[0]
    assert torch.allclose(g_ref, g_mine, atol=1e-5) and g_mine.abs().max() > 0.1


@settings(max_examples=20, deadline=None)
@given(T=st.integers(1, 5), U=st.integers(0, 4), V=st.integers(2, 6), seed=st.integers(0, 10 ** 6))
def test_fused_hat_loss_equals_hat_head_then_transducer_loss(T, U, V, seed):
    from toolkit.losses.transducer import hat_transducer_loss
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(3, T + 1, U + 2, V, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    targets = torch.randint(1, V, (3, U + 1), generator=g)
    tl, ul = torch.tensor([T, T + 1, 1]), torch.tensor([U, U + 1, 0])
    ref = transducer_loss(hat_log_probs(logits), targets, tl, ul)
    fused = hat_transducer_loss(logits, targets, tl, ul)
    w = torch.rand(3, generator=g, dtype=torch.float64)  # a non-uniform upstream gradient
    g_ref = torch.autograd.grad((ref * w).sum(), logits)[0]
    g_fused = torch.autograd.grad((fused * w).sum(), logits)[0]
    assert torch.allclose(ref, fused, atol=1e-5)
    assert torch.allclose(g_ref, g_fused, atol=1e-5)


def test_fused_hat_loss_takes_bfloat16_logits_and_returns_their_dtype():
    from toolkit.losses.transducer import hat_transducer_loss
    logits = torch.randn(2, 4, 3, 5).to(torch.bfloat16).requires_grad_(True)
    targets, tl, ul = torch.tensor([[1, 4], [2, 3]]), torch.tensor([4, 3]), torch.tensor([2, 1])
    loss = hat_transducer_loss(logits, targets, tl, ul)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    ref = transducer_loss(hat_log_probs(logits.detach().float()), targets, tl, ul)
    assert grad.dtype == torch.bfloat16 and torch.isfinite(grad.float()).all()
    assert torch.allclose(loss.float(), ref, rtol=1e-2)


# ---- the DP on the tensors' device --------------------------------------------------------
def _arc_grids(B, T, U, seed, scale=3.0):
    """Random blank (B, T, U+1) and label (B, T, U) log-prob grids, float64, no V axis."""
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(B, T, U + 1, generator=g, dtype=torch.float64) * scale
    label = F.logsigmoid(-b[:, :, :U]) + torch.rand(B, T, U, generator=g, dtype=torch.float64).log() * 2
    return F.logsigmoid(b), label


@pytest.mark.cuda
def test_cuda_kernel_equals_cpu_kernel_in_the_cuda_simulator():
    import os
    import subprocess
    import sys
    code = (
        "import numpy as np, torch\n"
        "from test_transducer import _arc_grids\n"
        "from toolkit.losses import transducer as Tr, transducer_cuda as C\n"
        "bl, ll = (x.numpy() for x in _arc_grids(4, 7, 5, 0))\n"
        "ll[1, 2, 1] = -np.inf  # a missing arc, as pruning makes\n"
        "tl, ul = np.array([7, 5, 1, 3]), np.array([5, 2, 0, 5])\n"
        "gpu, cpu = C.forward_backward_host(bl, ll, tl, ul), Tr.forward_backward_cpu(bl, ll, tl, ul)\n"
        "assert all(np.allclose(x, y, atol=1e-5, rtol=1e-5) for x, y in zip(gpu, cpu))\n"
        "assert gpu[1][0, :, :6].min() < -0.1 and (gpu[1][2, 1:] == 0).all()  # padding untouched\n"
        "print('ok')\n")
    here = os.path.dirname(os.path.abspath(__file__))
    env = cuda_kernel_env(PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_float32_dp_agrees_with_float64_on_a_long_lattice():
    """T = 1500, U = 400: the float32 recurrence (the CUDA kernel's arithmetic) stays within
    1e-5 relative of float64 in the loss and 2e-3 absolute in the arc occupancies."""
    from toolkit.losses.transducer import forward_backward_cpu
    bl, ll = (x.numpy() for x in _arc_grids(2, 1500, 400, 1))
    tl, ul = np.array([1500, 1100]), np.array([400, 300])
    c64, gb64, gl64 = forward_backward_cpu(bl, ll, tl, ul)
    c32, gb32, gl32 = forward_backward_cpu(bl.astype(np.float32), ll.astype(np.float32), tl, ul)
    assert c32.dtype == gb32.dtype == np.float32
    np.testing.assert_allclose(c32, c64, rtol=1e-5)
    assert np.abs(gb32 - gb64).max() < 2e-3 and np.abs(gl32 - gl64).max() < 2e-3


def test_arc_occupancies_sum_to_the_path_length():
    """Every path takes T blanks and U labels, so the occupancies sum to T and U."""
    from toolkit.losses.transducer import lattice_nll
    bl, ll = _arc_grids(2, 6, 4, 2)
    costs, occ_b, occ_l = lattice_nll(bl, ll, torch.tensor([6, 3]), torch.tensor([4, 2]))
    assert occ_b.sum((1, 2)).tolist() == pytest.approx([6, 3]) and occ_l.sum((1, 2)).tolist() == pytest.approx([4, 2])
    assert not occ_b.requires_grad and (occ_b >= 0).all()


@pytest.mark.cuda
@pytest.mark.skipif(not nvvm_available(), reason="needs libNVVM to compile PTX")
def test_cuda_kernel_compiles_to_ptx_for_hopper():
    from numba import cuda, types
    from toolkit.losses import transducer_cuda
    f3, i1 = types.float32[:, :, ::1], types.int64[::1]
    sig = (f3, f3, i1, i1, f3, f3, types.float32[::1], f3, f3)
    ptx, _ = cuda.compile_ptx(transducer_cuda._kernel().py_func, sig, cc=(9, 0))
    assert "bar.sync" in ptx and ".f64" not in ptx  # barriers between diagonals, float32 only


@pytest.mark.cuda
@needs_cuda_device(torch.cuda.is_available())
def test_transducer_loss_on_cuda_equals_cpu():
    lp = random_lattice(3, 20, 6, 9, 4).float()
    targets = torch.randint(1, 9, (3, 6), generator=torch.Generator().manual_seed(1))
    tl, ul = torch.tensor([20, 11, 3]), torch.tensor([6, 2, 6])
    x = lp.cuda().requires_grad_(True)
    gpu = transducer_loss(x, targets.cuda(), tl.cuda(), ul.cuda())
    (g_gpu,) = torch.autograd.grad(gpu.sum(), x)
    y = lp.clone().requires_grad_(True)
    cpu = transducer_loss(y, targets, tl, ul)
    (g_cpu,) = torch.autograd.grad(cpu.sum(), y)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-4, atol=1e-4)
