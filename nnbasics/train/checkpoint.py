"""What a run's checkpoint holds, and how one is read back: a checkpoint is a file the user
names (``--resume DIR``), so everything in it is checked before the run uses it, and a file that
does not fit is one line naming it (``BrokenCheckpoint``), never a traceback or a run that
continues from half a state.

The checkpoint holds the config, weights, optimiser and scheduler states, every random stream
(``rng_states``) and the ``Progress`` below, so ``--resume`` continues exactly. The folder that
holds it, and when it is written: ``nnbasics.train.runs``.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import types
import warnings
from dataclasses import dataclass, field

import torch

from ..cli import ConfigError
from .data import DataError

CHECKPOINT = "checkpoint.pt"
# What --resume may change: where the data is and how chatty the run is. Everything
# else comes from the checkpoint, or the run would not continue exactly.
RESUME_MAY_CHANGE = ("resume", "out", "quiet", "data_dir", "overwrite")


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


def contents(config, model, optimizer, scheduler, rng: dict, progress: Progress, world_size: int) -> dict:
    """What checkpoint.pt holds after ``progress.epoch`` epochs (``rng``: rng_states, with each
    other process's under ``"ranks"`` when there are several)."""
    return {
        "config": dataclasses.asdict(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng,
        "progress": dataclasses.asdict(progress),
        "world_size": world_size,
    }


def restore(checkpoint: dict, path, model, optimizer, scheduler, generator, device, world) -> Progress:
    """Load ``checkpoint`` (read from ``path``) into the run's objects and random streams; returns
    where the run stands. ``BrokenCheckpoint`` names the file when anything in it does not fit,
    ``ConfigError`` when it was trained by another number of processes."""
    saved_world = checkpoint.get("world_size", 1)
    if not _fits("int", saved_world) or saved_world < 1:
        raise BrokenCheckpoint(f"{path}: world_size is {saved_world!r}, not a number of processes; the file is damaged")
    run_dir = pathlib.Path(path).parent
    if saved_world != world.size:
        raise ConfigError(f"--resume {run_dir}: the run was trained by {saved_world} process(es) and "
                          f"continues exactly only with as many; start it with --nproc-per-node {saved_world}"
                          if saved_world > 1 else f"--resume {run_dir}: the run was trained by one process; "
                          f"resume it with python -m nnbasics.train")
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        rng = checkpoint["rng"]
        set_rng_states(rng if world.main else rng["ranks"][world.rank - 1], device, generator)
        progress = Progress(**checkpoint["progress"])
        check_progress(progress)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        what = f"no {e}" if isinstance(e, KeyError) else error_line(e)
        raise BrokenCheckpoint(f"{path}: does not fit the run of its own config ({type(e).__name__}: {what}); "
                               f"the file is damaged or not nnbasics.train's") from None
    return progress
