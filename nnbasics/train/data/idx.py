"""The IDX file format that MNIST and Fashion-MNIST are published in.

An IDX file is: 2 zero bytes, a dtype code (0x08 = uint8), the number of
dimensions, then one big-endian uint32 size per dimension, then the values in
row-major order. Only uint8 is read and written: it is all these datasets use.

Reading is bounded by the header: it is read first, and nothing past the size it
promises is read or inflated (``read_bounded``).

``DataError`` lives here, in the lowest module of the package, because every
other module raises it too.
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import struct
import zlib

import torch

from ..files import atomic_open

_IDX_UINT8 = 0x08


class DataError(Exception):
    """A data problem the user can fix (missing/corrupt file, no source reachable)."""


class CorruptFile(DataError):
    """The bytes themselves are wrong (not IDX, truncated, a damaged or oversized gzip): a copy
    in the cache may be deleted and fetched again. A file that cannot be *read* is not this."""


# The most a gzip of an IDX file may exceed the uncompressed size by (deflate adds 5 bytes per
# stored 64 KiB block, gzip a short header): more is refused before a byte is inflated.
_GZ_SLACK = 1 << 16
_MAX_HEADER = 4 + 4 * 255
_CHUNK = 1 << 20  # read in pieces, so no second copy of the body is ever held


def gzip_limit(size: int) -> int:
    """The largest a gzip holding ``size`` bytes may be (see ``_GZ_SLACK``)."""
    return size + size // 64 + _GZ_SLACK


def header_size(data, path):
    """(header length, shape) of the IDX bytes ``data`` (at least the whole header), checked."""
    if len(data) < 4:
        raise CorruptFile(f"{path} is not an IDX file: only {len(data)} bytes")
    zero, code, ndim = bytes(data[:2]), data[2], data[3]
    if zero != b"\x00\x00":
        raise CorruptFile(f"{path} is not an IDX file: bad magic number {bytes(data[:4]).hex()}")
    if code != _IDX_UINT8:
        raise CorruptFile(f"{path}: IDX dtype code 0x{code:02x} is not supported (expected 0x08, uint8)")
    if ndim == 0:
        raise CorruptFile(f"{path}: IDX header says 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptFile(f"{path} is truncated: the {ndim}-d IDX header needs {header} bytes, file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if math.prod(max(n, 1) for n in shape) >= 1 << 63:  # torch computes strides in int64, even for a shape with a 0 in it
        raise CorruptFile(f"{path}: IDX header says shape {tuple(shape)}, too large for any array")
    return header, tuple(shape)


def _size_error(path, shape, header, have) -> CorruptFile:
    """The error for a body of ``have`` bytes (None: more than promised) after an IDX header."""
    want = header + math.prod(shape)
    if have is None:
        return CorruptFile(f"{path} inflates to more than the {want} bytes its IDX header promises "
                           f"(shape {shape}); delete it and fetch it again")
    what = "truncated" if have < want else "has trailing bytes"
    return CorruptFile(f"{path} {what}: header says shape {shape} = {want} bytes, "
                       f"file has {have}; delete it and fetch it again")


def read_bounded(f, size: int, path, max_bytes=None) -> bytearray:
    """The IDX bytes in the binary file ``f`` of ``size`` bytes on disk, gunzipped if it is gzip.

    Nothing past what the header promises is read or inflated: the header comes first, then the
    file's size is checked against it (and against ``max_bytes``, the most the caller accepts),
    and only then is the body read, into one buffer of exactly that size. So a decompression
    bomb or a sparse file of gigabytes costs no more memory than the array it claims to hold.
    """
    try:
        gz = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f, mode="rb") if gz else f
        head = stream.read(4)
        if len(head) == 4:
            head += stream.read(min(4 * head[3], _MAX_HEADER))
        header, shape = header_size(head, path)
        total = header + math.prod(shape)
        if max_bytes is not None and total > max_bytes:
            raise CorruptFile(f"{path}: IDX header says shape {shape} = {total} bytes, more than the "
                              f"{max_bytes} this file may hold; delete it and fetch it again")
        if not gz and size != total:
            raise _size_error(path, shape, header, size)
        if gz and size > gzip_limit(total):
            raise CorruptFile(f"{path}: a gzip of {size} bytes for the {total} bytes its IDX header "
                              f"promises (shape {shape}) is not an IDX file; delete it and fetch it again")
        buf = bytearray(total)
        buf[:header] = head[:header]
        view, got = memoryview(buf), header
        while got < total and (n := stream.readinto(view[got:got + _CHUNK])):
            got += n
        if got < total:
            raise _size_error(path, shape, header, got)
        if gz and stream.read(1):
            raise _size_error(path, shape, header, None)
        return buf
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # truncated or damaged gzip
        raise CorruptFile(f"{path} is a damaged gzip file ({e}); delete it and fetch it again") from e


def read_bytes(path, max_bytes=None) -> bytearray:
    """File contents, gunzipped if the file is gzip (detected by content, not name), read within
    the size the IDX header promises (``read_bounded``). A file that cannot be opened or read is a
    DataError; one whose content is wrong is a CorruptFile."""
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as f:
            return read_bounded(f, os.fstat(f.fileno()).st_size, path, max_bytes)
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e


def parse_idx(data, path) -> torch.Tensor:
    """Decode IDX bytes into a uint8 tensor of the shape in the header (``path`` names them in errors).

    A bytearray (what ``read_bytes`` returns) is shared by the tensor, not copied.
    """
    header, shape = header_size(data, path)
    if len(data) != header + math.prod(shape):
        raise _size_error(path, shape, header, len(data))
    if math.prod(shape) == 0:
        return torch.zeros(shape, dtype=torch.uint8)
    # torch.frombuffer wants a writable buffer; the tensor shares its memory.
    buf = data if isinstance(data, bytearray) else bytearray(data)
    flat = torch.frombuffer(buf, dtype=torch.uint8, offset=header, count=math.prod(shape))
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
