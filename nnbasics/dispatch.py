"""From a name and an implementation to a call of the right autograd Function.

``nnbasics.functional`` checks and reshapes the arguments, then calls ``apply(name, impl,
device, *args)``, which

1. picks the Function: ``ops.<name>`` (impl="custom") or ``fused.<name>`` (impl="fused");
   while ``torch.compile`` is tracing, its twin without ``jvp`` (``without_jvp``);
2. casts the arguments the way ``torch.autocast`` casts the built-in op, then runs the
   Function with autocast off.
"""
import torch

from . import fused, ops
from ._torch_private import apply_function, transforms_active

IMPLS = ("custom", "fused")
_MODULES = {"custom": ops, "fused": fused}


def without_jvp(fn):
    """The same Function minus its hand-written ``jvp``.

    TorchDynamo refuses to trace a Function that defines ``jvp`` (forward-mode AD is not
    supported under ``torch.compile``), so this twin is applied while compiling; eager code,
    ``torch.func.jvp`` and ``gradcheck(check_forward_ad=True)`` use the original. The twins
    are made here, at import: Dynamo cannot trace the making of a class.
    """
    return type(fn.__name__, (fn,), {"jvp": torch.autograd.Function.jvp, "__module__": fn.__module__})


_COMPILABLE = {impl: {name: without_jvp(getattr(module, name)) for name in ops.__all__}
               for impl, module in _MODULES.items()}


def in_place(fn):
    """The same Function, writing its (first) output into its input x, for ``inplace=True``.

    ``forward`` computes the output as ``fn`` does and copies it into x; ``setup_context`` marks
    x dirty (autograd then knows x changed, and refuses a leaf that requires grad, as for the
    built-ins) and saves what ``fn`` saves. For an op that saves its output, that output is now
    x itself: nothing is kept beside the tensor the next layer keeps anyway, as with the
    built-ins' ``relu_``. (An op that saves its *input* cannot be made in place this way: its
    input is overwritten; ``apply_in_place`` copies instead.)
    """
    def forward(x, *args):
        return _into(x, fn.forward(x, *args))

    def setup_context(ctx, inputs, output):
        ctx.mark_dirty(inputs[0])
        fn.setup_context(ctx, inputs, output)

    return type(fn.__name__ + "InPlace", (fn,), {"forward": staticmethod(forward), "setup_context":
                                                 staticmethod(setup_context), "__module__": fn.__module__})


def _into(x, out):
    """``out`` (or its first element, for a Function with several outputs) copied into x, and x
    returned in its place."""
    return (x.copy_(out[0]), *out[1:]) if isinstance(out, tuple) else x.copy_(out)


IN_PLACE = ("ReLU", "LeakyReLU", "Hardtanh", "Dropout")
_IN_PLACE = {impl: {name: in_place(getattr(module, name)) for name in IN_PLACE} for impl, module in _MODULES.items()}


def _check_impl(impl: str) -> None:
    if impl not in _MODULES:
        raise ValueError(f"impl={impl!r} is not an implementation: use one of {IMPLS}")


def function(name: str, impl: str):
    """The autograd Function called ``name`` in implementation ``impl``."""
    _check_impl(impl)
    if torch.compiler.is_compiling():
        return _COMPILABLE[impl][name]
    return getattr(_MODULES[impl], name)


# How torch.autocast treats each built-in op, per device type (from PyTorch's autocast op
# lists): "lower" runs in the autocast dtype, "fp32" in float32, None in the input's own dtype.
_AUTOCAST = {
    "Linear": {"cpu": "lower", "cuda": "lower", None: "lower"},
    "Softmax": {"cuda": "fp32"},
    "LogSoftmax": {"cuda": "fp32"},
    "CrossEntropy": {"cpu": "fp32", "cuda": "fp32", None: "fp32"},
    "SoftCrossEntropy": {"cpu": "fp32", "cuda": "fp32", None: "fp32"},
    "MSELoss": {"cpu": "fp32", "cuda": "fp32", None: "fp32"},
    "BinaryCrossEntropy": {"cpu": "fp32", "cuda": "fp32", None: "fp32"},
    "BinaryCrossEntropyWithLogits": {"cpu": "fp32", "cuda": "fp32", None: "fp32"},
}
_AUTOCAST_ELIGIBLE = (torch.float16, torch.bfloat16, torch.float32)


def _run(fn, args):
    """``fn.apply(*args)``: traced as it is under ``torch.compile``, else without its argument binding."""
    return fn.apply(*args) if torch.compiler.is_compiling() else apply_function(fn, *args)


def apply(name: str, impl: str, device: torch.device, *args):
    """``Function.apply(*args)``, cast first as ``torch.autocast`` would cast the built-in op.

    Inside the Function autocast is switched off: the hand-written math must run in the dtype
    chosen here, not be re-cast op by op (under CUDA autocast ``torch.exp`` alone would run in
    float32 and leak a float32 output).
    """
    return _cast_and_run(function(name, impl), name, device, args)


def _cast_and_run(fn, name, device, args):
    device_type = device.type
    # A device without autocast (meta) is asked nothing: torch.is_autocast_enabled raises there.
    if not torch.amp.is_autocast_available(device_type) or not torch.is_autocast_enabled(device_type):
        return _run(fn, args)
    policy = _AUTOCAST.get(name, {}).get(device_type, _AUTOCAST.get(name, {}).get(None))
    if policy is not None:
        dtype = torch.get_autocast_dtype(device_type) if policy == "lower" else torch.float32
        args = tuple(
            a.to(dtype) if isinstance(a, torch.Tensor) and a.dtype in _AUTOCAST_ELIGIBLE else a for a in args
        )
    with torch.autocast(device_type, enabled=False):
        return _run(fn, args)


def apply_in_place(name: str, impl: str, device: torch.device, saves_output: bool, *args):
    """``apply(name, impl, device, *args)`` with the (first) result written into ``args[0]``,
    which is returned in its place (``inplace=True``).

    The in-place twin (``in_place``) is used where it can be: the op saves its output
    (``saves_output``), and neither ``torch.compile`` nor a ``torch.func`` transform is
    running (they trace in-place Functions differently). Elsewhere the result is computed
    out of place and copied into ``args[0]``: the same values and gradients, autograd
    included, with the output kept besides the input; an op that saves its input gets a copy
    of it, which the write does not touch (so leaky_relu_ with a negative slope, which torch
    refuses in backward, works here).
    """
    if saves_output and not torch.compiler.is_compiling() and not transforms_active():
        _check_impl(impl)
        return _cast_and_run(_IN_PLACE[impl][name], name, device, args)
    x = args[0]
    return _into(x, apply(name, impl, device, x if saves_output else x.clone(), *args[1:]))
