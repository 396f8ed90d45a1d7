"""Reading CIFAR-10/100 in their official distribution formats, safely.

Python version (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``, extracted):
each batch file is a pickle of a dict with ``data`` (uint8 array, N x 3072, each
row the 1024 red, then green, then blue pixels of a 32x32 image, row-major) and
``labels`` (CIFAR-10) or ``fine_labels`` and ``coarse_labels`` (CIFAR-100).
Pickles can run arbitrary code when loaded, so they are read with an unpickler
that resolves only the globals NumPy needs to rebuild a plain array (and
``_codecs.encode``, which protocol-2 pickles written by Python 3 use for bytes);
any other global, object arrays included, is refused before it runs.

Binary version (``cifar-10-binary.tar.gz`` / ``cifar-100-binary.tar.gz``): fixed
records of label byte(s) then 3072 pixel bytes in the same order, one label byte
for CIFAR-10 and two (coarse, fine) for CIFAR-100.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from robustness.errors import UserInputError

PIXELS = 3 * 32 * 32


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("object arrays are not allowed")
    return dtype


_reconstruct = np._core.multiarray._reconstruct
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles builtins and plain NumPy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load global '{module}.{name}' (only plain data and NumPy "
                "arrays are allowed)"
            ) from None


def read_python_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one CIFAR pickle.

    Raises:
        UserInputError: naming the file, if it is not a CIFAR batch pickle, has the
            wrong layout, or tries to load anything but plain data.
    """
    try:
        batch = _PlainDataUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except Exception as exc:  # any failure here means a bad or hostile file
        raise UserInputError(f"corrupted CIFAR file {path}: {exc}") from exc
    if not isinstance(batch, dict):
        raise UserInputError(f"corrupted CIFAR file {path}: expected a dict, got {type(batch)}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise UserInputError(f"corrupted CIFAR file {path}: 'data' is not a uint8 matrix")
    if data.shape[1] != PIXELS:
        raise UserInputError(
            f"corrupted CIFAR file {path}: rows of {data.shape[1]} bytes, expected {PIXELS}"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"corrupted CIFAR file {path}: bad {label_key!r}") from exc
    if labels.shape != (len(data),):
        raise UserInputError(
            f"corrupted CIFAR file {path}: {len(data)} images but {label_key!r} has shape "
            f"{labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def read_binary_batch(
    path: Path, label_bytes: int, label_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one CIFAR ``.bin`` file.

    ``label_bytes`` is 1 for CIFAR-10 and 2 for CIFAR-100; ``label_index`` picks
    which label byte to use (CIFAR-100: 0 coarse, 1 fine).

    Raises:
        UserInputError: naming the file, if its size is not a whole number of records.
    """
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    record = label_bytes + PIXELS
    if raw.size == 0 or raw.size % record:
        raise UserInputError(
            f"corrupted CIFAR file {path}: {raw.size} bytes is not a whole number of "
            f"{record}-byte records"
        )
    records = raw.reshape(-1, record)
    images = records[:, label_bytes:].reshape(-1, 3, 32, 32)
    return images, records[:, label_index].astype(np.int64)
