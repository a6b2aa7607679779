"""PyTorch's own module tests' inputs, run through nnbasics.nn: a second suite nobody here wrote.

``torch.testing._internal.common_modules.module_db`` holds, for each ``torch.nn`` module, the
constructor and forward inputs PyTorch's ``test/test_modules.py`` uses, a ``reference_fn`` for
many, and ``module_error_inputs_func`` (inputs that must raise). For every nnbasics.nn twin
found there (12 of 13: module_db has no nn.Dropout), each input, ``impl="custom"`` and
``"fused"``, float64 and float32, in training and in eval mode, must give

- torch's output: values (``testing.tolerances``), shape, dtype and observable strides;
- torch's gradients of every input and every parameter, for one random upstream gradient;

and, in float64 and training mode (the rest of the checks depend on neither),

- the value of the input's ``reference_fn``, where it has one;
- torch's ``repr`` and ``state_dict`` keys;
- the same outputs after ``pickle`` and after ``copy.deepcopy``;
- the same output and gradients from non-contiguous copies of its tensors;

and each error input must raise the exception type torch raises for it.
"""
import copy
import functools
import pickle

import pytest
import torch

import nnbasics.nn as nnb
from nnbasics.testing import compare


@functools.cache
def module_infos():
    """{twin name: ModuleInfo} for the torch.nn modules nnbasics.nn has a twin of."""
    try:
        from torch.testing._internal.common_modules import module_db
    except ImportError as exc:  # expecttest, most likely: it is in nnbasics' `test` extra
        pytest.fail(f"PyTorch's ModuleInfo database does not import ({exc}); install the test extra: "
                    "pip install -e '.[test]' (or python3 quickstart.py test)")
    found = {}
    for info in module_db:
        name = info.module_cls.__name__
        if name in nnb.__all__ and getattr(torch.nn, name, None) is info.module_cls and name not in found:
            found[name] = info
    return found


TWINS = [name for name in nnb.__all__ if name not in ("MLP", "Dropout")]


def _copy(a):
    if isinstance(a, torch.Tensor):
        return a.detach().clone().requires_grad_(a.requires_grad)
    if isinstance(a, (tuple, list)):
        return type(a)(_copy(b) for b in a)
    return copy.deepcopy(a)


def _noncontig(a):
    """The same values in non-contiguous memory (every other element of a wider tensor)."""
    if not isinstance(a, torch.Tensor) or a.numel() <= 1:
        return _copy(a)
    wide = torch.stack([a.detach(), a.detach()], -1)
    return wide[..., 0].requires_grad_(a.requires_grad)


def _make(cls, info_input, dtype, training, **kw):
    args, kwargs = _copy(info_input.constructor_input.args), _copy(info_input.constructor_input.kwargs)
    torch.manual_seed(0)
    module = cls(*args, **kwargs, **kw).to(dtype)
    return module.train(training)


def _layout(t):
    """The strides that can be observed: those of the dimensions longer than 1."""
    return tuple(st for size, st in zip(t.shape, t.stride(), strict=True) if size > 1) if t.numel() else ()


def _forward(module, forward_input, transform=_copy):
    """(output, [grads of the tensor inputs that require grad, then of the parameters])."""
    args, kwargs = transform(forward_input.args), {k: transform(v) for k, v in forward_input.kwargs.items()}
    out = module(*args, **kwargs)
    wrt = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.requires_grad]
    wrt += [p for p in module.parameters() if p.requires_grad]
    if not out.requires_grad or not wrt:
        return out, []
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(out)
    return out, list(torch.autograd.grad(out, wrt, g, allow_unused=True))


def _same(what, mine, ref, failures, layout=True):
    if (mine is None) != (ref is None):
        failures.append(f"{what}: {'no ' if mine is None else ''}gradient where torch gives "
                        f"{'one' if ref is not None else 'none'}")
    elif mine is None:
        return
    elif (mine.shape, mine.dtype) != (ref.shape, ref.dtype):
        failures.append(f"{what}: {tuple(mine.shape)} {mine.dtype}, torch {tuple(ref.shape)} {ref.dtype}")
    elif layout and _layout(mine) != _layout(ref):
        failures.append(f"{what}: strides {mine.stride()}, torch {ref.stride()} (shape {tuple(ref.shape)})")
    elif not (r := compare(what, mine, ref)).close:
        failures.append(str(r))


def _same_run(what, mine, ref, failures, layout=True):
    (m_out, m_grads), (r_out, r_grads) = mine, ref
    _same(f"{what} output", m_out, r_out, failures, layout)
    if len(m_grads) != len(r_grads):
        failures.append(f"{what}: {len(m_grads)} gradients, torch {len(r_grads)}")
    for i, (gm, gr) in enumerate(zip(m_grads, r_grads)):
        _same(f"{what} grad {i}", gm, gr, failures, layout)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", TWINS)
def test_pytorch_module_inputs(name, dtype, training, impl, device):
    info = module_infos().get(name)
    if info is None:
        pytest.skip(f"this torch's module_db has no nn.{name}")
    cls = getattr(nnb, name)
    failures, ran = [], 0
    for mi in info.module_inputs_func(info, device=device, dtype=dtype, requires_grad=True, training=training):
        if mi.forward_input is None:
            continue
        what = f"nn.{name}({mi.desc or '...'}) {impl} {dtype} {'train' if training else 'eval'}"
        ref = _make(info.module_cls, mi, dtype, training)
        mine = _make(cls, mi, dtype, training, impl=impl)
        if repr(mine) != repr(ref):
            failures.append(f"{what}: repr {mine!r}, torch {ref!r}")
        if list(mine.state_dict()) != list(ref.state_dict()):
            failures.append(f"{what}: state_dict keys {list(mine.state_dict())}, torch {list(ref.state_dict())}")
        mine.load_state_dict(ref.state_dict())
        ref_run = _forward(ref, mi.forward_input)
        try:
            mine_run = _forward(mine, mi.forward_input)
        except Exception as exc:  # noqa: BLE001 - torch accepted this input: any exception is a failure
            failures.append(f"{what}: raised {type(exc).__name__}: {exc}")
            continue
        ran += 1
        _same_run(what, mine_run, ref_run, failures)
        if dtype != torch.float64 or not training:
            continue  # the checks below ask nothing of the dtype or mode: once is enough
        out = mine_run[0].detach()
        if mi.reference_fn is not None:
            args, kwargs = _copy(mi.forward_input.args), _copy(mi.forward_input.kwargs)
            expected = mi.reference_fn(mine, *args, **kwargs)
            _same(f"{what} against reference_fn", out, torch.as_tensor(expected).to(out), failures, layout=False)
        for how, clone in (("pickled", lambda m: pickle.loads(pickle.dumps(m))), ("deep-copied", copy.deepcopy)):
            twin = clone(mine)
            if type(twin) is not cls or twin.impl != impl:
                failures.append(f"{what}: {how} module is {type(twin).__name__} impl={getattr(twin, 'impl', None)}")
            with torch.no_grad():
                _same(f"{what} {how}", twin(*_copy(mi.forward_input.args), **_copy(mi.forward_input.kwargs)),
                      out, failures)
        _same_run(f"{what} non-contiguous", _forward(mine, mi.forward_input, _noncontig), mine_run, failures,
                  layout=False)
    assert not failures, "\n".join(failures)
    assert ran > 0


def _raised(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - any type: the type is what is compared
        return exc
    return None


def test_pytorch_module_error_inputs(impl, device):
    """Every error input of every twin's ModuleInfo (torch 2.13 has them for CrossEntropyLoss; 2.4 has none)."""
    from torch.testing._internal.common_modules import ModuleErrorEnum
    failures, ran = [], 0
    for name, dtype in ((n, d) for n in TWINS for d in (torch.float64, torch.float32)):
        info = module_infos().get(name)
        if info is None or info.module_error_inputs_func is None:
            continue
        for err in info.module_error_inputs_func(info, device=device, dtype=dtype, requires_grad=True, training=True):
            mi = err.module_error_input
            results = {}
            for which, cls, kw in (("torch", info.module_cls, {}), ("nnbasics", getattr(nnb, name), {"impl": impl})):
                if err.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
                    results[which] = _raised(lambda cls=cls, kw=kw, mi=mi, dtype=dtype:
                                             _make(cls, mi, dtype, True, **kw))
                else:
                    module = _make(cls, mi, dtype, True, **kw)
                    results[which] = _raised(lambda m=module, call=mi.forward_input:
                                             m(*_copy(call.args), **_copy(call.kwargs)))
            what = f"nn.{name}({mi.desc or '...'}) {impl} {dtype}"
            assert isinstance(results["torch"], err.error_type), f"{what}: torch itself raised {results['torch']!r}"
            ran += 1
            if type(results["nnbasics"]) is not type(results["torch"]):
                failures.append(f"{what}: raised {results['nnbasics']!r}, torch {results['torch']!r}")
    assert not failures, "\n".join(failures)
    if not ran:
        pytest.skip("this torch's module_db has no error inputs for any twin")
