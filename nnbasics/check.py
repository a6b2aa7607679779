"""Check autograd Functions from the command line: your own, or nnbasics' ops against PyTorch.

    python -m nnbasics.check path/to/file.py:MyFunction [--shapes 4x5 5] [--kwarg dim=0] [--seed 0] [--strict] [--json]
    nnbasics-check path/to/file.py:MyFunction          (the same, installed as a console script)
    python -m nnbasics.check package.module:MyFunction
    python -m nnbasics.check [--dtype float64|float32|bfloat16] [--device cpu|cuda] [--impl custom|fused] [--op NAME]

With a target: puts it through every check of ``nnbasics.testing.check_function`` and prints one line
per check (``--json``: the report as JSON). The sample inputs come from the target's module: a
function ``sample_inputs()`` returning the arguments (a tuple, or one tensor), or a tuple
``SAMPLE_INPUTS``; a function ``reference`` (the same computation with built-in ops), if defined, is
compared with. ``--shapes 4x5 5`` instead makes one random tensor per shape, each requiring grad.
Exit status: 0 when no check fails (``--strict``: nor warns), 1 when one does, 2 for a target or flag that cannot
work (a module that raises, hangs past ``--timeout`` or exits while imported included), 130 on Ctrl-C.

From a shell, a target is checked by the check server (``nnbasics.checkserver``): a warm process, with torch,
Dynamo and AOTAutograd imported, that the first such command starts and later ones reuse; each run is a fresh
child of it that loads your module anew and prints what this process would. It ends after 10 minutes idle
(``NNBASICS_CHECK_SERVER_IDLE`` seconds) or with ``--stop-server``; ``--no-server`` or ``NNBASICS_CHECK_SERVER=0``
check in this process.

Without a target: for each op of the registry and each of its sample inputs, runs the hand-written
op and its ``torch.nn.functional`` twin on the same inputs and upstream gradient and prints, for the
output and every input gradient, whether they are exactly equal, equal within tolerance, and the
largest absolute difference; then runs ``torch.autograd.gradcheck``. Exits 1 if anything disagrees.
"""
import sys


def main(argv=None):
    """The command line. From a shell (``argv`` None: ``python -m nnbasics.check``, ``nnbasics-check``) a FILE.py:NAME
    target is checked by the check server's child (``nnbasics.checkserver``), which prints the same output and
    returns the same exit status; everything else, and a call with ``argv`` (from Python), runs in this process."""
    if argv is None:
        from .checkserver import client  # imports no torch: the client starts in a few hundredths of a second

        code = client.run(sys.argv[1:])
        if code is not None:
            return code
        argv = sys.argv[1:]
    from .testing.command import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
