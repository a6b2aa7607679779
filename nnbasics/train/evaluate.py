"""Test accuracy and confusion matrix of a trained MLP: ``python -m nnbasics.train.evaluate RUN_DIR``
(or ``nnbasics-evaluate RUN_DIR``).

PATH is a run folder written by ``nnbasics.train`` (its model.pt and
summary.json), or a model.pt file. The architecture comes from the
summary.json next to the model when there is one; otherwise the layer sizes
are read off the weights' shapes and the activation comes from --activation
(it has no weights to read). --hidden / --activation / --dataset override.

The test pass is the run's own (``nnbasics.train.app.evaluate``, the run's ops, precision and loss,
label smoothing included), so a run folder's numbers are its summary.json's, at the same
precision; the output says which weights model.pt holds (the last epoch's, or the best one's
under --patience) and, where the numbers differ, each difference of the set-up that explains it.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch

from ..cli import ConfigError, Parser, exit_with, resolve_device
from ..nn import ACTIVATIONS, MLP
from . import data as nndata
from . import precision
from .app import EVAL_BATCH_SIZE, evaluate
from .checkpoint import load_user_file
from .config import DTYPES, Config
from .model import make_loss
from .runs import MODEL, SUMMARY


def confusion_matrix(target: torch.Tensor, pred: torch.Tensor, num_classes: int = nndata.NUM_CLASSES) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts: row = true class, column = predicted class."""
    return torch.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@torch.no_grad()
def predict(model, split, *, mean, std, batch_size=EVAL_BATCH_SIZE, dtype=torch.float32, amp=False) -> torch.Tensor:
    """Logits (N, 10) of ``model`` for every example of ``split``, in eval mode (under bfloat16 autocast with amp)."""
    model.eval()
    device = split.labels.device
    with precision.autocast(device, amp):
        logits = [model(x) for x, _ in nndata.batches(split, batch_size, mean=mean, std=std, dtype=dtype)]
    return torch.cat(logits).float()


def _linear_layers(state_dict: dict):
    """[(index in the Sequential, weight shape)] of the Linear layers, in order."""
    layers = sorted((int(k.split(".")[0]), v.shape) for k, v in state_dict.items() if k.endswith(".weight"))
    if not layers or any(len(shape) != 2 for _, shape in layers):
        raise ValueError("this state_dict does not look like an MLP's (2-d '<i>.weight' tensors expected)")
    return layers


def model_from_state_dict(state_dict: dict, activation="relu", hidden=None, impl="builtin") -> MLP:
    """An MLP of ``impl`` with the architecture the weights imply, weights loaded.

    Sizes come from the weight shapes (``hidden`` may state them, and is then
    checked); dropout layers have no weights, but they shift the layer indices
    (Linear, act, Dropout, Linear...), so their presence shows in the keys.
    """
    layers = _linear_layers(state_dict)
    sizes = [layers[0][1][1]] + [shape[0] for _, shape in layers]
    if hidden is not None and list(hidden) != sizes[1:-1]:
        raise ConfigError(f"--hidden {' '.join(map(str, hidden))}: the weights have hidden sizes "
                          f"{' '.join(map(str, sizes[1:-1]))}")
    with_dropout = len(layers) > 1 and layers[1][0] - layers[0][0] == 3
    model = MLP(sizes, activation=activation, dropout=0.5 if with_dropout else 0.0, impl=impl)
    model.load_state_dict(state_dict)
    return model


def load_run(path, *, hidden=None, activation=None, dataset=None):
    """(model, config dict) from a run folder or a model.pt (see the module docstring)."""
    path = pathlib.Path(path)
    model_path = path / MODEL if path.is_dir() else path
    if not model_path.is_file():
        hint = " (the run has not finished: resume it with python -m nnbasics.train --resume DIR)" if path.is_dir() else ""
        raise ConfigError(f"{path}: no {MODEL} there{hint}")
    summary_path = model_path.parent / SUMMARY
    summary = read_summary(summary_path) if summary_path.is_file() else {}
    config = summary.get("config", {})
    if activation is not None:
        config["activation"] = activation
    if dataset is not None:
        config["dataset"] = dataset
    check_run_config(config, summary_path)
    if hidden is not None and config.get("hidden") not in (None, list(hidden)):
        raise ConfigError(f"--hidden {' '.join(map(str, hidden))}: {summary_path} says the run used "
                          f"{' '.join(map(str, config['hidden']))}")
    state_dict = load_user_file(model_path, nndata.DataError, "cannot load it",
                                "; pass a model.pt written by nnbasics.train")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise nndata.DataError(f"{model_path}: holds a {type(state_dict).__name__}, not a state_dict of an "
                               f"MLP's weights; pass a model.pt written by nnbasics.train")
    try:
        # The run's own ops (custom, fused or builtin): under bfloat16 autocast each rounds differently.
        model = model_from_state_dict(state_dict, config.get("activation", "relu"), hidden, config.get("impl", "builtin"))
    except (RuntimeError, KeyError, ValueError, IndexError) as e:
        raise nndata.DataError(f"{model_path}: cannot load it as an MLP ({str(e).splitlines()[0]})") from None
    return model, config, summary


def read_summary(summary_path) -> dict:
    """A run's summary.json, holding a ``config`` dict; DataError naming the file when it does not."""
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise nndata.DataError(f"{summary_path}: not readable as JSON ({e}); evaluate the model.pt on its own "
                               f"by passing its path") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        what = "no config" if isinstance(summary, dict) else f"a JSON {type(summary).__name__}"
        raise nndata.DataError(f"{summary_path}: holds {what}, not nnbasics.train's summary; evaluate the "
                               f"model.pt on its own by passing its path")
    return summary


def check_run_config(config: dict, summary_path) -> None:
    """The settings evaluate reads from a run's config are ones it knows (DataError naming the file)."""
    known = {"dataset": nndata.DATASETS, "dtype": tuple(DTYPES), "activation": ACTIVATIONS,
             "amp": (*precision.AMP_MODES, True, False)}  # runs of earlier versions saved --amp as a switch
    for key, choices in known.items():
        if key in config and (config[key] not in choices or isinstance(config[key], (list, dict))):
            fix = "" if key == "dtype" else f" or pass --{key}"
            raise nndata.DataError(f"{summary_path}: {key} {config[key]!r} is unknown (use one of "
                                   f"{', '.join(map(str, choices))}); fix the file{fix}")
    hidden = config.get("hidden")
    if hidden is not None and not (isinstance(hidden, list) and hidden
                                   and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in hidden)):
        raise nndata.DataError(f"{summary_path}: hidden {hidden!r} is not a list of layer widths; fix the file")


def make_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m nnbasics.train.evaluate", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("path", metavar="DIR_OR_MODEL", help="a run folder, or a model.pt")
    p.add_argument("--hidden", type=int, nargs="+", default=None, metavar="N",
                   help="hidden sizes (default: from summary.json or the weights)")
    p.add_argument("--activation", choices=ACTIVATIONS, default=None,
                   help="activation (default: from summary.json, else relu)")
    p.add_argument("--dataset", choices=nndata.DATASETS, default=None,
                   help="dataset (default: from summary.json, else mnist)")
    p.add_argument("--data-dir", default=None, help="folder with the IDX files (default: the cache)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", choices=precision.AMP_MODES, default=None,
                   help="bfloat16 autocast, as nnbasics.train chooses it (default: the run's --amp from "
                        "summary.json, else auto)")
    p.add_argument("--quiet", action="store_true", help="no data-loading messages")
    return p


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        model, config, summary = load_run(args.path, hidden=args.hidden, activation=args.activation, dataset=args.dataset)
        dataset = config.get("dataset", "mnist")
        test = nndata.load_splits(dataset, data_dir=args.data_dir, device=device, quiet=args.quiet).test
    except nndata.DataError as e:
        exit_with(f"evaluate: data error: {e}", 1)
    except ConfigError as e:
        exit_with(f"evaluate: error: {e}", 2)
    dtype = DTYPES[config.get("dtype", "float32")]
    model = model.to(device=device, dtype=dtype)
    mean, std = nndata.NORMALIZATION[dataset]
    # The precision the run chose (--amp auto decides again, on this machine), so a run's test
    # accuracy is reproduced here; runs of earlier versions saved --amp as true/false.
    amp_mode = args.amp or {True: "on", False: "off"}.get(config.get("amp"), config.get("amp", "auto"))
    amp, _ = precision.choose(amp_mode, device, config.get("dtype", "float32"))
    # The run's own test pass (nnbasics.train.app.evaluate) with the run's loss, label smoothing included.
    smoothing = config.get("label_smoothing", 0.0)
    loss_fn = make_loss(Config(impl=model.impl, label_smoothing=smoothing))
    loss, accuracy = evaluate(model, test, loss_fn, mean=mean, std=std, dtype=dtype, amp=amp)
    pred = predict(model, test, mean=mean, std=std, dtype=dtype, amp=amp).argmax(1)
    correct = int((pred == test.labels).sum())
    smoothed = f" with label smoothing {smoothing:g}, as in training" if smoothing else ""
    print(f"test accuracy {accuracy:.2%} ({correct}/{len(test)}) on {dataset}, loss {loss:.4f}{smoothed}")
    for line in agreement(summary, args.path, config, accuracy, loss, device, amp):
        print(line)
    print(format_confusion(confusion_matrix(test.labels, pred).cpu()))
    return 0


def agreement(summary: dict, path, config: dict, accuracy: float, loss: float, device, amp: bool) -> list:
    """Which weights these are, and whether the run's ``summary`` (its summary.json as load_run read
    it, {} when there is none) says the same numbers (at the printed precision); where it does not,
    every difference of the set-up that can explain it."""
    if not summary:
        return ["weights: a model.pt without its summary.json: nothing to compare with"]
    summary_path = (pathlib.Path(path) if pathlib.Path(path).is_dir() else pathlib.Path(path).parent) / SUMMARY
    epochs = summary.get("epochs_run", "?")
    if config.get("patience") and summary.get("best_epoch"):
        weights = f"the best epoch's ({summary['best_epoch']} of {epochs}, kept by --patience)"
    else:
        weights = f"the last epoch's ({epochs})"
    lines = [f"weights: model.pt, {weights}"]
    if not isinstance(summary.get("test_acc"), (int, float)) or not isinstance(summary.get("test_loss"), (int, float)):
        return lines + [f"summary.json: no test_acc and test_loss of the run to compare with ({summary_path})"]
    ours = f"{accuracy:.2%} (loss {loss:.4f})"
    theirs = f"{summary['test_acc']:.2%} (loss {summary['test_loss']:.4f})"
    if ours == theirs:
        return lines + [f"summary.json: the same, {theirs}"]
    reasons = []
    if str(device) != summary.get("device"):
        reasons.append(f"the run was on {summary.get('device')}, this is on {device}")
    precision_now = "bfloat16 autocast" if amp else config.get("dtype", "float32")
    if precision_now != summary.get("precision"):
        reasons.append(f"the run used {summary.get('precision')}, this uses {precision_now}")
    if config.get("compile"):
        reasons.append("the run evaluated its torch.compile'd model, this the eager one")
    if summary.get("world_size", 1) > 1:
        reasons.append(f"the run evaluated across {summary['world_size']} processes")
    if summary.get("threads") != torch.get_num_threads():
        reasons.append(f"the run used {summary.get('threads')} threads, this {torch.get_num_threads()} "
                       f"(sums in another order round differently)")
    if summary.get("torch") != torch.__version__:
        reasons.append(f"the run used torch {summary.get('torch')}, this is {torch.__version__}")
    why = "; ".join(reasons) or "no difference of device, precision, threads or torch found: please report it"
    return lines + [f"summary.json: {theirs}, differs: {why}"]


def format_confusion(matrix: torch.Tensor) -> str:
    """The matrix as text: a header of predicted classes, one row per true class."""
    n = matrix.shape[0]
    width = max(len(str(int(matrix.max()))), 3) + 1
    lines = ["confusion matrix (rows: true class, columns: predicted class)",
             "true\\pred" + "".join(f"{c:>{width}}" for c in range(n))]
    for i in range(n):
        lines.append(f"{i:>9}" + "".join(f"{int(v):>{width}}" for v in matrix[i]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
