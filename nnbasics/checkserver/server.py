"""The check server: a warm process that forks a child for each ``python -m nnbasics.check`` it is asked to run.

Started by the client (``client._start``) as ``python -c`` with the client's ``sys.path``, flags and environment,
it detaches (a session of its own, stdio on /dev/null), imports torch, nnbasics' command line, ``torch._dynamo``
and ``functorch.compile``, checks ``nnbasics.ops.Tanh`` (Dynamo's first-use imports), checks that its key is
the client's, listens on the socket the key names, and says "ready" on the client's pipe. It ends after
``NNBASICS_CHECK_SERVER_IDLE`` seconds without a request (default 600), within 10 s of a change to nnbasics' or
torch's files or to a site-packages folder (no client's key matches it any more), on ``--stop-server`` or on
SIGTERM, removing its socket.

A request is served by two forks: a supervisor, which sends the client the checking child's pid, passes on the
client's "go", waits for the child and sends back its wait status (and kills the child's process group if the
client goes away); and the child, which takes the client's cwd, argv, environment, ``sys.path``, umask, resource
limits and stdin/stdout/stderr, sets torch's thread count and random seed as a fresh process has them, and runs
``nnbasics.testing.command.main``: the same code, output and exit status as the command in the client's process.
Nothing of the user's is imported into the server itself, so each child loads the user's module fresh.

OpenMP: a child forked from a process whose OpenMP pool ran can hang in its first parallel region (GNU libgomp), so
the server does all its work with ``torch.set_num_threads(1)`` and the child sets the count the client's
environment gives (``OMP_NUM_THREADS``, else torch's default, read when the server started).
"""
import atexit
import faulthandler
import fcntl
import io
import os
import random
import select
import signal
import socket
import sys
import time
import traceback
import warnings

from . import common

SOURCES_CHECKED_S = 10.0  # how often an idle server looks whether its files changed (then no key reaches it)


class _Stop(Exception):
    """--stop-server or SIGTERM: leave the loop, remove the socket."""


def main(config: dict):
    ready = config["ready"]
    common.detach(keep=ready)
    try:
        state = _prepare(config)
    except BaseException as exc:  # noqa: BLE001 - whatever stops the start is said on the client's pipe, in one line
        os.write(ready, f"{type(exc).__name__}: {exc}".encode()[:2000])
        os._exit(1)
    os.write(ready, b"ready")
    os.close(ready)
    _serve(state)
    os._exit(0)


def _prepare(config) -> dict:
    _same_key(common.key(), config["key"], "differs from the client's")
    environment = dict(os.environ)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    import functorch.compile  # noqa: F401 - the compile check's AOTAutograd, imported once here
    import torch._dynamo

    from nnbasics.testing import check_function, command

    _warm_up(torch, check_function)
    torch._dynamo.reset()
    _same_key({**common.key(), "env": config["key"]["env"]}, config["key"], "changed while it started")
    # What importing torch and checking put in the environment (TORCHINDUCTOR_CACHE_DIR, ...), as the command's
    # own process would have it: each child adds it to the client's environment.
    added = {k: v for k, v in os.environ.items() if k not in environment}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(config["socket"])
    os.chmod(config["socket"], 0o600)
    listener.listen(64)
    return {"listener": listener, "path": config["socket"], "inode": os.stat(config["socket"]).st_ino,
            "key": config["key"], "added": added, "idle": config["idle"], "threads": threads, "torch": torch,
            "main": command.main, "started": time.monotonic(), "served": 0}


def _same_key(mine, clients, what):
    changed = sorted(part for part in clients if mine.get(part) != clients[part])
    if changed:
        raise RuntimeError(f"its key ({', '.join(changed)}) {what}")


def _warm_up(torch, check_function):
    """Check one of nnbasics' ops with every check, so that Dynamo's, AOTAutograd's and the checks' first-use imports
    are done (its ``jvp`` takes forward-mode AD's too)."""
    from nnbasics import ops

    x = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    check_function(ops.Tanh, x, reference=torch.tanh)


def _serve(state):
    listener = state["listener"]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the supervisors are reaped by the kernel

    def stop(signum, frame):
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    last = time.monotonic()
    try:
        while True:
            listener.settimeout(max(min(state["idle"] - (time.monotonic() - last), SOURCES_CHECKED_S), 0.01))
            try:
                conn, _ = listener.accept()
                with conn:
                    _handle(conn, state)
                last = time.monotonic()
            except TimeoutError:
                pass
            if time.monotonic() - last >= state["idle"] or _sources_changed(state):
                break
    except _Stop:
        pass
    finally:
        _remove_socket(state)


def _sources_changed(state) -> bool:
    now = common.key()
    return any(now[part] != state["key"][part] for part in ("torch", "nnbasics", "packages"))


def _remove_socket(state):
    """Unlink the socket, under the start lock, unless a newer server has bound that path."""
    lock = os.open(state["path"][: -len(".sock")] + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.stat(state["path"]).st_ino == state["inode"]:
            os.unlink(state["path"])
    except OSError:
        pass
    finally:
        state["listener"].close()
        os.close(lock)


def _peer_is_me(conn) -> bool:
    if not hasattr(socket, "SO_PEERCRED"):
        return True  # the directory's 0700 keeps others out
    import struct
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


def _handle(conn, state):
    conn.settimeout(5.0)
    fds = []
    try:
        if not _peer_is_me(conn):
            return
        message, fds = common.receive(conn, fds=True)
        if message is None:
            return
        if message.get("op") == "stop":
            common.send(conn, {"pid": os.getpid(), "served": state["served"],
                               "up_s": time.monotonic() - state["started"]})
            raise _Stop
        if message.get("op") != "check" or len(fds) != 3:
            return
        if message["key"] != state["key"]:
            common.send(conn, {"error": "its key differs from this client's"})
            return
        state["served"] += 1
        if os.fork() == 0:
            try:
                _supervise(conn, fds, message, state)
            finally:
                os._exit(0)
    except (OSError, ValueError):
        pass
    finally:
        for fd in fds:
            os.close(fd)


def _supervise(conn, fds, message, state):
    """The first fork: start the checking child, tell the client its pid, pass on "go", report its exit status."""
    state["listener"].close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    conn.settimeout(None)
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)
        os.close(go_w)
        conn.close()
        _child(go_r, fds, message, state)  # never returns
    try:
        os.setpgid(child, child)
    except OSError:
        pass  # the child did it first
    os.close(go_r)
    for fd in fds:
        os.close(fd)
    fds.clear()
    try:
        common.send(conn, {"pid": child})
        go = common.receive(conn)
    except (OSError, ValueError):
        go = None
    if go is None:  # the client gave up before the check began
        os.close(go_w)
        os.waitpid(child, 0)
        return
    os.write(go_w, b"g")
    os.close(go_w)
    status = _wait(child, conn)
    try:
        common.send(conn, {"status": status})
    except OSError:
        pass


def _wait(child, conn) -> int:
    """The child's wait status; its process group is killed if the client goes away first."""
    pidfd = os.pidfd_open(child) if hasattr(os, "pidfd_open") else None
    watched = [conn] + ([pidfd] if pidfd is not None else [])
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            return status
        readable, _, _ = select.select(watched, [], [], None if pidfd is not None else 0.02)
        if conn in readable and not _recv_or_nothing(conn):
            try:
                os.killpg(child, signal.SIGKILL)
            except OSError:
                pass
            watched = [pidfd] if pidfd is not None else []


def _recv_or_nothing(conn) -> bytes:
    try:
        return conn.recv(1)
    except OSError:
        return b""


def _child(go_r, fds, message, state):
    """The second fork: become the client's process, run the command line, exit with its status (never returns)."""
    code = 1
    try:
        for fd in (0, 1, 2):
            os.dup2(fds[fd], fd)
        for fd in fds:
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for s in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        if not os.read(go_r, 1):
            os._exit(0)  # the client gave up before the check began
        os.close(go_r)
        _take_state(message, state)
        code = state["main"](message["argv"])
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:  # noqa: BLE001 - as Python itself ends on an uncaught exception
        traceback.print_exc()
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    _exit(code)


def _take_state(message, state):
    """The client's cwd, umask, limits, environment, sys.path, argv and stdio; torch's threads and seed as a fresh
    process has them."""
    os.chdir(message["cwd"])
    os.umask(message["umask"])
    _set_limits(message["limits"])
    os.environ.clear()
    os.environ.update({**state["added"], **message["env"]})
    sys.path[:] = message["path"]
    sys.argv[:] = message["sys.argv"]
    sys.stdin, sys.stdout, sys.stderr = (_text(fd, s) for fd, s in enumerate(message["stdio"]))
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    faulthandler.disable()
    warnings.onceregistry.clear()
    warnings._filters_mutated()  # the "shown once" records of the server's warm-up are forgotten
    random.seed()  # as a fresh process: its own random draws, not the server's
    torch = state["torch"]
    torch.seed()
    torch.set_num_threads(state["threads"])


def _set_limits(limits):
    import resource

    for name, (soft, hard) in limits.items():
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (AttributeError, ValueError, OSError):
            pass  # a hard limit above the server's own cannot be raised: the server's stays


def _text(fd, stream):
    """A text stream on ``fd`` as Python makes one at start-up: line-buffered on a terminal (stderr always)."""
    if fd == 0:
        raw = io.FileIO(0, "r", closefd=False)
        return io.TextIOWrapper(io.BufferedReader(raw), encoding=stream["encoding"], errors=stream["errors"])
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding=stream["encoding"], errors=stream["errors"],
                            line_buffering=fd == 2 or raw.isatty(), write_through=stream["write_through"])


def _exit(code):
    """End the child as the interpreter ends a process: non-daemon threads joined, atexit, stdio flushed."""
    try:
        import threading
        getattr(threading, "_shutdown", lambda: None)()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
