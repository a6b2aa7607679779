"""What only the fused path has: its compiled kernels and their fallbacks. Parity of every fused
op is in test_ops."""
import warnings

import pytest
import torch
from torch._vmap_internals import _vmap

from nnbasics import fused, ops
from nnbasics.fused import kernels as fused_kernels
from nnbasics.testing import OPS, compare, run_both


def test_kernels_compile_only_tensors_with_storage():
    """Wrappers of vmap and grad, including the legacy vmap of gradcheck(check_batched_grad=True),
    go to the eager formula: tracing them fails ("meta converter nyi")."""
    seen = []

    def probe(t):
        seen.append(fused_kernels._plain(t))
        return t * 1

    x = torch.randn(3, 4)
    probe(x), probe(x.t()), probe(torch.nn.Parameter(x))
    _vmap(probe)(x)
    torch.func.vmap(probe)(x)
    torch.func.grad(lambda t: probe(t).sum())(x)
    assert seen == [True, True, True, False, False, False]


def test_batched_gradcheck_compiles_nothing_it_cannot():
    """Regression: check_batched_grad once made every fused backward warn and fall back for good."""
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch.autograd.gradcheck(fused.Tanh.apply, (x,), check_batched_grad=True)
    assert not [w for w in caught if "nnbasics.fused" in str(w.message)]


def test_kernel_compiles_more_kinds_of_input_than_dynamos_recompile_limit(capfd):
    """Each kind of input has its own compiled version (and Dynamo budget): ten kinds, more than
    the recompile_limit of 8 per code object, all compile, silently."""
    def halve(x):
        return x * 0.5

    k = fused_kernels.kernel(halve, min_elements=0)
    kinds = [(dtype, rank) for dtype in (torch.float32, torch.float64) for rank in range(1, 6)]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("error", message="nnbasics.fused")
        for dtype, rank in kinds:
            x = torch.ones((2,) * rank, dtype=dtype)
            assert torch.equal(k(x), torch.full_like(x, 0.5))
    assert k.fallbacks == set()
    assert "recompile_limit" not in capfd.readouterr().err


def test_kernel_falls_back_for_the_kind_of_input_that_fails_to_compile():
    def double(x):
        if x.dim() == 3:
            torch._dynamo.graph_break()  # fullgraph=True makes this a compile error
        return x * 2

    k = fused_kernels.kernel(double, min_elements=0)
    with torch.no_grad():
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="nnbasics.fused")
            assert torch.equal(k(torch.ones(2, 2)), torch.full((2, 2), 2.0))
        with pytest.warns(RuntimeWarning, match=r"compiling double failed for inputs \(\('cpu', torch.float32, 3, True\),\)"):
            assert torch.equal(k(torch.ones(2, 2, 2)), torch.full((2, 2, 2), 2.0))
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="nnbasics.fused")  # said once per kind
            assert torch.equal(k(torch.ones(3, 1, 2)), torch.full((3, 1, 2), 2.0))
            assert torch.equal(k(torch.ones(5)), torch.full((5,), 2.0))
    assert k.fallbacks == {(("cpu", torch.float32, 3, True),)}


def test_views_of_differently_shaped_tensors_share_one_compiled_version(capfd):
    """Regression: a view's base used to be guarded on, so rows cut from tensors of other
    shapes (x[None], a movedim/reshape) recompiled one kind past Dynamo's limit."""
    def double(x):
        return x * 2

    k = fused_kernels.kernel(double, min_elements=0)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("error", message="nnbasics.fused")
        for n in range(1, 12):
            views = (torch.ones(n)[None], torch.ones(n, 2, 3).movedim(1, -1).reshape(-1, 2), torch.ones(2 * n, 3)[::2])
            for v in views:
                assert torch.equal(k(v), v * 2)
    assert k.fallbacks == set()
    assert "recompile" not in capfd.readouterr().err


def _kernels():
    """Every compiled kernel of nnbasics.fused: module-level ones and the classes' forwards."""
    found = [v for v in vars(fused).values() if callable(v) and hasattr(v, "compiled")]
    for cls in vars(fused).values():
        forward = vars(cls).get("forward") if isinstance(cls, type) else None
        forward = getattr(forward, "__func__", forward)
        if hasattr(forward, "compiled"):
            found.append(forward)
    return found


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_fused_op_compiles_above_the_size_threshold_and_matches_torch(device, dtype):
    """The other tests use small tensors, which the kernels run eagerly (fused_kernels.MIN_ELEMENTS);
    here every op runs at twice that size, so its compiled loops run, and must agree with torch."""
    kernels = _kernels()
    for op in OPS:
        sample = op.make(2 * fused_kernels.MIN_ELEMENTS, device, dtype, True)
        if op.random:  # another random stream than torch's: check the form y = x · mask / (1 - p)
            x = sample.args[0]
            y = op.custom("fused")(x, **sample.kwargs)
            p = sample.kwargs.get("p", 0.5)
            assert torch.all((y == 0) | torch.isclose(y, x / (1 - p))), op.name
            continue
        for name, mine, ref in run_both(op, sample, "fused"):
            assert compare(f"{op.name} {name}", mine, ref).close, (op.name, name)
    assert sum(len(k.compiled) for k in kernels) > 0
    assert all(not k.fallbacks for k in kernels)



def test_cross_entropy_compiles_only_over_many_classes():
    """Over few classes the compiled loss saves microseconds a call and costs seconds to compile
    (fused.MIN_CLASSES): MNIST's 10 classes run eagerly, 64 classes compile; both equal torch's."""
    forward = fused._cross_entropy_forward
    saved = dict(forward.compiled)
    forward.compiled.clear()
    try:
        for classes, compiles in ((10, False), (2 * fused.MIN_CLASSES, True)):
            rows = 2 * fused_kernels.MIN_ELEMENTS // classes + 1
            x, t = torch.randn(rows, classes), torch.randint(0, classes, (rows,))
            mine = fused.CrossEntropy.apply(x, t, None, -100, "sum", 0.1)
            assert bool(forward.compiled) == compiles, classes
            want = torch.nn.functional.cross_entropy(x, t, reduction="sum", label_smoothing=0.1)
            assert compare(f"cross_entropy over {classes} classes", mine, want).close
    finally:
        forward.compiled.clear()
        forward.compiled.update(saved)


def test_cross_entropy_in_bfloat16_compiles_a_float32_loop():
    """Compiled for bfloat16 logits, the loss and its gradient are computed in float32 and rounded
    once (the forward by kernel(..., float32=True), the backward by its 16-bit formula): they are
    the float32 results rounded to bfloat16, to one unit in the last place (the built-in, which
    rounds its log-probabilities to bfloat16 before its backward exponentiates them, is further
    off), and the compiled kinds are bfloat16's."""
    forward, backward = fused._cross_entropy_forward, fused._cross_entropy_backward_16
    classes = 2 * fused.MIN_CLASSES
    rows = 2 * fused_kernels.MIN_ELEMENTS // classes + 1
    x = (4 * torch.randn(rows, classes)).bfloat16().requires_grad_()
    t = torch.randint(0, classes, (rows,))
    mine = fused.CrossEntropy.apply(x, t, None, -100, "mean", 0.0)
    (grad_mine,) = torch.autograd.grad(mine, x)
    x32 = x.detach().float().requires_grad_()
    want = torch.nn.functional.cross_entropy(x32, t)
    (grad_want,) = torch.autograd.grad(want, x32)
    assert mine.dtype == grad_mine.dtype == torch.bfloat16
    assert any(kind[0][1] == torch.bfloat16 for kind in forward.compiled)
    assert any(kind[1][1] == torch.bfloat16 for kind in backward.compiled)
    ulp = 2.0 ** -7  # bfloat16's spacing relative to a value: 8 significant bits
    torch.testing.assert_close(mine.float(), want, rtol=ulp, atol=0)
    torch.testing.assert_close(grad_mine.float(), grad_want, rtol=ulp, atol=1e-30)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_cross_entropy_saves_each_rows_log_sum_exp_where_compiled(dtype):
    """Compiled, the forward also computes each row's log-sum-exp, kept in float32 or wider and saved
    for backward beside the textbook's tensors; the loss the caller gets carries nothing of it.
    Eagerly (10 classes) only the textbook's tensors are saved. Gradients from it equal the
    textbook's, and double backward, which differentiates the textbook's formula, too."""
    rows = 2 * fused_kernels.MIN_ELEMENTS // (2 * fused.MIN_CLASSES) + 1
    for classes, compiled in ((10, False), (2 * fused.MIN_CLASSES, True)):
        x = (4 * torch.randn(rows, classes, dtype=torch.float64)).to(dtype).requires_grad_()
        t = torch.randint(0, classes, (rows,))
        t[::7] = -100
        args = (t, None, -100, "mean", 0.1)
        mine = fused.CrossEntropy.apply(x, *args)
        assert not hasattr(mine, fused._LSE)
        saved = mine.grad_fn.saved_tensors
        assert len(saved) == 3 + compiled, classes
        if compiled:
            wide = torch.promote_types(dtype, torch.float32)
            assert saved[3].dtype == wide
            torch.testing.assert_close(saved[3], torch.logsumexp(x.detach().to(wide), 1))
        (grad,) = torch.autograd.grad(mine, x)
        # compiled, bfloat16 is computed in float32 and rounded once; eagerly it is the textbook's
        x_want = x.detach().to(saved[3].dtype if compiled else dtype).requires_grad_()
        (grad_want,) = torch.autograd.grad(ops.CrossEntropy.apply(x_want, *args), x_want)
        ulp = 2.0 ** -7 if compiled and dtype == torch.bfloat16 else 1e-12
        torch.testing.assert_close(grad.to(grad_want.dtype), grad_want, rtol=ulp, atol=1e-30)
        if dtype == torch.float64:
            v = torch.randn_like(x)
            hvp = [torch.autograd.grad((torch.autograd.grad(f.apply(x, *args), x, create_graph=True)[0] * v).sum(), x)[0]
                   for f in (fused.CrossEntropy, ops.CrossEntropy)]
            torch.testing.assert_close(*hvp)


# --------------------------------------------------------------------------- the C loop of hardtanh's derivative

def _hardtanh_inputs(n, dtype, lo, hi):
    """n values around and at the bounds, NaN and ±inf among them, NaN also in the very last place
    (where ATen's hardtanh_backward runs its scalar tail)."""
    s = torch.linspace(lo - 1, hi + 1, n, dtype=torch.float64).to(dtype)
    s[:: max(1, n // 7)] = float("nan")
    s[1::5] = lo
    s[2::5] = hi
    s[3:4] = float("inf")
    s[4:5] = -float("inf")
    s[-1] = float("nan")
    v = torch.randn(n, dtype=torch.float64).to(dtype)
    v[6:7] = float("nan")
    v[7:8] = float("inf")
    return v, s


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_the_c_loop_gives_the_textbooks_bits_at_every_position(dtype, threads):
    """grad_y where lo < s < hi, +0 elsewhere, NaN s included wherever it stands (the scalar tail
    of ATen's kernel too), for sizes that are and are not multiples of a vector, on one thread or two,
    and for a bound that falls between two bfloat16 values (compared in float32, as PyTorch does)."""
    from nnbasics.fused import cloop
    from nnbasics.ops import hardtanh

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for n in (1, 15, 17, 33, 4096 + 31, 3 * 65536 + 7):
            for lo, hi in ((-1.0, 1.0), (0.0, 6.0), (-0.7, 0.7)):
                v, s = _hardtanh_inputs(n, dtype, lo, hi)
                with torch.no_grad():
                    assert cloop.serves(v, s)
                    got = cloop.hardtanh_derivative_times(v, s, lo, hi)
                want = hardtanh.hardtanh_derivative_times(v, s, lo, hi)
                assert got.dtype == dtype and got.shape == v.shape
                assert torch.equal(got.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                                   want.view(torch.int16 if dtype == torch.bfloat16 else torch.int32)), (n, lo, hi)
    finally:
        torch.set_num_threads(before)


def test_the_fused_hardtanh_uses_the_c_loop_where_it_serves_and_the_formula_elsewhere():
    """Contiguous float32 and bfloat16 CPU tensors go to the C loop; a float64 tensor, an expanded
    gradient and autograd's recording (double backward) take the other way: all give the textbook's
    gradient."""
    from nnbasics.fused import cloop
    from nnbasics.ops import hardtanh

    x = torch.tensor([-2.0, -1.0, -0.5, float("nan"), 0.5, 1.0, 2.0])
    with torch.no_grad():
        assert cloop.serves(x, x) and cloop.serves(x.bfloat16(), x.bfloat16())
        assert not cloop.serves(x.double(), x.double())
        assert not cloop.serves(torch.ones(()).expand(7), x)
        assert not cloop.serves(x[::2], x[::2])
        assert not cloop.serves(x, x.bfloat16())
    assert not cloop.serves(x, x)  # grad mode: autograd records what runs
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        xi = x.to(dtype).requires_grad_()
        y = fused.Hardtanh.apply(xi, -1.0, 1.0)
        for g in (torch.ones(()).to(dtype).expand(7), torch.arange(7.0).to(dtype)):
            (got,) = torch.autograd.grad(y, xi, g, retain_graph=True)
            assert torch.equal(got, hardtanh.hardtanh_derivative_times(g, y.detach(), -1.0, 1.0)), (dtype, g)
        (got,) = torch.autograd.grad(y, xi, torch.ones_like(y), create_graph=True)
        assert torch.equal(got.detach(), hardtanh.hardtanh_derivative_times(torch.ones_like(y), y.detach(), -1.0, 1.0))


def test_without_a_c_compiler_the_c_loop_says_so_once_and_the_formula_runs(monkeypatch):
    from nnbasics.fused import cloop

    monkeypatch.setattr(cloop, "_library", None)
    monkeypatch.setenv("CC", "no-such-compiler-nnbasics")
    x = torch.linspace(-2, 2, 9)
    with torch.no_grad():
        with pytest.warns(RuntimeWarning, match="compiling the C loop of hardtanh's derivative failed .*no C compiler"):
            assert not cloop.serves(x, x)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="nnbasics.fused")  # said once
            assert not cloop.serves(x, x)
    xi = x.clone().requires_grad_()
    (got,) = torch.autograd.grad(fused.Hardtanh.apply(xi, -1.0, 1.0).sum(), xi)
    assert torch.equal(got, ((x > -1) & (x < 1)).float())
