"""Tests for nnbasics.train.data.idx: reading and writing IDX files, corrupt and truncated ones, atomic writes."""

import gzip

import pytest
import torch
from idxfiles import idx_bytes

from nnbasics.train import data, files


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
    with pytest.raises(RuntimeError), files.atomic_open(target) as f:
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


