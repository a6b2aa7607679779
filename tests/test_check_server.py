"""The check server (nnbasics/checkserver): the same output and exit status as the command in its own process, never
a stale or foreign answer, a daemon that holds no one's pipes, Ctrl-C, and a client that imports no torch.

Each test turns the server on (the suite runs with NNBASICS_CHECK_SERVER=0, tests/conftest.py) in a private socket
directory of this module, and the module's teardown stops every server started there."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nnbasics.checkserver import client, common

REPO_ROOT = Path(__file__).resolve().parent.parent
SOFTPLUS = "docs/examples/softplus.py:Softplus"
FAST = ["--checks", "gradcheck,reference"]  # the child's share kept short: the server is what is tested

pytestmark = pytest.mark.skipif(not common.supported() or sys.platform != "linux",
                                reason="Linux: fork, Unix sockets, SO_PEERCRED (a server's pid) and ps --ppid")

FUNCTION = '''
import os, pathlib, time
import torch


class Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        if {sleep}:
            pathlib.Path(__file__).with_suffix(".started").write_text(str(os.getpid()))
            time.sleep(60)
        return 3 * x

    @staticmethod
    def backward(ctx, grad):
        return {factor} * grad


def sample_inputs():
    return (torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(),)


def reference(x):
    return 3 * x
'''


def _function(folder: Path, factor=3, sleep=False) -> str:
    path = folder / "scale.py"
    path.write_text(FUNCTION.format(factor=factor, sleep=sleep))
    return f"{path}:Scale"


class Servers:
    """Runs the command line with the server on, in ``self.dir``."""

    def __init__(self, folder: str):
        self.dir = folder
        self.env = dict(os.environ, NNBASICS_CHECK_SERVER="1", NNBASICS_CHECK_SERVER_DIR=folder,
                        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))

    def run(self, *argv, env=None, **kwargs):
        return subprocess.run([sys.executable, "-m", "nnbasics.check", *argv], check=False, capture_output=True,
                              text=True, cwd=REPO_ROOT, env={**self.env, **(env or {})}, timeout=180, **kwargs)

    def sockets(self) -> list:
        return sorted(p for p in os.listdir(self.dir) if p.endswith(".sock"))

    def pids(self) -> list:
        """The pid of the server listening on each socket (SO_PEERCRED; Linux)."""
        found = []
        for name in self.sockets():
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(os.path.join(self.dir, name))
                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                found.append(struct.unpack("3i", creds)[0])
        return found


@pytest.fixture(scope="module")
def servers():
    folder = tempfile.mkdtemp(prefix="nncs-", dir="/tmp")  # short: a socket path holds about 100 bytes
    os.chmod(folder, 0o700)
    found = Servers(folder)
    yield found
    done = found.run("--stop-server")
    assert done.returncode == 0, done.stderr
    assert found.sockets() == []
    shutil.rmtree(folder, ignore_errors=True)


def _alive(pid) -> bool:
    """Running (a zombie that no init reaped yet is not)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except ProcessLookupError:
        return False
    except OSError:
        return True


def _same(served, alone, json_report=False):
    assert served.returncode == alone.returncode
    assert served.stderr == alone.stderr == ""
    if not json_report:
        assert served.stdout == alone.stdout
        return

    def results(done):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(done.stdout)["results"]]

    assert results(served) == results(alone)


@pytest.mark.parametrize("argv", [[SOFTPLUS], [SOFTPLUS, "-v", "--checks", "gradcheck,compile,torch_func"]],
                         ids=["all-checks", "some-checks-v"])
def test_a_passing_function_prints_what_the_command_prints_in_its_own_process(servers, argv):
    served = servers.run(*argv)
    assert servers.sockets(), "the first run started a server"
    _same(served, servers.run(*argv, "--no-server"))
    assert served.returncode == 0 and "0 failed" in served.stdout


def test_a_failing_function_and_json(servers, tmp_path):
    target = _function(tmp_path, factor=2)
    served = servers.run(target, *FAST)
    assert served.returncode == 1 and "FAIL" in served.stdout
    _same(served, servers.run(target, *FAST, "--no-server"))
    _same(servers.run(target, *FAST, "--json"), servers.run(target, *FAST, "--json", "--no-server"), json_report=True)
    bad_flag = servers.run(target, "--checks", "nonsense")
    assert bad_flag.returncode == 2
    assert bad_flag.stderr == servers.run(target, "--checks", "nonsense", "--no-server").stderr


def test_a_function_that_crashes_the_process_ends_the_command_as_it_would_in_its_own(servers, tmp_path):
    path = tmp_path / "crash.py"
    path.write_text(FUNCTION.format(factor=3, sleep=False).replace(
        "        return 3 * x\n", "        import os, signal\n        os.kill(os.getpid(), signal.SIGSEGV)\n", 1))
    served, alone = (servers.run(f"{path}:Scale", "--checks", "gradcheck", *extra) for extra in ([], ["--no-server"]))
    assert served.returncode == alone.returncode == -signal.SIGSEGV
    assert "Segmentation fault" in served.stderr and "Segmentation fault" in alone.stderr  # faulthandler, on its stderr


def test_an_edited_file_is_seen_by_the_next_run(servers, tmp_path):
    target = _function(tmp_path, factor=2)
    assert servers.run(target, *FAST).returncode == 1
    pids = servers.pids()
    _function(tmp_path, factor=3)
    fixed = servers.run(target, *FAST)
    assert fixed.returncode == 0, fixed.stdout
    assert servers.pids() == pids, "the same server answered"


def test_another_key_starts_another_server_and_the_first_is_kept(servers):
    before = servers.sockets()
    assert before
    other = servers.run(SOFTPLUS, *FAST, env={"NNBASICS_TEST_KEY": "1"})  # NNBASICS_*: part of the key
    assert other.returncode == 0, other.stderr
    after = servers.sockets()
    assert len(after) == len(before) + 1 and set(before) < set(after)


def test_capture_output_returns_while_the_started_server_lives_on(servers):
    """The CLI's pipes are not held by the daemon it started: subprocess.run(capture_output=True) returns."""
    before = set(servers.pids())
    done = servers.run(SOFTPLUS, *FAST, env={"NNBASICS_TEST_KEY": "capture"})
    assert done.returncode == 0 and done.stderr == ""
    (started,) = set(servers.pids()) - before
    assert _alive(started)


def test_a_killed_server_leaves_a_stale_socket_that_the_next_client_replaces(servers):
    env = {"NNBASICS_TEST_KEY": "killed"}
    assert servers.run(SOFTPLUS, *FAST, env=env).returncode == 0
    killed = _server_of(servers, env)
    os.kill(killed, signal.SIGKILL)
    _wait_gone(killed)
    again = servers.run(SOFTPLUS, *FAST, env=env)
    assert again.returncode == 0 and again.stderr == ""
    assert _server_of(servers, env) != killed


def _server_of(servers, env) -> int:
    """The pid of the server of the key a client with ``env`` has."""
    script = "from nnbasics.checkserver import common; print(common.digest(common.key()))"
    name = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                          env={**servers.env, **env}).stdout.strip() + ".sock"
    return dict(zip(servers.sockets(), servers.pids()))[name]


def _wait_gone(pid):
    for _ in range(200):
        if not _alive(pid):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still runs")


def test_two_clients_at_once_start_one_server(servers):
    env = {**servers.env, "NNBASICS_TEST_KEY": "together"}
    argv = [sys.executable, "-m", "nnbasics.check", SOFTPLUS, *FAST]
    before = set(servers.sockets())
    both = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env)
            for _ in range(2)]
    done = [proc.communicate(timeout=180) + (proc.returncode,) for proc in both]
    # a second server would have failed to bind the first one's socket, and its client would have said so
    assert [(err, code) for _, err, code in done] == [("", 0), ("", 0)]
    assert len(set(servers.sockets()) - before) == 1


def test_a_child_runs_multithreaded_ops_after_the_servers_single_threaded_warm_up(servers, tmp_path):
    """GNU libgomp can hang in a forked child whose parent ran OpenMP threads: the server runs on one thread."""
    path = tmp_path / "threads.py"
    path.write_text(FUNCTION.format(factor=3, sleep=False) + """
def sample_inputs():
    torch.set_num_threads(2)
    a = torch.randn(2048, 2048)
    assert torch.isfinite(a @ a).all()
    print("threads", torch.get_num_threads())
    return (torch.randn(4, dtype=torch.float64, requires_grad=True),)
""")
    done = servers.run(f"{path}:Scale", "--checks", "gradcheck")
    assert done.returncode == 0 and "threads 2" in done.stdout and done.stderr == ""


def test_inductors_worker_processes_started_in_a_child_end_with_it(servers, tmp_path):
    """Inductor's compile workers (its SubprocPool: the sidecar and its workers) start in the child, not in the
    server, and are gone when the command returns: capture_output does not wait on them."""
    path = tmp_path / "pool.py"
    path.write_text(FUNCTION.format(factor=3, sleep=False) + """
def sample_inputs():
    import subprocess
    from torch._inductor.async_compile import AsyncCompile
    AsyncCompile.wait_pool_ready()
    ps = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())], capture_output=True, text=True).stdout
    print("workers", *(line.split()[0] for line in ps.splitlines() if "compile_worker" in line))
    return (torch.randn(4, dtype=torch.float64, requires_grad=True),)
""".replace("import subprocess", "import os, subprocess"))
    done = servers.run(f"{path}:Scale", "--checks", "gradcheck", env={"TORCHINDUCTOR_COMPILE_THREADS": "2"})
    assert done.returncode == 0, done.stderr
    workers = [int(pid) for line in done.stdout.splitlines() if line.startswith("workers") for pid in line.split()[1:]]
    assert workers
    for pid in workers:
        _wait_gone(pid)


def test_an_idle_server_ends_and_removes_its_socket(servers):
    env = {"NNBASICS_TEST_KEY": "idle", "NNBASICS_CHECK_SERVER_IDLE": "0.5"}
    before = set(servers.sockets())
    assert servers.run(SOFTPLUS, *FAST, env=env).returncode == 0
    for _ in range(500):
        if set(servers.sockets()) == before:
            break
        time.sleep(0.02)
    assert set(servers.sockets()) == before


@pytest.mark.parametrize("value", ["ten", "0", "-5", "nan", ""])
def test_a_bad_idle_setting_is_one_line_naming_it(servers, value):
    before = set(servers.sockets())
    done = servers.run(SOFTPLUS, *FAST, env={"NNBASICS_CHECK_SERVER_IDLE": value})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and f"NNBASICS_CHECK_SERVER_IDLE={value!r}" in done.stderr, done.stderr
    assert set(servers.sockets()) == before  # nothing was started


@pytest.mark.parametrize("flag", sorted(client.FLAG_PREFIXES))
def test_the_client_reads_its_flags_as_the_commands_parser_does(flag):
    """Every abbreviation of --no-server and --stop-server: the client opts out (or stops the servers) exactly where
    argparse, parsing the command's own flags, would take the argument for that flag."""
    from nnbasics.testing.command import make_parser

    dest = flag[2:].replace("-", "_")
    for end in range(3, len(flag) + 1):
        arg = flag[:end]
        parser = make_parser()
        parser.error = lambda message: (_ for _ in ()).throw(ValueError(message))  # ambiguous: not this flag
        try:
            taken = getattr(parser.parse_args(["x.py:F", arg]), dest)
        except ValueError:
            taken = False
        assert client.given(["x.py:F", arg], flag) == taken, arg


def _state_soon(pid, state) -> bool:
    for _ in range(250):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == state:
                return True
        time.sleep(0.02)
    return False


def _sleeping_check(servers, tmp_path):
    """A served check whose forward sleeps: (the client's Popen, the checking child's pid)."""
    target = _function(tmp_path, sleep=True)
    # A process group of its own, whose parent (this process) is in another group of the same session: such a
    # group is not orphaned, so Ctrl-Z (SIGTSTP) can stop it. In an orphaned group (a test run detached from
    # its shell) the kernel discards SIGTSTP's stop, as POSIX says, and the test would depend on how it was run.
    proc = subprocess.Popen([sys.executable, "-m", "nnbasics.check", target, "--checks", "gradcheck"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=servers.env,
                            process_group=0)
    started = tmp_path / "scale.started"
    for _ in range(1500):
        if (started.exists() and started.read_text()) or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert started.exists(), proc.communicate()
    return proc, int(started.read_text())


def test_ctrl_z_and_ctrl_c_reach_the_child_exit_130_and_the_server_lives_on(servers, tmp_path):
    proc, child = _sleeping_check(servers, tmp_path)
    proc.send_signal(signal.SIGTSTP)  # Ctrl-Z stops the child with the client, and fg continues both
    assert _state_soon(proc.pid, "T") and _state_soon(child, "T")
    proc.send_signal(signal.SIGCONT)
    assert _state_soon(child, "S")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err
    _wait_gone(child)
    assert servers.pids() and all(_alive(pid) for pid in servers.pids())


def test_sigterm_ends_the_child_and_the_client_with_it(servers, tmp_path):
    proc, child = _sleeping_check(servers, tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM  # as the command in its own process ends on SIGTERM
    _wait_gone(child)
    assert servers.pids() and all(_alive(pid) for pid in servers.pids())


def test_stop_server_stops_every_server_and_says_so(servers):
    pids = servers.pids()
    assert pids
    done = servers.run("--stop-server")
    assert done.returncode == 0
    assert done.stdout.count("stopped the check server") == len(pids)
    for pid in pids:
        _wait_gone(pid)
    assert servers.sockets() == []
    assert "no check server is running" in servers.run("--stop-server").stdout


def test_off_switches_and_an_unsafe_directory_check_in_process(servers, tmp_path):
    for argv, env in (([SOFTPLUS, *FAST, "--no-server"], {}), ([SOFTPLUS, *FAST], {"NNBASICS_CHECK_SERVER": "0"})):
        done = servers.run(*argv, env=env)
        assert done.returncode == 0 and done.stderr == ""
    assert servers.sockets() == []
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    done = servers.run(SOFTPLUS, *FAST, env={"NNBASICS_CHECK_SERVER_DIR": str(shared)})
    assert done.returncode == 0 and "0 failed" in done.stdout
    assert len(done.stderr.splitlines()) == 1 and "must be 0700" in done.stderr
    assert list(shared.iterdir()) == []


def test_no_server_where_the_platform_has_none(monkeypatch):
    monkeypatch.setenv("NNBASICS_CHECK_SERVER", "1")
    monkeypatch.setattr(common, "supported", lambda: False)
    assert client.run([SOFTPLUS]) is None
    monkeypatch.setattr(common, "supported", lambda: True)
    assert not client.wanted(["--op", "relu"])  # no target: nnbasics' own ops, in this process


def test_the_client_imports_no_torch(servers):
    script = ("import sys; sys.argv = ['nnbasics-check', *sys.argv[1:]]; from nnbasics import check; "
              "code = check.main(); "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'nnbasics')), "
              "file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, SOFTPLUS, *FAST], check=False, capture_output=True, text=True,
                          cwd=REPO_ROOT, env=servers.env, timeout=180)
    assert done.returncode == 0 and "0 failed" in done.stdout
    assert done.stderr.strip() == str(["nnbasics", "nnbasics.check", "nnbasics.checkserver",
                                       "nnbasics.checkserver.client", "nnbasics.checkserver.common"])


def test_nnbasics_attributes_are_imported_on_first_use():
    script = """
import sys
import nnbasics
assert "torch" not in sys.modules and nnbasics.__version__
assert {"functional", "nn", "__version__"} <= set(dir(nnbasics))
assert nnbasics.__all__ == ["functional", "nn", "__version__"]
from nnbasics import functional, nn
assert nnbasics.functional is functional and nnbasics.nn is nn and "torch" in sys.modules
assert callable(nnbasics.functional.relu) and nnbasics.nn.Linear
try:
    nnbasics.nothing
except AttributeError as exc:
    assert "nothing" in str(exc)
else:
    raise AssertionError("no AttributeError")
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
