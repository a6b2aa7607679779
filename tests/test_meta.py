"""The meta device: shapes and dtypes without data, how large models are built before their
weights are loaded, and a check for placement bugs without a GPU. A meta tensor mixes with a
0-d CPU tensor and with nothing else on the CPU, as a CUDA tensor does, so a tensor an op makes
on the CPU by mistake (``torch.tensor(0.)``, ``torch.arange(n)`` without ``device=``) fails
here as it would on CUDA.

Every registered op's forward and backward runs on meta copies of its samples, custom and
fused, and must give the built-in's output and gradient shapes and dtypes on the meta device;
the argument checks that read values (class indices in range, probabilities in [0, 1]) are
skipped there, as under torch.func. ``nn.MLP(..., device="meta")`` builds, runs and
backpropagates, and ``to_empty`` turns it into a real model.
"""
import pytest
import torch

from nnbasics import nn
from nnbasics.testing import OPS


def _meta(a):
    if not isinstance(a, torch.Tensor):
        return a
    return a.detach().to("meta").requires_grad_(a.requires_grad)


def _run(fn, sample):
    args = [_meta(a) for a in sample.args]
    kwargs = {k: _meta(v) for k, v in sample.kwargs.items()}
    out = fn(*args, **kwargs)
    inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.requires_grad]
    grads = []
    if out.requires_grad and inputs:
        grads = torch.autograd.grad(out, inputs, torch.empty_like(out), allow_unused=True)
    return out, grads


def _describe(t):
    return None if t is None else (t.device.type, tuple(t.shape), t.dtype)


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_op_forward_and_backward_on_meta(op, impl):
    failures, skipped = [], []
    samples = op.samples("cpu", torch.float32, True) + op.zero_size("cpu", torch.float32, True)
    for sample in samples:
        what = f"{op.name}[{sample.desc}] {impl}"
        try:
            ref_out, ref_grads = _run(op.builtin, sample)
        except Exception as exc:  # noqa: BLE001 - torch's meta refusals come in any type (mse_loss: ZeroDivisionError)
            skipped.append(f"{what}: {type(exc).__name__}: {exc}")
            continue
        try:
            out, grads = _run(op.custom(impl), sample)
        except Exception as exc:  # noqa: BLE001 - torch.nn.functional ran this sample on meta: any exception fails
            failures.append(f"{what}: raised {type(exc).__name__}: {exc}")
            continue
        if _describe(out) != _describe(ref_out):
            failures.append(f"{what} output: {_describe(out)}, torch {_describe(ref_out)}")
        for i, (g, r) in enumerate(zip(grads, ref_grads, strict=True)):
            if _describe(g) != _describe(r):
                failures.append(f"{what} grad {i}: {_describe(g)}, torch {_describe(r)}")
    assert not failures, "\n".join(failures)
    assert len(skipped) < len(samples) / 4, "\n".join(skipped)


@pytest.mark.parametrize("activation,init", [(a, "torch") for a in nn.ACTIVATIONS] + [("relu", "kaiming"),
                                                                                      ("tanh", "xavier")])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_mlp_on_meta(activation, init, dropout, impl):
    model = nn.MLP([12, 16, 16, 3], activation=activation, dropout=dropout, impl=impl, init=init, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    x, t = torch.empty(5, 12, device="meta"), torch.empty(5, dtype=torch.long, device="meta")
    loss = nn.CrossEntropyLoss(label_smoothing=0.1, impl=impl)(model(x), t)
    assert (loss.device.type, loss.shape) == ("meta", ())
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape and p.grad.device.type == "meta"
               for p in model.parameters())
    real = model.to_empty(device="cpu")
    assert real(torch.randn(5, 12)).shape == (5, 3)


IN_PLACE = {
    "relu": lambda M, x, **k: M.relu(x, inplace=True, **k),
    "leaky_relu": lambda M, x, **k: M.leaky_relu(x, 0.1, inplace=True, **k),
    "leaky_relu negative slope": lambda M, x, **k: M.leaky_relu(x, -0.1, inplace=True, **k),
    "hardtanh": lambda M, x, **k: M.hardtanh(x, -0.5, 2.0, inplace=True, **k),
    "dropout": lambda M, x, **k: M.dropout(x, 0.3, inplace=True, **k),
}


@pytest.mark.parametrize("name", list(IN_PLACE))
def test_in_place_ops_on_meta(name, impl):
    import torch.nn.functional as TF

    import nnbasics.functional as F
    results = []
    for call in (lambda x: IN_PLACE[name](TF, x), lambda x: IN_PLACE[name](F, x, impl=impl)):
        leaf = torch.empty(4, 5, device="meta", requires_grad=True)
        out = call(leaf * 2)
        out.backward(torch.empty_like(out))
        results.append((_describe(out), _describe(leaf.grad)))
    assert results[1] == results[0]


def test_cross_entropy_in_place_on_meta():
    from nnbasics.fused.inplace import cross_entropy_
    w = torch.empty(5, 3, device="meta", requires_grad=True)
    loss = cross_entropy_(torch.empty(4, 5, device="meta") @ w, torch.empty(4, dtype=torch.long, device="meta"))
    loss.backward()
    assert _describe(loss) == ("meta", (), torch.float32) and _describe(w.grad) == ("meta", (5, 3), torch.float32)


def test_fused_kernels_compile_nothing_for_meta_tensors():
    """A meta tensor has no data to fuse: the fused path runs its formulas eagerly there, even
    above the size at which it compiles (a compile per kind costs seconds, for nothing)."""
    from nnbasics import fused
    from nnbasics.fused.kernels import MIN_ELEMENTS
    kernels = [k for k in vars(fused).values() if hasattr(k, "compiled")]
    model = nn.MLP([64, 128, 10], dropout=0.2, impl="fused", device="meta")
    x = torch.empty(2 * MIN_ELEMENTS // 64, 64, device="meta")
    assert x.shape[0] * 128 >= MIN_ELEMENTS
    nn.CrossEntropyLoss(impl="fused")(model(x), torch.empty(x.shape[0], dtype=torch.long, device="meta")).backward()
    meta_kinds = [kind for k in kernels for kind in k.compiled
                  if any(isinstance(part, tuple) and part[0] == "meta" for part in kind)]
    assert not meta_kinds
