"""Datasets by name, as tensors on a device: ``load_dataset`` and ``DATASETS``.

| name | task | input | source and options |
| --- | --- | --- | --- |
| ``digits`` | 10 classes | (1, 8, 8) | scikit-learn's bundled digits; ``flat`` |
| ``mnist1d`` | 10 classes | (40,) | generated locally; ``num_samples``, ``data_seed`` |
| ``blobs`` | classes | (n_features,) | Gaussian mixture; ``n_samples``, ``n_features``, ``n_classes``, ``spread``, ``data_seed`` |
| ``linreg`` | regression | (dim,) | linear teacher; ``n_samples``, ``dim``, ``condition_number``, ``noise``, ``data_seed`` |
| ``mnist``, ``fashion_mnist`` | 10 classes | (1, 28, 28) | local IDX files |
| ``cifar10``, ``cifar100`` | 10 / 100 (or 20) classes | (3, 32, 32) | local files; ``augment``, ``label_mode`` (cifar100) |
| ``grammar`` | next character (30) | (context,) ids | generated; ``n_sequences``, ``context``, ``relative``, ``max_depth``, ``data_seed``, ``val_fraction`` |
| ``text`` | next character (the file's) | (context,) ids | a local UTF-8 file; ``file``, ``context``, ``val_fraction`` |

Generated and bundled datasets are split into train/validation by ``split_seed``
(default 0) and ``val_fraction`` (default 0.2), never by the run seed; the same
arguments always give identical tensors. The local-file datasets use the
official test set as the validation set and need a data root (``root``, else
``$ROBUSTNESS_DATA``); ``robustness.data._local`` documents the file layout.
The language datasets (``robustness.data._language``) hold int64 token ids with
a target per position and validate on the stream's last windows.

``load_dataset(..., cache=True)`` (what the trial runner uses) keeps a process's
last datasets on their device, so a worker running many configurations copies
its data once; ``robustness.data._cache`` says how it guards against changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import torch

from robustness._import_path import is_import_path, resolve_import_path
from robustness._options import call_user_function, call_with_options, user_options
from robustness.data import _cache
from robustness.data._bundled import digits, mnist1d
from robustness.data._dataset import Dataset, check_dataset
from robustness.data._language import grammar, text
from robustness.data._local import ENV_VAR, cifar10, cifar100, fashion_mnist, mnist
from robustness.data._synthetic import blobs, linreg
from robustness.errors import unknown_choice

__all__ = ["DATASETS", "ENV_VAR", "TASKS", "Dataset", "check_dataset", "load_dataset"]

_GENERATED: dict[str, Callable[..., Dataset]] = {
    "digits": digits,
    "mnist1d": mnist1d,
    "blobs": blobs,
    "linreg": linreg,
    "grammar": grammar,
}
_LOCAL: dict[str, Callable[..., Dataset]] = {
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "text": text,
}
DATASETS: dict[str, Callable[..., Dataset]] = {**_GENERATED, **_LOCAL}
TASKS: dict[str, str] = {
    "digits": "classification",
    "mnist1d": "classification",
    "blobs": "classification",
    "linreg": "regression",
    "mnist": "classification",
    "fashion_mnist": "classification",
    "cifar10": "classification",
    "cifar100": "classification",
    "grammar": "classification",  # of the next token, at every position
    "text": "classification",
}
"""Each dataset's ``Dataset.task``, known without loading it (the spec checks its loss
and objective against it); a test loads the datasets and compares."""


def load_dataset(
    name: str,
    *,
    root: str | None = None,
    device: str | torch.device = "cpu",
    cache: bool = False,
    **dataset_args: Any,
) -> Dataset:
    """Load dataset ``name`` with its options and put its tensors on ``device``.

    Args:
        name: one of ``DATASETS``, or a loader of the user's by import path
            (``package.module:load``), called with ``dataset_args`` as keywords (and
            ``root=`` when it takes a ``root`` argument), returning a ``Dataset``.
        root: the data root for local-file datasets (else ``$ROBUSTNESS_DATA``);
            ignored by generated ones.
        device: where the tensors go (to CUDA from pinned memory, without blocking).
        cache: reuse this process's copy of the same dataset on the same device
            (``robustness.data._cache``): its tensors are shared, so the caller
            must not modify them.
        dataset_args: the dataset's options (see the table above).

    Raises:
        UserInputError: unknown dataset or option, a bad value, missing or corrupted
            data files, an import path that does not resolve, or a loader whose
            result breaks the ``Dataset`` contract (``check_dataset``).
    """
    if name not in DATASETS and not is_import_path(name):
        raise unknown_choice("dataset", name, DATASETS)

    def load() -> Dataset:
        if name in DATASETS:
            args = (root,) if name in _LOCAL else ()
            data = call_with_options(DATASETS[name], "dataset", name, dataset_args, *args)
            return data.to(device)
        loader = resolve_import_path(name, "dataset loader")
        options = dict(dataset_args)
        if "root" not in options and "root" in (user_options(loader, 0) or ()):
            options["root"] = root
        data = call_user_function(loader, "dataset loader", name, options)
        return check_dataset(name, data).to(device)

    if not cache:
        return load()
    where = None if name in _GENERATED else (root if root is not None else os.environ.get(ENV_VAR))
    key = (name, json.dumps(dataset_args, sort_keys=True, default=repr), where, str(device))
    return _cache.cached(key, load)
