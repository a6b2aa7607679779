"""PyTorch's own sample inputs, run through nnbasics: a suite nobody here wrote.

``torch.testing._internal.common_methods_invocations.op_db`` holds, for every built-in op, the
samples PyTorch's own tests feed it (scalars, empty tensors, odd ranks, every keyword). For each
nnbasics op, every sample of its built-in twin's OpInfo (all its variants: softmax's
``with_dtype`` too) is run through ``nnbasics.functional``, ``impl="custom"`` and ``"fused"``,
in float64 and float32, on each device, and must

- be accepted (no sample the built-in accepts may raise);
- give the built-in's output: values (``testing.tolerances``), shape, dtype and layout (the
  strides of every dimension longer than 1: a dimension of size 1 or 0 has no observable stride);
- give every input gradient the built-in gives, with the same dtype, shape and layout, for a
  random (contiguous) upstream gradient;
- in float64, pass ``gradcheck`` (forward AD included) and ``gradgradcheck``.

OpInfo's ``reference_inputs`` (the larger set PyTorch's reference tests use: extremal values,
large and odd-strided tensors) run the same way. They agree everywhere but hardtanh's gradient
at a NaN input, where torch is not consistent with itself (``NAN_GRAD_RULE``): there nnbasics'
rule, 0, is checked instead, and every other element is compared.

Every sample runs in every combination but one: ``gradcheck``/``gradgradcheck`` run for
``impl="custom"`` only. For the fused path, each compiled kernel costs seconds per kind of input
on a small CPU, and its checks are already there: its float64 gradients must equal torch's to
1e-7 above (stricter than finite differences), and its double backward is the reference's
eager formula, which gradgradcheck checks for custom. The fused path must also compile every
kind of input without a fallback warning.

Dropout draws random numbers. The built-in's OpInfo runs it under ``wrapper_set_seed`` (seed
42); nnbasics runs under the same wrapper. nnbasics' dropout draws its mask from another
stream than torch's (16-bit integers against a threshold, ops/dropout.py), so the check is
consistency instead: every output element is either 0 or x / (1 - p), the gradient
uses the very same mask (grad = g · out / x elementwise), and p = 0, p = 1 and
``training=False`` must equal the built-in exactly. The mask's statistics are tested in
test_numerics.
"""
import functools
import warnings

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import nnbasics.functional as F
from nnbasics.testing import compare

# nnbasics op -> the names of its built-in twin's OpInfo entries
TWINS = {
    "linear": "nn.functional.linear",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "nn.functional.relu",
    "leaky_relu": "nn.functional.leaky_relu",
    "hardtanh": "nn.functional.hardtanh",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "cross_entropy": "nn.functional.cross_entropy",
    "mse_loss": "nn.functional.mse_loss",
    "binary_cross_entropy": "nn.functional.binary_cross_entropy",
    "binary_cross_entropy_with_logits": "nn.functional.binary_cross_entropy_with_logits",
    "dropout": "nn.functional.dropout",
}
RANDOM = {"dropout"}


@functools.cache
def opinfos(name):
    """The OpInfo entries (all variants) of the twin of nnbasics op ``name``."""
    try:
        from torch.testing._internal.common_methods_invocations import op_db
    except ImportError as exc:  # expecttest, most likely: it is in nnbasics' `test` extra
        pytest.fail(f"PyTorch's OpInfo database does not import ({exc}); install the test extra: "
                    "pip install -e '.[test]' (or python3 quickstart.py test)")
    found = [op for op in op_db if op.name == TWINS[name]]
    assert found, f"torch has no OpInfo named {TWINS[name]!r}"
    return found


def samples(name, device, dtype):
    """(OpInfo, sample) for every sample of every variant, made with requires_grad=True."""
    return [(info, s) for info in opinfos(name) for s in info.sample_inputs(device, dtype, requires_grad=True)]


def reference_samples(name, device, dtype):
    """(OpInfo, sample) for the samples ``reference_inputs`` adds to ``sample_inputs`` (it yields
    those first, then its own: extremal values, large and odd-strided tensors)."""
    out = []
    for info in opinfos(name):
        n = len(list(info.sample_inputs(device, dtype, requires_grad=True)))
        out += [(info, s) for s in list(info.reference_inputs(device, dtype, requires_grad=True))[n:]]
    return out


def _desc(info, sample):
    def d(a):
        return f"{tuple(a.shape)}" if isinstance(a, torch.Tensor) else repr(a)
    kw = ", ".join(f"{k}={d(v)}" for k, v in sample.kwargs.items())
    variant = f".{info.variant_test_name}" if info.variant_test_name else ""
    return f"{info.name}{variant}({d(sample.input)}, {', '.join(map(d, sample.args))}{', ' if kw else ''}{kw})"


def _layout(t):
    """The strides that can be observed: those of the dimensions longer than 1."""
    return tuple(st for size, st in zip(t.shape, t.stride()) if size > 1) if t.numel() else ()


def _copy(a):
    return a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a


def _call(fn, sample, random):
    """fn(input, *args, **kwargs) on fresh copies of the sample; returns (output, the inputs that
    require grad, in order: input, args, kwargs)."""
    inp, args = _copy(sample.input), [_copy(a) for a in sample.args]
    kwargs = {k: _copy(v) for k, v in sample.kwargs.items()}
    from torch.testing._utils import wrapper_set_seed
    out = wrapper_set_seed(fn, inp, *args, **kwargs) if random else fn(inp, *args, **kwargs)
    diff = [a for a in (inp, *args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.requires_grad]
    return out, diff


def _grads(out, inputs):
    if not out.requires_grad or not inputs:
        return [None] * len(inputs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(out)
    return list(torch.autograd.grad(out, inputs, g, allow_unused=True)), g


def _same(what, mine, ref, failures):
    if (mine is None) != (ref is None):
        failures.append(f"{what}: {'no ' if mine is None else ''}gradient where the built-in gives {'one' if ref is not None else 'none'}")
        return
    if mine is None:
        return
    if (mine.shape, mine.dtype) != (ref.shape, ref.dtype):
        failures.append(f"{what}: {tuple(mine.shape)} {mine.dtype}, built-in {tuple(ref.shape)} {ref.dtype}")
    elif _layout(mine) != _layout(ref):
        failures.append(f"{what}: strides {mine.stride()}, built-in {ref.stride()} (shape {tuple(ref.shape)})")
    elif not (r := compare(what, mine, ref)).close:
        failures.append(str(r))


def _dropout_consistent(what, sample, out, grad, g, failures):
    """nnbasics' dropout mask is its own: check it is one mask, used twice."""
    x, p = sample.input.detach(), sample.kwargs.get("p", 0.5)
    if p in (0.0, 1.0) or not sample.kwargs.get("training", True):
        return False  # deterministic: compared exactly by the caller
    kept = out != 0
    scale = 1 / (1 - p)
    ok = torch.allclose(out, torch.where(kept, x * scale, 0)) and torch.allclose(grad, torch.where(kept, g * scale, 0))
    if not ok:
        failures.append(f"{what}: output and gradient do not use one mask scaled by 1/(1-p)")
    return True


# Ops whose gradient at a NaN input is nnbasics' rule rather than torch's, because torch's own
# is not one rule: hardtanh's backward gives 0 where the input is NaN in its vectorised loop and
# passes the gradient in its scalar tail (the last numel mod vector-width elements), so the same
# NaN gets 0 or the upstream gradient depending on its position (torch 2.13, CPU). nnbasics
# gives 0 at every position (a NaN is not inside (min_val, max_val); see ops/hardtanh.py).
NAN_GRAD_RULE = {"hardtanh"}


def _nan_gradients_apart(what, x, mine, ref, failures):
    """Check nnbasics' rule (0) where x is NaN, and return both gradients with those places zeroed
    for the comparison of the rest."""
    nan = x.detach().isnan().expand(mine.shape)
    if nan.any():
        if (mine[nan] != 0).any():
            failures.append(f"{what}: gradient at a NaN input is not 0")
        mine, ref = mine.masked_fill(nan, 0), ref.masked_fill(nan, 0)
    return mine, ref


def _check_all(name, impl, pairs):
    """Every (OpInfo, sample) of ``pairs`` through nnbasics and the built-in: see the module docstring."""
    failures, ran = [], 0
    mine_fn = functools.partial(getattr(F, name), impl=impl)
    random = name in RANDOM
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for info, sample in pairs:
            dtype = sample.input.dtype
            what = f"{impl} {dtype} {_desc(info, sample)}"
            ref, ref_in = _call(info.op, sample, random)
            try:
                mine, mine_in = _call(mine_fn, sample, random)
            except Exception as exc:  # noqa: BLE001 - the built-in accepted this sample: any exception is a failure
                failures.append(f"{what}: raised {type(exc).__name__}: {exc}")
                continue
            ran += 1
            ref_grads, _ = _grads(ref, ref_in) if ref.requires_grad else ([None] * len(ref_in), None)
            mine_grads, g = _grads(mine, mine_in) if mine.requires_grad else ([None] * len(mine_in), None)
            if random and \
                    _dropout_consistent(what, sample, mine.detach(), mine_grads[0], g, failures):
                continue
            _same(f"{what} output", mine, ref, failures)
            if name in NAN_GRAD_RULE and mine_grads[0] is not None and ref_grads[0] is not None:
                mine_grads[0], ref_grads[0] = _nan_gradients_apart(what, sample.input, mine_grads[0], ref_grads[0],
                                                                   failures)
            for i, (gm, gr) in enumerate(zip(mine_grads, ref_grads)):
                _same(f"{what} grad of differentiable input {i}", gm, gr, failures)
    fallbacks = [str(w.message) for w in caught if "nnbasics.fused" in str(w.message)]
    assert not failures and not fallbacks, "\n".join(failures + fallbacks)
    assert ran > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", list(TWINS))
def test_pytorch_opinfo_samples(name, dtype, impl, device):
    _check_all(name, impl, samples(name, device, dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_pytorch_opinfo_reference_inputs(dtype, impl, device):
    """The larger sample set of PyTorch's reference tests (extremal values, tensors of 1M
    elements, odd strides), for every op whose OpInfo has one (torch 2.13: sigmoid, tanh, relu,
    hardtanh). The fused path runs it in float32 only: its large tensors are what the fused
    kernels compile for, seconds per kind of input on a small CPU, and float64 adds nothing
    there that the float64 samples above do not check."""
    if impl == "fused" and dtype == torch.float64:
        pytest.skip("fused reference inputs run in float32 (see the docstring)")
    ran = 0
    for name in TWINS:
        pairs = reference_samples(name, device, dtype)
        if pairs:
            _check_all(name, impl, pairs)
            ran += 1
    assert ran > 0, "no OpInfo of an nnbasics twin has reference inputs beyond its samples"


@pytest.mark.parametrize("name", list(TWINS))
def test_pytorch_opinfo_samples_gradcheck(name, device):
    """First and second derivatives of every float64 sample against finite differences
    (impl="custom": see the module docstring)."""
    impl = "custom"
    random = name in RANDOM
    checked = 0
    for info, sample in samples(name, device, torch.float64):
        tensors = [sample.input, *sample.args, *sample.kwargs.values()]
        diff = [i for i, a in enumerate(tensors) if isinstance(a, torch.Tensor) and a.requires_grad]
        if not diff or sample.input.numel() == 0:
            continue
        keys = list(sample.kwargs)

        def fn(*inputs, tensors=tensors, diff=diff, sample=sample, keys=keys):
            full = list(tensors)
            for i, t in zip(diff, inputs):
                full[i] = t
            n = 1 + len(sample.args)
            call = functools.partial(getattr(F, name), impl=impl)
            args, kwargs = full[:n], dict(zip(keys, full[n:]))
            if random:
                torch.manual_seed(42)  # one mask for every evaluation
            return call(*args, **kwargs)

        inputs = tuple(tensors[i] for i in diff)
        what = f"{impl} {_desc(info, sample)}"
        assert gradcheck(fn, inputs, check_forward_ad=True), what
        assert gradgradcheck(fn, inputs), what
        checked += 1
    assert checked > 0
