"""The one on-disk format of the project: QuickDraw `numpy_bitmap` files.

A file is a `.npy` header followed by uint8 rows of 784 pixels (28x28, row-major, light on black).
Because rows are contiguous, the first N drawings are the first `header_len + N*784` bytes; the
downloader relies on that, and every reader validates the header before trusting a file.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np

ROW_BYTES = 784
IMAGE_SIDE = 28
MAGIC = b"\x93NUMPY"


class NpyFormatError(ValueError):
    """A file or byte string is not a valid uint8 (N, 784) C-order .npy."""


def header_bytes(rows: int) -> bytes:
    """The exact v1.0 header numpy writes for a uint8 (rows, 784) C-order array."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (rows, ROW_BYTES)}
    body = repr(header).encode("latin1")
    total = len(MAGIC) + 2 + 2 + len(body) + 1
    padding = (-total) % 64
    body += b" " * padding + b"\n"
    return MAGIC + b"\x01\x00" + len(body).to_bytes(2, "little") + body


def parse_header(data: bytes) -> tuple[int, int]:
    """Return (rows, header_len) from the first bytes of a file; raise NpyFormatError if wrong.

    Needs only the header itself (at most a few hundred bytes), so a partial download can be checked.
    """
    if len(data) < 10 or not data.startswith(MAGIC):
        raise NpyFormatError("not a .npy file (missing \\x93NUMPY magic)")
    major = data[6]
    if major == 1:
        size, start = int.from_bytes(data[8:10], "little"), 10
    elif major in (2, 3):
        if len(data) < 12:
            raise NpyFormatError("truncated .npy header")
        size, start = int.from_bytes(data[8:12], "little"), 12
    else:
        raise NpyFormatError(f"unsupported .npy version {major}")
    if len(data) < start + size:
        raise NpyFormatError("truncated .npy header")
    try:
        header = ast.literal_eval(data[start : start + size].decode("latin1"))
    except (ValueError, SyntaxError) as exc:
        raise NpyFormatError("corrupt .npy header") from exc
    if not isinstance(header, dict) or {"descr", "fortran_order", "shape"} - header.keys():
        raise NpyFormatError("corrupt .npy header")
    try:
        dtype = np.dtype(header["descr"])
    except (TypeError, ValueError):
        raise NpyFormatError(f"unknown dtype {header['descr']!r}, expected uint8") from None
    if dtype != np.uint8:
        raise NpyFormatError(f"dtype is {header['descr']}, expected uint8")
    if header["fortran_order"]:
        raise NpyFormatError("Fortran order, expected C order")
    shape = header["shape"]
    rows_ok = isinstance(shape, tuple) and len(shape) == 2 and type(shape[0]) is int and shape[0] >= 0
    if not (rows_ok and shape[1] == ROW_BYTES):
        raise NpyFormatError(f"shape is {shape}, expected (N, {ROW_BYTES})")
    return int(shape[0]), start + size


def read_header(path: str | os.PathLike) -> tuple[int, int]:
    """(rows, header_len) of a file on disk, checking its size matches the header."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4096)
    try:
        rows, header_len = parse_header(head)
    except NpyFormatError as exc:
        raise NpyFormatError(f"{path}: {exc}") from None
    expected = header_len + rows * ROW_BYTES
    actual = path.stat().st_size
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise NpyFormatError(f"{path}: {what} ({actual} bytes, header says {rows} rows = {expected} bytes)")
    return rows, header_len


def open_bitmaps(path: str | os.PathLike) -> np.memmap:
    """Memory-map a validated bitmap file as uint8 (N, 784), read-only: nothing is loaded."""
    rows, header_len = read_header(path)
    if rows == 0:
        return np.zeros((0, ROW_BYTES), dtype=np.uint8)  # np.memmap refuses empty files
    return np.memmap(path, dtype=np.uint8, mode="r", offset=header_len, shape=(rows, ROW_BYTES))


def write_bitmaps(path: str | os.PathLike, rows: np.ndarray) -> None:
    """Write uint8 (N, 784) rows atomically: a temporary file renamed into place when complete."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1, ROW_BYTES)
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as f:
            f.write(header_bytes(len(rows)))
            f.write(rows.tobytes())
            f.flush()
            os.fsync(f.fileno())  # on the disk before its final name (a power cut could empty it)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or Ctrl-C leaves nothing half-written behind
        raise
