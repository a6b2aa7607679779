"""python -m nnbasics.check: the user-facing comparison with PyTorch, and the checker of anyone's Function."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnbasics import check, testing

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_check_passes_for_the_real_ops(capsys):
    assert check.main(["--op", "relu", "--op", "cross_entropy"]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 ops agree with PyTorch" in out and "cross_entropy" in out


def test_check_catches_a_wrong_backward(monkeypatch, capsys):
    """A deliberately broken gradient (sigmoid's y(1-y) without the (1-y)) must be reported."""
    import nnbasics.ops.sigmoid as sig

    monkeypatch.setattr(sig, "sigmoid_derivative_times", lambda v, y: v * y)
    assert check.main(["--op", "sigmoid"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "gradcheck: FAIL" in out
    assert testing.compare("x", torch.ones(2), torch.ones(2)).exact


# --------------------------------------------------------------------------- python -m nnbasics.check FILE.py:NAME

GOOD = '''
import torch


class Cube(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x ** 3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_y):
        (x,) = ctx.saved_tensors
        return grad_y * {factor} * x ** 2


def sample_inputs():
    return (torch.randn(3, 4, dtype=torch.float64, requires_grad=True),)


def reference(x):
    return x ** 3
'''


def _file(tmp_path, factor=3, name="cube.py", text=None):
    path = tmp_path / name
    path.write_text(GOOD.format(factor=factor) if text is None else text)
    return path


def _run(capsys, *argv):
    code = check.main(["--compile-backend", "aot_eager", *argv])
    return code, capsys.readouterr()


def test_a_function_from_a_file_is_checked_and_passes(tmp_path, capsys):
    code, out = _run(capsys, f"{_file(tmp_path)}:Cube")
    assert code == 0, out.out
    assert out.out.startswith("check_function(Cube): 13 passed, 0 warned, 0 failed, 2 skipped")


COMPLEX = """import torch


class Conj(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(z):
        return z.conj() * z

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return {grad}
"""


@pytest.mark.parametrize("grad, code", [("2 * grad.real * z", 0), ("grad * z", 1)])
def test_a_complex_function_is_checked_with_complex_shapes(tmp_path, capsys, grad, code):
    """|z|² = conj(z)·z: its gradient (autograd's convention, dL/d conj z) is 2·Re(grad)·z; without it, gradcheck fails."""
    path = _file(tmp_path, name="conj.py", text=COMPLEX.format(grad=grad))
    got, out = _run(capsys, f"{path}:Conj", "--shapes", "3x4", "--dtype", "complex128")
    assert got == code, out.out
    if code == 0:
        assert "first derivatives agree with finite differences (complex128)" in out.out
    else:
        assert "FAIL  gradcheck" in out.out


def test_a_broken_function_exits_1_and_says_which_check(tmp_path, capsys):
    code, out = _run(capsys, f"{_file(tmp_path, factor=2)}:Cube", "--checks", "gradcheck,reference", "-v")
    assert code == 1
    assert "FAIL  gradcheck" in out.out and "--- gradcheck" in out.out
    assert "input 0's gradient is the right one times 2/3" not in out.out  # 2/3 is no usual slip: not claimed
    assert "SKIP  reference        blocked by gradcheck" in out.out  # one fault, one failing line


def test_json_report_and_shapes_from_the_command_line(tmp_path, capsys):
    code, out = _run(capsys, "nnbasics.ops:Sigmoid", "--shapes", "4x5", "--checks", "gradcheck,grad_metadata", "--json")
    report = json.loads(out.out)
    assert code == 0 and report["ok"] and report["target"] == "Sigmoid"
    assert [r["name"] for r in report["results"]] == ["gradcheck", "grad_metadata"]


@pytest.mark.parametrize("argv, message", [
    (["nocolon"], "target 'nocolon': expected FILE.py:NAME or package.module:NAME"),
    (["missing.py:F"], "no such file missing.py"),
    (["{file}:Square"], "defines no Square; its Functions: Cube"),
    (["{broken}:F"], "importing"),
    (["{bare}:Cube"], "defines neither sample_inputs() nor SAMPLE_INPUTS"),
    (["{file}:Cube", "--shapes", "4xa"], "--shapes 4xa: a shape is sizes joined by x"),
    (["{file}:Cube", "--checks", "gradchek"], "--checks gradchek: unknown gradchek"),
    (["{file}:Cube", "--reference", "nope"], "--reference nope"),
    (["{file}:torch"], "torch is a module"),
    (["nnbasics.nosuchmodule:F"], "importing nnbasics.nosuchmodule raised ModuleNotFoundError"),
])
def test_a_bad_target_exits_2_with_one_line_naming_it(tmp_path, capsys, argv, message):
    paths = {"file": _file(tmp_path), "broken": _file(tmp_path, name="broken.py", text="import nosuchthing\n"),
             "bare": _file(tmp_path, name="bare.py", text=GOOD.split("def sample_inputs")[0].format(factor=3))}
    argv = [a.format(**paths) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        check.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_module_entry_point_exit_status(tmp_path):
    """The real command line: exit status 1 for a failing check, as a shell script sees it."""
    result = subprocess.run([sys.executable, "-m", "nnbasics.check", f"{_file(tmp_path, factor=2)}:Cube",
                             "--checks", "gradcheck"], check=False, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "FAIL  gradcheck" in result.stdout


STE = '''
import torch


class Scaled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale=1.0):
        ctx.scale = scale
        return torch.round(x) * scale

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def sample_inputs():
    return (torch.randn(3, 4, dtype=torch.float64, requires_grad=True),)
'''


def test_kwargs_seed_strict_and_by_design_gradients_from_the_command_line(tmp_path, capsys):
    target = f"{_file(tmp_path, name='ste.py', text=STE)}:Scaled"
    code, out = _run(capsys, target, "--checks", "gradcheck,torch_func")
    assert code == 1 and "FAIL  gradcheck" in out.out and "--not-true-gradient" in out.out
    code, out = _run(capsys, target, "--checks", "gradcheck,torch_func", "--not-true-gradient", "--kwarg", "scale=2.0",
                     "--seed", "0", "--json")
    report = json.loads(out.out)
    assert code == 0 and [r["status"] for r in report["results"]] == ["skip", "warn"], out.out
    assert "by design" in report["results"][0]["message"]
    code, out = _run(capsys, target, "--checks", "torch_func", "--strict")
    assert code == 1 and "(strict: warnings fail)" in out.out


@pytest.mark.parametrize("item, message", [("scale", "expected NAME=VALUE"), ("scale=two", "is not a Python literal")])
def test_a_bad_kwarg_is_one_line(tmp_path, capsys, item, message):
    with pytest.raises(SystemExit) as exit_info:
        check.main([f"{_file(tmp_path)}:Cube", "--kwarg", item])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_an_unsolved_exercise_is_one_failing_line_and_nothing_on_stderr():
    result = subprocess.run([sys.executable, "-m", "nnbasics.check", "docs/exercises/linear.py:Linear",
                             "--compile-backend", "aot_eager"], check=False, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 1 and result.stderr == "", result.stderr
    failing = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failing == [line for line in failing if "NotImplementedError: write Linear.backward" in line] and len(failing) == 1


USER_SUITE = '''
import torch
from nnbasics.testing import function_tests


class InPlace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.exp()

    @staticmethod
    def backward(ctx, grad):
        ctx.saved = None
        return grad.mul_(2.0)  # wrong twice over: a factor and a write into grad_output


test_in_place = function_tests(InPlace, lambda: (torch.randn(3, dtype=torch.float64, requires_grad=True),),
                               checks=["mutation", "ctx_tensors", "forward_ad"], compile_backend="aot_eager")
'''


def test_function_tests_puts_one_test_per_check_into_a_users_suite(tmp_path):
    (tmp_path / "test_user.py").write_text(USER_SUITE)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
                            check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    out = result.stdout
    assert result.returncode == 1, out
    assert "FAILED test_user.py::test_in_place[mutation]" in out and "PASSED test_user.py::test_in_place[ctx_tensors]" in out
    assert "SKIPPED" in out and "1 failed, 1 passed, 1 skipped" in out, out


def test_the_checker_benchmark_runs(tmp_path):
    """benchmarks.checker --quick: the bare script, one run in-process and two through the check server (which it
    stops), each a subprocess; numbers not asserted."""
    from benchmarks import checker as bench

    out = tmp_path / "checker.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["header"]["command"].startswith("python -m benchmarks.checker --quick")
    assert list(report["results"]) == [bench.BARE, bench.WARM, bench.SERVER_FIRST, bench.SERVER_LATER]
    for variant in (bench.WARM, bench.SERVER_LATER):
        assert report["results"][variant]["checks_s"] > 0 and report["results"][variant]["ratio"] > 0
