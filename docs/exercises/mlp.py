"""Exercise 6: your own Functions as an MLP, trained on MNIST by nnbasics' training loop.

    python docs/exercises/mlp.py               # your Functions, once exercises 1-5 are solved
    python docs/exercises/mlp.py --answers     # the short answers of docs/exercises/answers/ instead

The few lines that matter are ``YourLayer``, ``YourActivation``, ``your_mlp`` and ``your_loss``:
a Function is not a module, so a module holds the weights and calls ``Function.apply``. The
network gets the initial weights of ``nnbasics.nn.MLP`` (the same sizes and seed), and both
train with the same functions of ``nnbasics.train`` (``make_optimizer``, ``make_scheduler``,
``train_epoch``, ``evaluate``), on the same batches in the same order: the two test accuracies
printed at the end can differ in the last digits (the two networks add the same products in another order,
and the steps carry the rounding on). Then try ``--activation sigmoid``, the course's.
"""
import argparse
import importlib.util
import pathlib
import sys

import torch

import nnbasics.train.data as nndata
from nnbasics import train

HERE = pathlib.Path(__file__).resolve().parent
FUNCTIONS = {"sigmoid": ("sigmoid", "Sigmoid"), "tanh": ("tanh", "Tanh"), "relu": ("relu", "ReLU"),
             "linear": ("linear", "Linear"), "loss": ("softmax_cross_entropy", "SoftmaxCrossEntropy")}


def your_function(role: str, answers: bool):
    """The Function of one exercise: docs/exercises/FILE.py, or answers/FILE.py with --answers."""
    file, name = FUNCTIONS[role]
    path = (HERE / "answers" if answers else HERE) / f"{file}.py"
    spec = importlib.util.spec_from_file_location(f"{'answers' if answers else 'exercises'}_{file}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, name)


class YourLayer(torch.nn.Module):
    """y = x Wᵀ + b by your Linear Function, starting from the weights of ``like`` (a torch.nn.Linear)."""

    def __init__(self, linear, like):
        super().__init__()
        self.linear = linear
        self.weight = torch.nn.Parameter(like.weight.detach().clone())
        self.bias = torch.nn.Parameter(like.bias.detach().clone())

    def forward(self, x):
        return self.linear.apply(x, self.weight, self.bias)


class YourActivation(torch.nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function.apply(x)


def your_mlp(like, activation: str, answers: bool) -> torch.nn.Sequential:
    """Linear → activation → ... → Linear, each by your Functions, with the weights of the MLP ``like``."""
    linear, act = your_function("linear", answers), your_function(activation, answers)
    layers = [m for m in like if isinstance(m, torch.nn.Linear)]
    modules = []
    for i, layer in enumerate(layers):
        modules.append(YourLayer(linear, layer))
        if i < len(layers) - 1:
            modules.append(YourActivation(act))
    return torch.nn.Sequential(*modules)


def your_loss(answers: bool):
    """loss_fn(logits, target, reduction="mean"), the form nnbasics' training loop calls."""
    cross_entropy = your_function("loss", answers)

    def loss_fn(logits, target, reduction="mean"):
        mean = cross_entropy.apply(logits, target)
        return mean * len(target) if reduction == "sum" else mean
    return loss_fn


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--answers", action="store_true", help="use docs/exercises/answers/ instead of your exercises")
    p.add_argument("--activation", choices=("relu", "sigmoid", "tanh"), default="relu")
    p.add_argument("--hidden", type=int, default=256, help="hidden layer width")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit-train", type=int, default=None, metavar="N", help="train on the first N examples only")
    args = p.parse_args(argv)

    # One recipe for both networks: plain float32 on the CPU, no dropout (so that the two runs
    # draw nothing at random but the batch order, which the generator's seed fixes); nnbasics' side
    # is the textbook (impl="custom"), the Functions your answers are compared with.
    config = train.Config(hidden=[args.hidden], activation=args.activation, dropout=0.0, epochs=args.epochs,
                          batch_size=128, lr=0.05, label_smoothing=0.0, shift=0, amp="off", device="cpu",
                          impl="custom")
    data = nndata.load_splits("mnist", device="cpu", quiet=True)
    train_split = data.train if args.limit_train is None else nndata.Split(
        data.train.images[:args.limit_train], data.train.labels[:args.limit_train])
    steps_per_epoch = len(train_split) // config.batch_size
    theirs, _, _ = train.build(config, steps_per_epoch)  # nnbasics' MLP, seeded: its initial weights
    runs = {"your": (your_mlp(theirs, args.activation, args.answers), your_loss(args.answers)),
            "nnbasics": (theirs, train.make_loss(config))}
    print(f"MLP 784-{args.hidden}-10 ({args.activation}), SGD lr {config.lr} (one-cycle) + Nesterov momentum "
          f"{config.momentum}, weight decay {config.weight_decay}, batches of {config.batch_size}, "
          f"{train.plural(config.epochs, 'epoch')} of {train.plural(steps_per_epoch, 'step')}")
    for name, (model, loss_fn) in runs.items():
        optimizer = train.make_optimizer(config, model)
        scheduler = train.make_scheduler(config, optimizer, config.epochs * steps_per_epoch)
        generator = torch.Generator().manual_seed(config.seed)  # the same batches for both
        for epoch in range(1, config.epochs + 1):
            train_loss, _, _ = train.train_epoch(model, optimizer, scheduler, loss_fn, train_split, mean=data.mean,
                                                 std=data.std, batch_size=config.batch_size, generator=generator)
        test_loss, test_acc = train.app.evaluate(model, data.test, loss_fn, mean=data.mean, std=data.std)
        print(f"{name:>8} Functions: test accuracy {test_acc:.2%} (loss {test_loss:.4f}), last epoch's train loss "
              f"{train_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
