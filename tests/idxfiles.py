"""IDX bytes made by hand for the data tests, independent of the code under test."""
import struct


def idx_bytes(shape, values=None, code=0x08, magic=b"\x00\x00"):
    """Hand-made IDX bytes (independent of the code under test)."""
    n = 1
    for s in shape:
        n *= s
    payload = bytes(values) if values is not None else bytes(i % 256 for i in range(n))
    return magic + bytes([code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload
