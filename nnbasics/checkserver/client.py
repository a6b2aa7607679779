"""The check server's client: what ``python -m nnbasics.check FILE.py:NAME`` runs before anything imports torch.

``run(argv)`` finds the server of this process's key (``common.key``) by its socket, starts one if there is none
(two clients at once start one: the lock file), hands it this process's state and stdio, forwards SIGINT, SIGTERM
and SIGHUP to the child that checks (Ctrl-Z stops it too), and returns that child's exit status. It returns None
where the command should run in this process instead: no target, ``--no-server``, ``NNBASICS_CHECK_SERVER=0``, a platform without
fork or Unix sockets (silently), or a server that cannot start or answer (with one line on stderr).
"""
import json
import os
import select
import signal
import subprocess
import sys

from . import common

PROG = "python -m nnbasics.check"
START_S = 30.0  # a server's start: torch, Dynamo, AOTAutograd imported, one op checked (about 3 s on a 2-core EPYC)
ANSWER_S = 10.0  # a started server's answer to a request: the forked child's pid
OFF = ("0", "no", "off", "false")
# The server's first lines of Python: its sys.path is the client's before anything of nnbasics is imported.
_BOOT = ("import json, sys; config = json.loads(sys.stdin.readline()); sys.path[:] = config['path']; "
         "from nnbasics.checkserver import server; server.main(config)")


class Refused(Exception):
    """The server would not take the request (its key is not this client's)."""


# The shortest abbreviation of each flag the client reads that argparse takes for it and no other flag of the
# command (``--no`` could be ``--not-true-gradient``, ``--st`` ``--strict``); tests/test_check_server.py checks
# these against the command's parser.
FLAG_PREFIXES = {"--no-server": "--no-", "--stop-server": "--sto"}


def given(argv, flag: str) -> bool:
    """Whether ``flag`` is on the command line, whole or abbreviated as argparse allows."""
    for arg in argv:
        if arg == "--":
            break
        if arg.startswith(FLAG_PREFIXES[flag]) and flag.startswith(arg):
            return True
    return False


def wanted(argv, env=os.environ) -> bool:
    """Whether this command line goes to the server: a target (an argument with a colon: a flag's value such as
    ``--device cuda:0`` only sends a command that would run the same in this process), and nothing that opts out."""
    if env.get(common.SWITCH, "1").strip().lower() in OFF or given(argv, "--no-server") or not common.supported():
        return False
    return any(":" in a and not a.startswith("-") for a in argv)


def warn(text: str):
    print(f"{PROG}: {text}; checking in this process (--no-server: always)", file=sys.stderr, flush=True)


def run(argv):
    """The command's exit status from the server's child, or None: run it in this process."""
    if given(argv, "--stop-server"):
        return stop_servers()
    if not wanted(argv):
        return None
    try:
        common.idle_seconds()
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        place = common.directory()
    except common.Unsafe as exc:
        warn(f"the check server's directory is not private: {exc}")
        return None
    found = common.key()
    path = os.path.join(place, common.digest(found) + ".sock")
    if len(path.encode()) > common.MAX_SOCKET_PATH:
        warn(f"the socket path {path} is longer than {common.MAX_SOCKET_PATH} bytes (set {common.DIR} to a shorter "
             "folder)")
        return None
    try:
        for _ in range(2):  # a server that was ending on idle as this client came: start another once
            sock = common.connect(path) or _start(path, found)
            if sock is None:
                return None
            with sock:
                code = _request(sock, found, argv)
            if code is not None:
                return code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Refused as exc:
        warn(f"the check server refused: {exc}")
        return None
    warn("the check server did not take the request")
    return None


def _stdio_fds() -> list:
    """The client's own descriptors 0, 1, 2 (/dev/null in place of a closed one)."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def _limits() -> dict:
    """This process's resource limits (ulimit), which the child takes."""
    import resource

    names = ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_CPU")
    return {name: resource.getrlimit(getattr(resource, name)) for name in names if hasattr(resource, name)}


def _stream(stream) -> dict:
    return {"encoding": getattr(stream, "encoding", None), "errors": getattr(stream, "errors", None),
            "write_through": getattr(stream, "write_through", False)}


def _request(sock, found, argv):
    """Send the request; the exit status, or None where the server went away before it took it."""
    umask = os.umask(0)
    os.umask(umask)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        common.send(sock, {"op": "check", "key": found, "argv": list(argv), "sys.argv": sys.argv, "cwd": os.getcwd(),
                           "env": dict(os.environ), "path": sys.path, "umask": umask, "limits": _limits(),
                           "stdio": [_stream(s) for s in (sys.stdin, sys.stdout, sys.stderr)]}, _stdio_fds())
        sock.settimeout(ANSWER_S)
        reply = common.receive(sock)
    except (OSError, ValueError):
        return None
    if reply is None:
        return None
    if "error" in reply:
        raise Refused(reply["error"])
    child = reply["pid"]

    def forward(signum, frame):
        try:
            os.killpg(child, signum)
        except OSError:
            pass

    def suspend(signum, frame):  # Ctrl-Z: stop the child with this process, continue it with this process
        forward(signal.SIGSTOP, frame)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        signal.signal(signal.SIGTSTP, suspend)  # here again after SIGCONT
        forward(signal.SIGCONT, frame)

    previous = {}
    for s, handler in ((signal.SIGINT, forward), (signal.SIGTERM, forward), (signal.SIGHUP, forward),
                       (signal.SIGTSTP, suspend)):
        try:
            previous[s] = signal.signal(s, handler)
        except ValueError:  # not the main thread: signals reach the process's main thread, not this client
            break
    try:
        sock.settimeout(None)
        try:
            common.send(sock, {"op": "go"})
            reply = common.receive(sock)
        except (OSError, ValueError):
            reply = None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if reply is None:
        print(f"{PROG}: the check server's process ended without an exit status", file=sys.stderr)
        return 1
    code = os.waitstatus_to_exitcode(reply["status"])
    if code < 0:  # the child died of a signal: so does this process, as the in-process command would
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _start(path, found):
    """Start the server of this key (unless another client just did) and connect; None with a warning if it fails."""
    import fcntl  # POSIX only, as the server is

    lock = os.open(path[: -len(".sock")] + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = common.connect(path)
        if sock is not None:  # another client started it while this one waited for the lock
            return sock
        if os.path.lexists(path):
            os.unlink(path)  # a server that died without removing its socket (killed)
        ready_r, ready_w = os.pipe()
        config = {"path": [os.path.abspath(p) for p in sys.path], "key": found, "socket": path, "ready": ready_w,
                  "idle": common.idle_seconds()}
        launcher = subprocess.Popen([sys.executable, *subprocess._args_from_interpreter_flags(), "-c", _BOOT],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    pass_fds=(ready_w,), start_new_session=True, cwd="/")
        os.close(ready_w)
        launcher.communicate(json.dumps(config).encode() + b"\n")  # it forks the server and exits at once
        said = _read_until_closed(ready_r, START_S)
        if said != "ready":
            warn(f"the check server did not start ({said or 'it exited without saying why'})")
            return None
        sock = common.connect(path)
        if sock is None:
            warn("the check server started but does not answer")
        return sock
    finally:
        os.close(lock)  # releases the lock


def _read_until_closed(fd, timeout) -> str:
    text = b""
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return f"no answer within {timeout:g} s"
            data = os.read(fd, 4096)
            if not data:
                return text.decode(errors="replace").strip()
            text += data
    finally:
        os.close(fd)


def stop_servers() -> int:
    """``--stop-server``: stop every check server of this user (in this socket directory), one line each."""
    if not common.supported():
        print("no check server runs on this platform (it needs fork and Unix sockets)")
        return 0
    try:
        place = common.directory()
    except common.Unsafe as exc:
        print(f"{PROG}: the check server's directory is not private: {exc}", file=sys.stderr)
        return 2
    sockets = sorted(n for n in os.listdir(place) if n.endswith(".sock"))
    for name in sockets:
        path = os.path.join(place, name)
        sock = common.connect(path)
        if sock is None:
            os.unlink(path)
            print(f"removed the stale socket {path} (its server was gone)")
            continue
        with sock:
            try:
                common.send(sock, {"op": "stop"})
                reply = common.receive(sock)
            except (OSError, ValueError):
                reply = None
        if reply is None:
            print(f"the check server at {path} did not answer", file=sys.stderr)
            continue
        print(f"stopped the check server, pid {reply['pid']}, up {reply['up_s']:.0f} s, "
              f"{reply['served']} command(s) served ({path})")
    if not sockets:
        print(f"no check server is running (sockets in {place})")
    return 0
