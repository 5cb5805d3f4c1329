"""Reading IDX files, the binary format of MNIST and Fashion-MNIST, plain or gzip-compressed."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from transferkit.data.errors import DataError

IDX_UBYTE_IMAGES = 0x00000803
"""Magic number of a uint8 IDX file with three dimensions (count, height, width)."""
IDX_UBYTE_LABELS = 0x00000801
"""Magic number of a uint8 IDX file with one dimension (count)."""

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Reads a uint8 IDX file after checking its magic number and size.

    Args:
        path: The file, gzip-compressed or not (detected from its content, not its name).
        magic: The expected magic number, ``IDX_UBYTE_IMAGES`` or ``IDX_UBYTE_LABELS``.

    Returns:
        A uint8 array with the dimensions given in the header.

    Raises:
        DataError: The file is missing, unreadable, of another IDX type, or truncated.
    """
    try:
        raw = path.read_bytes()
        if raw.startswith(_GZIP_MAGIC):
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read IDX file: {exc}") from None

    if len(raw) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    (found,) = struct.unpack_from(">I", raw)
    if found != magic:
        raise DataError(f"{path}: not the expected IDX file (magic number 0x{found:08x}, expected 0x{magic:08x})")

    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path}: IDX header truncated")
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    expected = int(np.prod(shape, dtype=np.int64))
    found_size = len(raw) - header_size
    if found_size != expected:
        raise DataError(f"{path}: header declares shape {shape} ({expected} bytes) but the file holds {found_size}")
    # A bytearray keeps the array writable, so torch.from_numpy takes it without a warning.
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header_size).reshape(shape)
