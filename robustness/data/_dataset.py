"""The ``Dataset`` record and the deterministic train/validation split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from robustness._options import number_in
from robustness._transfer import to_device
from robustness.errors import UserInputError

# (x_batch, generator) -> augmented x_batch, on x_batch's device
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Dataset:
    """A whole dataset as tensors, ready for a training loop without a DataLoader.

    Attributes:
        name: the registry name, e.g. ``"digits"``.
        task: ``"classification"`` (``y`` int64 class indices, shape (N,), or one
            class per position, shape (N, T), for a language model whose outputs
            are (N, T, num_outputs)) or ``"regression"`` (``y`` float32, shape
            (N, num_outputs)).
        x_train, y_train, x_val, y_val: inputs of shape (N, *input_shape) (float32,
            or int64 token ids for the language datasets) and targets, all on the
            same device.
        input_shape: the per-sample input shape, e.g. (40,) or (3, 32, 32).
        num_outputs: the number of classes, or of regression targets.
        metadata: JSON-serializable facts about the data (sizes, normalization,
            for ``linreg`` the Hessian's largest eigenvalue).
        augment: None, or a function applied to training batches on the device.
    """

    name: str
    task: Literal["classification", "regression"]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    input_shape: tuple[int, ...]
    num_outputs: int
    metadata: dict[str, Any] = field(default_factory=dict)
    augment: Augment | None = None

    def to(self, device: str | torch.device) -> Dataset:
        """This dataset with its four tensors on ``device`` (to CUDA: from pinned
        memory, without blocking the host; see ``robustness._transfer``)."""
        return replace(
            self,
            x_train=to_device(self.x_train, device),
            y_train=to_device(self.y_train, device),
            x_val=to_device(self.x_val, device),
            y_val=to_device(self.y_val, device),
        )


_TASK_KINDS = ("classification", "regression")


def check_dataset(name: str, data: object) -> Dataset:
    """``data`` if it keeps the ``Dataset`` contract (a user's loader returned it),
    else a ``UserInputError`` naming the first broken rule.

    Checked: the type, ``task``, ``num_outputs`` >= 1, four tensors, non-empty
    splits with as many targets as inputs, and inputs shaped ``(N, *input_shape)``.
    """
    owner = f"dataset loader {name!r}"
    if not isinstance(data, Dataset):
        raise UserInputError(
            f"{owner} returned a {type(data).__name__}, not a robustness.data.Dataset"
        )
    if data.task not in _TASK_KINDS:
        raise UserInputError(
            f"{owner}: task must be one of {', '.join(_TASK_KINDS)}, got {data.task!r}"
        )
    if isinstance(data.num_outputs, bool) or not isinstance(data.num_outputs, int):
        raise UserInputError(f"{owner}: num_outputs must be an int, got {data.num_outputs!r}")
    if data.num_outputs < 1:
        raise UserInputError(f"{owner}: num_outputs must be >= 1, got {data.num_outputs}")
    shape = tuple(data.input_shape)
    for split in ("train", "val"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            raise UserInputError(f"{owner}: x_{split} and y_{split} must be torch tensors")
        if len(x) == 0 or len(x) != len(y):
            raise UserInputError(
                f"{owner}: the {split} split needs as many targets as inputs, at least one; "
                f"got {len(x)} inputs and {len(y)} targets"
            )
        if tuple(x.shape[1:]) != shape:
            raise UserInputError(
                f"{owner}: x_{split} has shape {tuple(x.shape)}, not (N, *input_shape) with "
                f"input_shape {shape}"
            )
    return data


def split_indices(
    owner: str, n: int, val_fraction: float, split_seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random train/validation split of ``range(n)`` fixed by ``split_seed`` alone.

    The validation part has ``round(val_fraction * n)`` samples. Both index
    tensors are sorted, so the data keep their original order within each part.
    """
    val_fraction = number_in(owner, "val_fraction", val_fraction, 0.0, 1.0)
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise UserInputError(f"{owner}: split_seed must be an integer, got {split_seed!r}")
    n_val = round(val_fraction * n)
    if not 0 < n_val < n:
        raise UserInputError(
            f"{owner}: val_fraction={val_fraction} of {n} samples leaves an empty "
            "train or validation split; use more samples or another fraction"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return order[n_val:].sort().values, order[:n_val].sort().values


def split_dataset(
    name: str,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    task: Literal["classification", "regression"],
    num_outputs: int,
    val_fraction: float,
    split_seed: int,
    metadata: dict[str, Any],
) -> Dataset:
    """A CPU ``Dataset`` from one pool of samples, split by ``split_indices``."""
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.int64 if task == "classification" else torch.float32)
    train, val = split_indices(f"dataset {name!r}", len(x), val_fraction, split_seed)
    meta = {"n_train": len(train), "n_val": len(val), "split_seed": split_seed, **metadata}
    return Dataset(
        name=name,
        task=task,
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        input_shape=tuple(x.shape[1:]),
        num_outputs=num_outputs,
        metadata=meta,
    )
