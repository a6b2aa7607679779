"""Writing files so that an interrupted program never leaves half of one.

Every file nnbasics writes (the dataset cache, a run's checkpoint and metrics,
benchmark results) goes to a temporary file in the same folder first and is
renamed onto its name only once it is complete. ``os.replace`` is atomic on
POSIX and Windows: a reader sees the old file or the new one, never a mix; on
any exception, Ctrl-C included, the temporary file is removed and the old file
is left as it was.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes private (0600) files; nothing written here is secret
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb"):
    """``open(path, mode)`` for writing, atomically (see the module docstring)."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def write_text(path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path, obj, **kwargs) -> None:
    write_text(path, json.dumps(obj, **kwargs) + "\n")


def torch_save(obj, path) -> None:
    """``torch.save(obj, path)``, atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
