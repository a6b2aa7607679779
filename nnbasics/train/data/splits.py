"""What training touches on every step: the splits on a device, minibatches, augmentation.

Tensors (N = number of examples, B = batch size):
    Split.images  uint8   (N, 28, 28), pixel values 0..255
    Split.labels  int64   (N,),        class indices 0..9
    batch x       float   (B, 784),    (pixel/255 - mean) / std
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as TF

from . import sources
from .cache import NORMALIZATION


@dataclass
class Split:
    """One split on a device: images uint8 (N, 28, 28), labels int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass
class MNIST:
    """train / val / test splits plus the pixel statistics used for normalising."""

    train: Split
    val: Split
    test: Split
    mean: float
    std: float
    name: str


def load_splits(dataset: str = "mnist", data_dir=None, device="cpu", val_size: int = 5000,
                seed: int = 0, quiet: bool = False) -> MNIST:
    """Load a dataset and hold out `val_size` random training examples for validation.

    With the defaults: train 55000, val 5000, test 10000 examples. The split only
    depends on `seed` (its own torch.Generator, the global RNG is untouched).
    Within each split the original order is kept. Tensors are moved to `device` once.
    """
    # sources.load looked up at call time, so a test can hand in a synthetic dataset.
    data = sources.load(dataset, data_dir=data_dir, quiet=quiet)
    images, labels = data["train"]
    n = len(labels)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < n:
        raise ValueError(f"val_size must be an integer in 0..{n - 1}, got {val_size!r}")
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    val_idx, train_idx = perm[:val_size].sort().values, perm[val_size:].sort().values

    def to_split(x, y):
        return Split(x.to(device), y.to(device))

    mean, std = NORMALIZATION[dataset]
    return MNIST(
        train=to_split(images[train_idx], labels[train_idx]),
        val=to_split(images[val_idx], labels[val_idx]),
        test=to_split(*data["test"]),
        mean=mean,
        std=std,
        name=dataset,
    )


def batches(split: Split, batch_size: int, *, mean: float, std: float, shuffle: bool = False,
            generator=None, drop_last: bool = False, dtype=torch.float32):
    """Yield (x, y) minibatches of one epoch, all on the split's device.

    x: `dtype` (B, 784) = (pixel/255 - mean) / std, y: int64 (B,).
    With shuffle, the order is one torch.randperm per epoch made on the split's
    device; pass a `generator` on that device for a reproducible order. The last
    batch is smaller unless `drop_last`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating point type, got {dtype}")
    device = split.images.device
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the data is on {device}; "
                         f"use torch.Generator(device={str(device)!r})")
    n = len(split)
    order = torch.randperm(n, generator=generator, device=device) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:  # slices are views: no copy of the images
            images, labels = split.images[start:start + batch_size], split.labels[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            images, labels = split.images[idx], split.labels[idx]
        x = images.reshape(images.shape[0], -1).to(dtype).div_(255).sub_(mean).div_(std)
        yield x, labels


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
