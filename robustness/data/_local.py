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
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
    parts = {}
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], ndim=3)
        labels = read_idx(paths[f"{split}_labels"], ndim=1)
        if len(images) != len(labels):
            raise UserInputError(
                f"dataset {name!r}: {paths[f'{split}_images']} has {len(images)} images but "
                f"{paths[f'{split}_labels']} has {len(labels)} labels"
            )
        parts[split] = (images[:, None], labels.astype(np.int64), paths[f"{split}_labels"])
    return _standardized(name, parts, num_classes=10, augment=None, source="idx")


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
    read: dict[str, Callable[[Path], tuple[np.ndarray, np.ndarray]]],
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
    parts = {}
    for split, files in (("train", train_files), ("test", test_files)):
        batches = [read[kind](base / folder / f) for f in files]
        images = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        parts[split] = (images, labels, base / folder / files[0])
    return _standardized(
        name,
        parts,
        num_classes=num_classes,
        augment=random_crop_flip if boolean(f"dataset {name!r}", "augment", augment) else None,
        source=f"cifar-{kind}",
    )


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
        {
            "python": lambda p: read_python_batch(p, "labels"),
            "binary": lambda p: read_binary_batch(p, label_bytes=1, label_index=0),
        },
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
            "python": lambda p: read_python_batch(p, f"{label_mode}_labels"),
            "binary": lambda p: read_binary_batch(
                p, label_bytes=2, label_index=0 if label_mode == "coarse" else 1
            ),
        },
        num_classes=_CIFAR100_LABELS[label_mode],
        augment=augment,
    )


def _standardized(
    name: str,
    parts: dict[str, tuple[np.ndarray, np.ndarray, Path]],
    *,
    num_classes: int,
    augment: Any,
    source: str,
) -> Dataset:
    """A Dataset from uint8 (N, C, H, W) train/test images, standardized per channel."""
    for _, labels, path in parts.values():
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise UserInputError(
                f"dataset {name!r}: label {int(bad[0])} in {path} is outside 0..{num_classes - 1}"
            )
    train_images = parts["train"][0]
    channels = range(train_images.shape[1])
    mean = [float(train_images[:, c].mean(dtype=np.float64)) / 255 for c in channels]
    std = [max(float(train_images[:, c].std(dtype=np.float64)) / 255, 1 / 255) for c in channels]
    shift = torch.tensor(mean).view(1, -1, 1, 1)
    scale = torch.tensor(std).view(1, -1, 1, 1)

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, _ = parts[split]
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
            "format": source,
            "channel_mean": mean,
            "channel_std": std,
            "augment": "random_crop_flip(padding=4)" if augment else None,
        },
        augment=augment,
    )
