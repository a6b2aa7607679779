"""A training run's folder: what it holds, and the one process that writes it (``RunFolder``).

What a run leaves in its folder (``--out``, default ``runs/<time>-<impl>``):

    metrics.jsonl   one JSON object per epoch (losses, accuracies, lr, speed)
    summary.json    test loss/accuracy, best epoch, wall time, device, impl, config
    model.pt        a state_dict that loads into nnbasics.nn.MLP(..., impl="builtin")
    checkpoint.pt   everything needed to resume exactly, rewritten every epoch
    curves.png      loss and accuracy against epoch (if matplotlib is installed)
    run.lock        the id of the process training in the folder, which holds an OS lock on it

Every file is written to a temporary file first and renamed into place
(``nnbasics.train.files``), so an interrupted run never leaves half a file behind, and
checkpoint.pt and metrics.jsonl are written with Ctrl-C and SIGTERM held back, so they always
agree. One process at a time trains in a folder: a second run into it, or ``--resume`` of the
run while it trains, is refused before any data loads, naming the process that holds it. What
the checkpoint holds, and how ``--resume`` reads it back: ``nnbasics.train.checkpoint``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import signal
import tempfile

from ..cli import ConfigError
from . import checkpoint as ckpt
from . import distributed, files

CHECKPOINT, METRICS, SUMMARY, MODEL, CURVES, LOCK = (
    ckpt.CHECKPOINT, "metrics.jsonl", "summary.json", "model.pt", "curves.png", "run.lock")
RUN_FILES = (CHECKPOINT, METRICS, SUMMARY, MODEL, CURVES)  # what --overwrite replaces (run.lock is the next run's)


class RunFolder:
    """The folder of one run, held by this process from ``open`` to ``close``:

        with RunFolder.open(config, world) as folder:   # checked, made and locked: before the data loads
            progress = folder.start(checkpoint, model, optimizer, scheduler, generator, device)
            for epoch ...:
                stop = folder.record(progress, metrics)   # checkpoint.pt and metrics.jsonl
            folder.finish(summary, progress)           # model.pt, summary.json, curves.png

    Under torchrun every process makes these calls (the random streams are gathered from all of
    them); rank 0 alone checks, locks and writes the folder, and every process stops alike.
    """

    def __init__(self, config, world, lock_fd=None, made=False):
        self.config, self.world, self.out = config, world, pathlib.Path(config.out)
        self._lock_fd, self._made, self._saved = lock_fd, made, False

    @classmethod
    def open(cls, config, world=distributed.World()) -> RunFolder:
        """The run folder of ``config`` (``--out``, ``--resume``, or a new ``runs/<time>-<impl>``),
        locked by this process. ConfigError for a folder that cannot be the run's: a file, under a
        file, not writable, in use by another process, or holding an earlier run's files that
        neither --resume nor --overwrite says to write over."""
        check_out(config.out, resume=config.resume is not None)  # in every process: all stop alike
        error, out, fd, made = None, None, None, False
        if world.main:
            try:
                out, fd, made = _claim(config)
            except ConfigError as e:
                error = str(e)
            except OSError as e:  # a folder that cannot be made or locked after all
                error = f"--out {config.out or 'runs'}: cannot make or lock the run folder ({e.strerror or e})"
        error, out = distributed.from_main(world, (error, out and str(out)))
        if error is not None:
            raise ConfigError(error)
        return cls(dataclasses.replace(config, out=out), world, fd, made)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.close(failed=kind is not None)

    def close(self, failed: bool = False) -> None:
        """Give the folder up (the lock goes); a folder this run made and wrote nothing into
        before it failed (bad data, Ctrl-C while loading) is removed again."""
        if self._lock_fd is None:
            return
        if failed and self._made and not self._saved:
            with contextlib.suppress(OSError):
                (self.out / LOCK).unlink()
                self.out.rmdir()
        os.close(self._lock_fd)
        self._lock_fd = None

    def start(self, checkpoint: dict | None, model, optimizer, scheduler, generator, device) -> ckpt.Progress:
        """Where the run stands: ``checkpoint`` (--resume) loaded into the run's objects, or a new
        run, whose first checkpoint is written at once so that Ctrl-C always leaves one (with
        --overwrite the earlier run's files go first, all of them)."""
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.generator, self.device = generator, device
        if checkpoint is None:
            if self.world.main and self.config.overwrite:
                for name in RUN_FILES:
                    (self.out / name).unlink(missing_ok=True)
            progress = ckpt.Progress()
            self.save(progress)
            return progress
        progress = ckpt.restore(checkpoint, self.out / CHECKPOINT, model, optimizer, scheduler, generator, device,
                                self.world)
        if self.world.main:
            write_metrics(self.out, progress.history)
        return progress

    def record(self, progress: ckpt.Progress, metrics: dict) -> bool:
        """An epoch's ``metrics`` into ``progress`` and onto disk (checkpoint.pt, metrics.jsonl);
        True when early stopping (--patience) says to stop."""
        progress.history.append(metrics)
        progress.epoch = metrics["epoch"]
        progress.train_s += metrics["seconds"]
        stop = progress.update_best(self.model, metrics["val_loss"], self.config.patience)
        self.save(progress)
        return stop

    def save(self, progress: ckpt.Progress) -> None:
        """checkpoint.pt and metrics.jsonl after ``progress.epoch`` epochs."""
        states = distributed.gather(self.world, ckpt.rng_states(self.device, self.generator))
        if not self.world.main:
            return
        if self.world.size > 1:
            states[0]["ranks"] = states[1:]  # each process's dropout stream
        with files.signals_deferred():  # the two files always agree, even after Ctrl-C
            files.torch_save(ckpt.contents(self.config, self.model, self.optimizer, self.scheduler, states[0],
                                           progress, self.world.size), self.out / CHECKPOINT)
            write_metrics(self.out, progress.history)
        self._saved = True

    def finish(self, summary: dict, progress: ckpt.Progress) -> bool:
        """model.pt, summary.json and curves.png; False when matplotlib is missing (no curves.png)."""
        return write_results(self.out, self.model, summary, progress.history) if self.world.main else True


def _claim(config):
    """(folder, lock's file descriptor, whether this made the folder) for rank 0 of a run."""
    resume = config.resume is not None
    path = new_run_dir(config.impl) if config.out is None else pathlib.Path(config.out)
    made = config.out is None or not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = files.lock(path / LOCK)
    except files.Locked as e:
        who = f"process {e.pid}" if e.pid else "another process"
        stop = f"kill {e.pid}" if e.pid else "stop it"
        if resume:
            raise ConfigError(f"--resume {path}: the run is still training there, in {who}; wait for it to end, "
                              f"or stop it ({stop}: it saves its checkpoint) and resume again") from None
        raise ConfigError(f"--out {path}: in use by {who}, which is training in it; wait for it to end, "
                          f"stop it ({stop}), or pass another --out") from None
    taken = [name for name in RUN_FILES if (path / name).exists()]
    if taken and not resume and not config.overwrite:
        os.close(fd)
        raise ConfigError(f"--out {config.out}: holds {', '.join(taken)} already; continue that run with "
                          f"--resume {config.out}, replace it with --overwrite, or pass another --out")
    files.sign(fd)
    return path, fd, made


def new_run_dir(impl: str) -> pathlib.Path:
    """runs/<YYYYmmdd-HHMMSS>-<impl>, made unique with a suffix if that folder exists."""
    stem = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{impl}"
    for i in range(1000):
        path = pathlib.Path("runs") / (stem if i == 0 else f"{stem}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"--out: could not create a new folder under runs/ named {stem}; pass --out DIR")


def check_out(out, *, resume: bool = False) -> None:
    """ConfigError for an --out that cannot be a run folder: a file, a path under a file, or a
    folder that cannot be written. (What is in the folder is checked once it is locked.)"""
    path = pathlib.Path("runs" if out is None else out)  # None: a new folder under runs/ will be made
    flag = "--resume" if resume else "--out"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file, not a folder; pass a folder for the run")
    folder = path
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{flag} {path}: {folder} is a file, so no folder can be made under it")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot write in {folder} ({e.strerror or e}); "
                          f"pass a folder you can write") from None


def write_metrics(out, history: list) -> None:
    """metrics.jsonl, rewritten whole from the history (it is tiny), so it always agrees with the checkpoint."""
    files.write_text(pathlib.Path(out) / METRICS, "".join(json.dumps(r) + "\n" for r in history))


def write_results(out, model, summary: dict, history: list) -> bool:
    """model.pt, summary.json and curves.png; False when matplotlib is missing (no curves.png)."""
    out = pathlib.Path(out)
    files.torch_save(ckpt.cpu_state_dict(model), out / MODEL)
    files.write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return plot_curves(history, out / CURVES)


def plot_curves(history: list, path) -> bool:
    """Loss and accuracy against epoch, train and validation; where the history has each step's
    (a short run: ``step_loss``, ``step_acc``), the train curves are drawn per step, at fractions
    of an epoch, and the epoch's validation point at its end. False if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401  (absent: no curves; asked first, as the submodules may be cached)
        from matplotlib.figure import Figure  # no pyplot: no display needed, and a notebook's backend stays
    except ImportError:
        return False

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    per_step = bool(history) and all("step_loss" in r for r in history)
    for split in ("train", "val"):
        for ax, key, scale in ((ax_loss, "loss", 1), (ax_acc, "acc", 100)):
            if per_step and split == "train":
                x = [r["epoch"] - 1 + (i + 1) / len(r["step_loss"]) for r in history for i in range(len(r["step_loss"]))]
                ax.plot(x, [scale * v for r in history for v in r[f"step_{key}"]], label="train (each step)")
            else:
                ax.plot(epochs, [scale * r[f"{split}_{key}"] for r in history], marker="o", label=split)
    if per_step:
        for ax in (ax_loss, ax_acc):
            ax.set_xlim(0, epochs[-1] * 1.03)  # room for the last validation point
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return True


@contextlib.contextmanager
def sigterm_raises_keyboard_interrupt():
    """Let ``kill`` (SIGTERM) stop a run the way Ctrl-C does, so both save and explain how to resume."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
