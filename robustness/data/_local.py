"""Datasets read from a local data root in their official formats.

The root is the ``root`` argument of ``load_dataset`` (a spec's ``data_root``),
else the environment variable ``ROBUSTNESS_DATA``; there is no default and
nothing is downloaded. Layout under the root (archives extracted as distributed):

| dataset | files |
| --- | --- |
| ``mnist`` | ``mnist/train-images-idx3-ubyte``, ``mnist/train-labels-idx1-ubyte``, ``mnist/t10k-images-idx3-ubyte``, ``mnist/t10k-labels-idx1-ubyte`` (each may be ``.gz``) |
| ``fashion_mnist`` | the same four names under ``fashion_mnist/`` |
| ``cifar10`` | ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5``, ``test_batch`` (python version), or ``cifar-10-batches-bin/data_batch_1.bin`` … ``data_batch_5.bin``, ``test_batch.bin`` (binary version) |
| ``cifar100`` | ``cifar-100-python/train``, ``test``, or ``cifar-100-binary/train.bin``, ``test.bin`` |

The validation split is the official test set (MNIST's 10,000 t10k images,
CIFAR's 10,000 test images). Inputs are scaled to [0, 1], then standardized per
channel with the mean and standard deviation of the training images (population
std, floored at 1/255); both are in ``metadata``. CIFAR training batches get
random crop (pad 4) + horizontal flip on the device unless ``augment=False``.
Decoded files are cached per process (keyed by path, size and modification
time), so the trials of a study that share a worker decode them once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from robustness._options import boolean
from robustness.data._augment import random_crop_flip
from robustness.data._cifar import read_binary_batch, read_python_batch
from robustness.data._dataset import Dataset
from robustness.data._idx import read_idx
from robustness.errors import UserInputError, unknown_choice

ENV_VAR = "ROBUSTNESS_DATA"

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def data_root(name: str, root: str | os.PathLike[str] | None, expected: str) -> Path:
    """The data root directory for ``name``, from ``root`` or ``$ROBUSTNESS_DATA``."""
    chosen = root if root is not None else os.environ.get(ENV_VAR)
    if not chosen:
        raise UserInputError(
            f"dataset {name!r} is read from local files and nothing is downloaded: give a "
            f"data root (the `root` argument / a spec's `data_root`) or set the environment "
            f"variable {ENV_VAR}; expected under it: {expected}"
        )
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise UserInputError(
            f"data root {path} for dataset {name!r} is not a directory; expected under it: "
            f"{expected}"
        )
    return path


def _missing_error(
    name: str, folder: Path, missing: Sequence[str], expected: str
) -> UserInputError:
    return UserInputError(
        f"dataset {name!r}: missing {', '.join(missing)} in {folder}; expected: {expected} "
        f"(the data root comes from the `root` argument or ${ENV_VAR})"
    )


class _SplitReader(NamedTuple):
    """How to read one split of a dataset: the file format and which labels to take."""

    fmt: str  # "idx", "cifar-python" or "cifar-binary"
    label_key: str = "labels"  # cifar-python: the dict key holding the labels
    label_bytes: int = 1  # cifar-binary: label bytes per record
    label_index: int = 0  # cifar-binary: which of them to use

    def read(self, files: tuple[Path, ...]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (N, C, H, W) and labels (N,) from the split's files, in order."""
        if self.fmt == "idx":
            images_file, labels_file = files
            images, labels = read_idx(images_file, ndim=3)[:, None], read_idx(labels_file, ndim=1)
            if len(images) != len(labels):
                raise UserInputError(
                    f"{images_file} has {len(images)} images but {labels_file} has "
                    f"{len(labels)} labels"
                )
            return images, labels
        if self.fmt == "cifar-python":
            batches = [read_python_batch(f, self.label_key) for f in files]
        else:
            batches = [read_binary_batch(f, self.label_bytes, self.label_index) for f in files]
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


_Split = tuple[np.ndarray, np.ndarray, tuple[list[float], list[float]]]


def _read_split(reader: _SplitReader, files: Sequence[Path]) -> _Split:
    """``reader.read(files)`` and the images' channel statistics, cached per process
    while the files are unchanged.

    A study runs many trials in the same worker process; decoding CIFAR takes
    seconds, so the decoded (read-only) arrays are kept, keyed by the files' paths,
    sizes and modification times.
    """
    stamps = tuple((st.st_size, st.st_mtime_ns) for st in (f.stat() for f in files))
    return _read_split_cached(reader, tuple(files), stamps)


@functools.lru_cache(maxsize=4)
def _read_split_cached(
    reader: _SplitReader, files: tuple[Path, ...], stamps: tuple[tuple[int, int], ...]
) -> _Split:
    del stamps  # part of the cache key only
    images, labels = reader.read(files)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels, _channel_stats(images)


def _idx_dataset(name: str, root: str | None) -> Dataset:
    expected = (
        f"<root>/{name}/ with {', '.join(_IDX_FILES.values())} (each plain or .gz), "
        "the official IDX files"
    )
    folder = data_root(name, root, expected) / name
    paths: dict[str, Path] = {}
    for key, base in _IDX_FILES.items():
        found = [folder / f for f in (base, base + ".gz") if (folder / f).is_file()]
        if found:
            paths[key] = found[0]
    missing = [base for key, base in _IDX_FILES.items() if key not in paths]
    if missing:
        raise _missing_error(name, folder, missing, expected)
    parts = {
        split: (paths[f"{split}_images"], paths[f"{split}_labels"]) for split in ("train", "test")
    }
    return _standardized(name, _SplitReader("idx"), parts, num_classes=10, augment=False)


def mnist(root: str | None, /) -> Dataset:
    """MNIST (LeCun et al. 1998) from IDX files: (1, 28, 28), 10 classes."""
    return _idx_dataset("mnist", root)


def fashion_mnist(root: str | None, /) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017) from IDX files: (1, 28, 28), 10 classes."""
    return _idx_dataset("fashion_mnist", root)


def _cifar_dataset(
    name: str,
    root: str | None,
    layouts: dict[str, tuple[str, list[str], list[str]]],
    readers: dict[str, _SplitReader],
    num_classes: int,
    augment: bool,
) -> Dataset:
    """Read whichever official layout is present (python first, then binary)."""
    expected = " or ".join(
        f"<root>/{folder}/ with {', '.join(train + test)}"
        for folder, train, test in layouts.values()
    )
    base = data_root(name, root, expected)
    present = [kind for kind, (folder, _, _) in layouts.items() if (base / folder).is_dir()]
    if not present:
        folders = " or ".join(folder for folder, _, _ in layouts.values())
        raise _missing_error(name, base, [f"the folder {folders}"], expected)
    kind = present[0]
    folder, train_files, test_files = layouts[kind]
    missing = [f for f in train_files + test_files if not (base / folder / f).is_file()]
    if missing:
        raise _missing_error(name, base / folder, missing, expected)
    parts = {
        "train": tuple(base / folder / f for f in train_files),
        "test": tuple(base / folder / f for f in test_files),
    }
    augment = boolean(f"dataset {name!r}", "augment", augment)
    return _standardized(name, readers[kind], parts, num_classes=num_classes, augment=augment)


def cifar10(root: str | None, /, *, augment: bool = True) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009): (3, 32, 32), 10 classes, python or binary version."""
    return _cifar_dataset(
        "cifar10",
        root,
        {
            "python": ("cifar-10-batches-py", _CIFAR10_TRAIN, ["test_batch"]),
            "binary": (
                "cifar-10-batches-bin",
                [f + ".bin" for f in _CIFAR10_TRAIN],
                ["test_batch.bin"],
            ),
        },
        {"python": _SplitReader("cifar-python"), "binary": _SplitReader("cifar-binary")},
        num_classes=10,
        augment=augment,
    )


_CIFAR100_LABELS = {"fine": 100, "coarse": 20}


def cifar100(root: str | None, /, *, augment: bool = True, label_mode: str = "fine") -> Dataset:
    """CIFAR-100: (3, 32, 32), 100 fine or 20 coarse classes, python or binary version."""
    if label_mode not in _CIFAR100_LABELS:
        raise unknown_choice("label_mode for dataset 'cifar100'", label_mode, _CIFAR100_LABELS)
    return _cifar_dataset(
        "cifar100",
        root,
        {
            "python": ("cifar-100-python", ["train"], ["test"]),
            "binary": ("cifar-100-binary", ["train.bin"], ["test.bin"]),
        },
        {
            "python": _SplitReader("cifar-python", label_key=f"{label_mode}_labels"),
            "binary": _SplitReader(
                "cifar-binary", label_bytes=2, label_index=0 if label_mode == "coarse" else 1
            ),
        },
        num_classes=_CIFAR100_LABELS[label_mode],
        augment=augment,
    )


def _standardized(
    name: str,
    reader: _SplitReader,
    parts: dict[str, tuple[Path, ...]],
    *,
    num_classes: int,
    augment: bool,
) -> Dataset:
    """A Dataset from the train and test files, standardized per channel."""
    arrays = {split: _read_split(reader, files) for split, files in parts.items()}
    for split, (_, labels, _) in arrays.items():
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            files = ", ".join(str(f) for f in parts[split])
            raise UserInputError(
                f"dataset {name!r}: label {int(bad[0])} in {files} is outside 0..{num_classes - 1}"
            )
    mean, std = arrays["train"][2]
    shift = torch.tensor(mean).view(1, -1, 1, 1)
    scale = torch.tensor(std).view(1, -1, 1, 1)

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, _ = arrays[split]
        x = torch.from_numpy(images.astype(np.float32)).div_(255)
        return x.sub_(shift).div_(scale), torch.from_numpy(labels.astype(np.int64))

    x_train, y_train = tensors("train")
    x_val, y_val = tensors("test")
    return Dataset(
        name=name,
        task="classification",
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        input_shape=tuple(x_train.shape[1:]),
        num_outputs=num_classes,
        metadata={
            "n_train": len(x_train),
            "n_val": len(x_val),
            "validation": "official test set",
            "format": reader.fmt,
            "channel_mean": mean,
            "channel_std": std,
            "augment": "random_crop_flip(padding=4)" if augment else None,
        },
        augment=random_crop_flip if augment else None,
    )


def _channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and population std of uint8 images, in [0, 1] units.

    Exact and fast: from a 256-bin histogram per channel. The std is floored at
    1/255 so a constant channel does not divide by zero.
    """
    values = np.arange(256, dtype=np.float64) / 255
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].ravel(), minlength=256).astype(np.float64)
        mean = counts @ values / counts.sum()
        var = counts @ (values - mean) ** 2 / counts.sum()
        means.append(float(mean))
        stds.append(max(float(np.sqrt(var)), 1 / 255))
    return means, stds
