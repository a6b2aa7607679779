"""A training run's record on disk: its folder, metrics, summary, curves, checkpoint and resume.

What a run leaves in its folder (``--out``, default ``runs/<time>-<impl>``):

    metrics.jsonl   one JSON object per epoch (losses, accuracies, lr, speed)
    summary.json    test loss/accuracy, best epoch, wall time, device, impl, config
    model.pt        a state_dict that loads into nnbasics.nn.MLP(..., impl="builtin")
    checkpoint.pt   everything needed to resume exactly, rewritten every epoch
    curves.png      loss and accuracy against epoch (if matplotlib is installed)

Every file is written to a temporary file first and renamed into place
(``nnbasics.files``), so an interrupted run never leaves half a file behind.
The checkpoint holds the config, weights, optimiser and scheduler states, every
random stream and the ``Progress`` below, so ``--resume`` continues exactly.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import pathlib
import signal
import tempfile
import types
import warnings
from dataclasses import dataclass, field

import torch

from . import distributed, files
from .cli import ConfigError
from .data import DataError

CHECKPOINT, METRICS, SUMMARY, MODEL, CURVES = "checkpoint.pt", "metrics.jsonl", "summary.json", "model.pt", "curves.png"
# What --resume may change: where the data is and how chatty the run is. Everything
# else comes from the checkpoint, or the run would not continue exactly.
RESUME_MAY_CHANGE = ("resume", "out", "quiet", "data_dir", "overwrite")
RUN_FILES = (CHECKPOINT, METRICS, SUMMARY, MODEL, CURVES)


class BrokenCheckpoint(DataError, ConfigError):
    """A checkpoint that cannot be resumed: bad data (exit status 1), named in one line. Also a
    ConfigError, as every other reason --resume DIR cannot work is."""


@dataclass
class Progress:
    """Where a run stands after ``epoch`` finished epochs (saved in the checkpoint)."""

    epoch: int = 0
    history: list = field(default_factory=list)  # the metrics.jsonl records so far
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one, for early stopping
    best_weights: dict | None = None  # only kept with --patience
    train_s: float = 0.0  # seconds spent in epochs, over all sessions

    def update_best(self, model, val_loss: float, patience: int) -> bool:
        """Early stopping's bookkeeping after an epoch: track the best validation loss (and, with
        ``patience``, its weights); True when ``patience`` epochs in a row did not beat it."""
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_epoch, self.bad_epochs = val_loss, self.epoch, 0
            if patience:
                self.best_weights = cpu_state_dict(model)
            return False
        self.bad_epochs += 1
        return patience > 0 and self.bad_epochs >= patience

    def compile_seconds(self):
        """Compiling happens during the first epoch: its excess over the median of the later ones."""
        if len(self.history) < 2:
            return None
        later = sorted(r["seconds"] for r in self.history[1:])
        return max(self.history[0]["seconds"] - later[len(later) // 2], 0.0)


def cpu_state_dict(model) -> dict:
    """The model's weights on the CPU, detached: loadable anywhere, by a plain torch.nn MLP too."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


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


def check_out(out, *, resume: bool = False, overwrite: bool = False) -> None:
    """ConfigError, before any data is loaded, for an --out that cannot be a run folder: a file,
    a path under a file, a folder that cannot be written, or one holding a run's files (an
    earlier run's, or the user's own summary.json) when neither --resume nor --overwrite says
    to write over them."""
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
    taken = [name for name in RUN_FILES if (path / name).exists()] if out is not None else []
    if taken and not resume and not overwrite:
        raise ConfigError(f"--out {out}: holds {', '.join(taken)} already; continue that run with "
                          f"--resume {out}, replace it with --overwrite, or pass another --out")


def write_metrics(out, history: list) -> None:
    """metrics.jsonl, rewritten whole from the history (it is tiny), so it always agrees with the checkpoint."""
    files.write_text(pathlib.Path(out) / METRICS, "".join(json.dumps(r) + "\n" for r in history))


def write_results(out, model, summary: dict, history: list) -> bool:
    """model.pt, summary.json and curves.png; False when matplotlib is missing (no curves.png)."""
    out = pathlib.Path(out)
    files.torch_save(cpu_state_dict(model), out / MODEL)
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


# --------------------------------------------------------------------------- checkpoints

class Record:
    """The run folder ``out`` of one run: its checkpoint, metrics and final files.

    Holds the objects whose state the checkpoint saves, so the training loop only says
    when (``restore`` once, ``save`` after every epoch, ``finish`` at the end). Under
    torchrun every process calls these (the random streams are gathered from all of
    them) and rank 0 alone writes.
    """

    def __init__(self, out, config, model, optimizer, scheduler, generator, device, world=distributed.World()):
        self.out, self.config, self.model, self.device = pathlib.Path(out), config, model, device
        self.optimizer, self.scheduler, self.generator, self.world = optimizer, scheduler, generator, world

    def restore(self, checkpoint: dict | None) -> Progress:
        """Load ``checkpoint`` into the run (None: a new run, whose first checkpoint is written
        at once so that Ctrl-C always leaves one); returns where the run stands."""
        if checkpoint is None:
            if self.world.main:
                self.out.mkdir(parents=True, exist_ok=True)
                if getattr(self.config, "overwrite", False):  # the earlier run's files go, not only some
                    for name in RUN_FILES:
                        (self.out / name).unlink(missing_ok=True)
            progress = Progress()
            self.save(progress)
            return progress
        saved_world = checkpoint.get("world_size", 1)
        if not _fits("int", saved_world) or saved_world < 1:
            raise BrokenCheckpoint(f"{self.out / CHECKPOINT}: world_size is {saved_world!r}, not a number of "
                                   f"processes; the file is damaged")
        if saved_world != self.world.size:
            raise ConfigError(f"--resume {self.out}: the run was trained by {saved_world} process(es) and "
                              f"continues exactly only with as many; start it with --nproc-per-node {saved_world}"
                              if saved_world > 1 else f"--resume {self.out}: the run was trained by one process; "
                              f"resume it with python -m nnbasics.train")
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            rng = checkpoint["rng"]
            set_rng_states(rng if self.world.main else rng["ranks"][self.world.rank - 1], self.device,
                           self.generator)
            progress = Progress(**checkpoint["progress"])
            check_progress(progress)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            what = f"no {e}" if isinstance(e, KeyError) else error_line(e)
            raise BrokenCheckpoint(f"{self.out / CHECKPOINT}: does not fit the run of its own config "
                                   f"({type(e).__name__}: {what}); the file is damaged or not nnbasics.train's"
                                   ) from None
        if self.world.main:
            write_metrics(self.out, progress.history)
        return progress

    def save(self, progress: Progress) -> None:
        """checkpoint.pt and metrics.jsonl after ``progress.epoch`` epochs."""
        states = distributed.gather(self.world, rng_states(self.device, self.generator))
        if not self.world.main:
            return
        if self.world.size > 1:
            states[0]["ranks"] = states[1:]  # each process's dropout stream
        with files.signals_deferred():  # the two files always agree, even after Ctrl-C
            self._write_checkpoint(states[0], progress)
            write_metrics(self.out, progress.history)

    def _write_checkpoint(self, rng: dict, progress: Progress) -> None:
        files.torch_save({
            "config": dataclasses.asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "progress": dataclasses.asdict(progress),
            "world_size": self.world.size,
        }, self.out / CHECKPOINT)

    def finish(self, summary: dict, progress: Progress) -> bool:
        """model.pt, summary.json and curves.png; False when matplotlib is missing (no curves.png)."""
        return write_results(self.out, self.model, summary, progress.history) if self.world.main else True


def rng_states(device: torch.device, generator: torch.Generator) -> dict:
    """Every random stream a run draws from: init and dropout (torch's CPU and CUDA
    generators) and the batch order (the data generator)."""
    states = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict, device: torch.device, generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    generator.set_state(states["data"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def load_checkpoint(run_dir) -> dict:
    """The checkpoint of a run folder: ConfigError when there is none, DataError when it is broken."""
    path = pathlib.Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"--resume {run_dir}: no {CHECKPOINT} there; pass the folder of an earlier run")
    checkpoint = load_user_file(path, BrokenCheckpoint, "cannot read it as a checkpoint")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("config"), dict):
        what = (f"a {type(checkpoint).__name__}" if not isinstance(checkpoint, dict) else
                f"a config that is a {type(checkpoint.get('config')).__name__}")
        raise BrokenCheckpoint(f"{path}: holds {what}, not a config dict; it is not a checkpoint of nnbasics.train")
    return checkpoint


def load_user_file(path, error: type, what: str, fix: str = ""):
    """``torch.load(path, weights_only=True)`` of a file the user names; whatever torch raises (text,
    a truncated zip, a pickle weights_only refuses) becomes ``error`` in one line: "{path}: {what}
    (Type: first line){fix}". torch's warnings before some refusals are silenced: one line is enough."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a user's file: one line, whatever torch raises
        raise error(f"{path}: {what} ({type(e).__name__}: {error_line(e)}){fix}") from None


def error_line(error: BaseException) -> str:
    """An error's message in one line: the first size mismatch of a load_state_dict error (the
    line that says what differs), else the first sentence of the first line (torch's run long)."""
    lines = [line.strip() for line in str(error).strip().splitlines()]
    mismatch = [line for line in lines if line.startswith("size mismatch")]
    return mismatch[0].rstrip(".") if mismatch else (lines or [""])[0].split(". ", 1)[0]


# An annotation's words -> the types a value saved for it may have (bool is no int here).
_TYPES = {"list": list, "dict": dict, "str": str, "float": (int, float), "int": int, "bool": bool,
          "None": types.NoneType}
# The numbers of a metrics.jsonl record that this module reads (the curves, compile_seconds).
METRIC_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


def _fits(annotation: str, value) -> bool:
    """Is ``value`` of a type the annotation (``"int"``, ``"str | None"``, ...) names? A list must
    hold integers (the only list a config has: --hidden)."""
    allowed = tuple(_TYPES[word.strip()] for word in annotation.split("|"))
    if isinstance(value, bool) and bool not in allowed:
        return False
    if isinstance(value, list):
        return list in allowed and all(_fits("int", v) for v in value)
    return isinstance(value, allowed)


def check_progress(progress: Progress) -> None:
    """ValueError unless a restored Progress holds what the training loop will read from it."""
    for f in dataclasses.fields(Progress):
        value = getattr(progress, f.name)
        if f.name == "history":
            good = isinstance(value, list) and all(
                isinstance(r, dict) and all(_fits("float", r.get(k)) for k in METRIC_KEYS) for r in value)
        else:
            good = _fits(str(f.type), value) and not (isinstance(value, (int, float)) and value < 0)
        if not good:
            raise ValueError(f"progress {f.name} is {str(value)[:60]!r}, not of type {f.type}")


def resume_config(config, checkpoint: dict):
    """The saved config of the run being resumed; only RESUME_MAY_CHANGE may differ from it.

    ``config`` is the new run's config (a dataclass, ``nnbasics.train.Config``): a field
    left at its default takes the saved value; one set to anything else must equal it.
    --data-dir left out keeps the folder the run was started with. A saved config with a key
    the dataclass lacks, or a value of the wrong type, is a DataError naming the checkpoint.
    """
    cls = type(config)
    path = pathlib.Path(config.resume or ".") / CHECKPOINT
    stored = checkpoint["config"]  # a dict: load_checkpoint checked it
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(stored) - set(fields)))
    if unknown:
        raise BrokenCheckpoint(f"{path}: unknown config key {', '.join(map(repr, unknown))}; it was not written by this "
                        f"version of nnbasics.train")
    for name, value in stored.items():
        if not _fits(str(fields[name].type), value) and not (name == "amp" and isinstance(value, bool)):
            raise BrokenCheckpoint(f"{path}: config {name} is {value!r}, not of type {fields[name].type}; "
                                   f"the file is damaged")
    saved, defaults = cls(**stored), cls()
    for f in dataclasses.fields(cls):
        new = getattr(config, f.name)
        if f.name in RESUME_MAY_CHANGE:
            continue
        if new != getattr(defaults, f.name) and new != getattr(saved, f.name):
            flag = "--" + f.name.replace("_", "-")
            raise ConfigError(f"{flag} {_as_flag(new)}: a resumed run keeps its saved config ({flag} "
                              f"{_as_flag(getattr(saved, f.name))}); start a new run to change it")
    changed = {name: getattr(config, name) for name in RESUME_MAY_CHANGE if name != "out"}
    if changed["data_dir"] is None:
        changed["data_dir"] = saved.data_dir
    return dataclasses.replace(saved, **changed, out=config.resume)


def _as_flag(value) -> str:
    """A config value as it is typed on the command line (lists as space-separated words)."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


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
