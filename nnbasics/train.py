"""Train an MLP on MNIST with the hand-written ops: ``python -m nnbasics.train --help``.

Laid out like pytorch/examples' ``mnist/main.py``: argparse flags become a
``Config``, ``train_epoch()`` and ``evaluate()`` are plain functions, ``run()``
wires them together and ``main()`` adds the command line around ``run()``.
The whole dataset is moved to the device once and batched there
(``nnbasics.data.batches``), so a step is a handful of tensor ops and no
Python runs per sample. Only the ops are hand-written: the optimiser and the
learning-rate schedules are torch's own.

Pieces meant for reuse (the benchmarks use them):

    build(config, steps_per_epoch)   -> (model, optimizer, scheduler), seeded
    make_loss(config)                -> loss_fn(logits, target, reduction="mean")
    train_step(model, optimizer, x, y, loss_fn) -> (loss, n_correct) tensors
    train_epoch(...), evaluate(...)  -> one pass over a split
    run(config, data=None)           -> summary dict

What a run leaves in its folder and how ``--resume`` continues it exactly:
``nnbasics.runs``. The precision (``--amp``): ``nnbasics.precision``. Several
processes under torchrun: ``nnbasics.distributed``. The presets and every
measured time: docs/training.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import pathlib
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as TF
from tqdm import tqdm

from . import data as nndata
from . import distributed, precision, runs
from . import functional as F
from .cli import ConfigError, Parser, resolve_device
from .nn import ACTIVATIONS, INITS, MLP, MLP_IMPLS

SCHEDULES = ("onecycle", "cosine", "step", "constant")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
EVAL_BATCH_SIZE = 2500  # evaluation keeps no activations for backward, so it takes big batches


@dataclass
class Config:
    """Everything a run depends on: the parsed command-line flags, and their defaults.

    The defaults train 784-1024-1024-10 to >= 98.8% test accuracy on MNIST; how long
    that takes is measured in docs/training.md and benchmarks/results/README.md.
    """

    # model
    hidden: list = field(default_factory=lambda: [1024, 1024])
    activation: str = "relu"
    dropout: float = 0.2
    init: str = "kaiming"
    impl: str = "custom"
    # optimisation
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    shift: int = 2
    schedule: str = "onecycle"
    epochs: int = 12
    batch_size: int = 256
    patience: int = 0
    seed: int = 0
    # machine
    device: str = "auto"
    dtype: str = "float32"
    compile: bool = False
    amp: str = "auto"  # precision.AMP_MODES; bfloat16 autocast where it is native (see nnbasics.precision)
    # data and files
    dataset: str = "mnist"
    data_dir: str | None = None
    limit_train: int | None = None
    out: str | None = None
    resume: str | None = None
    quiet: bool = False
    preset: str | None = None

    def __post_init__(self):
        if isinstance(self.amp, bool):  # checkpoints of earlier versions saved --amp as a switch
            self.amp = "on" if self.amp else "off"


# Named recipes: --preset NAME sets these flag defaults (flags given explicitly still win).
PRESETS = {
    "fast": dict(epochs=5, batch_size=256, lr=0.1, shift=1),
    "best": dict(hidden=[2048, 2048], epochs=40, dropout=0.3, shift=2),
}


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run: ``run_dir`` holds the checkpoint after ``epoch`` epochs."""

    def __init__(self, run_dir, epoch):
        super().__init__(f"interrupted after epoch {epoch}; checkpoint in {run_dir}")
        self.run_dir, self.epoch = run_dir, epoch


# --------------------------------------------------------------------------- configuration

def check_config(config: Config) -> None:
    """Raise ConfigError, naming the flag, for values that cannot work."""
    def bad(flag, value, what):
        raise ConfigError(f"{flag} {value}: {what}")

    if not config.hidden or min(config.hidden) < 1:
        bad("--hidden", " ".join(map(str, config.hidden)), "give one or more layer widths, each >= 1")
    if config.activation not in ACTIVATIONS:
        bad("--activation", config.activation, f"unknown activation; use one of {', '.join(ACTIVATIONS)}")
    if config.impl not in MLP_IMPLS:
        bad("--impl", config.impl, f"unknown implementation; use one of {', '.join(MLP_IMPLS)}")
    if config.schedule not in SCHEDULES:
        bad("--schedule", config.schedule, f"unknown schedule; use one of {', '.join(SCHEDULES)}")
    if config.dtype not in DTYPES:
        bad("--dtype", config.dtype, f"unknown dtype; use one of {', '.join(DTYPES)}")
    if config.dataset not in nndata.DATASETS:
        bad("--dataset", config.dataset, f"unknown dataset; use one of {', '.join(nndata.DATASETS)}")
    if not 0 <= config.dropout < 1:
        bad("--dropout", config.dropout, "must be in [0, 1)")
    if not config.lr >= 0:  # also catches NaN
        bad("--lr", config.lr, "the learning rate must be >= 0 (a negative one climbs the loss)")
    if not 0 <= config.momentum < 1:
        bad("--momentum", config.momentum, "must be in [0, 1)")
    if config.nesterov and config.momentum == 0:
        bad("--momentum", config.momentum, "Nesterov momentum needs --momentum > 0 (or pass --no-nesterov)")
    if not config.weight_decay >= 0:
        bad("--weight-decay", config.weight_decay, "must be >= 0")
    if not 0 <= config.label_smoothing <= 1:
        bad("--label-smoothing", config.label_smoothing, "must be in [0, 1]")
    if not 0 <= config.shift <= 8:
        bad("--shift", config.shift, "must be in 0..8 pixels (0 turns the random shifts off)")
    if config.epochs < 1:
        bad("--epochs", config.epochs, "must be >= 1")
    if config.batch_size < 1:
        bad("--batch-size", config.batch_size, "must be a positive integer, e.g. 256")
    if config.patience < 0:
        bad("--patience", config.patience, "must be >= 0 (0 turns early stopping off)")
    if config.limit_train is not None and config.limit_train < config.batch_size:
        bad("--limit-train", config.limit_train, f"must be at least one batch (--batch-size {config.batch_size})")
    if config.amp not in precision.AMP_MODES:
        bad("--amp", config.amp, f"use one of {', '.join(precision.AMP_MODES)}")
    if config.amp == "on" and config.dtype != "float32":
        bad("--amp on", f"with --dtype {config.dtype}", "bfloat16 autocast starts from float32; drop one of them")
    if config.preset is not None and config.preset not in PRESETS:
        bad("--preset", config.preset, f"unknown preset; use one of {', '.join(PRESETS)}")
    resolve_device(config.device)


# --------------------------------------------------------------------------- model, loss, optimiser

def build(config: Config, steps_per_epoch: int, device=None):
    """(model, optimizer, scheduler) for ``config``; the scheduler is stepped once per batch.

    Seeds the global RNG with ``config.seed`` first, so the same config gives
    the same initial weights whatever the impl (nnbasics.nn.MLP guarantees it).
    """
    device = resolve_device(config.device) if device is None else torch.device(device)
    torch.manual_seed(config.seed)  # seeds the CUDA generators too
    model = MLP([28 * 28, *config.hidden, nndata.NUM_CLASSES], activation=config.activation, dropout=config.dropout,
                impl=config.impl, init=config.init, device=device, dtype=DTYPES[config.dtype])
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        # Warm up from lr/25 over the first 30% of the steps, then cosine down to ~0. The
        # momentum stays at --momentum (cycle_momentum=False) so that the flag means what it says.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total,
                                                        cycle_momentum=False)
    elif config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    elif config.schedule == "step":
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [total // 2, total * 3 // 4], gamma=0.1)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


def make_loss(config: Config):
    """loss_fn(logits, target, reduction="mean"): cross-entropy from the run's implementation."""
    if config.impl == "builtin":
        return functools.partial(TF.cross_entropy, label_smoothing=config.label_smoothing)
    return functools.partial(F.cross_entropy, label_smoothing=config.label_smoothing, impl=config.impl)


# --------------------------------------------------------------------------- one step, one epoch

def random_shift(x, max_shift: int, background: float, generator=None):
    """Move each image of x (B, 784) by its own random (dy, dx) in [-max_shift, max_shift]².

    The cheapest data augmentation there is, and the one an MLP needs most: it
    has no notion of "the same stroke one pixel to the left". Pixels moved in
    from outside the image get ``background`` (a blank pixel, normalised).
    Draws 2·B integers from ``generator``.
    """
    if max_shift == 0:
        return x
    batch, side = x.shape[0], 28
    padded = TF.pad(x.view(batch, side, side), (max_shift,) * 4, value=background)  # (B, 28+2s, 28+2s)
    start = torch.randint(0, 2 * max_shift + 1, (2, batch, 1), generator=generator, device=x.device)
    rows = start[0] + torch.arange(side, device=x.device)  # (B, 28): the rows of the padded image to keep
    cols = start[1] + torch.arange(side, device=x.device)
    return padded[torch.arange(batch, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]].view(batch, -1)


def train_step(model, optimizer, x, y, loss_fn, *, amp=False):
    """One SGD step on the batch x (B, 784), y (B,).

    Returns (loss, n_correct) as 0-d tensors on the device: reading them
    (``.item()``) would make the CPU wait for a GPU, so the caller sums them
    and reads the sums once per epoch.
    """
    with precision.autocast(x.device, amp):
        logits = model(x)
        loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), (logits.detach().argmax(1) == y).sum()


def train_epoch(model, optimizer, scheduler, loss_fn, split, *, mean, std, batch_size, generator,
                dtype=torch.float32, amp=False, shift=0, bar=None, world=distributed.World()):
    """One pass over ``split`` in a fresh random order, each image moved by up to
    ``shift`` pixels (order and shifts drawn from ``generator``). Under torchrun,
    ``batch_size`` is the global batch and this process trains on its shard of it.

    The last incomplete batch is dropped: every step then has the same shape,
    which keeps torch.compile from recompiling and the timing even.
    Returns (mean loss, accuracy, samples seen) as Python numbers. The accuracy
    is the running one, measured with dropout on.
    """
    model.train()
    device = split.labels.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    live = bar is not None and device.type == "cpu"  # a live loss is free only on the CPU (no GPU sync)
    for step, (x, y) in enumerate(nndata.batches(split, batch_size, mean=mean, std=std, shuffle=True,
                                                 generator=generator, drop_last=True, dtype=dtype)):
        x = random_shift(x, shift, -mean / std, generator)
        x, y = distributed.shard(world, x, y)
        loss, n_correct = train_step(model, optimizer, x, y, loss_fn, amp=amp)
        scheduler.step()
        loss_sum += loss * len(y)
        correct += n_correct
        seen += len(y)
        if bar is not None:
            bar.update(len(y))
            if live and step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", refresh=False)
    distributed.all_sum(world, loss_sum, correct)
    seen *= world.size
    return loss_sum.item() / seen, correct.item() / seen, seen


@torch.no_grad()
def evaluate(model, split, loss_fn, *, mean, std, batch_size=EVAL_BATCH_SIZE, dtype=torch.float32, amp=False):
    """(mean loss, accuracy) of ``model`` on ``split``, in eval mode (no dropout)."""
    model.eval()
    device = split.labels.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in nndata.batches(split, batch_size, mean=mean, std=std, dtype=dtype):
        with precision.autocast(device, amp):
            logits = model(x)
            loss_sum += loss_fn(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return loss_sum.item() / len(split), correct.item() / len(split)


# --------------------------------------------------------------------------- a whole run

def _say(config: Config, message: str) -> None:
    if not config.quiet:
        print(message, file=sys.stderr, flush=True)


def _first(split, n):
    """The first ``n`` examples of a split (views, no copy)."""
    return nndata.Split(split.images[:n], split.labels[:n])


def run(config: Config, data=None) -> dict:
    """Train, validate every epoch, test once; write the run folder. Returns the summary dict.

    ``data``: an already loaded ``nnbasics.data.load_splits`` result (tests pass one
    to skip reading the files); by default the dataset is loaded onto the device.
    Raises ConfigError for bad settings, Diverged for a NaN/inf loss,
    nnbasics.data.DataError for data problems and Interrupted (a KeyboardInterrupt)
    on Ctrl-C; in every case the last checkpoint stays usable with ``--resume``.
    Under torchrun each process calls run(); rank 0 alone prints and writes.
    """
    started = time.perf_counter()
    world = distributed.from_environment()
    checkpoint = None
    if config.resume:
        checkpoint = runs.load_checkpoint(config.resume)
        config = runs.resume_config(config, checkpoint)
    check_config(config)
    distributed.check_batch_size(world, config.batch_size)
    device = distributed.device_for(world, resolve_device(config.device))
    distributed.start(world, device)
    try:
        return _run(config, data, checkpoint, world, device, started)
    finally:
        distributed.stop(world)


def _run(config, data, checkpoint, world, device, started) -> dict:
    if not world.main:  # rank 0 alone prints
        config = dataclasses.replace(config, quiet=True)
    if data is None:
        with distributed.main_first(world):  # rank 0 fills the cache, if it is empty
            data = nndata.load_splits(config.dataset, data_dir=config.data_dir, device=device, quiet=config.quiet)
    train = data.train if config.limit_train is None else _first(data.train, config.limit_train)
    steps_per_epoch = len(train) // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"--batch-size {config.batch_size}: larger than the {len(train)} training examples")

    model, optimizer, scheduler = build(config, steps_per_epoch, device)
    if world.rank:  # each process its own dropout masks (rank 0 keeps the one-process stream)
        torch.manual_seed(config.seed + world.rank)
    generator = torch.Generator(device).manual_seed(config.seed)  # the batch order; dropout uses torch's RNG
    out = config.out or (str(runs.new_run_dir(config.impl)) if world.main else None)
    out = pathlib.Path(distributed.from_main(world, out))  # the folder rank 0 named
    config = dataclasses.replace(config, out=str(out))
    record = runs.Record(out, config, model, optimizer, scheduler, generator, device, world)
    progress = record.restore(checkpoint)
    if checkpoint is not None:
        _say(config, f"resuming {out} after epoch {progress.epoch}/{config.epochs}")

    loss_fn = make_loss(config)
    forward = distributed.wrap(model, world, device)
    if config.compile:  # the compiled wrapper shares model's parameters; model.pt is saved from model
        forward, loss_fn = torch.compile(forward), torch.compile(loss_fn)
    amp, why = precision.choose(config.amp, device, config.dtype)
    kw = dict(mean=data.mean, std=data.std, dtype=DTYPES[config.dtype], amp=amp)
    _say(config, f"{config.dataset}: MLP {'-'.join(map(str, model.sizes))} ({config.activation}, {config.impl} ops) "
                 f"on {device}{f' x {world.size} processes' if world.size > 1 else ''}, {config.dtype}"
                 f"{' + bfloat16 autocast' if amp else ''} ({why}){' +compile' if config.compile else ''}, "
                 f"{config.epochs} epochs of {steps_per_epoch} steps -> {out}")
    live = not config.quiet and sys.stderr.isatty()  # a redrawn bar for a terminal, one line per epoch for a log

    try:
        for epoch in range(progress.epoch + 1, config.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            with tqdm(total=steps_per_epoch * config.batch_size, desc=f"epoch {epoch}/{config.epochs}",
                      unit="samples", unit_scale=True, disable=not live, file=sys.stderr) as bar:
                train_loss, train_acc, seen = train_epoch(
                    forward, optimizer, scheduler, loss_fn, train, batch_size=config.batch_size,
                    generator=generator, shift=config.shift, bar=bar if live else None, world=world, **kw)
                train_s = time.perf_counter() - t0
                if not math.isfinite(train_loss):
                    raise Diverged(
                        f"the training loss became {train_loss} in epoch {epoch} (lr {lr:.3g}): the run diverged; "
                        f"try a lower --lr than {config.lr}. The last good checkpoint (epoch {progress.epoch}) "
                        f"is in {out}")
                val_loss, val_acc = evaluate(forward, data.val, loss_fn, **kw)
                seconds = time.perf_counter() - t0
                bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}", val_acc=f"{val_acc:.2%}")
            progress.history.append({
                "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                "val_acc": val_acc, "lr": lr, "seconds": seconds, "samples_per_s": seen / train_s,
            })
            if not live:
                _say(config, f"epoch {epoch}/{config.epochs}: loss {train_loss:.4f}, train acc {train_acc:.2%}, "
                             f"val loss {val_loss:.4f}, val acc {val_acc:.2%}, {seen / train_s:,.0f} samples/s, "
                             f"{seconds:.1f} s")
            progress.epoch = epoch
            progress.train_s += seconds
            stop = progress.update_best(model, val_loss, config.patience)
            record.save(progress)
            if stop:
                _say(config, f"early stopping: no better validation loss for {config.patience} epochs")
                break

        if config.patience and progress.best_weights is not None:
            model.load_state_dict(progress.best_weights)  # early stopping hands back the best model, not the last
        test_loss, test_acc = evaluate(forward, data.test, loss_fn, **kw)
        summary = {
            "test_loss": test_loss,
            "test_acc": test_acc,
            "best_epoch": progress.best_epoch,
            "epochs_run": progress.epoch,
            "stopped_early": progress.epoch < config.epochs,
            "wall_s": time.perf_counter() - started,
            "train_s": progress.train_s,
            "compile_s": progress.compile_seconds() if config.compile else None,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "world_size": world.size,
            "precision": "bfloat16 autocast" if amp else config.dtype,
            "precision_reason": why,
            "impl": config.impl,
            "torch": torch.__version__,
            "config": dataclasses.asdict(config),
        }
        if not record.finish(summary, progress):
            _say(config, "matplotlib is not installed, so no curves.png (pip install matplotlib)")
    except KeyboardInterrupt:
        raise Interrupted(out, progress.epoch) from None
    return summary


# --------------------------------------------------------------------------- command line

def make_parser() -> argparse.ArgumentParser:
    d = Config()
    p = Parser(prog="nnbasics-train", description="Train an MLP on MNIST with the hand-written ops of nnbasics.",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=int, nargs="+", default=d.hidden, metavar="N", help="hidden layer widths")
    g.add_argument("--activation", choices=ACTIVATIONS, default=d.activation, help="activation after each hidden layer")
    g.add_argument("--dropout", type=float, default=d.dropout, help="dropout probability after each activation")
    g.add_argument("--init", choices=INITS, default=d.init,
                   help="weight init (torch = PyTorch's default Kaiming-uniform with a=sqrt(5))")
    g.add_argument("--impl", choices=MLP_IMPLS, default=d.impl,
                   help="ops: custom (nnbasics.ops), fused (nnbasics.fused) or builtin (torch.nn); "
                        "the same seed gives every impl the same initial weights and batches")
    g = p.add_argument_group("optimisation (torch.optim.SGD)")
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate (the peak one for onecycle)")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=d.nesterov, help="Nesterov momentum")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 weight decay")
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="cross-entropy label smoothing")
    g.add_argument("--shift", type=int, default=d.shift, metavar="PIXELS",
                   help="data augmentation: move each training image by a random offset of up to this many "
                        "pixels in each direction (0: off)")
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="learning-rate schedule, stepped every batch: onecycle (warm-up over 30%% then cosine), "
                        "cosine (to 0), step (x0.1 at 50%% and 75%%), constant")
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training set")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size")
    g.add_argument("--patience", type=int, default=d.patience,
                   help="stop after this many epochs without a better validation loss and restore the best "
                        "weights (0: off)")
    g.add_argument("--seed", type=int, default=d.seed, help="seed for init, dropout and batch order")
    g = p.add_argument_group("machine")
    g.add_argument("--device", default=d.device, help="auto (CUDA if available, else CPU), cpu, cuda or cuda:N")
    g.add_argument("--dtype", choices=tuple(DTYPES), default=d.dtype, help="parameter and data dtype")
    g.add_argument("--compile", action="store_true", help="torch.compile the model and the loss")
    g.add_argument("--amp", choices=precision.AMP_MODES, nargs="?", const="on", default=d.amp,
                   help="bfloat16 autocast: auto (where bfloat16 matrix products are native: CPUs with AVX512-BF16 "
                        "or AMX, CUDA capability >= 8.0), on (--amp alone; needs --dtype float32) or off")
    g = p.add_argument_group("data and files")
    g.add_argument("--dataset", choices=nndata.DATASETS, default=d.dataset, help="dataset")
    g.add_argument("--data-dir", default=d.data_dir,
                   help=f"folder with the IDX files (default: the cache, {nndata.cache_dir()}, filled on first use)")
    g.add_argument("--limit-train", type=int, default=d.limit_train, metavar="N",
                   help="train on the first N training examples only (quick tests)")
    g.add_argument("--out", default=d.out, help="run folder (default: a new runs/<time>-<impl>)")
    g.add_argument("--resume", default=d.resume, metavar="DIR",
                   help="continue the run in DIR from its checkpoint, with its saved config")
    g.add_argument("--quiet", action="store_true",
                   help="only the final line (otherwise a progress bar on a terminal, one line per epoch in a log)")
    g.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="a named recipe that sets flag defaults (flags given explicitly still win): " +
                        "; ".join(f"{name}: {' '.join(_as_flags(flags))}" for name, flags in PRESETS.items()) +
                        " (docs/training.md)")
    return p


def parse_args(argv=None) -> Config:
    """Command-line flags → Config; bad values exit with one line (parser.error)."""
    parser = make_parser()
    preset = parser.parse_known_args(argv)[0].preset
    if preset is not None:
        parser.set_defaults(**PRESETS[preset])
    config = Config(**vars(parser.parse_args(argv)))
    if config.resume is None:  # a resumed run is checked against its saved config in run()
        try:
            check_config(config)
        except ConfigError as e:
            parser.error(str(e))
    return config


def main(argv=None) -> int:
    """``nnbasics-train``: returns 0, or raises SystemExit with a one-line message."""
    config = parse_args(argv)
    main_process = distributed.from_environment().main
    with runs.sigterm_raises_keyboard_interrupt():
        try:
            summary = run(config)
        except ConfigError as e:
            raise SystemExit(f"nnbasics-train: error: {e}") from None
        except nndata.DataError as e:
            raise SystemExit(f"nnbasics-train: data error: {e}") from None
        except Diverged as e:
            raise SystemExit(f"nnbasics-train: error: {e}") from None
        except Interrupted as e:
            # 128 + SIGINT, the shell's code for Ctrl-C; the checkpoint is at an epoch boundary,
            # so the epoch that was cut short is redone from its start and the result is unchanged.
            if main_process:
                print(f"nnbasics-train: interrupted; the checkpoint after epoch {e.epoch} is in {e.run_dir}. "
                      f"Resume with: {_command()} --resume {e.run_dir}", file=sys.stderr)
            return 130
        except KeyboardInterrupt:
            if main_process:
                print("nnbasics-train: interrupted before the first checkpoint; nothing to resume", file=sys.stderr)
            return 130
    if not main_process:
        return 0
    out = summary["config"]["out"]
    print(f"test accuracy {summary['test_acc']:.2%} (loss {summary['test_loss']:.4f}) after "
          f"{summary['epochs_run']} epochs, {summary['wall_s']:.1f} s on {summary['device']}; run saved in {out}")
    return 0


def _as_flags(flags: dict) -> list:
    """A preset's settings as the command-line flags that give them."""
    return [f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in flags.items()]


def _command() -> str:
    """How this process was started, for the resume hint: torchrun or plain python."""
    world = distributed.from_environment()
    return f"torchrun --nproc-per-node {world.size} -m nnbasics.train" if world.size > 1 else "python -m nnbasics.train"


if __name__ == "__main__":
    sys.exit(main())
