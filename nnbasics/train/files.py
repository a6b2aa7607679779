"""Writing files so that an interrupted program never leaves half of one.

Every file nnbasics writes (the dataset cache, a run's checkpoint and metrics,
benchmark results) goes to a temporary file in the same folder first and is
renamed onto its name only once it is complete. ``os.replace`` is atomic on
POSIX and Windows: a reader sees the old file or the new one, never a mix; on
any exception, Ctrl-C included, the temporary file is removed and the old file
is left as it was.

``lock`` keeps a second process out of a folder that one is writing: an OS lock on a file
inside it, which the kernel releases when the holder ends, however it ends.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import signal
import tempfile
import threading
import time

try:
    import fcntl
except ImportError:  # Windows: no flock; a folder is not locked there
    fcntl = None


def umask() -> int:
    """The process's umask: from /proc where Linux shows it, else by setting it and putting it back."""
    with contextlib.suppress(OSError, ValueError):
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    The file gets the permissions ``open`` would give it (0666 less the umask). An OSError
    (a full disk, say) names ``path``, not the temporary file.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes private (0600) files; nothing written here is secret
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, tmp):
            raise type(e)(e.errno, e.strerror, str(path)) from None
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
    """``torch.save(obj, path)``, atomically. Saved through a Python file, so that a full disk is
    an OSError naming ``path`` (torch's own writer reports it as an opaque RuntimeError)."""
    import torch

    with atomic_open(path) as f:
        torch.save(obj, f)


@contextlib.contextmanager
def signals_deferred():
    """Hold Ctrl-C and SIGTERM until the block is done, then deliver them to their own handlers.

    For files that must agree with each other, written one after the other: an interrupt
    cannot fall between them. Outside the main thread signals cannot be caught: no-op.
    """
    caught = []
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):  # each signal once, now that its own handler is back
            signal.raise_signal(sig)


class Locked(Exception):
    """Another process holds the lock on ``path``; ``pid`` is the process id it wrote there (None if unreadable)."""

    def __init__(self, path, pid):
        super().__init__(f"{path} is locked by {'process ' + str(pid) if pid else 'another process'}")
        self.path, self.pid = path, pid


def lock(path) -> int:
    """Take the lock on the file ``path`` (made if missing) without waiting; returns the open file
    descriptor, which holds the lock until it is closed. ``sign`` then writes this process's id
    into the file, for the message another process gets.

    The lock is ``flock``'s: the kernel releases it when the descriptor is closed, which it does
    for a process that ends, even one killed with SIGKILL, so a stale lock file never keeps
    anyone out. Raises ``Locked`` when another open descriptor holds it (another process, or this
    one through another ``lock``). Where the file system has no locks (or on Windows), the file
    is made and nothing is locked.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # 0666 less the umask, as open() gives
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder(fd)
        os.close(fd)
        raise Locked(path, pid) from None
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            os.close(fd)
            raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def sign(fd: int) -> None:
    """Write this process's id into the locked file ``fd`` (``lock``), in place of the last holder's."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())


def _holder(fd: int):
    """The process id written in a locked file; its holder signs it just after locking, so an
    empty file is read again for up to a second."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return int(text) if text.isdigit() else None
        time.sleep(0.05)
    return None
