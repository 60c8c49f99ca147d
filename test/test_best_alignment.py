"""Best-alignment consistency loss: exact against brute-force enumeration, kernels agree."""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import cuda_kernel_env, needs_cuda_device, nvvm_available
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.losses import best_alignment_cuda, best_alignment_numba, best_alignment_reference
from toolkit.losses.best_alignment import alignment_cost_matrix, best_alignment, best_alignment_loss, best_path

PATTERNS = ["frames_to_tokens", "dtw", "tokens_to_frames"]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- brute force: every valid alignment, as (frames, tokens, tie key) -------------------------
def _f2t_paths(n, m):
    for ups in itertools.combinations(range(1, n), m - 1):  # frames where the token advances
        tokens = [sum(u <= i for u in ups) for i in range(n)]
        yield list(range(n)), tokens, tuple(reversed(tokens))  # backtrace prefers the diagonal


def _t2f_paths(n, m):
    for frames in itertools.combinations(range(n), m):
        yield list(frames), list(range(m)), tuple(-f for f in reversed(frames))  # latest frames


def _dtw_paths(n, m):
    def back(i, j):  # (reversed pairs, step codes from the end): 0 diag, 1 vertical, 2 horizontal
        if i == 0 and j == 0:
            yield [(0, 0)], []
            return
        for code, (di, dj) in enumerate([(1, 1), (1, 0), (0, 1)]):
            if i - di >= 0 and j - dj >= 0:
                for pairs, codes in back(i - di, j - dj):
                    yield pairs + [(i, j)], [code] + codes
    for pairs, codes in back(n - 1, m - 1):
        yield [p[0] for p in pairs], [p[1] for p in pairs], tuple(codes)


ENUM = {"frames_to_tokens": _f2t_paths, "tokens_to_frames": _t2f_paths, "dtw": _dtw_paths}


def brute_force(a, t, pattern):
    """(best cost, best frames, best tokens, margin to the runner-up) with the documented ties."""
    c = ((a[:, None, :].astype(np.float64) - t[None, :, :]) ** 2).sum(-1)  # (n, m)
    scored = sorted((float(c[f, g].sum()), key, f, g) for f, g, key in ENUM[pattern](len(a), len(t)))
    margin = scored[1][0] - scored[0][0] if len(scored) > 1 else np.inf
    return scored[0][0], scored[0][2], scored[0][3], margin


def _ours(a, t, pattern, **kw):
    A, T = torch.tensor(a)[None], torch.tensor(t)[None]
    loss, path = best_alignment_loss(A, torch.tensor([len(a)]), T, torch.tensor([len(t)]),
                                     pattern=pattern, normalize="none", **kw)
    k = int(path.lengths[0])
    return loss[0].item(), path.frames[0, :k].tolist(), path.tokens[0, :k].tolist(), float(path.dp_cost[0])


@st.composite
def problems(draw, pattern, integer=False):
    m = draw(st.integers(1, 5))
    n = draw(st.integers(1 if pattern == "dtw" else m, 8))
    d = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if integer:  # exact in float32, so ties are real ties
        return (rng.integers(-2, 3, (n, d)).astype(np.float32), rng.integers(-2, 3, (m, d)).astype(np.float32))
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(m, d)).astype(np.float32)


# ---- exactness ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_loss_and_path_equal_brute_force_on_random_floats(pattern, backend):
    @FAST
    @given(problems(pattern))
    def check(problem):
        a, t = problem
        best, frames, tokens, margin = brute_force(a, t, pattern)
        loss, f, g, dp = _ours(a, t, pattern, backend=backend)
        assert loss == pytest.approx(best, rel=1e-4, abs=1e-4)
        assert dp == pytest.approx(best, rel=1e-4, abs=1e-3)
        if margin > 1e-3:
            assert (f, g) == (frames, tokens)
    check()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_ties_follow_documented_rule_on_integer_inputs(pattern):
    @FAST
    @given(problems(pattern, integer=True))
    def check(problem):
        a, t = problem
        best, frames, tokens, _ = brute_force(a, t, pattern)
        loss, f, g, dp = _ours(a, t, pattern)
        assert loss == best and dp == best
        assert (f, g) == (frames, tokens)
    check()


def test_all_equal_costs_give_documented_paths():
    a, t = np.zeros((6, 2), np.float32), np.zeros((3, 2), np.float32)
    _, f, g, _ = _ours(a, t, "frames_to_tokens")
    assert g == [0, 0, 0, 0, 1, 2]  # diagonal preferred from the end: extra frames go to token 0
    _, f, g, _ = _ours(a, t, "tokens_to_frames")
    assert f == [3, 4, 5]  # each token takes the latest optimal frame
    _, f, g, _ = _ours(np.zeros((3, 2), np.float32), np.zeros((5, 2), np.float32), "dtw")
    assert list(zip(f, g)) == [(0, 0), (0, 1), (0, 2), (1, 3), (2, 4)]


# ---- gradients -------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("normalize", ["frames", "tokens", "dim", "none"])
def test_gradient_equals_autograd_through_brute_force_best_path(pattern, normalize):
    rng = np.random.default_rng(7)
    n, m, d = 7, 4, 3
    a, t = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(m, d)).astype(np.float32)
    _, frames, tokens, margin = brute_force(a, t, pattern)
    assert margin > 1e-3
    A = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    T = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    ref = ((A[frames] - T[tokens]) ** 2).sum() / {"frames": n, "tokens": m, "dim": n * d, "none": 1}[normalize]
    ref.backward()
    A2 = torch.tensor(a)[None].requires_grad_()
    T2 = torch.tensor(t)[None].requires_grad_()
    loss, _ = best_alignment_loss(A2, torch.tensor([n]), T2, torch.tensor([m]), pattern=pattern, normalize=normalize)
    loss.sum().backward()
    assert loss[0].item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(A2.grad[0].double(), A.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(T2.grad[0].double(), T.grad, rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), pattern=st.sampled_from(PATTERNS), layers=st.integers(1, 3),
       threads=st.sampled_from([1, 2]))
def test_fused_cpu_backward_equals_autograd_of_the_gathered_pair_distances(seed, pattern, layers, threads):
    """The CPU backward (one numba pass over the path's rows) against autograd through
    path_cost's gather/scatter formulation, with random upstream weights, one of them 0,
    padding of NaN and lengths that vary per example."""
    from toolkit.losses.best_alignment import path_cost
    rng = np.random.default_rng(seed)
    B, n, m, d = int(rng.integers(1, 5)), int(rng.integers(4, 30)), int(rng.integers(1, 10)), int(rng.integers(1, 17))
    m = min(m, n)
    nl = torch.from_numpy(rng.integers(max(1, m), n + 1, B))
    ml = torch.from_numpy(np.minimum(rng.integers(1, m + 1, B), nl.numpy()))
    a = torch.from_numpy(rng.normal(size=(layers, B, n, d)).astype(np.float32))
    t = torch.from_numpy(rng.normal(size=(layers, B, m, d)).astype(np.float32))
    for b in range(B):  # padding may hold anything
        a[:, b, int(nl[b]):] = float("nan")
        t[:, b, int(ml[b]):] = float("nan")
    upstream = torch.from_numpy(rng.normal(size=(layers, B)).astype(np.float32))
    upstream[0, 0] = 0.0
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        grads = []
        for how in ("fused", "gathered"):
            A, T = a.clone().requires_grad_(), t.clone().requires_grad_()
            loss, path = best_alignment_loss(A, nl, T, ml, pattern=pattern, normalize="none")
            if how == "gathered":
                loss = path_cost(A, T, path, identity_frames=pattern == "frames_to_tokens")
            (loss * upstream).sum().backward()
            grads.append((A.grad, T.grad))
    finally:
        torch.set_num_threads(before)
    for fused, gathered in zip(*grads):
        assert torch.isfinite(fused).all()
        torch.testing.assert_close(fused, gathered, rtol=1e-5, atol=1e-5)
    assert grads[0][0][0, 0].abs().sum() == 0  # upstream 0: nothing passes


def test_frames_off_the_path_get_no_gradient():
    a = torch.randn(1, 9, 4, requires_grad=True)
    t = torch.randn(1, 3, 4, requires_grad=True)
    loss, path = best_alignment_loss(a, torch.tensor([9]), t, torch.tensor([3]), pattern="tokens_to_frames")
    loss.sum().backward()
    on_path = torch.zeros(9, dtype=torch.bool)
    on_path[path.frames[0, :3]] = True
    assert (a.grad[0][~on_path] == 0).all() and (a.grad[0][on_path] != 0).any()


# ---- batching, padding, stacking ------------------------------------------------------------
def _batch(rng, lens_n, lens_m, d, pad_n=0, pad_m=0):
    B = len(lens_n)
    a = torch.tensor(rng.normal(size=(B, max(lens_n) + pad_n, d)), dtype=torch.float32)
    t = torch.tensor(rng.normal(size=(B, max(lens_m) + pad_m, d)), dtype=torch.float32)
    return a, torch.tensor(lens_n), t, torch.tensor(lens_m)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_result_does_not_depend_on_padding(pattern):
    rng = np.random.default_rng(3)
    a, nl, t, ml = _batch(rng, [12, 7, 9], [5, 3, 4], 6)
    big_a = torch.cat([a, 1e3 * torch.randn(3, 11, 6)], 1)  # garbage padding
    big_t = torch.cat([t, 1e3 * torch.randn(3, 4, 6)], 1)
    l1, p1 = best_alignment_loss(a, nl, t, ml, pattern=pattern)
    l2, p2 = best_alignment_loss(big_a, nl, big_t, ml, pattern=pattern)
    torch.testing.assert_close(l1, l2)
    for b in range(3):
        k = int(p1.lengths[b])
        assert torch.equal(p1.frames[b, :k], p2.frames[b, :k]) and torch.equal(p1.tokens[b, :k], p2.tokens[b, :k])
        solo, _ = best_alignment_loss(a[b:b + 1, :nl[b]], nl[b:b + 1], t[b:b + 1, :ml[b]], ml[b:b + 1], pattern=pattern)
        torch.testing.assert_close(solo[0], l1[b])


@pytest.mark.parametrize("pattern", PATTERNS)
def test_stacked_layers_equal_per_layer_calls(pattern):
    nl, ml = torch.tensor([10, 6]), torch.tensor([4, 5])
    a, t = torch.randn(3, 2, 10, 5), torch.randn(3, 2, 6, 5)
    loss, path = best_alignment_loss(a, nl, t, ml, pattern=pattern)
    assert loss.shape == (3, 2) and path.frames.shape[:2] == (3, 2)
    for layer in range(3):
        one, p = best_alignment_loss(a[layer], nl, t[layer], ml, pattern=pattern)
        torch.testing.assert_close(loss[layer], one)
        assert torch.equal(path.frames[layer], p.frames) and torch.equal(path.tokens[layer], p.tokens)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_large_values_do_not_overflow(dtype):
    torch.manual_seed(0)
    a = (300 * torch.randn(2, 12, 16)).to(dtype)  # squares ~1e5 overflow float16
    t = (300 * torch.randn(2, 5, 16)).to(dtype)
    nl, ml = torch.tensor([12, 9]), torch.tensor([5, 4])
    loss, path = best_alignment_loss(a.requires_grad_(), nl, t, ml)
    ref, ref_path = best_alignment_loss(a.float(), nl, t.float(), ml)
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=0)
    assert torch.equal(path.tokens, ref_path.tokens)
    loss.sum().backward()
    assert a.grad.dtype == dtype


# ---- n < m, bad input ----------------------------------------------------------------------
def test_fewer_frames_than_tokens_raises_naming_the_example():
    a, nl, t, ml = _batch(np.random.default_rng(0), [8, 3], [4, 5], 2)
    with pytest.raises(ValueError, match=r"example 1 \(utt-b\).*3 speech frames < 5.*fallback='dtw'"):
        best_alignment_loss(a, nl, t, ml, names=["utt-a", "utt-b"])
    with pytest.raises(ValueError, match="example 1: 3 speech frames < 5"):
        best_alignment_loss(a, nl, t, ml, pattern="tokens_to_frames")


def test_dtw_fallback_handles_only_the_short_examples():
    a, nl, t, ml = _batch(np.random.default_rng(1), [8, 3], [4, 5], 2)
    loss, path = best_alignment_loss(a, nl, t, ml, fallback="dtw")
    f2t, _ = best_alignment_loss(a[:1], nl[:1], t[:1, :4], ml[:1])
    dtw, p = best_alignment_loss(a[1:, :3], nl[1:], t[1:], ml[1:], pattern="dtw")
    torch.testing.assert_close(loss, torch.cat([f2t, dtw]))
    assert int(path.lengths[1]) == int(p.lengths[0]) and int(path.lengths[0]) == 8


@pytest.mark.parametrize("kwargs, message", [
    ({"pattern": "viterbi"}, "unknown pattern"), ({"normalize": "batch"}, "unknown normalize"),
    ({"fallback": "skip"}, "unknown fallback"), ({"backend": "fpga"}, "unknown backend")])
def test_bad_options_are_named(kwargs, message):
    a, nl, t, ml = _batch(np.random.default_rng(0), [4], [2], 2)
    with pytest.raises(ValueError, match=message):
        best_alignment_loss(a, nl, t, ml, **kwargs)


def test_lengths_beyond_the_tensor_are_rejected():
    a, nl, t, ml = _batch(np.random.default_rng(0), [4, 3], [2, 2], 2)
    with pytest.raises(ValueError, match="example 0: lengths n=9"):
        best_alignment_loss(a, torch.tensor([9, 3]), t, ml)
    with pytest.raises(ValueError, match="example 1: lengths n=3, m=0"):
        best_alignment_loss(a, nl, t, torch.tensor([2, 0]))


# ---- kernels agree ------------------------------------------------------------------------
def _random_problem(seed, P=6, N=40, M=15):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(P, N, M, generator=g)
    n = torch.randint(M, N + 1, (P,), generator=g)
    m = torch.randint(1, M + 1, (P,), generator=g)
    return cost, n, m


@pytest.mark.parametrize("pattern", PATTERNS)
def test_numba_kernel_equals_torch_reference(pattern):
    for seed in range(3):
        cost, n, m = _random_problem(seed)
        ours = best_alignment_numba.best_path_numba(cost, n, m, pattern)
        ref = best_alignment_reference.best_path_reference(cost, n, m, pattern)
        for x, y in zip(ours, ref):
            assert torch.equal(x, y)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_distances_formed_inside_the_numba_dp_equal_the_separate_cost_matrix(pattern):
    """best_path on dot products + operands (the distances made per example inside the DP)
    gives bit for bit what the DP gives on alignment_cost_matrix's distances."""
    from toolkit.losses.best_alignment import _dot_products
    g = torch.Generator().manual_seed(3)
    a, t = torch.randn(2, 5, 40, 16, generator=g), torch.randn(2, 5, 12, 16, generator=g)
    nl, ml = torch.tensor([40, 33, 20, 12, 17] * 2), torch.tensor([12, 9, 12, 12, 1] * 2)
    separate = best_path(alignment_cost_matrix(a, t).reshape(10, 40, 12), nl, ml, pattern, "numba")
    dots, a_rows, t_rows = _dot_products(a, t)
    inside = best_path(dots, nl, ml, pattern, "numba", (a_rows, t_rows))
    for x, y in zip(separate, inside):
        assert torch.equal(x, y)
    torch_inside = best_path(_dot_products(a, t)[0], nl, ml, pattern, "torch", (a_rows, t_rows))
    for x, y in zip(separate, torch_inside):
        assert torch.equal(x, y)


def test_numba_kernel_threads_follow_torch_and_problem_size(monkeypatch):
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here")
    used = []
    for name in ("_batch_parallel", "_batch_serial"):
        kernel = getattr(best_alignment_numba, name)
        monkeypatch.setattr(best_alignment_numba, name,
                            lambda *a, k=kernel, n=name: (used.append((n, numba.get_num_threads())), k(*a))[1])
    big, n, m = _random_problem(0, P=16, N=400, M=330)  # 2.1M cells: two threads' worth
    n[:], m[:] = 400, 330
    small = _random_problem(1)
    before = numba.get_num_threads()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = best_path(big, n, m, backend="numba")
        best_path(*small, backend="numba")
        torch.set_num_threads(1)  # the kernel takes min(numba, torch, size) threads
        one = best_path(big, n, m, backend="numba")
    finally:
        torch.set_num_threads(threads)
    # one thread: the serial build, no parallel region (whose idle OpenMP pool would spin)
    assert [u[0] for u in used] == ["_batch_parallel", "_batch_serial", "_batch_serial"]
    assert used[0][1] == min(2, before) and numba.get_num_threads() == before
    assert all(torch.equal(x, y) for x, y in zip(one, two))


_CACHED_KERNEL_CALL = {
    "best_alignment": ("toolkit.losses.best_alignment_numba", "_batch_{}",
                       "P, n, m = 4, 30, 10\n"
                       "args = (np.random.rand(P, n, m).astype(np.float32), np.full(P, n), np.full(P, m), 0,\n"
                       "        np.zeros((P, n), np.int64), np.zeros((P, n), np.int64), np.zeros(P, np.int64),\n"
                       "        np.zeros(P, np.float32), np.empty((0, 0, 0), np.float32), np.empty((0, 0, 0), np.float32))\n"),
    "transducer": ("toolkit.losses.transducer", "_forward_backward_{}",
                   "B, T, U = 4, 6, 3\n"
                   "bl, ll = -np.random.rand(B, T, U + 1), -np.random.rand(B, T, U)\n"
                   "args = (bl, ll, np.full(B, T), np.full(B, U), np.zeros(B), np.zeros_like(bl), np.zeros_like(ll))\n"),
}


@pytest.mark.parametrize("which", sorted(_CACHED_KERNEL_CALL))
def test_parallel_kernel_loaded_from_numba_cache_is_parallel(which, tmp_path):
    """The serial and parallel builds must not share numba's on-disk cache entry (keyed by
    function name and line, not flags): after the serial build has filled the cache, a
    fresh process calling the parallel one must enter a parallel region."""
    module, name, setup = _CACHED_KERNEL_CALL[which]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "2"}
    head = f"import numpy as np, numba\nimport {module} as K\n{setup}"
    for kind, check in (("serial", ""), ("parallel", "print(numba.threading_layer())\n")):
        code = head + f"K.{name.format(kind)}(*args)\n" + check
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() in ("workqueue", "omp", "tbb")


@pytest.mark.cuda
def test_cuda_kernels_agree_with_numba_in_the_cuda_simulator():
    code = (
        "import numpy as np, torch\n"
        "from toolkit.losses import best_alignment_cuda as C, best_alignment_numba as Nb\n"
        "g = torch.Generator().manual_seed(0)\n"
        "c = torch.rand(3, 7, 4, generator=g); n = torch.tensor([7, 5, 4]); m = torch.tensor([4, 2, 4])\n"
        "for pat in ['frames_to_tokens', 'tokens_to_frames', 'dtw']:\n"
        "    a = C.best_path_host(c.numpy(), n.numpy(), m.numpy(), pat)\n"
        "    b = Nb.best_path_numba(c, n, m, pat)\n"
        "    assert all(np.array_equal(x, y.numpy()) for x, y in zip(a, b)), pat\n"
        "print('ok')\n")
    env = cuda_kernel_env()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not nvvm_available(), reason="needs libNVVM to compile PTX")
def test_cuda_kernels_compile_to_ptx_for_hopper():
    from numba import cuda, types
    sig = (types.float32[:, :, ::1], types.int64[::1], types.int64[::1], types.uint8[:, :, ::1],
           types.int64[:, ::1], types.int64[:, ::1], types.float32[::1])
    for name, kernel in best_alignment_cuda._kernels().items():
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        assert ".shared" in ptx and "bar.sync" in ptx, name  # rows in shared memory, block barriers


@pytest.mark.cuda
@needs_cuda_device(best_alignment_cuda.available())
@pytest.mark.parametrize("pattern", PATTERNS)
def test_cuda_kernel_equals_cpu_kernel(pattern):
    cost, n, m = _random_problem(5, P=8, N=120, M=40)
    gpu = best_path(cost.cuda(), n.cuda(), m.cuda(), pattern, backend="cuda")
    cpu = best_path(cost, n, m, pattern, backend="numba")
    for x, y in zip(gpu, cpu):
        assert torch.equal(x.cpu(), y)
    a = torch.randn(2, 3, 30, 8, device="cuda", requires_grad=True)
    t = torch.randn(2, 3, 10, 8, device="cuda")
    loss, path = best_alignment_loss(a, torch.tensor([30, 20, 10]), t, torch.tensor([10, 5, 10]))
    cpu_loss, _ = best_alignment_loss(a.detach().cpu(), torch.tensor([30, 20, 10]), t.cpu(), torch.tensor([10, 5, 10]))
    torch.testing.assert_close(loss.detach().cpu(), cpu_loss, rtol=1e-5, atol=1e-5)
    loss.sum().backward()


def test_best_alignment_alone_returns_path_without_grad():
    a = torch.randn(2, 6, 3, requires_grad=True)
    t = torch.randn(2, 4, 3)
    path = best_alignment(a, torch.tensor([6, 5]), t, torch.tensor([4, 2]))
    assert path.frames.shape == (2, 6) and path.lengths.tolist() == [6, 5]
    assert path.tokens[1, 5].item() == -1 and not path.dp_cost.requires_grad


def test_second_backward_through_the_same_graph_gives_the_same_gradient():
    """The forward keeps only the inputs and the path (the pair differences are formed in
    backward), so a retained graph can be differentiated twice."""
    a = torch.randn(1, 6, 3, requires_grad=True)
    loss, _ = best_alignment_loss(a, torch.tensor([6]), torch.randn(1, 4, 3), torch.tensor([4]))
    (g1,) = torch.autograd.grad(loss.sum(), a, retain_graph=True)
    (g2,) = torch.autograd.grad(loss.sum(), a)
    assert torch.equal(g1, g2) and g1.abs().sum() > 0


def test_loss_value_is_the_dp_optimum_and_equals_the_path_pairs_distance():
    from toolkit.losses.best_alignment import path_cost
    a, t = torch.randn(2, 3, 40, 8, requires_grad=True), torch.randn(2, 3, 12, 8)
    nl, ml = torch.tensor([40, 31, 12]), torch.tensor([12, 9, 12])
    loss, path = best_alignment_loss(a, nl, t, ml, normalize="none")
    assert torch.equal(loss.detach(), path.dp_cost)
    torch.testing.assert_close(loss, path_cost(a, t, path), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_cost_matrix_equals_direct_squared_distances(threads):
    a, t = 3 * torch.randn(4, 30, 16), 3 * torch.randn(4, 11, 16)
    direct = ((a.double()[:, :, None] - t.double()[:, None]) ** 2).sum(-1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # 2: the parallel numba build (where numba has two threads)
    try:
        cost = alignment_cost_matrix(a, t)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(cost.double(), direct, rtol=1e-5, atol=1e-3)


def test_empty_batch_and_all_short_examples_with_fallback():
    loss, path = best_alignment_loss(torch.randn(0, 5, 3), torch.zeros(0, dtype=torch.long),
                                     torch.randn(0, 4, 3), torch.zeros(0, dtype=torch.long))
    assert loss.shape == (0,) and path.frames.shape == (0, 5)
    a, t = torch.randn(2, 2, 3), torch.randn(2, 4, 3)
    loss, path = best_alignment_loss(a, torch.tensor([2, 1]), t, torch.tensor([4, 3]), fallback="dtw")
    dtw, _ = best_alignment_loss(a, torch.tensor([2, 1]), t, torch.tensor([4, 3]), pattern="dtw")
    torch.testing.assert_close(loss, dtw)
    assert path.lengths.tolist() == [4, 3]


def test_auto_backend_falls_back_to_torch_when_the_cuda_kernel_cannot_compile(monkeypatch, caplog):
    from toolkit.losses import best_alignment as ba

    def no_nvvm(*args):
        raise RuntimeError("libNVVM cannot be found")
    monkeypatch.setattr(ba, "_CUDA_BROKEN", [])
    monkeypatch.setattr(ba, "_pick_backend", lambda backend, device: "cuda" if backend == "auto" else backend)
    monkeypatch.setattr(best_alignment_cuda, "best_path_cuda", no_nvvm)
    cost, n, m = _random_problem(2)
    got = best_path(cost, n, m)
    assert all(torch.equal(x, y) for x, y in zip(got, best_path(cost, n, m, backend="numba")))
    assert "libNVVM cannot be found" in ba._CUDA_BROKEN[0] and "using the PyTorch DP" in caplog.text


def test_autocast_region_still_computes_in_float32():
    a, t = 30 * torch.randn(2, 9, 16), 30 * torch.randn(2, 4, 16)
    lens_a, lens_t = torch.tensor([9, 7]), torch.tensor([4, 3])
    ref, ref_path = best_alignment_loss(a, lens_a, t, lens_t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cost = alignment_cost_matrix(a, t)
        loss, path = best_alignment_loss(a.requires_grad_(), lens_a, t, lens_t)
    assert cost.dtype == torch.float32
    torch.testing.assert_close(cost, alignment_cost_matrix(a, t))
    assert loss.dtype == torch.float32 and torch.equal(path.tokens, ref_path.tokens)
    torch.testing.assert_close(loss, ref)
    loss.sum().backward()


# ---- non-finite values: one policy on every backend -------------------------------------------
def assert_valid_alignment(frames, tokens, length, n, m, pattern):
    """The path is an alignment the pattern allows, inside the example's n x m block."""
    f, g = [int(x) for x in frames[:length]], [int(x) for x in tokens[:length]]
    assert all(int(x) == -1 for x in frames[length:]) and all(int(x) == -1 for x in tokens[length:])
    if pattern == "frames_to_tokens":
        assert f == list(range(n)) and g[0] == 0 and g[-1] == m - 1
        assert all(b - a in (0, 1) for a, b in zip(g, g[1:])), g
    elif pattern == "tokens_to_frames":
        assert g == list(range(m)) and all(0 <= x < n for x in f)
        assert all(b > a for a, b in zip(f, f[1:])), f
    else:
        assert (f[0], g[0]) == (0, 0) and (f[-1], g[-1]) == (n - 1, m - 1)
        assert all((b - a, d - c) in ((1, 1), (1, 0), (0, 1)) for a, b, c, d in zip(f, f[1:], g, g[1:]))


def nonfinite_problem():
    """cost (8, 12, 6) with lengths; pairs 1-5 have a NaN/inf row, column or cell in their own
    block, pair 6 only in its padding; pairs 0 and 7 are clean. -> (cost, n, m, bad pairs)."""
    g = torch.Generator().manual_seed(5)
    cost = torch.rand(8, 12, 6, generator=g)
    n = torch.tensor([12, 9, 10, 7, 12, 8, 9, 11])
    m = torch.tensor([6, 5, 3, 6, 1, 4, 4, 6])
    nan, inf = float("nan"), float("inf")
    cost[1, 4, :5] = nan                # a speech row
    cost[2, :10, 2] = nan               # a text column
    cost[3, :7, 5] = inf                # an inf text column: no alignment avoids it
    cost[4, 0, 0] = nan                 # one cell every path uses
    cost[5, 3, 1] = nan                 # one cell some paths use
    cost[6, 9:, :] = nan                # padding only
    cost[6, :, 4:] = inf
    return cost, n, m, {1, 2, 3, 4, 5}


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_nonfinite_cost_gives_nan_optimum_and_a_valid_path(pattern, backend):
    cost, n, m, bad = nonfinite_problem()
    if pattern != "dtw":
        m = torch.minimum(m, n)
    frames, tokens, lengths, dp = best_path(cost, n, m, pattern, backend)
    clean = torch.tensor([p not in bad for p in range(len(n))])
    ref = best_path(torch.nan_to_num(cost[clean], nan=0.5, posinf=0.5), n[clean], m[clean], pattern, "torch")
    for p in range(len(n)):
        assert_valid_alignment(frames[p], tokens[p], int(lengths[p]), int(n[p]), int(m[p]), pattern)
        assert bool(dp[p].isnan()) == (p in bad), p
    for x, y in zip((frames[clean], tokens[clean], lengths[clean], dp[clean]), ref):  # padding changes nothing
        assert torch.equal(x, y)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_numba_kernel_alone_never_backtraces_off_the_alignment_on_nonfinite_cost(pattern):
    cost, n, m, bad = nonfinite_problem()
    if pattern != "dtw":
        m = torch.minimum(m, n)
    frames, tokens, lengths, dp = best_alignment_numba.best_path_numba(cost, n, m, pattern)
    for p in range(len(n)):
        assert_valid_alignment(frames[p], tokens[p], int(lengths[p]), int(n[p]), int(m[p]), pattern)
        assert bool(torch.isfinite(dp[p])) == (p not in bad), p


@pytest.mark.cuda
def test_cuda_kernels_give_valid_paths_on_nonfinite_cost_in_the_cuda_simulator():
    code = (
        "import sys, numpy as np, torch\n"
        "sys.path.insert(0, %r)\n"
        "from test_best_alignment import nonfinite_problem, assert_valid_alignment\n"
        "from toolkit.losses import best_alignment_cuda as C, best_alignment_numba as Nb\n"
        "cost, n, m, bad = nonfinite_problem()\n"
        "for pat in ['frames_to_tokens', 'tokens_to_frames', 'dtw']:\n"
        "    mm = m if pat == 'dtw' else torch.minimum(m, n)\n"
        "    fr, tk, ln, dp = C.best_path_host(cost.numpy(), n.numpy(), mm.numpy(), pat)\n"
        "    ref = Nb.best_path_numba(cost, n, mm, pat)\n"
        "    for p in range(len(n)):\n"
        "        assert_valid_alignment(fr[p], tk[p], int(ln[p]), int(n[p]), int(mm[p]), pat)\n"
        "        assert bool(np.isfinite(dp[p])) == (p not in bad), (pat, p)\n"
        "        if p not in bad:\n"
        "            assert all(np.array_equal(x[p], y[p].numpy()) for x, y in zip((fr, tk, ln, dp), ref)), (pat, p)\n"
        "print('ok')\n") % str(os.path.dirname(os.path.abspath(__file__)))
    env = cuda_kernel_env()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def _two_examples(seed=0, n=(9, 6), m=(4, 3), d=5):
    g = torch.Generator().manual_seed(seed)
    speech = torch.randn(2, max(n), d, generator=g)
    text = torch.randn(2, max(m), d, generator=g)
    return speech, torch.tensor(n), text, torch.tensor(m)


@pytest.mark.parametrize("where", ["speech", "text"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_nonfinite_valid_row_gives_that_example_a_nan_loss(where, value, backend):
    speech, sl, text, tl = _two_examples()
    clean, _ = best_alignment_loss(speech, sl, text, tl, backend=backend)
    (speech if where == "speech" else text)[1, 2, 0] = value
    loss, path = best_alignment_loss(speech, sl, text, tl, backend=backend)
    assert torch.isnan(loss[1]) and torch.isnan(path.dp_cost[1])
    assert loss[0] == clean[0]
    assert_valid_alignment(path.frames[1], path.tokens[1], int(path.lengths[1]), 6, 3, "frames_to_tokens")


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_padding_never_reaches_the_loss_or_a_valid_gradient(pattern, value):
    speech, sl, text, tl = _two_examples()
    grads = []
    for pad in (0.0, value):
        s, t = speech.clone(), text.clone()
        s[1, 6:] = pad  # example 1's padding
        t[1, 3:] = pad
        s.requires_grad_(True)
        t.requires_grad_(True)
        loss, _ = best_alignment_loss(s, sl, t, tl, pattern=pattern, backend="numba")
        loss.sum().backward()
        grads.append((loss.detach(), s.grad, t.grad))
    for clean, padded in zip(*grads):
        assert torch.isfinite(padded).all() and torch.equal(clean, padded)


def test_float_lengths_are_an_error_not_truncated():
    speech, sl, text, tl = _two_examples()
    with pytest.raises(ValueError, match="speech_lens must be an integer tensor.*float"):
        best_alignment_loss(speech, sl.float() + 0.7, text, tl)
    with pytest.raises(ValueError, match="text_lens must be an integer tensor"):
        best_alignment(speech, sl, text, tl.double())
