"""Checker targets built to misbehave: each gets one line and a documented exit status, in bounded time and
memory (docs/checker.md, "What a bad target gets")."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nnbasics import check

REPO_ROOT = Path(__file__).resolve().parent.parent

FUNCTION = '''
import torch


class F(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        {forward}
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


def sample_inputs():
    return (torch.randn(3, dtype=torch.float64, requires_grad=True),)
'''


def _target(tmp_path, forward="pass", top=""):
    path = tmp_path / "hostile.py"
    path.write_text(textwrap.dedent(top) + FUNCTION.format(forward=forward))
    return f"{path}:F"


def _main(capsys, *argv):
    code = check.main(["--compile-backend", "aot_eager", *argv])
    return code, capsys.readouterr()


@pytest.mark.parametrize("top, words", [
    ("while True:\n    pass\n", "did not finish within 1 s (--timeout)"),
    ("import sys\nsys.exit(0)\n", "called sys.exit(0)"),
    ("raise KeyboardInterrupt\n", "raised KeyboardInterrupt"),
    ("raise RuntimeError('line one\\nline two')\n", "raised RuntimeError: line one"),
], ids=["endless top level", "exits at import", "interrupts at import", "raises a two-line error"])
def test_a_module_that_misbehaves_at_import_exits_2_with_one_line(tmp_path, capsys, top, words):
    with pytest.raises(SystemExit) as exit_info:
        check.main([_target(tmp_path, top=top), "--timeout", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("forward, words", [
    ("import sys; sys.exit(0)", "called sys.exit(0) (SystemExit)"),
    ("raise KeyboardInterrupt", "raised KeyboardInterrupt itself"),
    ("while True: pass", "timed out after 1 s"),
    ("keep = [torch.empty(2 ** 28, dtype=torch.uint8) for _ in range(64)]", "can't allocate memory"),
], ids=["sys.exit in forward", "KeyboardInterrupt in forward", "endless forward", "forward keeps allocating"])
def test_a_forward_that_misbehaves_is_one_failing_line(tmp_path, capsys, forward, words):
    code, out = _main(capsys, _target(tmp_path, forward=forward), "--timeout", "1", "--max-memory", "1")
    assert code == 1, out.out + out.err
    failing = [line for line in out.out.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and words in failing[0], out.out
    assert out.err == "", out.err


def test_sys_exit_in_forward_is_not_a_silent_pass_from_the_shell(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nnbasics.check", _target(tmp_path, forward="raise SystemExit(0)"),
                             "--checks", "gradcheck"], check=False, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  gradcheck" in result.stdout and "sys.exit(0)" in result.stdout and result.stderr == ""


def test_the_memory_cap_is_lifted_after_the_check(tmp_path, capsys):
    import resource

    before = resource.getrlimit(resource.RLIMIT_AS)
    _main(capsys, _target(tmp_path), "--checks", "gradcheck", "--max-memory", "1")
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_a_real_ctrl_c_still_stops_the_checker(tmp_path, capsys):
    """SIGINT from outside (here sent by forward to its own process) stops the run: exit 130, one line."""
    forward = "import os, signal; os.kill(os.getpid(), signal.SIGINT)"
    code, out = _main(capsys, _target(tmp_path, forward=forward))
    assert code == 130 and out.err.strip() == "python -m nnbasics.check: interrupted" and out.out == ""


def test_a_cap_too_small_for_the_checker_itself_is_no_traceback(tmp_path):
    """--max-memory 0.001 leaves the checker 1 MiB above what the process uses: what fails under it is
    reported (exit 1) or named in one line (exit 2), never a traceback of the checker's own imports."""
    result = subprocess.run([sys.executable, "-m", "nnbasics.check", _target(tmp_path), "--max-memory", "0.001",
                             "--compile-backend", "aot_eager"], check=False, capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (1, 2), result.stdout + result.stderr
    if result.returncode == 2:
        assert len(result.stderr.strip().splitlines()) == 1 and "--max-memory 0.001" in result.stderr, result.stderr
