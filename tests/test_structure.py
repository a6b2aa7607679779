"""The package's shape: imports point down (no circle, function-level imports included), no
module past 400 lines, and the private torch pieces nnbasics relies on still exist (CI runs
this on the pinned and on the newest torch)."""
import ast
from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parent.parent / "nnbasics"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set) -> set:
    """The nnbasics modules ``path`` imports, wherever in the file the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def _graph() -> dict:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, name, set(paths)) for name, path in paths.items()}


def _cycle(graph: dict):
    """One import circle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, stack + [nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def _is_parent_package(importer: str, imported: str) -> bool:
    return importer.startswith(imported + ".")


def test_no_import_circle():
    # A submodule importing names from its own package's __init__ would be a circle; the
    # package __init__ importing its submodules is how packages work, so that edge is kept
    # and the reverse one (submodule -> its package) dropped only when it names a submodule.
    graph = {m: {i for i in imports if not _is_parent_package(m, i)} for m, imports in _graph().items()}
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph))}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_past_400_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules past {MAX_LINES} lines: {long}"


def test_private_torch_functions_still_exist():
    """nnbasics/fused/_torch_private.py and nnbasics/_arguments.py fall back when they are gone;
    this says when that happens."""
    assert callable(torch._C._has_storage)
    assert callable(torch._C._functorch.is_functorch_wrapped_tensor)
    assert callable(torch._C._are_functorch_transforms_active)
    assert callable(torch._C._FunctionBase.apply)
    from torch._functorch.utils import unwrap_dead_wrappers
    assert callable(unwrap_dead_wrappers)
    from nnbasics import _arguments
    from nnbasics.fused import _torch_private
    assert _torch_private._FAST_APPLY and _arguments._is_wrapped is not None


def test_private_autograd_node_attributes_the_checker_reads_still_exist():
    """nnbasics/testing/target.py reads them off a user's Function's graph node."""

    class Double(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return 2 * x

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return 2 * g

    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    node = Double.apply(x).grad_fn
    assert node._forward_cls is Double
    (meta,) = node._input_metadata
    assert (tuple(meta.shape), meta.dtype, meta.device) == ((3,), torch.float64, torch.device("cpu"))
    built_in = (x * 3).grad_fn
    assert tuple(built_in._input_metadata[0].shape) == (3,)
