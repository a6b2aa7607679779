"""Training on two CPU processes under torchrun (gloo) equals one process with the same global batch.

Each test starts ``python -m torch.distributed.run --standalone`` (a free port on this
machine) as a subprocess with a time limit; MNIST must be in the cache (as for test_train.py).
"""
import dataclasses
import json
import os
import pathlib
import socket
import subprocess
import sys
import unittest.mock

import pytest
import torch

from nnbasics import train
from nnbasics.cli import ConfigError
from nnbasics.train import app, distributed

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAGS = ["--hidden", "32", "--dropout", "0", "--batch-size", "64", "--limit-train", "1024", "--dtype", "float64",
         "--shift", "2", "--seed", "3"]


def torchrun(*args, nproc=2, timeout=180):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "nnbasics.train", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(tmp_path, mnist):
    two = tmp_path / "two"
    done = torchrun(*FLAGS, "--epochs", "2", "--out", str(two))
    assert done.returncode == 0, done.stderr
    one = tmp_path / "one"
    assert train.main([*FLAGS, "--epochs", "2", "--quiet", "--out", str(one)]) == 0
    w_two = torch.load(two / "model.pt", weights_only=True)
    w_one = torch.load(one / "model.pt", weights_only=True)
    for name in w_one:  # float64: only the order in which the two halves' gradients are summed differs
        torch.testing.assert_close(w_two[name], w_one[name], rtol=0, atol=1e-10, msg=name)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["config"]["batch_size"] == 64
    assert json.loads((one / "summary.json").read_text())["world_size"] == 1
    metrics = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]  # written once, by rank 0
    # Rank 0 alone prints: one start line, one line per epoch, one final line.
    assert done.stderr.count("epoch 1/2:") == 1 and done.stdout.count("test accuracy") == 1, done.stderr
    assert "x 2 processes" in done.stderr


def test_resume_of_a_two_process_run_needs_two_processes(tmp_path, mnist):
    out = tmp_path / "run"
    assert torchrun(*FLAGS, "--epochs", "1", "--quiet", "--out", str(out)).returncode == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["world_size"] == 2
    with pytest.raises(SystemExit, match="trained by 2 process"):
        train.main(["--resume", str(out), "--quiet"])


def test_batch_not_divisible_by_the_processes_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="--batch-size 63: .* multiple of 2"):
        distributed.check_batch_size(distributed.from_environment(), 63)


def test_shard_keeps_each_process_its_rows():
    x = torch.arange(12).reshape(6, 2)
    y = torch.arange(6)
    xs, ys = zip(*(distributed.shard(distributed.World(rank, 3), x, y) for rank in range(3)))
    assert torch.equal(torch.cat(xs), x) and torch.equal(torch.cat(ys), y)
    assert distributed.shard(distributed.World(), x, y) == (x, y)  # one process: the whole batch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _record_batches(rank, world_size, port, config, out):
    """A torchrun process by hand: train ``config`` and save the labels of every step it took."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    seen, real_step = [], train.train_step

    def step(model, optimizer, x, y, loss_fn, **kwargs):
        seen.append(y.clone())
        return real_step(model, optimizer, x, y, loss_fn, **kwargs)

    app.train_step = step
    train.run(config)
    torch.save(seen, f"{out}-{rank}.pt")


def test_each_process_trains_on_its_half_of_every_global_batch(tmp_path, mnist):
    config = train.Config(hidden=[16], dropout=0, batch_size=64, limit_train=512, epochs=1, quiet=True,
                          out=str(tmp_path / "two"))
    torch.multiprocessing.start_processes(_record_batches, args=(2, _free_port(), config, str(tmp_path / "labels")),
                                          nprocs=2, start_method="spawn", join=True)
    rank0, rank1 = (torch.load(tmp_path / f"labels-{r}.pt") for r in (0, 1))

    seen, real_step = [], train.train_step

    def step(model, optimizer, x, y, loss_fn, **kwargs):
        seen.append(y.clone())
        return real_step(model, optimizer, x, y, loss_fn, **kwargs)

    with unittest.mock.patch.object(app, "train_step", step):
        train.run(dataclasses.replace(config, out=str(tmp_path / "one")), data=mnist)
    assert len(rank0) == len(rank1) == len(seen) == 512 // 64
    for a, b, whole in zip(rank0, rank1, seen):
        assert len(a) == len(b) == 32  # each process half of the global batch of 64 ...
        assert torch.equal(torch.cat([a, b]), whole)  # ... and together exactly the one-process batch


def _main_as_rank(rank, world_size, port, argv, interrupt_epoch, results):
    """``train.main(argv)`` as process ``rank`` of a torchrun; Ctrl-C in epoch ``interrupt_epoch`` (0: never)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    real_epoch, calls = train.train_epoch, []

    def epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == interrupt_epoch:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    app.train_epoch = epoch
    pathlib.Path(f"{results}-{rank}").write_text(str(train.main(argv)))


def _torchrun_by_hand(tmp_path, argv, interrupt_epoch=0):
    results = tmp_path / f"rc-{_free_port()}"
    torch.multiprocessing.start_processes(_main_as_rank, args=(2, _free_port(), argv, interrupt_epoch, str(results)),
                                          nprocs=2, start_method="spawn", join=True)
    return [int(pathlib.Path(f"{results}-{rank}").read_text()) for rank in (0, 1)]


def test_two_processes_interrupted_then_resumed_equal_a_straight_run(tmp_path, mnist):
    """With dropout on: each process's own random stream is saved and restored too."""
    flags = ["--hidden", "32", "--dropout", "0.2", "--batch-size", "64", "--limit-train", "1024", "--epochs", "2",
             "--quiet"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _torchrun_by_hand(tmp_path, [*flags, "--out", str(straight)]) == [0, 0]
    assert _torchrun_by_hand(tmp_path, [*flags, "--out", str(split)], interrupt_epoch=2) == [130, 130]
    assert torch.load(split / "checkpoint.pt", weights_only=True)["progress"]["epoch"] == 1
    assert not (split / "model.pt").exists()
    assert _torchrun_by_hand(tmp_path, ["--resume", str(split), "--quiet"]) == [0, 0]
    a, b = torch.load(straight / "model.pt", weights_only=True), torch.load(split / "model.pt", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]), name
