"""Train an MLP on MNIST: ``python -m nnbasics.train --help``.

In the shape of pytorch/examples' ``mnist/main.py``: ``train_epoch`` and ``evaluate`` are one
pass over a split, ``run`` is a whole run (data → model and optimizer → for each epoch: train,
validate, record → test) and ``main`` is the command line around it. The whole dataset is
moved to the device once and batched there (``data.batches``), so a step is a handful of
tensor ops and no Python runs per sample.

What ``run`` calls, each in one module of this package: the flags and presets (``config``),
the model, loss, optimiser and schedule (``model``), the run folder with its checkpoint,
resume and lock (``runs``, ``checkpoint``), the precision of ``--amp`` (``precision``),
several processes under torchrun (``distributed``). The presets and every measured time:
docs/training.md.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time

import torch
from tqdm import tqdm

from ..cli import ConfigError, exit_with, resolve_device
from . import allocator, distributed, precision
from . import checkpoint as ckpt
from . import data as nndata
from .config import DTYPES, PRESETS, Config, check_config, parse_args  # noqa: F401 (PRESETS: nnbasics.train's)
from .model import MIN_WARMUP_STEPS, build, make_loss, onecycle_peak
from .runs import RunFolder, sigterm_raises_keyboard_interrupt

EVAL_BATCH_SIZE = 2500  # evaluation keeps no activations for backward, so it takes big batches
STEP_CURVES_EPOCHS = 3  # a run of at most this many epochs records (and plots) every step's loss and accuracy
OPS = {"fused": "the fast path", "custom": "the textbook's, nnbasics.ops", "builtin": "torch.nn's"}


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run: ``run_dir`` holds the checkpoint after ``epoch`` epochs."""

    def __init__(self, run_dir, epoch):
        super().__init__(f"interrupted after epoch {epoch}; checkpoint in {run_dir}")
        self.run_dir, self.epoch = run_dir, epoch


# --------------------------------------------------------------------------- one step, one epoch

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
                dtype=torch.float32, amp=False, shift=0, bar=None, world=distributed.World(), steps=None):
    """One pass over ``split`` in a fresh random order, each image moved by up to
    ``shift`` pixels (order and shifts drawn from ``generator``). Under torchrun,
    ``batch_size`` is the global batch and this process trains on its shard of it.

    The last incomplete batch is dropped: every step then has the same shape,
    which keeps torch.compile from recompiling and the timing even.
    Returns (mean loss, accuracy, samples seen) as Python numbers. The accuracy
    is the running one, measured with dropout on. ``steps``, a list, gets each
    step's (loss, accuracy) on this process's batch appended (the curves of a short run).
    """
    model.train()
    device = split.labels.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    live = bar is not None and device.type == "cpu"  # a live loss is free only on the CPU (no GPU sync)
    for step, (x, y) in enumerate(nndata.batches(split, batch_size, mean=mean, std=std, shuffle=True,
                                                 generator=generator, drop_last=True, dtype=dtype)):
        x = nndata.random_shift(x, shift, -mean / std, generator)
        x, y = distributed.shard(world, x, y)
        loss, n_correct = train_step(model, optimizer, x, y, loss_fn, amp=amp)
        scheduler.step()
        loss_sum += loss * len(y)
        correct += n_correct
        seen += len(y)
        if steps is not None:
            steps.append((loss, n_correct / len(y)))
        if bar is not None:
            bar.update(len(y))
            if live and step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", refresh=False)
    distributed.all_sum(world, loss_sum, correct)
    seen *= world.size
    if steps:
        steps[:] = torch.stack([torch.stack(s) for s in steps]).double().tolist()  # one read for the epoch
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

def run(config: Config, data=None) -> dict:
    """Train, validate every epoch, test once; write the run folder. Returns the summary dict.

    ``data``: an already loaded ``nnbasics.train.data.load_splits`` result (tests pass one to
    skip reading the files); by default the dataset is loaded onto the device. Raises
    ConfigError for bad settings, Diverged for a NaN/inf loss, DataError for data problems and
    Interrupted (a KeyboardInterrupt) on Ctrl-C; in every case the last checkpoint stays usable
    with ``--resume``. Under torchrun each process calls run(); rank 0 alone prints and writes.
    """
    started = time.perf_counter()
    world = distributed.from_environment()
    checkpoint = ckpt.load_checkpoint(config.resume) if config.resume else None
    if checkpoint is not None:
        config = ckpt.resume_config(config, checkpoint)  # a resumed run keeps its saved config
    check_config(config)
    distributed.check_batch_size(world, config.batch_size)
    device = distributed.device_for(world, resolve_device(config.device))
    if not world.main:
        config = dataclasses.replace(config, quiet=True)  # rank 0 alone prints
    allocator.keep_freed_memory()  # each step reuses the last one's memory (no page faults: allocator.py)
    # The folder is checked and locked before the data loads, and held until the run ends.
    with distributed.process_group(world, device), RunFolder.open(config, world) as folder:
        config = folder.config  # --out filled in

        # The data.
        if data is None:
            with distributed.main_first(world):  # rank 0 fills the cache, if it is empty
                data = nndata.load_splits(config.dataset, data_dir=config.data_dir, device=device, quiet=config.quiet)
        if config.every > 1:  # the course's Keras run: every 4th training and validation image ([::4])
            data = dataclasses.replace(data, val=nndata.Split(data.val.images[::config.every],
                                                              data.val.labels[::config.every]))
        train = data.train if config.limit_train is None and config.every == 1 else nndata.Split(
            data.train.images[:config.limit_train:config.every], data.train.labels[:config.limit_train:config.every])
        steps_per_epoch = len(train) // config.batch_size
        if steps_per_epoch == 0:
            raise ConfigError(f"--batch-size {config.batch_size}: larger than the {len(train)} training examples")

        # The model and optimizer, and where the run stands (a new run, or its checkpoint's epoch).
        model, optimizer, scheduler = build(config, steps_per_epoch, device)
        if world.rank:  # each process its own dropout masks (rank 0 keeps the one-process stream)
            torch.manual_seed(config.seed + world.rank)
        generator = torch.Generator(device).manual_seed(config.seed)  # the batch order; dropout uses torch's RNG
        progress = folder.start(checkpoint, model, optimizer, scheduler, generator, device)
        loss_fn, forward = make_loss(config), distributed.wrap(model, world, device)
        if config.compile:  # the compiled wrapper shares model's parameters; model.pt is saved from model
            forward, loss_fn = torch.compile(forward), torch.compile(loss_fn)
        amp, why = precision.choose(config.amp, device, config.dtype)
        kw = {"mean": data.mean if config.normalize else 0.0, "std": data.std if config.normalize else 1.0,
              "dtype": DTYPES[config.dtype], "amp": amp}  # --no-normalize: pixels as they are, in [0, 1]
        for line in header(config, model, device, world, amp, why, steps_per_epoch, checkpoint, progress):
            say(config, line)
        live = not config.quiet and sys.stderr.isatty()  # a redrawn bar for a terminal, one line per epoch for a log

        try:
            # For each epoch: train, validate, record.
            for epoch in range(progress.epoch + 1, config.epochs + 1):
                lr = optimizer.param_groups[0]["lr"]
                t0 = time.perf_counter()
                steps = [] if config.epochs <= STEP_CURVES_EPOCHS else None
                with tqdm(total=steps_per_epoch * config.batch_size, desc=f"epoch {epoch}/{config.epochs}",
                          unit="samples", unit_scale=True, disable=not live, file=sys.stderr) as bar:
                    train_loss, train_acc, seen = train_epoch(
                        forward, optimizer, scheduler, loss_fn, train, batch_size=config.batch_size,
                        generator=generator, shift=config.shift, bar=bar if live else None, world=world,
                        steps=steps, **kw)
                    train_s = time.perf_counter() - t0
                    if not math.isfinite(train_loss):
                        raise Diverged(
                            f"the training loss became {train_loss} in epoch {epoch} (lr {lr:.3g}): the run "
                            f"diverged; try a lower --lr than {config.lr}. The last good checkpoint (epoch "
                            f"{progress.epoch}) is in {folder.out}")
                    val_loss, val_acc = evaluate(forward, data.val, loss_fn, **kw)
                    seconds = time.perf_counter() - t0
                    bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}", val_acc=f"{val_acc:.2%}")
                if not live:
                    say(config, f"epoch {epoch}/{config.epochs}: loss {train_loss:.4f}, train acc {train_acc:.2%}, "
                                f"val loss {val_loss:.4f}, val acc {val_acc:.2%}, {seen / train_s:,.0f} samples/s, "
                                f"{seconds:.1f} s")
                stop = folder.record(progress, {
                    "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                    "val_acc": val_acc, "lr": lr, "seconds": seconds, "samples_per_s": seen / train_s,
                    **({"step_loss": [l for l, _ in steps], "step_acc": [a for _, a in steps]} if steps else {}),
                })
                if stop:
                    say(config, f"early stopping: no better validation loss for {config.patience} epochs")
                    break

            # The test.
            if config.patience and progress.best_weights is not None:
                model.load_state_dict(progress.best_weights)  # early stopping hands back the best model, not the last
            test_loss, test_acc = evaluate(forward, data.test, loss_fn, **kw)
            summary = {
                "test_loss": test_loss, "test_acc": test_acc, "best_epoch": progress.best_epoch,
                "epochs_run": progress.epoch, "stopped_early": progress.epoch < config.epochs,
                "wall_s": time.perf_counter() - started, "train_s": progress.train_s,
                "compile_s": progress.compile_seconds() if config.compile else None,
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "threads": torch.get_num_threads(), "allocator": allocator.status(), "world_size": world.size,
                "precision": "bfloat16 autocast" if amp else config.dtype, "precision_reason": why,
                "impl": config.impl, "torch": torch.__version__, "config": dataclasses.asdict(config),
            }
            if not folder.finish(summary, progress):
                say(config, "matplotlib is not installed, so no curves.png (pip install matplotlib)")
        except KeyboardInterrupt:
            raise Interrupted(folder.out, progress.epoch) from None
    return summary


def header(config, model, device, world, amp, why, steps_per_epoch, checkpoint, progress) -> list:
    """The lines a run starts with: what it resumes, the network and the ops it uses and why,
    the device and precision and why, the length of the run and its folder."""
    lines = [f"resuming {config.out} after epoch {progress.epoch}/{config.epochs}"] if checkpoint else []
    default = ", the default; --impl custom for the textbook's" if config.impl == Config.impl else ""
    lines.append(
        f"{config.dataset}: MLP {'-'.join(map(str, model.sizes))} ({config.activation}, {config.impl} ops: "
        f"{OPS[config.impl]}{default}) on {device}{f' x {world.size} processes' if world.size > 1 else ''}, "
        f"{config.dtype}{' + bfloat16 autocast' if amp else ''} ({why}){' +compile' if config.compile else ''}, "
        f"{plural(config.epochs, 'epoch')} of {plural(steps_per_epoch, 'step')} -> {config.out}")
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle" and onecycle_peak(config.lr, total) < config.lr:
        lines.append(f"one-cycle peak lr {onecycle_peak(config.lr, total):.3g}, not {config.lr:g}: the warm-up of "
                     f"this {total}-step run is shorter than {MIN_WARMUP_STEPS} steps, so it climbs as slowly "
                     f"as a {MIN_WARMUP_STEPS}-step one")
    return lines


def say(config: Config, message: str) -> None:
    if not config.quiet:
        print(message, file=sys.stderr, flush=True)


def plural(n: int, noun: str) -> str:
    """'1 epoch', '12 epochs'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------- command line

def main(argv=None) -> int:
    """``nnbasics-train``: parse the flags, run; returns 0 (130 after Ctrl-C), or raises
    SystemExit with a one-line message."""
    config = parse_args(argv)
    main_process = distributed.from_environment().main
    with sigterm_raises_keyboard_interrupt():
        try:
            summary = run(config)
        except nndata.DataError as e:  # first: a broken checkpoint is both
            exit_with(f"nnbasics-train: data error: {e}", 1)
        except ConfigError as e:
            exit_with(f"nnbasics-train: error: {e}", 2)
        except Diverged as e:
            exit_with(f"nnbasics-train: error: {e}", 1)
        except OSError as e:  # a full disk, a folder gone read-only: the last checkpoint stays as it was
            exit_with(f"nnbasics-train: error: cannot write {e.filename or config.out}: {e.strerror or e}", 1)
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
    out, world_size = summary["config"]["out"], summary["world_size"]
    print(f"test accuracy {summary['test_acc']:.2%} (loss {summary['test_loss']:.4f}) after "
          f"{plural(summary['epochs_run'], 'epoch')}, {summary['wall_s']:.1f} s on {summary['device']}"
          f"{f' x {world_size} processes' if world_size > 1 else ''}; run saved in {out}")
    return 0


def _command() -> str:
    """How this process was started, for the resume hint: torchrun or plain python."""
    world = distributed.from_environment()
    return f"torchrun --nproc-per-node {world.size} -m nnbasics.train" if world.size > 1 else "python -m nnbasics.train"
