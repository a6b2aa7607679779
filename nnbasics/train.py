"""Train an MLP on MNIST with the hand-written ops: ``python -m nnbasics.train --help``.

Laid out like pytorch/examples' ``mnist/main.py``: argparse flags become a
``Config`` (``nnbasics.config``: the flags, their checks and the presets), ``train_epoch()`` and ``evaluate()`` are plain functions, ``run()``
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

import dataclasses
import functools
import math
import pathlib
import sys
import time

import torch
import torch.nn.functional as TF
from tqdm import tqdm

from . import allocator, distributed, precision, runs
from . import data as nndata
from . import functional as F
from .cli import ConfigError, exit_with, resolve_device
from .config import DTYPES, PRESETS, Config, check_config, parse_args  # noqa: F401 (re-exported: train.PRESETS)
from .nn import MLP

EVAL_BATCH_SIZE = 2500  # evaluation keeps no activations for backward, so it takes big batches
ONECYCLE_WARMUP = 0.3  # the share of a one-cycle run spent warming up (OneCycleLR's pct_start)
MIN_WARMUP_STEPS = 25  # a shorter warm-up peaks lower (onecycle_peak)
STEP_CURVES_EPOCHS = 3  # a run of at most this many epochs records (and plots) every step's loss and accuracy


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run: ``run_dir`` holds the checkpoint after ``epoch`` epochs."""

    def __init__(self, run_dir, epoch):
        super().__init__(f"interrupted after epoch {epoch}; checkpoint in {run_dir}")
        self.run_dir, self.epoch = run_dir, epoch


# --------------------------------------------------------------------------- model, loss, optimiser

def build(config: Config, steps_per_epoch: int, device=None, *, torch_defaults=False):
    """(model, optimizer, scheduler) for ``config``; the scheduler is stepped once per batch.

    Seeds the global RNG with ``config.seed`` first, so the same config gives
    the same initial weights whatever the impl (nnbasics.nn.MLP guarantees it).
    ``torch_defaults``: see ``make_optimizer``.
    """
    device = resolve_device(config.device) if device is None else torch.device(device)
    torch.manual_seed(config.seed)  # seeds the CUDA generators too
    model = MLP([28 * 28, *config.hidden, nndata.NUM_CLASSES], activation=config.activation, dropout=config.dropout,
                impl=config.impl, init=config.init, device=device, dtype=DTYPES[config.dtype])
    optimizer = make_optimizer(config, model, torch_defaults=torch_defaults)
    scheduler = make_scheduler(config, optimizer, config.epochs * steps_per_epoch)
    return model, optimizer, scheduler


def onecycle_peak(lr: float, total_steps: int) -> float:
    """The one-cycle schedule's peak learning rate for a run of ``total_steps``: ``lr``, unless the
    warm-up (30% of the run) is shorter than MIN_WARMUP_STEPS; then it climbs with the slope of a
    MIN_WARMUP_STEPS warm-up and peaks lower, at lr x warm-up / MIN_WARMUP_STEPS. A 16-step run
    would otherwise reach lr 0.1 in 5 steps, and with momentum 0.9 its loss climbs (to 10 in
    step 5 of the default MLP) instead of falling."""
    return lr * min(1.0, ONECYCLE_WARMUP * total_steps / MIN_WARMUP_STEPS)


def make_scheduler(config: Config, optimizer, total_steps: int):
    """The learning-rate schedule of ``config.schedule`` over ``total_steps`` (stepped once per batch)."""
    if config.schedule == "onecycle":
        # Warm up from peak/25 over the first 30% of the steps, then cosine down to ~0. The
        # momentum stays at --momentum (cycle_momentum=False) so that the flag means what it says.
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=onecycle_peak(config.lr, total_steps),
                                                   total_steps=total_steps, pct_start=ONECYCLE_WARMUP,
                                                   cycle_momentum=False)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [total_steps // 2, total_steps * 3 // 4], gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def make_optimizer(config: Config, model: torch.nn.Module, *, torch_defaults=False) -> torch.optim.Optimizer:
    """SGD over ``model``'s parameters with the run's learning rate, momentum and weight decay.

    The update is torch.optim's; of its implementations of that same update this takes the
    fastest: ``fused=True`` (one kernel over all parameters), else ``foreach=True`` where a device
    has no fused kernel. torch's default on the CPU is a Python loop over the parameters, 5-20x
    slower for this MLP (docs/training.md). ``torch_defaults=True`` keeps torch's default
    (the ``builtin`` baseline of ``benchmarks.train``: what a user writes)."""
    kw = {"lr": config.lr, "momentum": config.momentum, "nesterov": config.nesterov, "weight_decay": config.weight_decay}
    if torch_defaults:
        return torch.optim.SGD(model.parameters(), **kw)
    try:
        return torch.optim.SGD(model.parameters(), fused=True, **kw)
    except RuntimeError:  # "`fused=True` requires all the params to be floating point Tensors of supported devices"
        return torch.optim.SGD(model.parameters(), foreach=True, **kw)


def make_loss(config: Config):
    """loss_fn(logits, target, reduction="mean"): cross-entropy from the run's implementation."""
    loss = (functools.partial(TF.cross_entropy, label_smoothing=config.label_smoothing) if config.impl == "builtin"
            else functools.partial(F.cross_entropy, label_smoothing=config.label_smoothing, impl=config.impl))
    if config.output == "sigmoid":  # Keras' categorical_crossentropy on sigmoid outputs: -log(σ(z_t) / Σ_j σ(z_j))
        return lambda logits, target, reduction="mean": loss(TF.logsigmoid(logits), target, reduction=reduction)
    return loss


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

def _say(config: Config, message: str) -> None:
    if not config.quiet:
        print(message, file=sys.stderr, flush=True)


def plural(n: int, noun: str) -> str:
    """'1 epoch', '12 epochs'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _first(split, n, every=1):
    """Every ``every``-th of the first ``n`` examples of a split (all: None; views, no copy)."""
    return nndata.Split(split.images[:n:every], split.labels[:n:every])


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
    # Before the data loads, in every process (they see one folder, and all must stop alike).
    runs.check_out(config.out, resume=checkpoint is not None, overwrite=config.overwrite)
    distributed.check_batch_size(world, config.batch_size)
    device = distributed.device_for(world, resolve_device(config.device))
    distributed.start(world, device)
    allocator.keep_freed_memory()  # each step reuses the last one's memory (no page faults: allocator.py)
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
    data = data if config.every == 1 else dataclasses.replace(data, val=_first(data.val, None, config.every))
    train = _first(data.train, config.limit_train, config.every) if config.limit_train or config.every > 1 else data.train
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
    kw = {"mean": data.mean if config.normalize else 0.0, "std": data.std if config.normalize else 1.0, "dtype": DTYPES[config.dtype], "amp": amp}
    _say(config, f"{config.dataset}: MLP {'-'.join(map(str, model.sizes))} ({config.activation}, {config.impl} ops) "
                 f"on {device}{f' x {world.size} processes' if world.size > 1 else ''}, {config.dtype}"
                 f"{' + bfloat16 autocast' if amp else ''} ({why}){' +compile' if config.compile else ''}, "
                 f"{plural(config.epochs, 'epoch')} of {plural(steps_per_epoch, 'step')} -> {out}")
    if config.schedule == "onecycle" and onecycle_peak(config.lr, config.epochs * steps_per_epoch) < config.lr:
        _say(config, f"one-cycle peak lr {onecycle_peak(config.lr, config.epochs * steps_per_epoch):.3g}, not "
                     f"{config.lr:g}: the warm-up of this {config.epochs * steps_per_epoch}-step run is shorter than "
                     f"{MIN_WARMUP_STEPS} steps, so it climbs as slowly as a {MIN_WARMUP_STEPS}-step one")
    live = not config.quiet and sys.stderr.isatty()  # a redrawn bar for a terminal, one line per epoch for a log

    try:
        for epoch in range(progress.epoch + 1, config.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            steps = [] if config.epochs <= STEP_CURVES_EPOCHS else None
            with tqdm(total=steps_per_epoch * config.batch_size, desc=f"epoch {epoch}/{config.epochs}",
                      unit="samples", unit_scale=True, disable=not live, file=sys.stderr) as bar:
                train_loss, train_acc, seen = train_epoch(
                    forward, optimizer, scheduler, loss_fn, train, batch_size=config.batch_size,
                    generator=generator, shift=config.shift, bar=bar if live else None, world=world, steps=steps,
                    **kw)
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
                **({"step_loss": [l for l, _ in steps], "step_acc": [a for _, a in steps]} if steps else {}),
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
            "allocator": allocator.status(),
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

def main(argv=None) -> int:
    """``nnbasics-train``: returns 0, or raises SystemExit with a one-line message."""
    config = parse_args(argv)
    main_process = distributed.from_environment().main
    with runs.sigterm_raises_keyboard_interrupt():
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


if __name__ == "__main__":
    sys.exit(main())
