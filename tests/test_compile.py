"""torch.compile(fullgraph=True) traces straight through the hand-written Functions."""
import pytest
import torch

import nnbasics.functional as F
from nnbasics.nn import MLP
from nnbasics.testing import OPS


def test_compiled_mlp_has_no_graph_break_and_matches_eager(device):
    torch.manual_seed(0)
    model = MLP([20, 32, 16, 5], activation="relu", dropout=0.0).to(device)
    x = torch.randn(12, 20, device=device)
    t = torch.randint(0, 5, (12,), device=device)

    def forward(x, t):
        return F.cross_entropy(F.sigmoid(model(x)) * 4, t, label_smoothing=0.1)

    def loss_and_grads(fn):
        loss = fn(x, t)  # the backward graph is compiled too (AOTAutograd), and runs here
        return loss, torch.autograd.grad(loss, list(model.parameters()))

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(forward)(x, t)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1

    eager_loss, eager_grads = loss_and_grads(forward)
    loss, grads = loss_and_grads(torch.compile(forward, fullgraph=True))
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bfloat16 autocast"])
def test_training_step_of_an_mlp_with_dropout_compiles_without_a_graph_break(impl, autocast):
    """The MLP's activation+dropout module, the autocast casts (each Function's ``autocast``) and
    the loss trace in one graph, under CPU autocast too."""
    model = MLP([20, 32, 16, 5], dropout=0.2, impl=impl)
    x, t = torch.randn(12, 20), torch.randint(0, 5, (12,))

    def forward(x, t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return F.cross_entropy(model(x), t, impl=impl)

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(forward)(x, t)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    loss = torch.compile(forward, fullgraph=True)(x, t)
    assert loss.dtype == torch.float32
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def _first_sample(op, device):
    """The op's first sample with a differentiable input of rank ≥ 2 (no empty, no NaN)."""
    return next(s for s in op.samples(device, torch.float64, True)
                if s.args[0].dim() >= 2 and s.args[0].numel() and s.smooth and "eval" not in s.desc)


def _fixed(op, sample, impl):
    """f(x): the op on x in place of the sample's first input, the rest of the sample fixed."""
    rest = [a.detach() if isinstance(a, torch.Tensor) else a for a in sample.args[1:]]
    kwargs = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in sample.kwargs.items()}
    fn = op.custom(impl)
    return lambda x: fn(x, *rest, **kwargs)


def _transformed(transform, f, x):
    """(torch.func.<transform> of f, its argument): grad of f's sum, or vmap over a batch of 3
    inputs with the rest of the sample shared. Random ops draw one mask for the whole batch."""
    if transform == "grad":
        return torch.func.grad(lambda x: f(x).sum()), x
    return torch.func.vmap(f, randomness="same"), torch.stack([x, x * 0.5, 1 - x])  # probabilities stay so


def _eager_and_compiled(fn, x, backend):
    """fn(x) eagerly and compiled, from one seed. Inductor's fallback_random draws the numbers
    eager code draws, so random ops compare too."""
    torch._dynamo.reset()
    with torch._inductor.config.patch(fallback_random=True):
        torch.manual_seed(0)
        eager = fn(x)
        torch.manual_seed(0)
        compiled = torch.compile(fn, backend=backend, fullgraph=True)(x)
    return eager, compiled


@pytest.mark.parametrize("transform", ["grad", "vmap"])
@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_compile_over_func_transforms_matches_eager(op, transform, impl, device):
    """torch.compile(torch.func.grad(f)) and torch.compile(torch.func.vmap(f)) give what the same
    transform gives eagerly, op by op. Compiled with the "aot_eager" backend: Dynamo and
    AOTAutograd trace the transform through the Function exactly as the default backend does,
    without the seconds of C++ code generation per op (Inductor runs in the next test)."""
    sample = _first_sample(op, device)
    fn, x = _transformed(transform, _fixed(op, sample, impl), sample.args[0].detach())
    eager, compiled = _eager_and_compiled(fn, x, "aot_eager")
    torch.testing.assert_close(compiled, eager, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("transform", ["grad", "vmap"])
def test_inductor_over_func_transforms_of_every_op(transform, impl, device):
    """The same through Inductor (the default backend), every op in one compiled function so
    that it costs one compile: each op's result is compared with eager."""
    samples = [_first_sample(op, device) for op in OPS]
    fs = [_fixed(op, s, impl) for op, s in zip(OPS, samples)]
    pairs = [_transformed(transform, f, s.args[0].detach()) for f, s in zip(fs, samples)]

    def every_op(xs):
        return [fn(x) for (fn, _), x in zip(pairs, xs)]

    eager, compiled = _eager_and_compiled(every_op, [x for _, x in pairs], "inductor")
    for op, c, e in zip(OPS, compiled, eager):
        torch.testing.assert_close(c, e, rtol=1e-7, atol=1e-9, msg=lambda m, op=op: f"{op.name}: {m}")
