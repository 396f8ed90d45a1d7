"""Datasets that ship with installed packages: ``digits`` and ``mnist1d``.

Nothing is downloaded: ``digits`` is scikit-learn's bundled copy of the UCI
8x8 digits, and ``mnist1d`` is generated locally by the ``mnist1d`` package's
own generator (its download path is never called).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import random
from pathlib import Path

import numpy as np

from robustness._options import boolean, positive_int
from robustness.data._dataset import Dataset, split_dataset


def digits(*, flat: bool = False, val_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 8x8 handwritten digits, 10 classes, pixels scaled to [0, 1].

    Inputs have shape (1, 8, 8), so both flat models and conv nets take them;
    ``flat=True`` gives (64,) vectors instead.
    """
    x, target = _digits_pool()
    if not boolean("dataset 'digits'", "flat", flat):
        x = x.reshape(-1, 1, 8, 8)
    return split_dataset(
        "digits",
        x,
        target,
        task="classification",
        num_outputs=10,
        val_fraction=val_fraction,
        split_seed=split_seed,
        metadata={"scaling": "pixel / 16"},
    )


@functools.lru_cache(maxsize=1)
def _digits_pool() -> tuple[np.ndarray, np.ndarray]:
    """The digits pool, read once per process: parsing the CSV takes about 25 ms, as
    long as a short run of the engine's pack (``split_dataset`` copies).

    It is scikit-learn's bundled file, parsed as ``load_digits`` parses it, but found
    without importing scikit-learn: that import costs about 0.9 s of every Ray
    worker's start-up. ``load_digits`` itself is the fallback should the file move.
    """
    path = _sklearn_data_file("digits.csv.gz")
    if path is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, target = bunch.data, bunch.target
    else:
        with gzip.open(path, mode="rt", encoding="utf-8") as lines:
            table = np.loadtxt(lines, delimiter=",")
        pixels, target = table[:, :-1], table[:, -1].astype(int)
    return pixels.astype(np.float32) / 16.0, target


def _sklearn_data_file(name: str) -> Path | None:
    """``sklearn/datasets/data/<name>`` of the installed scikit-learn, or None."""
    spec = importlib.util.find_spec("sklearn")  # locates the package, runs none of it
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


def mnist1d(
    *, num_samples: int = 5000, data_seed: int = 42, val_fraction: float = 0.2, split_seed: int = 0
) -> Dataset:
    """MNIST-1D (Greydanus 2020): 1-D signals of length 40, 10 classes.

    Generated with ``mnist1d.data.make_dataset`` and the package's default
    arguments except ``num_samples`` (rounded down to a multiple of 10) and its
    ``seed`` (``data_seed``; 42 is the package's default, the published data).
    The generator standardizes the signals. Its own 80/20 split is pooled and the
    pool split again by ``split_seed``, like every generated dataset here. A
    generated pool is cached per process, since generation takes seconds.
    """
    owner = "dataset 'mnist1d'"
    num_samples = positive_int(owner, "num_samples", num_samples, minimum=10)
    data_seed = positive_int(owner, "data_seed", data_seed, minimum=0)
    x, y = _generate_mnist1d(num_samples, data_seed)
    return split_dataset(
        "mnist1d",
        x,
        y,
        task="classification",
        num_outputs=10,
        val_fraction=val_fraction,
        split_seed=split_seed,
        metadata={"num_samples": len(y), "data_seed": data_seed},
    )


@functools.lru_cache(maxsize=4)
def _generate_mnist1d(num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    # make_dataset seeds the global `random` and NumPy RNGs; leave them as they were.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y
