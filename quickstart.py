#!/usr/bin/env python3
"""Set up nnbasics (once) and run it: the README's two commands.

    python3 quickstart.py train [flags of nnbasics.train]    # the main job: an MLP on MNIST
    python3 quickstart.py test  [flags of pytest]            # the test suite
    python3 quickstart.py bench [flags of benchmarks.ops]    # hand-written vs built-in ops
    python3 quickstart.py check                              # every op against PyTorch, as a table
    python3 quickstart.py lint  [flags of ruff check]        # ruff, configured in pyproject.toml

Set-up, done on the first call and again only when pyproject.toml or the settings below change:
1. a virtual environment ``.venv`` *with the system's site-packages visible*, so a
   torch you already have is used as it is, never replaced or duplicated;
2. torch, only if none is importable (``NNBASICS_TORCH`` overrides the default
   ``torch==2.13.0``); a torch older than nnbasics needs stops with a message instead
   of being upgraded behind your back;
3. nnbasics itself (editable, without touching its dependencies) and whichever of
   tqdm, pytest, expecttest (for PyTorch's OpInfo samples), matplotlib, nbmake (which runs
   the learners' notebook in the tests) and ruff are missing.

``NNBASICS_VENV=DIR`` uses the environment ``DIR`` instead of ``.venv``, made *without* the
system's packages, and installs ``NNBASICS_TORCH`` into it: the way to run the suite against
another torch without touching yours, e.g.
``NNBASICS_VENV=.venv-newest NNBASICS_TORCH=torch python3 quickstart.py test`` (the newest
torch pip resolves) or ``NNBASICS_VENV=.venv-2.4 NNBASICS_TORCH=torch==2.4.1 ...``.
Every call names the torch it runs (version and folder). Needs only Python >= 3.10 with pip.
"""
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# A venv of its own (NNBASICS_VENV) sees none of the system's packages, so the torch it
# installs is the one imported; the default .venv sees them, so an installed torch is reused.
OWN_VENV = bool(os.environ.get("NNBASICS_VENV"))
VENV = ROOT / os.environ.get("NNBASICS_VENV", ".venv")
MARKER = VENV / ".nnbasics-setup"
TORCH = os.environ.get("NNBASICS_TORCH", "torch==2.13.0")
MIN_TORCH = (2, 13)  # pyproject.toml's floor
EXTRAS = {"tqdm": "tqdm>=4.60", "pytest": "pytest>=7", "expecttest": "expecttest>=0.1", "matplotlib": "matplotlib>=3.5",
          "nbmake": "nbmake>=1.5",  # nbmake (with ipykernel): runs docs/notebooks/ in the test suite
          "ruff": "ruff>=0.17,<0.18"}
COMMANDS = {
    "train": ["-m", "nnbasics.train"],
    "test": ["-m", "pytest", "-q"],
    "bench": ["-m", "benchmarks.ops"],
    "check": ["-m", "nnbasics.check"],
    "lint": ["-m", "ruff", "check"],
}


def say(msg):
    print(f"[quickstart] {msg}", file=sys.stderr, flush=True)


def python() -> str:
    """The interpreter to use: the project's venv, made on first use."""
    exe = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not exe.exists():
        if OWN_VENV:
            say(f"creating {VENV.name}/ (without the system's packages: {TORCH} goes into it)")
        else:
            say(f"creating {VENV.name}/ (system site-packages visible, so an installed torch is reused)")
        try:
            venv.EnvBuilder(system_site_packages=not OWN_VENV, with_pip=True).create(VENV)
        except Exception as exc:  # noqa: BLE001 (any failure, e.g. Debian's python without python3-venv)
            if OWN_VENV:  # installing the other torch into the system's Python would replace the user's
                sys.exit(f"[quickstart] could not create {VENV} ({exc})")
            say(f"could not create a virtual environment ({exc}); installing into {sys.executable} instead")
            return sys.executable
    return str(exe)


def has(py, module) -> bool:
    return subprocess.run([py, "-c", f"import {module}"], capture_output=True, check=False).returncode == 0


def torch_in(py) -> tuple:
    """(version, folder) of the torch that ``py`` imports."""
    out = subprocess.run([py, "-c", "import torch; print(torch.__version__); print(torch.__path__[0])"],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return out[0], out[1]


def pip(py, *args):
    subprocess.run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args], check=True)


def setup(py):
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest() + py + (TORCH if OWN_VENV else "")
    if MARKER.exists() and MARKER.read_text() == stamp and has(py, "nnbasics"):
        return
    if OWN_VENV:  # its own environment: the torch asked for, even if another one is in it
        say(f"installing {TORCH} into {VENV.name}/")
        pip(py, TORCH)
    elif not has(py, "torch"):
        say(f"no torch found: installing {TORCH}")
        pip(py, TORCH)
    version, _ = torch_in(py)
    major_minor = tuple(int(p) for p in version.split("+")[0].split(".")[:2])
    if major_minor < MIN_TORCH:
        sys.exit(f"[quickstart] nnbasics needs torch >= {'.'.join(map(str, MIN_TORCH))}, found {version}; "
                 "upgrade it yourself (we never replace an installed torch)")
    missing = [spec for module, spec in EXTRAS.items() if not has(py, module)]
    if missing:
        say(f"installing {', '.join(missing)}")
        pip(py, *missing)
    say("installing nnbasics (editable)")
    pip(py, "--no-deps", "-e", str(ROOT))
    if MARKER.parent.exists():
        MARKER.write_text(stamp)


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        sys.exit(f"usage: python3 quickstart.py {{{'|'.join(COMMANDS)}}} [args...]")
    py = python()
    try:
        setup(py)
    except subprocess.CalledProcessError as exc:
        sys.exit(f"[quickstart] set-up failed: {' '.join(map(str, exc.cmd))} exited with {exc.returncode}")
    if argv[0] != "lint":
        say("using torch {} from {}".format(*torch_in(py)))
    os.chdir(ROOT)
    return subprocess.run([py, *COMMANDS[argv[0]], *argv[1:]], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
