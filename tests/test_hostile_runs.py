"""Broken run folders, checkpoints and --out values: one line each, the documented exit status
(2: a bad flag or argument, 1: bad data or a failed write), and nothing lost.

The runs train a tiny MLP on a tiny random dataset (``load_splits`` is replaced), so every
case takes well under a second; each builds its own broken file from a real run's.
"""
import builtins
import errno
import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys

import pytest
import torch

import nnbasics.train.data as nndata
import nnbasics.train.evaluate as nneval
from nnbasics import train
from nnbasics.nn import MLP
from nnbasics.train import files, runs

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0
FLAGS = ["--hidden", "8", "--epochs", "2", "--batch-size", "64", "--quiet"]


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def split(n, g):
    return nndata.Split(torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g),
                        torch.randint(0, 10, (n,), generator=g))


@pytest.fixture
def tiny(monkeypatch):
    """A 512/128/256-example random dataset in place of MNIST; records each load's data_dir."""
    g = torch.Generator().manual_seed(0)
    splits = nndata.MNIST(train=split(512, g), val=split(128, g), test=split(256, g), mean=0.13, std=0.31,
                          name="mnist")
    loads = []

    def load_splits(dataset="mnist", data_dir=None, **kwargs):
        loads.append(data_dir)
        return splits

    monkeypatch.setattr(nndata, "load_splits", load_splits)
    return loads


def fails(argv, status, capsys, command=train.main) -> str:
    """Run the command line; it must exit with ``status`` and one line on stderr, which is returned."""
    with pytest.raises(SystemExit) as exit_info:
        command(argv)
    assert exit_info.value.code == status, (exit_info.value.code, str(exit_info.value))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def a_run(tmp_path, name="run", *extra) -> pathlib.Path:
    out = tmp_path / name
    assert train.main(FLAGS + ["--out", str(out), *extra]) == 0
    return out


def contents(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- --resume with a bad checkpoint

def rewrite_checkpoint(run, change):
    path = run / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint = change(checkpoint)
    torch.save(checkpoint, path)
    return path


def unknown_key(ck):
    ck["config"]["bogus"] = 1
    return ck


def a_list(ck):
    return [ck["config"], ck["model"]]


def config_list(ck):
    ck["config"] = list(ck["config"].items())
    return ck


def string_for_a_number(ck):
    ck["config"]["lr"] = "0.1"
    return ck


def other_width(ck):
    ck["model"] = MLP([784, 16, 10], impl="builtin").state_dict()
    return ck


def no_progress(ck):
    del ck["progress"]
    return ck


def epoch_a_string(ck):
    ck["progress"]["epoch"] = "1"
    return ck


def history_without_losses(ck):
    ck["progress"]["history"] = [{"epoch": 1}]
    return ck


def world_size_a_string(ck):
    ck["world_size"] = "2"
    return ck


BAD_CHECKPOINTS = {
    "unknown config key": (unknown_key, "unknown config key 'bogus'"),
    "a list": (a_list, "holds a list, not a config dict"),
    "config a list": (config_list, "holds a config that is a list, not a config dict"),
    "a string for a number": (string_for_a_number, "config lr is '0.1', not of type float"),
    "weights of another width": (other_width, ("does not fit the run of its own config (RuntimeError: size "
                                               "mismatch for 0.weight")),
    "no progress": (no_progress, "no 'progress'"),
    "an epoch that is a string": (epoch_a_string, "progress epoch is '1', not of type int"),
    "history without losses": (history_without_losses, "progress history is"),
    "world_size a string": (world_size_a_string, "world_size is '2', not a number of processes"),
}


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_resume_of_a_broken_checkpoint_is_one_data_error(tmp_path, tiny, capsys, case):
    change, named = BAD_CHECKPOINTS[case]
    run = a_run(tmp_path)
    path = rewrite_checkpoint(run, change)
    before = contents(run)
    err = fails(["--resume", str(run), "--quiet"], 1, capsys)
    assert err.startswith(f"nnbasics-train: data error: {path}") and named in err, err
    assert contents(run) == before  # the refused resume wrote nothing


@pytest.mark.filterwarnings("error")  # a warning on stderr would be a second line
@pytest.mark.parametrize("what", ["text", "pickle with __reduce__"])
def test_resume_of_a_checkpoint_that_is_not_one(tmp_path, tiny, capsys, what):
    run = a_run(tmp_path)
    if what == "text":
        (run / "checkpoint.pt").write_text("not a checkpoint\n")
    else:
        (run / "checkpoint.pt").write_bytes(pickle.dumps(Evil(tmp_path / "pwned")))
    err = fails(["--resume", str(run), "--quiet"], 1, capsys)
    assert f"{run / 'checkpoint.pt'}: cannot read it as a checkpoint" in err
    assert not (tmp_path / "pwned").exists()


def test_resume_keeps_the_runs_data_dir(tmp_path, tiny):
    data_dir = str(tmp_path / "my-mnist")
    run = a_run(tmp_path, "run", "--data-dir", data_dir)
    assert train.main(["--resume", str(run), "--quiet"]) == 0
    assert tiny == [data_dir, data_dir]  # the resumed run read the same folder, not the cache
    elsewhere = str(tmp_path / "moved")
    assert train.main(["--resume", str(run), "--quiet", "--data-dir", elsewhere]) == 0
    assert tiny[-1] == elsewhere  # --data-dir may still change on resume


# --------------------------------------------------------------------------- --out that cannot work

def test_out_that_is_a_file(tmp_path, tiny, capsys):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine\n")
    err = fails(FLAGS + ["--out", str(mine)], 2, capsys)
    assert f"--out {mine}: is a file, not a folder" in err
    assert tiny == [] and mine.read_text() == "mine\n"  # refused before the data loaded


def test_out_under_a_file(tmp_path, tiny, capsys):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine\n")
    err = fails(FLAGS + ["--out", str(mine / "a" / "run")], 2, capsys)
    assert f"{mine} is a file, so no folder can be made under it" in err and tiny == []


def test_default_out_when_runs_is_a_file(tmp_path, tiny, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pathlib.Path("runs").write_text("mine\n")
    err = fails(FLAGS, 2, capsys)
    assert "--out runs: is a file, not a folder" in err and tiny == []


def refuse_writes_in(monkeypatch, folder):
    """What chmod 555 does to anyone but root: no file can be made in ``folder``."""
    real = runs.tempfile.TemporaryFile

    def temporary_file(*args, dir=None, **kwargs):
        if pathlib.Path(dir) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(runs.tempfile, "TemporaryFile", temporary_file)


def test_out_in_a_read_only_folder(tmp_path, tiny, capsys, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if ROOT_USER:
        refuse_writes_in(monkeypatch, folder)
    try:
        err = fails(FLAGS + ["--out", str(folder / "run")], 2, capsys)
    finally:
        folder.chmod(0o755)
    assert f"cannot write in {folder} (Permission denied)" in err and tiny == []
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) for a full disk")
def test_full_disk_is_one_line_and_the_last_checkpoint_stays(tmp_path, tiny, capsys, monkeypatch):
    """Writes go to /dev/full (ENOSPC from the kernel) once epoch 1's files are written."""
    out = tmp_path / "run"
    writes = []

    def open_(path, mode="r", *args, **kwargs):
        if "w" in mode:
            writes.append(path)
            if len(writes) > 4:  # new run: checkpoint + metrics at epoch 0, then at epoch 1
                return builtins.open("/dev/full", mode, *args, **kwargs)
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", open_, raising=False)
    err = fails(FLAGS + ["--out", str(out)], 1, capsys)
    assert err.startswith(f"nnbasics-train: error: cannot write {out / 'checkpoint.pt'}: No space left on device")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl", "run.lock"]  # no .part left
    monkeypatch.undo()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["progress"]["epoch"] == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


# --------------------------------------------------------------------------- --out onto files that exist

def test_out_onto_an_earlier_run_is_refused(tmp_path, tiny, capsys):
    run = a_run(tmp_path)
    before = contents(run)
    err = fails(FLAGS + ["--out", str(run), "--lr", "0.05"], 2, capsys)
    assert f"--out {run}: holds checkpoint.pt, metrics.jsonl, summary.json, model.pt" in err
    assert "--resume" in err and "--overwrite" in err
    assert contents(run) == before and len(tiny) == 1  # refused before the data loaded


def test_out_onto_a_users_own_summary_is_refused(tmp_path, tiny, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "summary.json").write_text('{"my": "notes"}\n')
    err = fails(FLAGS + ["--out", str(folder)], 2, capsys)
    assert "holds summary.json already" in err
    assert (folder / "summary.json").read_text() == '{"my": "notes"}\n'


def test_overwrite_replaces_the_earlier_run(tmp_path, tiny):
    run = a_run(tmp_path)
    before = contents(run)
    assert train.main(FLAGS + ["--out", str(run), "--lr", "0.05", "--overwrite"]) == 0
    after = contents(run)
    assert after.keys() == before.keys() and after["model.pt"] != before["model.pt"]
    assert json.loads(after["summary.json"])["config"]["lr"] == 0.05


def test_an_empty_existing_folder_is_fine(tmp_path, tiny):
    (tmp_path / "run").mkdir()
    a_run(tmp_path)


# --------------------------------------------------------------------------- one process per run folder

def held(folder):
    """The run folder's lock, taken as a live run holds it (another open file: refused like another process)."""
    fd = files.lock(folder / "run.lock")
    files.sign(fd)
    return fd


def test_out_into_a_folder_in_use_is_refused_naming_the_process(tmp_path, tiny, capsys):
    run = a_run(tmp_path)
    before = contents(run)
    fd = held(run)
    try:
        err = fails(FLAGS + ["--out", str(run), "--overwrite"], 2, capsys)
    finally:
        os.close(fd)
    assert err.startswith(f"nnbasics-train: error: --out {run}: in use by process {os.getpid()}"), err
    assert contents(run) == before and len(tiny) == 1  # refused before the data loaded, nothing written


def test_resume_of_a_run_still_training_is_refused(tmp_path, tiny, capsys):
    run = a_run(tmp_path)
    fd = held(run)
    try:
        err = fails(["--resume", str(run), "--quiet"], 2, capsys)
    finally:
        os.close(fd)
    assert f"--resume {run}: the run is still training there, in process {os.getpid()}" in err
    assert len(tiny) == 1
    assert train.main(["--resume", str(run), "--quiet"]) == 0  # the lock went with its holder


def test_a_lock_file_left_by_a_dead_process_keeps_nobody_out(tmp_path, tiny):
    run = a_run(tmp_path)
    (run / "run.lock").write_text("999999999\n")  # a run killed with SIGKILL leaves its file, not its lock
    assert train.main(["--resume", str(run), "--quiet"]) == 0
    assert (run / "run.lock").read_text() == f"{os.getpid()}\n"


def test_a_run_folder_without_a_lock_file_resumes(tmp_path, tiny):
    """Run folders of versions without run.lock: the lock file is made on resume."""
    run = a_run(tmp_path)
    (run / "run.lock").unlink()
    assert train.main(["--resume", str(run), "--quiet"]) == 0
    assert (run / "run.lock").is_file()


def test_a_lock_file_alone_is_no_earlier_run(tmp_path, tiny):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.lock").write_text("12\n")
    a_run(tmp_path)


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, monkeypatch, capsys):
    def no_data(*args, **kwargs):
        raise nndata.DataError("no MNIST here")

    monkeypatch.setattr(nndata, "load_splits", no_data)
    fails(FLAGS + ["--out", str(tmp_path / "new" / "run")], 1, capsys)
    assert list((tmp_path / "new").iterdir()) == []
    (tmp_path / "mine").mkdir()
    fails(FLAGS + ["--out", str(tmp_path / "mine")], 1, capsys)
    assert (tmp_path / "mine").is_dir()  # a folder the user made stays


# --------------------------------------------------------------------------- checkpoint and metrics agree

def test_interrupt_between_checkpoint_and_metrics_leaves_them_agreeing(tmp_path, tiny, monkeypatch):
    """SIGINT arrives right after epoch 1's checkpoint.pt is written, before metrics.jsonl."""
    real, saves = files.torch_save, []

    def torch_save(obj, path):
        real(obj, path)
        saves.append(path)
        if len(saves) == 2:  # epoch 0's checkpoint, then epoch 1's
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(files, "torch_save", torch_save)
    out = tmp_path / "run"
    assert train.main(FLAGS + ["--out", str(out)]) == 130
    epoch = torch.load(out / "checkpoint.pt", weights_only=True)["progress"]["epoch"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert epoch == 1 and [json.loads(line)["epoch"] for line in lines] == [1]


def test_signals_deferred_delivers_them_afterwards():
    order = []
    with pytest.raises(KeyboardInterrupt), files.signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        order.append("block finished")
    assert order == ["block finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --------------------------------------------------------------------------- the user's umask

@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_of_a_run_keep_the_umask(tmp_path, tiny, mask):
    previous = os.umask(mask)
    try:
        run = a_run(tmp_path)
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in run.iterdir()}
    assert modes and set(modes.values()) == {0o666 & ~mask}, modes


# --------------------------------------------------------------------------- evaluate of broken run folders

@pytest.fixture
def run_folder(tmp_path):
    """A folder with a model.pt of a 784-8-10 MLP and the summary.json nnbasics.train writes."""
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save(MLP([784, 8, 10], impl="builtin").state_dict(), folder / "model.pt")
    config = {"hidden": [8], "activation": "relu", "dataset": "mnist", "dtype": "float32", "amp": "off"}
    (folder / "summary.json").write_text(json.dumps({"test_acc": 0.1, "config": config}))
    return folder


def test_evaluate_of_the_good_folder_works(run_folder, tiny, capsys):
    assert nneval.main([str(run_folder), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("test accuracy")


BAD_SUMMARIES = {
    "not JSON": ("{'config': ", "not readable as JSON"),
    "no config": ('{"test_acc": 0.5}', "holds no config"),
    "a list": ("[1, 2]", "holds a JSON list"),
    "unknown dataset": ('{"config": {"dataset": "cifar"}}', "dataset 'cifar' is unknown"),
    "unknown dtype": ('{"config": {"dtype": "int8"}}', "dtype 'int8' is unknown"),
    "hidden not widths": ('{"config": {"hidden": "8"}}', "hidden '8' is not a list"),
    "not UTF-8": (b"\xff\xfe\x00", "not readable as JSON"),
}


@pytest.mark.parametrize("case", BAD_SUMMARIES)
def test_evaluate_of_a_broken_summary(run_folder, tiny, capsys, case):
    body, named = BAD_SUMMARIES[case]
    path = run_folder / "summary.json"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    err = fails([str(run_folder), "--quiet"], 1, capsys, nneval.main)
    assert err.startswith(f"evaluate: data error: {path}: ") and named in err, err


def text(path):
    path.write_text("these are not weights\n")


def bare_tensor(path):
    torch.save(torch.zeros(3), path)


def reduce_pickle(path):
    torch.save({"0.weight": Evil(path.parent / "pwned")}, path, _use_new_zipfile_serialization=True)


def plain_pickle(path):
    path.write_bytes(pickle.dumps(Evil(path.parent / "pwned")))


BAD_MODELS = {
    "text": (text, "cannot load it ("),
    "a bare tensor": (bare_tensor, "holds a Tensor, not a state_dict"),
    "torch.save of a __reduce__": (reduce_pickle, "cannot load it (UnpicklingError: Weights only load failed"),
    "pickle with __reduce__": (plain_pickle, "cannot load it (UnpicklingError"),
}


@pytest.mark.filterwarnings("error")  # a warning on stderr would be a second line
@pytest.mark.parametrize("case", BAD_MODELS)
def test_evaluate_of_a_broken_model(run_folder, tiny, capsys, case):
    build, named = BAD_MODELS[case]
    path = run_folder / "model.pt"
    build(path)
    err = fails([str(run_folder), "--quiet"], 1, capsys, nneval.main)
    assert err.startswith(f"evaluate: data error: {path}: ") and named in err, err
    assert not (run_folder / "pwned").exists()
    assert tiny == []  # refused before the data loaded


def test_evaluate_bad_flag_is_status_2(run_folder, tiny, capsys):
    err = fails([str(run_folder), "--hidden", "64", "--quiet"], 2, capsys, nneval.main)
    assert "--hidden 64" in err


# --------------------------------------------------------------------------- from the shell: status and no traceback

ROOT = pathlib.Path(__file__).resolve().parents[1]


def shell(*argv):
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_from_the_shell_a_bad_out_is_status_2(tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine\n")
    proc = shell("nnbasics.train", "--out", str(mine), "--quiet")
    assert proc.returncode == 2 and proc.stderr.startswith(f"nnbasics-train: error: --out {mine}: is a file")


def test_from_the_shell_a_broken_run_folder_is_status_1(run_folder):
    (run_folder / "summary.json").write_text("[1, 2]")
    proc = shell("nnbasics.train.evaluate", str(run_folder), "--quiet")
    assert proc.returncode == 1 and proc.stderr.startswith(f"evaluate: data error: {run_folder / 'summary.json'}")
