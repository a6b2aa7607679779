"""A run's model, loss, optimiser and learning-rate schedule, built from its ``Config``.

Only the ops are hand-written: the optimiser and the schedules are torch's own.

    build(config, steps_per_epoch)   -> (model, optimizer, scheduler), seeded
    make_loss(config)                -> loss_fn(logits, target, reduction="mean")
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as TF

from .. import functional as F
from ..cli import resolve_device
from ..nn import MLP
from .config import DTYPES, Config
from .data import NUM_CLASSES

ONECYCLE_WARMUP = 0.3  # the share of a one-cycle run spent warming up (OneCycleLR's pct_start)
MIN_WARMUP_STEPS = 25  # a shorter warm-up peaks lower (onecycle_peak)


def build(config: Config, steps_per_epoch: int, device=None, *, torch_defaults=False):
    """(model, optimizer, scheduler) for ``config``; the scheduler is stepped once per batch.

    Seeds the global RNG with ``config.seed`` first, so the same config gives
    the same initial weights whatever the impl (nnbasics.nn.MLP guarantees it).
    ``torch_defaults``: see ``make_optimizer``.
    """
    device = resolve_device(config.device) if device is None else torch.device(device)
    torch.manual_seed(config.seed)  # seeds the CUDA generators too
    model = MLP([28 * 28, *config.hidden, NUM_CLASSES], activation=config.activation, dropout=config.dropout,
                impl=config.impl, init=config.init, device=device, dtype=DTYPES[config.dtype])
    optimizer = make_optimizer(config, model, torch_defaults=torch_defaults)
    scheduler = make_scheduler(config, optimizer, config.epochs * steps_per_epoch)
    return model, optimizer, scheduler


def make_loss(config: Config):
    """loss_fn(logits, target, reduction="mean"): cross-entropy from the run's implementation."""
    loss = (functools.partial(TF.cross_entropy, label_smoothing=config.label_smoothing) if config.impl == "builtin"
            else functools.partial(F.cross_entropy, label_smoothing=config.label_smoothing, impl=config.impl))
    if config.output == "sigmoid":  # Keras' categorical_crossentropy on sigmoid outputs: -log(σ(z_t) / Σ_j σ(z_j))
        return lambda logits, target, reduction="mean": loss(TF.logsigmoid(logits), target, reduction=reduction)
    return loss


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


def onecycle_peak(lr: float, total_steps: int) -> float:
    """The one-cycle schedule's peak learning rate for a run of ``total_steps``: ``lr``, unless the
    warm-up (30% of the run) is shorter than MIN_WARMUP_STEPS; then it climbs with the slope of a
    MIN_WARMUP_STEPS warm-up and peaks lower, at lr x warm-up / MIN_WARMUP_STEPS. A 16-step run
    would otherwise reach lr 0.1 in 5 steps, and with momentum 0.9 its loss climbs (to 10 in
    step 5 of the default MLP) instead of falling."""
    return lr * min(1.0, ONECYCLE_WARMUP * total_steps / MIN_WARMUP_STEPS)
