"""Local-file datasets: official MNIST IDX and CIFAR formats, missing and bad files."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from robustness.data import ENV_VAR, load_dataset
from robustness.errors import UserInputError

RNG = np.random.default_rng(0)


def _images(n: int, c: int, h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def _raw_pixels(data, split: str) -> np.ndarray:
    """Undo the standardization: the uint8 pixels the loader read."""
    x = getattr(data, f"x_{split}")
    mean = torch.tensor(data.metadata["channel_mean"]).view(1, -1, 1, 1)
    std = torch.tensor(data.metadata["channel_std"]).view(1, -1, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8).numpy()


# ---- MNIST / Fashion-MNIST IDX -------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, *, magic: int | None = None) -> None:
    magic = (0x08 << 8) | array.ndim if magic is None else magic
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def write_mnist(root: Path, folder: str = "mnist", *, gz: bool = False) -> dict[str, np.ndarray]:
    arrays = {
        "train-images-idx3-ubyte": _images(6, 1, 28, 28)[:, 0],
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 9, 4, 5], dtype=np.uint8),
        "t10k-images-idx3-ubyte": _images(3, 1, 28, 28)[:, 0],
        "t10k-labels-idx1-ubyte": np.array([7, 8, 3], dtype=np.uint8),
    }
    (root / folder).mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(root / folder / (name + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_files_are_read_back_exactly(tmp_path, name, gz):
    arrays = write_mnist(tmp_path, name, gz=gz)
    data = load_dataset(name, root=str(tmp_path))
    assert data.input_shape == (1, 28, 28) and data.num_outputs == 10
    assert np.array_equal(_raw_pixels(data, "train")[:, 0], arrays["train-images-idx3-ubyte"])
    assert np.array_equal(_raw_pixels(data, "val")[:, 0], arrays["t10k-images-idx3-ubyte"])
    assert data.y_train.tolist() == [0, 1, 2, 9, 4, 5]
    assert data.y_val.tolist() == [7, 8, 3]
    train = arrays["train-images-idx3-ubyte"]
    assert data.metadata["channel_mean"] == pytest.approx([train.mean() / 255])
    assert data.metadata["channel_std"] == pytest.approx([train.std() / 255])
    assert data.metadata["validation"] == "official test set"
    assert data.x_train.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert data.augment is None


def test_rewritten_files_are_read_again_not_served_from_the_cache(tmp_path):
    write_mnist(tmp_path)
    assert load_dataset("mnist", root=str(tmp_path)).y_train.tolist() == [0, 1, 2, 9, 4, 5]
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    before = labels.stat().st_mtime_ns
    write_idx(labels, np.array([5, 4, 3, 2, 1, 0], dtype=np.uint8))  # same size
    os.utime(labels, ns=(before + 10**9, before + 10**9))  # a later modification time
    assert load_dataset("mnist", root=str(tmp_path)).y_train.tolist() == [5, 4, 3, 2, 1, 0]


def test_data_root_comes_from_the_environment_variable(tmp_path, monkeypatch):
    write_mnist(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert load_dataset("mnist").y_val.tolist() == [7, 8, 3]


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_no_data_root_is_refused_naming_the_argument_and_the_variable(name, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(UserInputError) as err:
        load_dataset(name)
    message = str(err.value)
    assert ENV_VAR in message and "root" in message and "nothing is downloaded" in message


def test_missing_idx_file_is_named_with_its_folder(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserInputError) as err:
        load_dataset("mnist", root=str(tmp_path))
    message = str(err.value)
    assert "missing t10k-labels-idx1-ubyte" in message and str(tmp_path / "mnist") in message
    assert "train-images-idx3-ubyte" in message  # the full expected layout


def test_idx_with_bad_magic_number_is_refused_naming_the_file(tmp_path):
    write_mnist(tmp_path)
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte"
    write_idx(bad, _images(6, 1, 28, 28)[:, 0], magic=0x00000801)
    with pytest.raises(UserInputError, match="bad magic number 0x00000801") as err:
        load_dataset("mnist", root=str(tmp_path))
    assert str(bad) in str(err.value)


def test_truncated_idx_file_is_refused_with_its_size(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserInputError, match=r"2358 bytes, but its header \(3, 28, 28\)"):
        load_dataset("mnist", root=str(tmp_path))


def test_broken_gzip_is_refused_naming_the_file(tmp_path):
    write_mnist(tmp_path, gz=True)
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(UserInputError, match="cannot read IDX file") as err:
        load_dataset("mnist", root=str(tmp_path))
    assert str(path) in str(err.value)


def test_idx_labels_must_match_images_and_be_in_range(tmp_path):
    write_mnist(tmp_path)
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    write_idx(labels, np.array([0, 1, 2], dtype=np.uint8))
    with pytest.raises(UserInputError, match=r"has 6 images but .* has 3 labels"):
        load_dataset("mnist", root=str(tmp_path))
    write_idx(labels, np.array([0, 1, 2, 3, 12, 5], dtype=np.uint8))
    with pytest.raises(UserInputError, match=r"label 12 .* outside 0..9"):
        load_dataset("mnist", root=str(tmp_path))


# ---- CIFAR ---------------------------------------------------------------------------

CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def cifar_pickle(batch: dict, *, python2_numpy: bool = False) -> bytes:
    """A protocol-2 pickle like the official files (bytes keys, NumPy data)."""
    raw = pickle.dumps(batch, protocol=2)
    if python2_numpy:  # the official files name the NumPy 1 module
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return raw


def write_cifar10_python(root: Path, *, python2_numpy: bool = False) -> dict[str, tuple]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate([*CIFAR10_TRAIN, "test_batch"]):
        images, labels = _images(2, 3, 32, 32), [i % 10, (i + 3) % 10]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": images.reshape(2, -1),
            b"filenames": [b"a.png", b"b.png"],
        }
        (folder / name).write_bytes(cifar_pickle(batch, python2_numpy=python2_numpy))
        written[name] = (images, labels)
    return written


def _concat(written: dict[str, tuple], names: list[str]) -> tuple[np.ndarray, list[int]]:
    return (
        np.concatenate([written[n][0] for n in names]),
        [label for n in names for label in written[n][1]],
    )


@pytest.mark.parametrize("python2_numpy", [False, True])
def test_cifar10_python_version_is_read_back_exactly(tmp_path, python2_numpy):
    written = write_cifar10_python(tmp_path, python2_numpy=python2_numpy)
    data = load_dataset("cifar10", root=str(tmp_path))
    train_x, train_y = _concat(written, CIFAR10_TRAIN)
    assert data.input_shape == (3, 32, 32) and data.num_outputs == 10
    assert np.array_equal(_raw_pixels(data, "train"), train_x)
    assert data.y_train.tolist() == train_y
    assert np.array_equal(_raw_pixels(data, "val"), written["test_batch"][0])
    assert data.y_val.tolist() == written["test_batch"][1]
    assert data.metadata["channel_mean"] == pytest.approx(
        [train_x[:, c].mean() / 255 for c in range(3)]
    )
    assert data.metadata["format"] == "cifar-python"
    assert data.augment is not None
    assert load_dataset("cifar10", root=str(tmp_path), augment=False).augment is None


def test_cifar10_binary_version_is_read_back_exactly(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    written = {}
    for i, name in enumerate([*CIFAR10_TRAIN, "test_batch"]):
        images, labels = _images(3, 3, 32, 32), [i, 9 - i, 5]
        records = np.concatenate(
            [np.array(labels, dtype=np.uint8)[:, None], images.reshape(3, -1)], axis=1
        )
        (folder / f"{name}.bin").write_bytes(records.tobytes())
        written[name] = (images, labels)
    data = load_dataset("cifar10", root=str(tmp_path))
    train_x, train_y = _concat(written, CIFAR10_TRAIN)
    assert np.array_equal(_raw_pixels(data, "train"), train_x)
    assert data.y_train.tolist() == train_y
    assert data.y_val.tolist() == [5, 4, 5]
    assert data.metadata["format"] == "cifar-binary"


@pytest.mark.parametrize(("label_mode", "classes"), [("fine", 100), ("coarse", 20)])
def test_cifar100_python_version_reads_fine_or_coarse_labels(tmp_path, label_mode, classes):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    written = {}
    for name in ("train", "test"):
        images = _images(4, 3, 32, 32)
        fine, coarse = [99, 0, 42, 7], [19, 0, 3, 1]
        batch = {b"data": images.reshape(4, -1), b"fine_labels": fine, b"coarse_labels": coarse}
        (folder / name).write_bytes(cifar_pickle(batch))
        written[name] = images
    data = load_dataset("cifar100", root=str(tmp_path), label_mode=label_mode)
    assert data.num_outputs == classes
    assert data.y_train.tolist() == (fine if label_mode == "fine" else coarse)
    assert np.array_equal(_raw_pixels(data, "train"), written["train"])
    assert np.array_equal(_raw_pixels(data, "val"), written["test"])


def test_cifar100_binary_version_reads_the_fine_label_byte(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    images = _images(2, 3, 32, 32)
    labels = np.array([[3, 77], [19, 5]], dtype=np.uint8)  # (coarse, fine)
    records = np.concatenate([labels, images.reshape(2, -1)], axis=1).tobytes()
    for name in ("train.bin", "test.bin"):
        (folder / name).write_bytes(records)
    assert load_dataset("cifar100", root=str(tmp_path)).y_train.tolist() == [77, 5]
    coarse = load_dataset("cifar100", root=str(tmp_path), label_mode="coarse")
    assert coarse.y_val.tolist() == [3, 19]


def test_missing_cifar_batches_are_listed_with_their_folder(tmp_path):
    write_cifar10_python(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(UserInputError) as err:
        load_dataset("cifar10", root=str(tmp_path))
    message = str(err.value)
    assert "missing data_batch_4, test_batch" in message
    assert str(tmp_path / "cifar-10-batches-py") in message and ENV_VAR in message


def test_absent_cifar_folder_names_both_official_layouts(tmp_path):
    with pytest.raises(UserInputError) as err:
        load_dataset("cifar100", root=str(tmp_path))
    message = str(err.value)
    assert "cifar-100-python" in message and "cifar-100-binary" in message


def test_malicious_pickle_is_refused_without_running(tmp_path):
    write_cifar10_python(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}, protocol=2))
    with pytest.raises(UserInputError, match="refused to load global") as err:
        load_dataset("cifar10", root=str(tmp_path))
    assert str(path) in str(err.value) and "system" in str(err.value)
    assert not marker.exists()


def test_object_arrays_in_a_pickle_are_refused(tmp_path):
    write_cifar10_python(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(cifar_pickle({b"data": np.array([1, "x"], dtype=object), b"labels": [0]}))
    with pytest.raises(UserInputError, match="object arrays are not allowed"):
        load_dataset("cifar10", root=str(tmp_path))


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda raw: raw[: len(raw) // 2], "corrupted CIFAR file"),
        (lambda raw: b"garbage", "corrupted CIFAR file"),
        (lambda raw: cifar_pickle([1, 2, 3]), "expected a dict"),
        (
            lambda raw: cifar_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
            "rows of 100 bytes, expected 3072",
        ),
        (
            lambda raw: cifar_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
            "2 images but 'labels' has shape",
        ),
        (
            lambda raw: cifar_pickle({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}),
            "label 10",
        ),
    ],
)
def test_corrupted_cifar_pickles_are_refused_naming_the_file(tmp_path, corrupt, expected):
    write_cifar10_python(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(UserInputError, match=expected) as err:
        load_dataset("cifar10", root=str(tmp_path))
    assert "data_batch" in str(err.value)


def test_cifar_binary_file_with_partial_record_is_refused(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(bytes(2 * 3074 - 1))
    (folder / "test.bin").write_bytes(bytes(3074))
    with pytest.raises(UserInputError, match="not a whole number of 3074-byte records"):
        load_dataset("cifar100", root=str(tmp_path))
