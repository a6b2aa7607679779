"""What a training run is asked to do: ``Config`` (every flag and its default), the named
presets, the checks that reject a value which cannot work, and the command-line parser that
fills a ``Config`` (``python -m nnbasics.train --help``). The training itself: ``nnbasics.train.app``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import torch

from ..cli import ConfigError, Parser, resolve_device
from ..nn import ACTIVATIONS, INITS, MLP_IMPLS
from . import data as nndata
from . import precision

SCHEDULES = ("onecycle", "cosine", "step", "constant")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Config:
    """Everything a run depends on: the parsed command-line flags, and their defaults.

    The defaults train 784-1024-1024-10 and aim at 99.0% test accuracy on MNIST; what they
    reach, and how long that takes, is measured in docs/training.md.
    """

    # model
    hidden: list = field(default_factory=lambda: [1024, 1024])
    activation: str = "relu"
    dropout: float = 0.2
    init: str = "kaiming"
    impl: str = "fused"  # the fast path; "custom": the textbook's ops (docs/training.md, "Which ops")
    # optimisation
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    shift: int = 2
    schedule: str = "onecycle"
    epochs: int = 18
    batch_size: int = 256
    patience: int = 0
    seed: int = 0
    # machine
    device: str = "auto"
    dtype: str = "float32"
    compile: bool = False
    amp: str = "auto"  # precision.AMP_MODES; bfloat16 autocast where it is native (see nnbasics.train.precision)
    # data and files
    dataset: str = "mnist"
    data_dir: str | None = None
    limit_train: int | None = None
    every: int = 1  # the course's Keras run: every 4th training and validation image ([::4])
    normalize: bool = True  # False: pixels as they are, in [0, 1] (the course's)
    output: str = "logits"  # "sigmoid": the course's sigmoid outputs and Keras' categorical cross-entropy on them
    out: str | None = None
    resume: str | None = None
    overwrite: bool = False
    quiet: bool = False
    preset: str | None = None

    def __post_init__(self):
        if isinstance(self.amp, bool):  # checkpoints of earlier versions saved --amp as a switch
            self.amp = "on" if self.amp else "off"


OUTPUTS = ("logits", "sigmoid")

# Named recipes: --preset NAME sets these flag defaults (flags given explicitly still win).
PRESETS = {
    "fast": {"epochs": 5, "shift": 1},  # the records: >= 98.5% in the fewest seconds
    "best": {"epochs": 80, "dropout": 0.3},  # aims at the best accuracy in about 5 minutes (docs/training.md)
    # The course's Keras MLP (docs/learn.md): 784-128-10 sigmoid with sigmoid outputs and Keras' categorical
    # cross-entropy, Glorot-uniform init, Keras' plain SGD (lr 0.01), batches of 128, 100 epochs on every 4th
    # training image (13,750 of 55,000), validated on every 4th validation image, pixels in [0, 1].
    "course": {"hidden": [128], "activation": "sigmoid", "dropout": 0.0, "init": "xavier", "lr": 0.01,
               "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "label_smoothing": 0.0, "shift": 0,
               "schedule": "constant", "epochs": 100, "batch_size": 128, "every": 4, "normalize": False,
               "output": "sigmoid"},
}


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
    if config.every < 1:
        bad("--every", config.every, "must be >= 1 (1: every image)")
    if config.output not in OUTPUTS:
        bad("--output", config.output, f"use one of {', '.join(OUTPUTS)}")
    if config.amp not in precision.AMP_MODES:
        bad("--amp", config.amp, f"use one of {', '.join(precision.AMP_MODES)}")
    if config.amp == "on" and config.dtype != "float32":
        bad("--amp on", f"with --dtype {config.dtype}", "bfloat16 autocast starts from float32; drop one of them")
    if config.preset is not None and config.preset not in PRESETS:
        bad("--preset", config.preset, f"unknown preset; use one of {', '.join(PRESETS)}")
    resolve_device(config.device)


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
                   help="ops: fused (the fast path, nnbasics.fused), custom (the textbook's, nnbasics.ops) or "
                        "builtin (torch.nn); the same seed gives every impl the same initial weights and batches")
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
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size (under torchrun the global one: each of N processes computes 1/N of it)")
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
    g.add_argument("--every", type=int, default=d.every, metavar="N",
                   help="train and validate on every Nth image of those splits (the course's Keras run: 4)")
    g.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=d.normalize,
                   help="normalise pixels by the training set's mean and std (--no-normalize: pixels in [0, 1])")
    g.add_argument("--output", choices=OUTPUTS, default=d.output,
                   help="logits into softmax cross-entropy, or sigmoid outputs with Keras' categorical "
                        "cross-entropy on them, -log(σ(z_t) / Σ_j σ(z_j)) (the course's)")
    g.add_argument("--out", default=d.out, help="run folder (default: a new runs/<time>-<impl>)")
    g.add_argument("--resume", default=d.resume, metavar="DIR",
                   help="continue the run in DIR from its checkpoint, with its saved config")
    g.add_argument("--overwrite", action="store_true",
                   help="let --out replace the files of the run (or the summary.json) already in that folder")
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


def _as_flags(flags: dict) -> list:
    """A preset's settings as the command-line flags that give them."""
    def flag(k, v):
        name = k.replace('_', '-')
        if isinstance(v, bool):  # argparse.BooleanOptionalAction: --nesterov / --no-nesterov
            return f"--{name}" if v else f"--no-{name}"
        return f"--{name} {' '.join(map(str, v)) if isinstance(v, list) else v}"
    return [flag(k, v) for k, v in flags.items()]
