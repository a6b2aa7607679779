"""The training script: twin runs, exact resume, the files a run leaves, and every fault a user can cause.

Runs are small (a few dozen hidden units, a subset of the training set) except
where the real data is the point. They use the real MNIST from the cache
(nnbasics.train.data fetches it once); without it and outside CI they are skipped.
"""
import importlib
import io
import json
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import nnbasics.train.data as nndata
import nnbasics.train.evaluate as nneval
from nnbasics import train
from nnbasics.nn import MLP
from nnbasics.train import app

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMING_KEYS = {"seconds", "samples_per_s"}  # the only metrics allowed to differ between identical runs


def small(tmp_path, name="run", **overrides) -> train.Config:
    """A config that trains in well under a second: 32 hidden units, 2048 examples, batches of 64."""
    settings = {"hidden": [32], "epochs": 1, "batch_size": 64, "limit_train": 2048, "quiet": True,
                "out": str(tmp_path / name)}
    settings.update(overrides)
    return train.Config(**settings)


def read_metrics(run_dir):
    return [json.loads(line) for line in (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def load_model(run_dir):
    return torch.load(pathlib.Path(run_dir) / "model.pt", weights_only=True)


# --------------------------------------------------------------------------- what a run leaves

def test_run_writes_every_file(tmp_path, mnist):
    summary = train.run(small(tmp_path, epochs=2), data=mnist)
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["metrics.jsonl", "summary.json", "model.pt", "checkpoint.pt", "curves.png", "run.lock"]
    )  # and no temporary files left behind
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "samples_per_s"} <= r.keys()
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("test_loss", "test_acc", "best_epoch", "wall_s", "device", "impl"):
        assert key in on_disk
    assert on_disk["config"]["hidden"] == [32] and on_disk["impl"] == "fused" and on_disk["device"] == "cpu"
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["progress"]["epoch"] == 2
    assert {"model", "optimizer", "scheduler", "rng", "config"} <= checkpoint.keys()
    assert {"torch", "data"} <= checkpoint["rng"].keys()


def test_model_pt_loads_into_plain_torch_nn(tmp_path, mnist):
    train.run(small(tmp_path, hidden=[32, 16], dropout=0.2), data=mnist)
    state = load_model(tmp_path / "run")
    MLP([784, 32, 16, 10], dropout=0.2, impl="builtin").load_state_dict(state)
    plain = torch.nn.Sequential(
        torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(16, 10),
    )
    plain.load_state_dict(state)  # strict: same keys, same shapes


# --------------------------------------------------------------------------- the same seed, two implementations

def test_custom_and_builtin_twins_stay_equal_for_50_steps_in_float64(tmp_path, mnist):
    """Same init, same batches: only rounding may differ. Without dropout, whose masks nnbasics draws
    from another stream than torch.nn.Dropout (MLP twins with dropout: test_activation_dropout)."""
    runs = {}
    for impl in ("custom", "builtin"):
        config = small(tmp_path, impl, impl=impl, hidden=[48, 32], dropout=0.0, dtype="float64",
                       batch_size=32, limit_train=50 * 32)
        runs[impl] = train.run(config, data=mnist)
    custom, builtin = load_model(tmp_path / "custom"), load_model(tmp_path / "builtin")
    assert custom.keys() == builtin.keys()
    for name in custom:
        assert custom[name].dtype == torch.float64
        torch.testing.assert_close(custom[name], builtin[name], rtol=0, atol=1e-9, msg=name)
    assert runs["custom"]["test_acc"] == runs["builtin"]["test_acc"]
    m_custom, m_builtin = read_metrics(tmp_path / "custom"), read_metrics(tmp_path / "builtin")
    assert m_custom[0]["train_loss"] == pytest.approx(m_builtin[0]["train_loss"], abs=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_the_optimizer_takes_the_for_loop_implementations_steps(dtype):
    """make_optimizer picks a faster torch.optim implementation (fused, else foreach) of the same
    update: 30 steps of SGD (Nesterov momentum, weight decay, a changing learning rate) give the
    parameters that torch's for-loop implementation gives, within rounding."""
    config = train.Config(hidden=[64, 32], device="cpu", quiet=True)
    gen = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(30, 16, 784, generator=gen, dtype=dtype), torch.randint(0, 10, (30, 16), generator=gen)
    params = {}
    for which in ("chosen", "for-loop"):
        torch.manual_seed(0)
        model = MLP([784, 64, 32, 10], dropout=0.0).to(dtype)
        start = [p.detach().clone() for p in model.parameters()]
        optimizer = (train.make_optimizer(config, model) if which == "chosen" else
                     torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                     weight_decay=config.weight_decay, foreach=False))
        group = optimizer.param_groups[0]
        assert (group["fused"] or group["foreach"]) if which == "chosen" else not (group["fused"] or group["foreach"])
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=30, cycle_momentum=False)
        loss_fn = train.make_loss(config)
        for x, y in zip(xs, ys):
            train.train_step(model, optimizer, x, y, loss_fn)
            scheduler.step()
        params[which] = [p.detach().clone() for p in model.parameters()]
        assert all((p - s).abs().max() > 1e-3 for p, s in zip(params[which], start))  # the steps moved them
    for a, b in zip(params["chosen"], params["for-loop"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)


def test_the_builtin_baseline_keeps_torchs_default_optimizer():
    model = MLP([4, 3])
    group = train.make_optimizer(train.Config(), model, torch_defaults=True).param_groups[0]
    assert not group["fused"] and group["foreach"] is None


# --------------------------------------------------------------------------- interrupt and resume

def test_interrupt_then_resume_equals_a_straight_run(tmp_path, mnist, monkeypatch, capsys):
    """2 epochs straight == 1 epoch, Ctrl-C during the 2nd, --resume: same metrics, same weights."""
    train.run(small(tmp_path, "straight", epochs=2, dropout=0.2), data=mnist)

    real_train_epoch, calls = train.train_epoch, []

    def ctrl_c_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(app, "train_epoch", ctrl_c_in_epoch_2)
    split = str(tmp_path / "split")
    argv = ["--hidden", "32", "--epochs", "2", "--batch-size", "64", "--limit-train", "2048", "--quiet", "--out", split]
    assert train.main(argv) == 130
    err = capsys.readouterr().err
    assert f"Resume with: python -m nnbasics.train --resume {split}" in err
    assert "after epoch 1" in err
    assert torch.load(pathlib.Path(split) / "checkpoint.pt", weights_only=True)["progress"]["epoch"] == 1
    assert not (pathlib.Path(split) / "model.pt").exists()

    monkeypatch.setattr(app, "train_epoch", real_train_epoch)
    assert train.main(["--resume", split, "--quiet"]) == 0
    assert without_timing(read_metrics(split)) == without_timing(read_metrics(tmp_path / "straight"))
    straight, resumed = load_model(tmp_path / "straight"), load_model(split)
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_resume_refuses_to_change_the_config(tmp_path, mnist, capsys):
    train.run(small(tmp_path), data=mnist)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--resume", str(tmp_path / "run"), "--lr", "0.5", "--quiet"])
    assert "--lr 0.5" in str(exit_info.value) and "keeps its saved config" in str(exit_info.value)


def long_run(out, *flags, after=0) -> subprocess.Popen:
    """``python -m nnbasics.train`` of 100,000 short epochs into ``out`` (or ``flags``), once it has
    saved an epoch past ``after``; the caller stops it."""
    cmd = [sys.executable, "-m", "nnbasics.train", "--hidden", "16", "--epochs", "100000", "--batch-size", "64",
           "--limit-train", "1024", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd[:3] + list(flags) if flags else cmd, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(metric_lines(out)) <= after:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no epoch saved within 60 s: {proc.communicate()}")
        time.sleep(0.1)
    return proc


def stopped(proc: subprocess.Popen, sig=signal.SIGTERM) -> str:
    """Send ``sig`` to a ``long_run`` and wait for its end; its stderr."""
    try:
        proc.send_signal(sig)
        return proc.communicate(timeout=30)[1]
    finally:
        proc.kill()


def metric_lines(out) -> list:
    path = pathlib.Path(out) / "metrics.jsonl"
    return path.read_text().splitlines() if path.is_file() else []


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = long_run(out)
    err = stopped(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"--resume {out}" in err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["progress"]["epoch"] >= 1


def test_one_process_per_run_folder_and_a_killed_run_resumes(tmp_path):
    """A second run into the folder of a live one, and --resume of it, end at once (status 2),
    naming the process; once that process is killed (SIGKILL: no handler runs), --resume works."""
    out = tmp_path / "run"
    first = long_run(out)
    try:
        still = f"--resume {out}: the run is still training there, in process {first.pid}"
        for argv, says in ((["--out", str(out), "--overwrite"], f"--out {out}: in use by process {first.pid}"),
                           (["--resume", str(out)], still)):
            second = subprocess.run([sys.executable, "-m", "nnbasics.train", *argv, "--quiet"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120, check=False)
            assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
            assert second.stderr.startswith(f"nnbasics-train: error: {says}"), second.stderr
    finally:
        stopped(first, signal.SIGKILL)
    epoch = torch.load(out / "checkpoint.pt", weights_only=True)["progress"]["epoch"]
    resumed = long_run(out, "--resume", str(out), "--quiet", after=epoch)
    err = stopped(resumed)
    assert resumed.returncode == 130, err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["progress"]["epoch"] > epoch


# --------------------------------------------------------------------------- faults

def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path, mnist, monkeypatch):
    monkeypatch.setattr(nndata, "load_splits", lambda *args, **kwargs: mnist)  # skip reading the files again
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--hidden", "32", "--lr", "1e6", "--schedule", "constant", "--batch-size", "64",
                    "--limit-train", "2048", "--quiet", "--out", str(out)])
    message = str(exit_info.value)
    assert exit_info.value.code not in (0, None)
    assert "diverged" in message and "lower --lr" in message, message
    assert torch.load(out / "checkpoint.pt", weights_only=True)["progress"]["epoch"] == 0
    assert not (out / "model.pt").exists()


BAD_FLAGS = [
    (["--batch-size", "0"], "--batch-size 0"),
    (["--lr", "-0.1"], "--lr -0.1"),
    (["--activation", "swish"], "swish"),
    (["--device", "tpu"], "--device tpu"),
    (["--dropout", "1.5"], "--dropout 1.5"),
    (["--epochs", "0"], "--epochs 0"),
    (["--dtype", "float16"], "float16"),
]
if not torch.cuda.is_available():
    BAD_FLAGS.append((["--device", "cuda"], "CUDA is not available"))


@pytest.mark.parametrize("argv,named", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_exits_with_one_line(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv + ["--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err


def test_bad_flag_from_the_shell_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "nnbasics.train", "--batch-size", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("nnbasics-train: error: --batch-size 0")


def test_the_console_scripts_name_the_commands_mains():
    scripts = re.findall(r'^(nnbasics-[\w-]+) = "([\w.]+):(\w+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert {"nnbasics-train", "nnbasics-evaluate"} <= {name for name, _, _ in scripts}
    for name, module, attr in scripts:
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_data_error_exits_with_one_line(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(tmp_path / "nowhere"), "--quiet", "--out", str(tmp_path / "run")])
    message = str(exit_info.value)
    assert message.startswith("nnbasics-train: data error:") and "\n" not in message


# --------------------------------------------------------------------------- early stopping

def test_early_stopping_restores_the_best_weights(tmp_path, mnist, monkeypatch):
    """Validation losses 0.5, 0.7, 0.9, ... and patience 2: stop after epoch 3, keep epoch 1's weights."""
    real_evaluate, seen = app.evaluate, []

    def scripted_evaluate(model, split, *args, **kwargs):
        loss, acc = real_evaluate(model, split, *args, **kwargs)
        if split is mnist.val:
            seen.append({k: v.clone() for k, v in model.state_dict().items()})
            loss = 0.5 + 0.2 * (len(seen) - 1)
        return loss, acc

    monkeypatch.setattr(app, "evaluate", scripted_evaluate)
    summary = train.run(small(tmp_path, epochs=10, patience=2), data=mnist)
    assert summary["stopped_early"] and summary["epochs_run"] == 3 and summary["best_epoch"] == 1
    saved = load_model(tmp_path / "run")
    for name, weight in seen[0].items():
        assert torch.equal(saved[name], weight), name


# --------------------------------------------------------------------------- evaluate

def test_evaluate_prints_accuracy_and_confusion_matrix(tmp_path, mnist, monkeypatch, capsys):
    summary = train.run(small(tmp_path, hidden=[32, 16]), data=mnist)
    monkeypatch.setattr(nndata, "load_splits", lambda *args, **kwargs: mnist)
    assert nneval.main([str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"test accuracy {summary['test_acc']:.2%}")
    assert lines[1] == "weights: model.pt, the last epoch's (1)"
    assert lines[2] == f"summary.json: the same, {summary['test_acc']:.2%} (loss {summary['test_loss']:.4f})"
    rows = [[int(v) for v in line.split()[1:]] for line in lines[5:]]
    assert len(rows) == 10 and all(len(r) == 10 for r in rows)
    assert sum(map(sum, rows)) == 10000
    assert sum(rows[i][i] for i in range(10)) == round(summary["test_acc"] * 10000)

    # A lone model.pt: sizes are read off the weights, the activation is a flag.
    lone = tmp_path / "lone" / "model.pt"
    lone.parent.mkdir()
    lone.write_bytes((tmp_path / "run" / "model.pt").read_bytes())
    assert nneval.main([str(lone), "--activation", "relu"]) == 0
    lone_lines = capsys.readouterr().out.splitlines()
    # The same accuracy; the loss is plain cross-entropy, the run's label smoothing being in its summary.json
    assert lone_lines[0].split(", loss")[0] == lines[0].split(", loss")[0]
    assert lone_lines[1] == "weights: a model.pt without its summary.json: nothing to compare with"
    with pytest.raises(SystemExit, match="hidden sizes 32 16"):
        nneval.main([str(lone), "--hidden", "64"])


def test_evaluate_names_the_weights_and_each_reason_it_differs_from_the_summary(tmp_path, mnist, monkeypatch, capsys):
    summary = train.run(small(tmp_path, epochs=2, patience=5), data=mnist)
    monkeypatch.setattr(nndata, "load_splits", lambda *args, **kwargs: mnist)
    assert nneval.main([str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"weights: model.pt, the best epoch's ({summary['best_epoch']} of 2, kept by --patience)"
    assert lines[2].startswith("summary.json: the same, ")
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    on_disk.update(test_acc=on_disk["test_acc"] - 0.01, threads=on_disk["threads"] + 1, device="cuda:0")
    (tmp_path / "run" / "summary.json").write_text(json.dumps(on_disk))
    assert nneval.main([str(tmp_path / "run")]) == 0
    line = capsys.readouterr().out.splitlines()[2]
    assert line.startswith(f"summary.json: {on_disk['test_acc']:.2%} ") and "differs: the run was on cuda:0, this is on cpu" in line
    assert f"the run used {on_disk['threads']} threads" in line


def test_confusion_matrix_counts_pairs():
    target, pred = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2])
    assert nneval.confusion_matrix(target, pred, 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


# --------------------------------------------------------------------------- real data

def test_one_epoch_on_real_mnist_reaches_95_percent(tmp_path, mnist):
    summary = train.run(train.Config(hidden=[256], epochs=1, quiet=True, out=str(tmp_path / "run")), data=mnist)
    assert summary["test_acc"] >= 0.95, summary["test_acc"]


# --------------------------------------------------------------------------- output and presets

def test_a_log_gets_one_line_per_epoch(tmp_path, mnist, capsys):
    """stderr is not a terminal here (pytest captures it): no bar redrawn with carriage returns."""
    train.run(small(tmp_path, epochs=3, quiet=False), data=mnist)
    err = capsys.readouterr().err
    assert "\r" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 + 3, lines  # the start line, then one per epoch
    for epoch, line in enumerate(lines[1:], start=1):
        assert line.startswith(f"epoch {epoch}/3: loss ")
        for word in ("train acc", "val loss", "val acc", "samples/s"):
            assert word in line, line


def test_a_terminal_gets_the_live_bar(tmp_path, mnist, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    train.run(small(tmp_path, epochs=2, quiet=False), data=mnist)
    text = terminal.getvalue()
    assert "\r" in text and "epoch 2/2" in text and "samples/s" in text
    assert "epoch 1/2: loss" not in text  # no log lines on a terminal


def test_a_preset_sets_defaults_and_explicit_flags_win():
    fast = train.parse_args(["--preset", "fast"])
    for name, value in train.PRESETS["fast"].items():
        assert getattr(fast, name) == value, name
    assert fast.preset == "fast"
    assert train.parse_args(["--preset", "fast", "--epochs", "7"]).epochs == 7
    assert train.parse_args(["--epochs", "7", "--preset", "fast"]).epochs == 7
    assert train.parse_args([]).epochs == train.Config().epochs


def test_unknown_preset_exits_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--preset", "fastest"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fastest" in err
