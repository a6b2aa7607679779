"""The op registry, shared by the tests, the benchmarks and ``nnbasics.check``.

Every op is registered once (as in PyTorch's OpInfo): its name, its built-in twin, and a
function that makes sample inputs. Tests and benchmarks iterate over ``OPS``, so a new
op gets every check by adding one entry.
"""
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as TF

from .. import functional as F


@dataclass
class Sample:
    """One call: ``fn(*args, **kwargs)``. Tensors with ``requires_grad`` are the differentiable inputs."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    desc: str = ""
    smooth: bool = True  # False: numerical differentiation is not meaningful here (e.g. an empty mean is NaN)

    def __repr__(self):
        return self.desc


@dataclass
class OpInfo:
    name: str
    samples: Callable  # (device, dtype, requires_grad) -> list[Sample]
    make: Callable  # (numel-ish size, device, dtype, requires_grad) -> Sample, for benchmarks
    random: bool = False  # draws random numbers: reseed before each call to compare
    differentiable_outputs: bool = True
    zero_size: Callable = None  # (device, dtype, requires_grad) -> list[Sample]: a size 0 in every position
    # For a random op: the built-in math on nnbasics' own draw (its random stream is not torch's),
    # so that run_both compares output and gradient with built-in autograd under the same mask;
    # called with impl= (each implementation draws its own way).
    same_draw: Callable = None

    def custom(self, impl="custom"):
        return functools.partial(getattr(F, self.name), impl=impl)

    @property
    def builtin(self):
        return getattr(TF, self.name)


# --------------------------------------------------------------------------- sample makers

def _t(shape, device, dtype, requires_grad, *, low=None, high=None, away_from=(), gen=None):
    """A random tensor, optionally uniform in [low, high), kept ≥ 0.05 away from kinks."""
    if low is None:
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
    else:
        x = torch.rand(shape, generator=gen, dtype=torch.float64) * (high - low) + low
    for k in away_from:
        close = (x - k).abs() < 0.05
        x = torch.where(close, k + 0.05 * torch.where(x >= k, 1.0, -1.0) + (x - k), x)
    return x.to(device=device, dtype=dtype).requires_grad_(requires_grad)


def _noncontig(shape, device, dtype, requires_grad, **kw):
    """A non-contiguous tensor of ``shape``: the transpose of a contiguous one."""
    x = _t(shape[::-1], device, dtype, False, **kw).permute(tuple(range(len(shape) - 1, -1, -1)))
    assert not x.is_contiguous() or x.numel() <= 1
    return x.requires_grad_(requires_grad)


SHAPES = {"1d": (5,), "2d": (4, 7), "3d": (2, 3, 5), "empty": (0, 7)}


def _unary(kinks=(), kw_variants=({},)):
    def samples(device, dtype, requires_grad):
        g = torch.Generator().manual_seed(0)
        out = []
        for kw in kw_variants:
            tag = ",".join(f"{k}={v}" for k, v in kw.items())
            for sname, shape in SHAPES.items():
                out.append(Sample((_t(shape, device, dtype, requires_grad, away_from=kinks, gen=g),), dict(kw), f"{sname} {tag}"))
            out.append(Sample((_noncontig((4, 6), device, dtype, requires_grad, away_from=kinks, gen=g),), dict(kw), f"noncontig {tag}"))
        return out

    def make(n, device, dtype, requires_grad):
        rows = max(1, n // 1024) if n >= 1024 else 1
        return Sample((_t((rows, n // rows), device, dtype, requires_grad, away_from=kinks),), dict(kw_variants[0]), f"{rows}x{n // rows}")

    return samples, make


def _softmax_samples(device, dtype, requires_grad):
    g = torch.Generator().manual_seed(0)
    out = []
    for sname, shape in SHAPES.items():
        for dim in sorted({0, len(shape) - 1}):
            out.append(Sample((_t(shape, device, dtype, requires_grad, gen=g),), {"dim": dim}, f"{sname} dim={dim}"))
    out.append(Sample((_noncontig((4, 6), device, dtype, requires_grad, gen=g),), {"dim": 1}, "noncontig dim=1"))
    out.append(Sample((_t((3, 5), device, dtype, requires_grad, gen=g) * 30,), {"dim": -1}, "large logits"))
    return out


def _softmax_make(n, device, dtype, requires_grad):
    cols = min(1000, n)
    return Sample((_t((max(1, n // cols), cols), device, dtype, requires_grad),), {"dim": -1}, f"{max(1, n // cols)}x{cols}")


def _linear_samples(device, dtype, requires_grad):
    g = torch.Generator().manual_seed(0)
    w = lambda: _t((3, 5), device, dtype, requires_grad, gen=g)
    b = lambda: _t((3,), device, dtype, requires_grad, gen=g)
    x = lambda shape: _t(shape, device, dtype, requires_grad, gen=g)
    return [
        Sample((x((4, 5)), w(), b()), {}, "2d"),
        Sample((x((4, 5)), w()), {}, "2d no bias"),
        Sample((x((5,)), w(), b()), {}, "1d"),
        Sample((x((2, 3, 5)), w(), b()), {}, "3d"),
        Sample((x((0, 5)), w(), b()), {}, "empty batch"),
        Sample((_noncontig((4, 5), device, dtype, requires_grad, gen=g), _noncontig((3, 5), device, dtype, requires_grad, gen=g), b()), {}, "noncontig"),
        Sample((x((4, 5)).detach(), w(), b()), {}, "input needs no grad"),
    ]


def linear_make(batch, fan_in, fan_out, device, dtype, requires_grad):
    return Sample(
        (_t((batch, fan_in), device, dtype, requires_grad), _t((fan_out, fan_in), device, dtype, requires_grad) / fan_in**0.5,
         _t((fan_out,), device, dtype, requires_grad)), {}, f"{batch}x{fan_in}->{fan_out}")


def _linear_make(n, device, dtype, requires_grad):
    side = max(1, round(n**0.5))
    return linear_make(side, side, side, device, dtype, requires_grad)


def _targets(shape, n_classes, device, gen, ignore=None):
    t = torch.randint(0, n_classes, shape, generator=gen)
    if ignore is not None and t.numel() > 1:
        t.view(-1)[1] = ignore
    return t.to(device)


def _ce_samples(device, dtype, requires_grad):
    g = torch.Generator().manual_seed(0)
    x = lambda shape: _t(shape, device, dtype, requires_grad, gen=g)
    w = _t((5,), device, dtype, False, low=0.2, high=2.0, gen=g)
    out = []
    for red in ("mean", "sum", "none"):
        out += [
            Sample((x((4, 5)), _targets((4,), 5, device, g)), {"reduction": red}, f"2d {red}"),
            Sample((x((4, 5)), _targets((4,), 5, device, g, ignore=-100)), {"reduction": red}, f"ignore_index {red}"),
            Sample((x((4, 5)), _targets((4,), 5, device, g, ignore=2)), {"reduction": red, "ignore_index": 2}, f"ignore_index=2 {red}"),
            Sample((x((4, 5)), _targets((4,), 5, device, g)), {"reduction": red, "label_smoothing": 0.2}, f"smoothing {red}"),
            Sample((x((4, 5)), _targets((4,), 5, device, g, ignore=-100)), {"reduction": red, "weight": w}, f"weight {red}"),
            Sample((x((4, 5)), _targets((4,), 5, device, g, ignore=-100)),
                   {"reduction": red, "weight": w, "label_smoothing": 0.3}, f"weight+smoothing {red}"),
            Sample((x((2, 5, 3, 2)), _targets((2, 3, 2), 5, device, g)), {"reduction": red, "label_smoothing": 0.1}, f"N-d {red}"),
            Sample((x((5,)), _targets((), 5, device, g)), {"reduction": red}, f"unbatched {red}"),
        ]
    out.append(Sample((_noncontig((4, 6), device, dtype, requires_grad, gen=g), _targets((4,), 6, device, g)), {}, "noncontig"))
    out.append(Sample((x((0, 5)), _targets((0,), 5, device, g)), {"reduction": "sum"}, "empty batch sum"))
    out.append(Sample((x((0, 5)), _targets((0,), 5, device, g)), {}, "empty batch mean (NaN)", smooth=False))
    out.append(Sample((x((3, 5)) * 10, _targets((3,), 5, device, g)), {}, "large logits"))
    # Every row ignored: the 'mean' is 0/0 = NaN, its gradient 0 (as in torch; see cross_entropy.py).
    for kw in ({}, {"weight": w}, {"label_smoothing": 0.2}, {"weight": w, "label_smoothing": 0.2}):
        tag = "+".join(kw) or "plain"
        out.append(Sample((x((3, 5)), torch.full((3,), -100, device=device)), dict(kw),
                          f"all ignored mean {tag} (NaN loss, zero gradient)", smooth=False))
    out.append(Sample((x((2, 5, 3)), torch.full((2, 3), 1, device=device)), {"ignore_index": 1, "weight": w},
                      "all ignored N-d mean (NaN loss, zero gradient)", smooth=False))
    # Probability (soft) targets: a target of the input's shape, differentiable like the input.

    def probs(shape):
        p = torch.softmax(_t(shape, device, dtype, False, gen=g), min(1, len(shape) - 1))
        return p.requires_grad_(requires_grad)

    for red in ("mean", "sum", "none"):
        out += [
            Sample((x((4, 5)), probs((4, 5))), {"reduction": red}, f"soft {red}"),
            Sample((x((4, 5)), probs((4, 5))), {"reduction": red, "weight": w, "label_smoothing": 0.3},
                   f"soft weight+smoothing {red}"),
            Sample((x((2, 5, 3)), probs((2, 5, 3))), {"reduction": red, "label_smoothing": 0.1}, f"soft N-d {red}"),
        ]
    out.append(Sample((x((5,)), probs((5,))), {}, "soft unbatched"))
    out.append(Sample((x((4, 5)), _t((4, 5), device, dtype, requires_grad, low=0.0, high=2.0, gen=g)), {"weight": w},
                      "soft unnormalised weight"))
    out.append(Sample((_noncontig((4, 6), device, dtype, requires_grad, gen=g), probs((4, 6))), {}, "soft noncontig"))
    out.append(Sample((x((0, 5)), probs((0, 5))), {"weight": w}, "soft empty batch mean (NaN)", smooth=False))
    return out


def ce_make(rows, classes, device, dtype, requires_grad):
    return Sample((_t((rows, classes), device, dtype, requires_grad), _targets((rows,), classes, device, None)), {}, f"{rows}x{classes}")


def _ce_make(n, device, dtype, requires_grad):
    classes = 1000 if n >= 1000 else 10
    return ce_make(max(1, n // classes), classes, device, dtype, requires_grad)


def _pair_samples(kind):
    """Samples for losses of (input, target): mse (any values), bce (probabilities), bce_logits."""

    def samples(device, dtype, requires_grad):
        g = torch.Generator().manual_seed(0)

        def inp(shape, noncontig=False):
            make = _noncontig if noncontig else _t
            if kind == "bce":
                return make(shape, device, dtype, requires_grad, low=0.05, high=0.95, gen=g)
            return make(shape, device, dtype, requires_grad, gen=g)

        def tgt(shape):
            if kind == "mse":
                return _t(shape, device, dtype, requires_grad, gen=g)
            return _t(shape, device, dtype, requires_grad, low=0.0, high=1.0, gen=g)

        out = []
        for red in ("mean", "sum", "none"):
            for sname, shape in SHAPES.items():
                out.append(Sample((inp(shape), tgt(shape)), {"reduction": red}, f"{sname} {red}", smooth=not (sname == "empty" and red == "mean")))
            out.append(Sample((inp((4, 6), True), tgt((4, 6))), {"reduction": red}, f"noncontig {red}"))
            if kind == "mse":
                w = _t((4, 7), device, dtype, requires_grad, low=0.2, high=2.0, gen=g)
                out.append(Sample((inp((4, 7)), tgt((4, 7))), {"reduction": red, "weight": w}, f"weight {red}"))
            else:
                w = _t((7,), device, dtype, False, low=0.2, high=2.0, gen=g)
                out.append(Sample((inp((4, 7)), tgt((4, 7))), {"reduction": red, "weight": w}, f"weight {red}"))
            if kind == "bce_logits":
                pw = _t((7,), device, dtype, False, low=0.2, high=3.0, gen=g)
                out.append(Sample((inp((4, 7)), tgt((4, 7))), {"reduction": red, "pos_weight": pw}, f"pos_weight {red}"))
        return out

    def make(n, device, dtype, requires_grad):
        shape = (max(1, n // 1024), min(n, 1024))
        lo, hi = (0.05, 0.95) if kind == "bce" else (None, None)
        x = _t(shape, device, dtype, requires_grad, low=lo, high=hi)
        y = _t(shape, device, dtype, False, low=0.0, high=1.0)
        return Sample((x, y), {}, f"{shape[0]}x{shape[1]}")

    return samples, make


def _dropout_samples(device, dtype, requires_grad):
    g = torch.Generator().manual_seed(0)
    out = []
    for p in (0.0, 0.3, 1.0):
        for sname, shape in SHAPES.items():
            out.append(Sample((_t(shape, device, dtype, requires_grad, gen=g),), {"p": p}, f"{sname} p={p}"))
    out.append(Sample((_noncontig((4, 6), device, dtype, requires_grad, gen=g),), {"p": 0.5}, "noncontig p=0.5"))
    out.append(Sample((_t((4, 6), device, dtype, requires_grad, gen=g),), {"p": 0.5, "training": False}, "eval"))
    return out


def _dropout_same_draw(x, p=0.5, training=True, inplace=False, *, impl="custom"):
    """torch's dropout formula, x * m / (1 - p), with the mask m that ``impl`` draws from the same
    seed (``ops.dropout.draw_keep``, ``fused.dropout.draw_keep``) and built-in autograd for the gradient."""
    if not training or p == 0:
        return TF.dropout(x, p, training, inplace)
    if impl == "fused":
        from ..fused.dropout import draw_keep, drawn_p
        p_used = drawn_p(p)
    else:
        from ..ops.dropout import draw_keep
        p_used = p
    keep = draw_keep(x, p)
    scale = 0.0 if p == 1 else 1 / (1 - p_used)
    return x * keep.to(x.dtype) * scale


# --------------------------------------------------------------------------- zero-size dimensions

ZERO_SHAPES = [(0,), (0, 3), (3, 0), (0, 0), (2, 0, 4), (2, 3, 0)]


def _zero_unary(kw_variants=({},)):
    def samples(device, dtype, requires_grad):
        return [Sample((_t(shape, device, dtype, requires_grad),), dict(kw), f"{shape} {kw or ''}", smooth=False)
                for kw in kw_variants for shape in ZERO_SHAPES]
    return samples


def _zero_softmax(device, dtype, requires_grad):
    return [Sample((_t(shape, device, dtype, requires_grad),), {"dim": d}, f"{shape} dim={d}", smooth=False)
            for shape in ZERO_SHAPES for d in range(len(shape))]


def _zero_linear(device, dtype, requires_grad):
    t = functools.partial(_t, device=device, dtype=dtype, requires_grad=requires_grad)
    out = []
    for x, w in (((0, 5), (3, 5)), ((4, 0), (3, 0)), ((4, 5), (0, 5)), ((0, 0), (0, 0)), ((2, 0, 5), (3, 5)),
                 ((2, 3, 0), (4, 0)), ((0,), (3, 0)), ((5,), (0, 5))):
        out.append(Sample((t(x), t(w), t(w[:1])), {}, f"x {x}, weight {w}", smooth=False))
        out.append(Sample((t(x), t(w)), {}, f"x {x}, weight {w}, no bias", smooth=False))
    return out


def _zero_ce(device, dtype, requires_grad):
    t = functools.partial(_t, device=device, dtype=dtype, requires_grad=requires_grad)
    g = torch.Generator().manual_seed(0)
    out = []
    for red in ("mean", "sum", "none"):
        for x, tgt in (((0, 5), (0,)), ((2, 5, 0), (2, 0)), ((0, 5, 3), (0, 3)), ((2, 5, 3, 0), (2, 3, 0))):
            out.append(Sample((t(x), _targets(tgt, 5, device, g)), {"reduction": red}, f"{x} {red}", smooth=False))
            out.append(Sample((t(x), _targets(tgt, 5, device, g)), {"reduction": red, "label_smoothing": 0.2,
                                                                     "weight": _t((5,), device, dtype, False)},
                              f"{x} weight+smoothing {red}", smooth=False))
            out.append(Sample((t(x), torch.softmax(_t(x, device, dtype, False), 1 if len(x) > 1 else 0)
                               .requires_grad_(requires_grad)), {"reduction": red}, f"soft {x} {red}", smooth=False))
        # no classes at all: every target ignored
        out.append(Sample((t((4, 0)), torch.full((4,), -100, device=device)), {"reduction": red}, f"(4, 0) {red}",
                          smooth=False))
    return out


def _zero_pairs(kind):
    def samples(device, dtype, requires_grad):
        out = []
        for red in ("mean", "sum", "none"):
            for shape in ZERO_SHAPES:
                lo, hi = (0.05, 0.95) if kind == "bce" else (None, None)
                x = _t(shape, device, dtype, requires_grad, low=lo, high=hi)
                y = _t(shape, device, dtype, requires_grad and kind == "mse", low=0.0, high=1.0)
                kw = {"reduction": red}
                if kind != "mse" and shape[-1]:
                    kw["weight"] = _t(shape[-1:], device, dtype, False, low=0.2, high=2.0)
                out.append(Sample((x, y), kw, f"{shape} {red}", smooth=False))
        return out
    return samples


OPS = [
    OpInfo("linear", _linear_samples, _linear_make, zero_size=_zero_linear),
    OpInfo("sigmoid", *_unary(), zero_size=_zero_unary()),
    OpInfo("relu", *_unary(kinks=(0.0,)), zero_size=_zero_unary()),
    OpInfo("cross_entropy", _ce_samples, _ce_make, zero_size=_zero_ce),
    OpInfo("tanh", *_unary(), zero_size=_zero_unary()),
    OpInfo("leaky_relu", *_unary(kinks=(0.0,), kw_variants=({}, {"negative_slope": 0.2})),
           zero_size=_zero_unary(({}, {"negative_slope": 0.2}))),
    OpInfo("hardtanh", *_unary(kinks=(-1.0, 1.0, -0.5, 2.0), kw_variants=({}, {"min_val": -0.5, "max_val": 2.0})),
           zero_size=_zero_unary(({}, {"min_val": -0.5, "max_val": 2.0}))),
    OpInfo("softmax", _softmax_samples, _softmax_make, zero_size=_zero_softmax),
    OpInfo("log_softmax", _softmax_samples, _softmax_make, zero_size=_zero_softmax),
    OpInfo("mse_loss", *_pair_samples("mse"), zero_size=_zero_pairs("mse")),
    OpInfo("binary_cross_entropy", *_pair_samples("bce"), zero_size=_zero_pairs("bce")),
    OpInfo("binary_cross_entropy_with_logits", *_pair_samples("bce_logits"), zero_size=_zero_pairs("bce_logits")),
    OpInfo("dropout", _dropout_samples, _unary()[1], random=True, zero_size=_zero_unary(({"p": 0.3}, {"p": 1.0})),
           same_draw=_dropout_same_draw),
]
OPS_BY_NAME = {op.name: op for op in OPS}


# --------------------------------------------------------------------------- running an op and its twin

def run_both(op: OpInfo, sample: Sample, impl="custom", grad_seed=0, noncontig_grad=True):
    """Run the hand-written op and its built-in twin on copies of ``sample``; return
    ([(name, mine, ref)] for the output and each input gradient)."""
    results = []
    outputs = {}
    reference = functools.partial(op.same_draw, impl=impl) if op.random and op.same_draw is not None else op.builtin
    for which, fn in (("mine", op.custom(impl)), ("ref", reference)):
        args = tuple(a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in sample.args)
        kwargs = dict(sample.kwargs)
        if op.random:
            torch.manual_seed(1234)
        out = fn(*args, **kwargs)
        grads = [None] * len(args)
        if out.requires_grad:
            g = torch.Generator().manual_seed(grad_seed)
            grad_out = torch.randn(out.shape[::-1], generator=g, dtype=torch.float64).to(out.device, out.dtype)
            grad_out = grad_out.permute(tuple(range(out.dim() - 1, -1, -1)))
            if not noncontig_grad:
                grad_out = grad_out.contiguous()
            inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
            got = torch.autograd.grad(out, inputs, grad_out, allow_unused=True) if inputs else []
            it = iter(got)
            grads = [next(it) if isinstance(a, torch.Tensor) and a.requires_grad else None for a in args]
        outputs[which] = (out, grads)
    (m_out, m_grads), (r_out, r_grads) = outputs["mine"], outputs["ref"]
    results.append(("output", m_out, r_out))
    for i, (mg, rg) in enumerate(zip(m_grads, r_grads)):
        if mg is not None or rg is not None:
            results.append((f"grad of arg {i}", mg, rg))
    return results
