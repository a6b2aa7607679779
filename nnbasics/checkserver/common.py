"""What the check server's client and server share, none of it importing torch: the private directory the
sockets live in, the key a server must match to answer, and the messages (a 4-byte length, then JSON).

The key is everything that could make a warm server's answer differ from a fresh process's: the Python
executable, version and flags, torch's location and version (found without importing torch), the path, mtime and
size of every nnbasics source file, the mtime of each site-packages folder (a package installed or removed), the
client's ``sys.path``, and the environment variables torch, its math
libraries, Inductor's compiler and Python read at start-up. Its hash names the socket, so a client with another
key never reaches that server: it starts its own.
"""
import hashlib
import importlib.util
import json
import math
import os
import socket
import stat
import struct
import subprocess
import sys

# Variables read once at start-up (by torch, its OpenMP/BLAS/oneDNN libraries, Triton/Inductor, Python itself)
# or cached on first use: a server started under other values would not answer as a fresh process would.
ENV_PREFIXES = ("TORCH", "PYTORCH", "CUDA", "NVIDIA_", "CUBLAS", "CUDNN", "NCCL_", "HIP_", "ROCM_", "OMP_", "KMP_",
                "GOMP_", "MKL_", "OPENBLAS_", "DNNL_", "ONEDNN_", "TRITON_", "PYTHON", "LC_", "NNBASICS_")
ENV_NAMES = ("LD_PRELOAD", "LD_LIBRARY_PATH", "LANG", "LANGUAGE", "PATH", "CC", "CXX", "CFLAGS", "TMPDIR", "TEMP",
             "TMP", "HOME", "USER", "LOGNAME", "XDG_CACHE_HOME")
# The server's own switches: they choose or configure a server, they do not change a check.
SWITCH, DIR, IDLE = "NNBASICS_CHECK_SERVER", "NNBASICS_CHECK_SERVER_DIR", "NNBASICS_CHECK_SERVER_IDLE"
IDLE_DEFAULT_S = 600.0
MAX_SOCKET_PATH = 100  # sockaddr_un holds 108 bytes on Linux, 104 on macOS


class Unsafe(RuntimeError):
    """The socket directory is not private to this user: no server is used."""


def supported() -> bool:
    """Whether this platform has what the server needs: fork, Unix sockets and passing descriptors over them."""
    return hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds")


def directory(env=os.environ) -> str:
    """The private directory of this user's sockets (created 0700); Unsafe when it exists but is not private."""
    place = env.get(DIR) or (os.path.join(env["XDG_RUNTIME_DIR"], "nnbasics") if env.get("XDG_RUNTIME_DIR")
                             else f"/tmp/nnbasics-{os.getuid()}")
    try:
        os.mkdir(place, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise Unsafe(f"cannot create {place}: {exc.strerror}") from None
    info = os.lstat(place)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise Unsafe(f"{place} is not a directory of this user")
    if info.st_mode & 0o077 or info.st_mode & 0o700 != 0o700:
        raise Unsafe(f"{place} has mode {stat.S_IMODE(info.st_mode):04o}; it must be 0700 (chmod 700 {place})")
    return place


def _torch() -> list:
    """torch's location and version, read from its files: importing it is what the client must not do."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return [None]
    folder = os.path.dirname(spec.origin)
    found = [folder]
    for name in ("__init__.py", "version.py"):
        try:
            info = os.stat(os.path.join(folder, name))
            found.append([name, info.st_mtime_ns, info.st_size])
        except OSError:
            found.append([name, None])
    try:
        with open(os.path.join(folder, "version.py")) as f:
            found += [line.strip() for line in f if line.startswith("__version__")]
    except OSError:
        pass
    return found


def _sources() -> list:
    """(path, mtime, size) of every nnbasics source file."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                info = os.stat(os.path.join(folder, name))
                found.append([os.path.relpath(os.path.join(folder, name), root), info.st_mtime_ns, info.st_size])
    return [root, found]


def _packages() -> list:
    """The mtime of each site-packages folder on sys.path: installing or removing a package changes it (a server has
    imported sympy, numpy and the rest of what torch needs)."""
    found = []
    for path in sys.path:
        if os.path.basename(path) in ("site-packages", "dist-packages"):
            try:
                found.append([path, os.stat(path).st_mtime_ns])
            except OSError:
                pass
    return found


def key(env=os.environ) -> dict:
    """Everything a server must share with this process to answer as this process would."""
    names = sorted(k for k in env if (k.startswith(ENV_PREFIXES) or k in ENV_NAMES) and not k.startswith(SWITCH))
    return {"python": [sys.executable, sys.version, subprocess._args_from_interpreter_flags()],
            "torch": _torch(), "nnbasics": _sources(), "packages": _packages(),
            "sys.path": [os.path.abspath(p) for p in sys.path], "env": {k: env[k] for k in names}}


def digest(found: dict) -> str:
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:20]


def idle_seconds(env=os.environ) -> float:
    """``NNBASICS_CHECK_SERVER_IDLE`` (default 600): a positive number of seconds, else ValueError naming the value."""
    text = env.get(IDLE)
    if text is None:
        return IDLE_DEFAULT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{IDLE}={text!r} is not a positive number of seconds: set it to one "
                         f"(e.g. {IDLE}={IDLE_DEFAULT_S:g}) or unset it")
    return seconds


# --------------------------------------------------------------------------- messages

def send(sock, message: dict, fds=()):
    data = json.dumps(message).encode()
    frame = struct.pack("!I", len(data)) + data
    sent = socket.send_fds(sock, [frame], list(fds)) if fds else 0
    sock.sendall(frame[sent:])


def receive(sock, fds=False):
    """The next message (and with ``fds``, the descriptors that came with it); None at the end of the stream."""
    head, got = b"", []
    while len(head) < 4:
        if fds and not got:
            data, got, _, _ = socket.recv_fds(sock, 4 - len(head), 3)
        else:
            data = sock.recv(4 - len(head))
        if not data:
            for fd in got:
                os.close(fd)
            return (None, []) if fds else None
        head += data
    size, body = struct.unpack("!I", head)[0], b""
    while len(body) < size:
        data = sock.recv(min(size - len(body), 1 << 20))
        if not data:
            return (None, got) if fds else None
        body += data
    message = json.loads(body)
    return (message, got) if fds else message


def connect(path: str, timeout: float = 5.0):
    """A connected socket, or None where nothing listens there (no file, or a stale one)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def detach(keep: int):
    """Become a daemon: a grandchild of the client in a session of its own, stdio on /dev/null, no other inherited
    descriptor but ``keep`` (the pipe that says when the server is ready)."""
    if os.fork():
        os._exit(0)  # the client waits only for this first process
    try:
        os.setsid()
    except OSError:
        pass
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 4096)
    os.chdir("/")
