"""Reading IDX files (the MNIST / Fashion-MNIST format), plain or gzipped.

IDX layout (http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero
bytes, a type byte (0x08 = unsigned byte, the only type these datasets use), a
byte giving the number of dimensions, one big-endian uint32 size per dimension,
then the data in C order. Images files have magic 0x00000803 (3 dimensions),
label files 0x00000801 (1 dimension).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from robustness.errors import UserInputError

_UBYTE = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in IDX file ``path``, which must have ``ndim`` dimensions.

    Raises:
        UserInputError: naming the file, if it is not a well-formed unsigned-byte IDX
            file of ``ndim`` dimensions (bad magic number, truncated or extra bytes,
            broken gzip stream).
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise UserInputError(f"cannot read IDX file {path}: {exc}") from exc
    expected_magic = (_UBYTE << 8) | ndim
    header = 4 + 4 * ndim
    magic = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
    if magic != expected_magic:
        found = "none (file too short)" if magic is None else f"0x{magic:08x}"
        raise UserInputError(
            f"corrupted IDX file {path}: bad magic number {found}, expected "
            f"0x{expected_magic:08x} (unsigned bytes, {ndim} dimension(s))"
        )
    if len(raw) < header:
        raise UserInputError(f"corrupted IDX file {path}: truncated header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected_size = header + math.prod(dims)
    if len(raw) != expected_size:
        raise UserInputError(
            f"corrupted IDX file {path}: {len(raw)} bytes, but its header {dims} "
            f"means {expected_size} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
