"""The IDX file format that MNIST and Fashion-MNIST are published in.

An IDX file is: 2 zero bytes, a dtype code (0x08 = uint8), the number of
dimensions, then one big-endian uint32 size per dimension, then the values in
row-major order. Only uint8 is read and written: it is all these datasets use.

``DataError`` lives here, in the lowest module of the package, because every
other module raises it too.
"""

from __future__ import annotations

import gzip
import pathlib
import struct

import torch

from ..files import atomic_open

_IDX_UINT8 = 0x08


class DataError(Exception):
    """A data problem the user can fix (missing/corrupt file, no source reachable)."""


def read_bytes(path: pathlib.Path) -> bytes:
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


def parse_idx(data: bytes, path) -> torch.Tensor:
    """Decode IDX bytes into a uint8 tensor of the shape in the header (``path`` names them in errors)."""
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
    return parse_idx(read_bytes(path), path)


def idx_bytes(array: torch.Tensor) -> bytearray:
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
    data = idx_bytes(array)
    with atomic_open(path) as f:
        f.write(gzip.compress(data) if path.suffix == ".gz" else data)
