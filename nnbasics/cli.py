"""What every command line of nnbasics shares: the argument parser's one-line errors, the
error type for a flag value that cannot work, and the choice of device.

Used by ``nnbasics.train``, ``nnbasics.train.evaluate`` and ``nnbasics.check``.
"""
from __future__ import annotations

import argparse
import sys

import torch


class ConfigError(ValueError):
    """A flag value that cannot work; the message names it and says what to do."""


class Exit(SystemExit):
    """A command's end with ``status`` (2: a bad flag or argument, 1: bad data or a failed write)
    and a one-line ``message``, printed on stderr when the exit is made (``exit_with``)."""

    def __init__(self, message: str, status: int):
        super().__init__(status)
        self.message = message

    def __str__(self):
        return self.message


def exit_with(message: str, status: int):
    """Print ``message`` on stderr and raise ``Exit(message, status)``."""
    print(message, file=sys.stderr, flush=True)
    raise Exit(message, status)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line, with no usage dump."""

    def error(self, message):
        """The message names the flag; --help has the rest."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when available, else CPU. Raises ConfigError for a device this machine lacks."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"--device {name}: not supported here; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu (or auto)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
