"""The checks of ``check_function``, in the order they run; each takes a ``Target`` and returns what it
established, or raises ``Fail`` / ``Skip`` (``nnbasics.testing.target``). ``docs/checker.md`` explains each."""
from .backward import grad_layouts, grad_metadata, needs_input_grad
from .derivatives import forward_ad, gradcheck, gradgradcheck, reference
from .precision import autocast
from .state import ctx_tensors, leak, mutation
from .transforms import custom_op, func_compile, torch_compile, torch_func

CHECKS = {
    "gradcheck": gradcheck,
    "gradgradcheck": gradgradcheck,
    "forward_ad": forward_ad,
    "torch_func": torch_func,
    "grad_layouts": grad_layouts,
    "grad_metadata": grad_metadata,
    "needs_input_grad": needs_input_grad,
    "ctx_tensors": ctx_tensors,
    "leak": leak,
    "mutation": mutation,
    "compile": torch_compile,
    "compile_func": func_compile,
    "autocast": autocast,
    "reference": reference,
    "opcheck": custom_op,
}
