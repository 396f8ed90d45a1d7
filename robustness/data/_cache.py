"""A worker's datasets, kept on their device across the configurations it runs.

A Ray worker runs many configurations of one study (packs, reused actors,
populations), all on the same data. Without a cache each one would rebuild the
tensors and copy them to the device again (CIFAR: 0.74 GB of float32 per
configuration). ``cached`` keeps the last ``MAX_ENTRIES`` datasets of this process,
keyed by everything that decides their contents and place: name, options, data
root and device.

The tensors are shared between the configurations, so they must never be
modified: the training loop only reads them (batches are gathered copies). As a
guard, each entry remembers its tensors' version counters (bumped by every
in-place torch op); an entry whose tensors were changed in place is dropped and
loaded again, so one configuration's mistake cannot leak into the next. Each
caller gets its own copy of the (small) metadata dict.

Memory: at most ``MAX_ENTRIES`` datasets stay referenced between configurations,
on their device (per worker process; with fractional GPUs each worker on a GPU
holds its own copy). ``clear()`` drops them all.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Hashable

from robustness.data._dataset import Dataset

MAX_ENTRIES = 2
_TENSORS = ("x_train", "y_train", "x_val", "y_val")
_entries: OrderedDict[Hashable, tuple[Dataset, tuple[int, ...]]] = OrderedDict()


def cached(key: Hashable, load: Callable[[], Dataset]) -> Dataset:
    """The dataset stored under ``key``, or ``load()``'s, stored for next time."""
    entry = _entries.get(key)
    if entry is not None and _versions(entry[0]) == entry[1]:
        _entries.move_to_end(key)
        data = entry[0]
    else:
        _entries.pop(key, None)  # a changed entry is released before its reload
        data = load()
        _entries[key] = (data, _versions(data))
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return dataclasses.replace(data, metadata=copy.deepcopy(data.metadata))


def clear() -> None:
    """Forget every cached dataset (their memory is freed once nothing else holds it)."""
    _entries.clear()


def _versions(data: Dataset) -> tuple[int, ...]:
    return tuple(getattr(data, name)._version for name in _TENSORS)
