"""Shared fixtures. ``device`` and ``impl`` run a test once per device and implementation; a
parameter marked ``cuda`` is skipped where CUDA is not available, so test files never import
from here: they ask for the fixture, or mark a CUDA-only parameter with ``pytest.mark.cuda``.
``synthetic``, ``tmp_cache`` and ``fake_fetch`` give the data tests a fake MNIST, a private cache
and a network that stores the fake one and counts its calls. The check server is off for the whole session."""
import os

import pytest
import torch

import nnbasics.train.data as nndata
from nnbasics.functional import IMPLS
from nnbasics.train.data import cache, idx, sources

CUDA = torch.cuda.is_available()
# `python -m nnbasics.check` in a test's subprocess checks in its own process: the suite never leaves a check server
# behind (tests/test_check_server.py turns it on, in a private socket directory, and stops it).
os.environ["NNBASICS_CHECK_SERVER"] = "0"


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped where none is available")


def pytest_collection_modifyitems(config, items):
    if CUDA:
        return
    skip = pytest.mark.skip(reason="CUDA is not available on this machine")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(scope="session", params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    """Each device: the CPU, and CUDA where it is available."""
    return request.param


@pytest.fixture(scope="session", params=IMPLS)
def impl(request):
    """Each hand-written implementation (``nnbasics.functional.IMPLS``)."""
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


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


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private, empty cache directory for one test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("NNBASICS_CACHE", str(root))
    return root


@pytest.fixture
def fake_fetch(monkeypatch, synthetic):
    """Every network source replaced by one that stores the synthetic data; the calls are counted."""
    calls = []

    def fetch(dataset, root, missing, quiet):
        calls.append(list(missing))
        for role in missing:
            cache.store(root, dataset, role, idx.idx_bytes(synthetic[role]))

    monkeypatch.setattr(sources, "fetch", fetch)
    monkeypatch.setitem(cache._RAW_SHA256, "mnist", {})  # synthetic data has other checksums
    return calls


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST splits from the cache (nnbasics.train.data fetches them once); skipped without them outside CI."""
    try:
        return nndata.load_splits("mnist", quiet=True)
    except nndata.DataError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"MNIST is not available here: {e}")
