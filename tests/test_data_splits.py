"""Tests for nnbasics.train.data.splits: the train / validation / test split, batches, random shifts."""

import pytest
import torch

from nnbasics.train import data
from nnbasics.train.data import sources


def image_ids(images):
    """Recover the indices stored by the `synthetic` fixture."""
    return images[:, 0, 0].long() * 256 + images[:, 0, 1].long()


# ----------------------------------------------------------------------------
# load_splits
# ----------------------------------------------------------------------------


@pytest.fixture
def fake_load(monkeypatch, synthetic):
    def load(dataset="mnist", data_dir=None, quiet=False):
        return sources.as_result(synthetic)

    monkeypatch.setattr(sources, "load", load)


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
# random_shift
# ----------------------------------------------------------------------------


def shifted(image, dy, dx, background):
    """One 28x28 image moved by (dy, dx), written pixel by pixel (independent of the code under test):
    out[r, c] = image[r - dy, c - dx] where that pixel exists, else background."""
    out = torch.full_like(image, background)
    for r in range(28):
        for c in range(28):
            if 0 <= r - dy < 28 and 0 <= c - dx < 28:
                out[r, c] = image[r - dy, c - dx]
    return out


def test_random_shift_zero_is_the_identity():
    x = torch.randn(5, 784)
    assert data.random_shift(x, 0, -1.0) is x


@pytest.mark.parametrize("max_shift", [1, 2])
def test_random_shift_moves_each_image_by_its_own_shift(max_shift):
    batch, background = 60, -0.5
    x = torch.randn(batch, 784)  # distinct pixels: each shift gives a different image
    before = x.clone()
    out = data.random_shift(x, max_shift, background, torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before)  # the input is untouched
    span = range(-max_shift, max_shift + 1)
    used = set()
    for image, moved in zip(x.view(batch, 28, 28), out.view(batch, 28, 28)):
        matches = [(dy, dx) for dy in span for dx in span if torch.equal(moved, shifted(image, dy, dx, background))]
        assert len(matches) == 1, "each output image is its input moved by one shift in range"
        used.update(matches)
    assert len(used) > len(span)  # the shifts differ between images (not one shift for the whole batch)


def test_random_shift_draws_from_the_generator(device):
    x = torch.randn(32, 784, device=device)

    def shift(seed):
        return data.random_shift(x, 2, 0.0, torch.Generator(device=device).manual_seed(seed))

    a = shift(0)
    assert a.device == x.device and torch.equal(a, shift(0))
    assert not torch.equal(a, shift(1))
