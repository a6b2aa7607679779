"""The MNIST training app: ``python -m nnbasics.train`` (``nnbasics-train``) trains an MLP of
nnbasics' ops; ``python -m nnbasics.train.evaluate RUN_DIR`` (``nnbasics-evaluate``) tests it again.

Read in this order:

    app.py          main() and run(): parse → data → model and optimizer → for each epoch:
                    train, validate, record → test; train_step, train_epoch, evaluate
    config.py       Config: every flag, its default and check; the presets; the parser
    model.py        build(): the MLP, its loss, the optimizer and the learning-rate schedule
    runs.py         RunFolder: the run's folder, its files, the lock that keeps it to one process
    checkpoint.py   what a checkpoint holds and how --resume reads it back (hostile files included)
    data/           MNIST and Fashion-MNIST as tensors: files, sources, cache, splits, batches
    precision.py    --amp: bfloat16 autocast where the hardware computes it natively
    distributed.py  several processes under torchrun
    allocator.py    glibc keeps freed memory, so each step reuses the last one's
    files.py        atomic writes, signals held back, the folder lock
    evaluate.py     python -m nnbasics.train.evaluate: test accuracy and confusion matrix

The names below are the app's face, for scripts, notebooks and the benchmarks. The function that
evaluates a model on a split is ``nnbasics.train.app.evaluate`` (``nnbasics.train.evaluate`` is
the command's module).
"""
from .app import Diverged, Interrupted, main, plural, run, train_epoch, train_step
from .config import PRESETS, Config, parse_args
from .model import build, make_loss, make_optimizer, make_scheduler

__all__ = ["Config", "PRESETS", "parse_args", "build", "make_loss", "make_optimizer", "make_scheduler",
           "train_step", "train_epoch", "run", "main", "plural", "Diverged", "Interrupted"]
