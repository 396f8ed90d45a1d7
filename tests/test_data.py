"""Generated datasets: determinism, the split, linreg's curvature, augmentation."""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustness.data import DATASETS, _augment, load_dataset
from robustness.data._augment import crop_flip_draws, random_crop_flip
from robustness.data._bundled import _digits_pool, _generate_mnist1d
from robustness.errors import UserInputError
from robustness.models import build_model

SMALL = {
    "digits": {},
    "mnist1d": {"num_samples": 200},
    "blobs": {"n_samples": 300, "n_features": 4, "n_classes": 3},
    "linreg": {"n_samples": 200, "dim": 6, "condition_number": 50.0},
}
TENSORS = ("x_train", "y_train", "x_val", "y_val")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_arguments_give_identical_tensors_whatever_the_run_seed(name):
    _generate_mnist1d.cache_clear()  # regenerate, do not just reuse the cached pool
    torch.manual_seed(0)
    np.random.seed(0)
    first = load_dataset(name, **SMALL[name])
    torch.manual_seed(1)
    np.random.seed(1)
    _generate_mnist1d.cache_clear()
    again = load_dataset(name, **SMALL[name])
    for attr in TENSORS:
        assert torch.equal(getattr(first, attr), getattr(again, attr)), attr
    assert first.metadata == again.metadata


@pytest.mark.parametrize("name", sorted(SMALL))
def test_split_seed_changes_the_split_and_the_parts_partition_the_pool(name):
    base = load_dataset(name, **SMALL[name])
    other = load_dataset(name, split_seed=1, **SMALL[name])
    assert not torch.equal(base.x_val, other.x_val)
    pool = torch.cat([base.x_train, base.x_val]).flatten(1)
    pool_other = torch.cat([other.x_train, other.x_val]).flatten(1)
    assert len(base.x_val) == round(0.2 * len(pool))
    # the same samples, only assigned differently
    assert torch.equal(torch.sort(pool.sum(1)).values, torch.sort(pool_other.sum(1)).values)
    # no sample in both parts
    train_rows = {tuple(r.tolist()) for r in base.x_train.flatten(1)}
    assert not any(tuple(r.tolist()) in train_rows for r in base.x_val.flatten(1))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_dataset_contract_types_and_shapes(name):
    data = load_dataset(name, **SMALL[name])
    assert data.name == name
    assert data.x_train.dtype == torch.float32
    assert data.x_train.shape[1:] == data.input_shape == data.x_val.shape[1:]
    if data.task == "classification":
        assert data.y_train.dtype == torch.int64 and data.y_train.ndim == 1
        assert set(data.y_train.unique().tolist()) == set(range(data.num_outputs))
    else:
        assert data.y_train.dtype == torch.float32
        assert data.y_train.shape == (len(data.x_train), data.num_outputs)
    assert data.augment is None


def test_digits_are_8x8_images_in_unit_range_or_flat():
    data = load_dataset("digits")
    assert data.input_shape == (1, 8, 8) and data.num_outputs == 10
    assert len(data.x_train) + len(data.x_val) == 1797
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    flat = load_dataset("digits", flat=True)
    assert flat.input_shape == (64,)
    assert torch.equal(flat.x_train, data.x_train.flatten(1))


def test_digits_pool_read_without_scikit_learn_equals_load_digits():
    from sklearn.datasets import load_digits

    pixels, target = _digits_pool()
    bunch = load_digits()
    assert pixels.dtype == np.float32 and pixels.shape == (1797, 64)
    np.testing.assert_array_equal(pixels, bunch.data.astype(np.float32) / 16.0)
    np.testing.assert_array_equal(target, bunch.target)
    assert target.dtype == bunch.target.dtype


def test_mnist1d_is_generated_locally_without_touching_global_rngs():
    np_state, py_state = np.random.get_state(), random.getstate()
    data = load_dataset("mnist1d", num_samples=200, data_seed=3)
    assert data.input_shape == (40,) and data.num_outputs == 10
    assert len(data.x_train) + len(data.x_val) == 200
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert random.getstate() == py_state
    other = load_dataset("mnist1d", num_samples=200, data_seed=4)
    assert not torch.equal(data.x_train, other.x_train)


def test_blobs_clusters_are_tighter_with_smaller_spread():
    def within_class_std(spread: float) -> float:
        data = load_dataset("blobs", n_samples=600, n_features=5, n_classes=4, spread=spread)
        x, y = data.x_train, data.y_train
        return torch.stack([x[y == c].std(0).mean() for c in range(4)]).mean().item()

    assert within_class_std(0.1) == pytest.approx(0.1, rel=0.1)
    assert within_class_std(2.0) == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize("bias", [True, False])
def test_linreg_hessian_max_eig_matches_autograd_hessian_of_the_linear_model(bias):
    data = load_dataset("linreg", n_samples=120, dim=5, condition_number=30.0, noise=0.2)
    model = build_model("linear", data.input_shape, data.num_outputs, bias=bias).double()
    params = dict(model.named_parameters())
    x, y = data.x_train.double(), data.y_train.double()
    flat = torch.cat([p.detach().flatten() for p in params.values()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(theta, [p.numel() for p in params.values()])
        values = {k: c.view(p.shape) for (k, p), c in zip(params.items(), chunks, strict=True)}
        out = torch.func.functional_call(model, values, (x,))
        return F.mse_loss(out, y)  # the runner's regression loss

    hessian = torch.autograd.functional.hessian(loss, flat)
    max_eig = torch.linalg.eigvalsh(hessian)[-1].item()
    key = "hessian_max_eig" if bias else "hessian_max_eig_no_bias"
    assert data.metadata[key] == pytest.approx(max_eig, rel=1e-9)
    assert data.metadata["gd_stable_lr_max"] == pytest.approx(2 / data.metadata["hessian_max_eig"])


def test_linreg_condition_number_shapes_the_input_covariance():
    data = load_dataset("linreg", n_samples=20000, dim=4, condition_number=100.0)
    eigs = torch.linalg.eigvalsh(torch.cov(data.x_train.double().T))
    assert (eigs[-1] / eigs[0]).item() == pytest.approx(100.0, rel=0.1)
    assert data.metadata["condition_number"] == 100.0 and data.metadata["noise"] == 0.1


def test_load_dataset_puts_tensors_on_the_device():
    data = load_dataset("blobs", n_samples=50, device=torch.device("meta"))
    assert all(getattr(data, attr).device.type == "meta" for attr in TENSORS)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("imagenet", {}, "allowed: blobs, cifar10"),
        ("digits", {"n_samples": 10}, "allowed: flat, val_fraction, split_seed"),
        ("digits", {"val_fraction": 1.0}, "val_fraction"),
        ("blobs", {"n_samples": 3, "val_fraction": 0.1}, "empty"),
        ("blobs", {"n_classes": 1}, "n_classes"),
        ("blobs", {"split_seed": 0.5}, "split_seed"),
        ("linreg", {"condition_number": 0.5}, "condition_number"),
        ("mnist1d", {"num_samples": 5}, "num_samples"),
    ],
)
def test_bad_dataset_arguments_are_refused_naming_what_is_allowed(name, args, expected):
    with pytest.raises(UserInputError, match=expected):
        load_dataset(name, **args)


def test_registry_lists_every_dataset():
    expected = {"digits", "mnist1d", "blobs", "linreg", "mnist", "fashion_mnist", "grammar", "text"}
    assert set(DATASETS) == expected | {"cifar10", "cifar100"}


def test_random_crop_flip_returns_shifted_possibly_mirrored_crops():
    x = torch.randn(16, 3, 6, 5)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == x.shape
    padded = F.pad(x, (2, 2, 2, 2))
    flips = 0
    for i in range(len(x)):
        candidates = [
            (flip, dy, dx)
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
            if torch.equal(
                out[i],
                padded[i, :, dy : dy + 6, dx : dx + 5].flip(-1)
                if flip
                else padded[i, :, dy : dy + 6, dx : dx + 5],
            )
        ]
        assert candidates, f"image {i} is not a crop of its padded input"
        flips += candidates[0][0]
    assert 0 < flips < len(x)
    again = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(out, again)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_augmentation_draws_are_made_on_the_cpu_whatever_the_batch_device(monkeypatch, device):
    """The offsets and flips come from the CPU generator and are only then sent to
    the batch's device ("meta": a device without data, standing in for CUDA here),
    so they are the same numbers for every device."""
    sent = []
    real = _augment.to_device
    monkeypatch.setattr(_augment, "to_device", lambda t, d: sent.append((t, d)) or real(t, d))
    generator = torch.Generator().manual_seed(3)
    out = random_crop_flip(torch.zeros(6, 3, 8, 8, device=device), generator, padding=2)
    assert out.device.type == device and out.shape == (6, 3, 8, 8)
    ((draws, target),) = sent
    assert draws.device.type == "cpu" and torch.device(target).type == device
    reference = torch.Generator().manual_seed(3)
    offsets, flips = crop_flip_draws(6, reference, padding=2)
    assert torch.equal(draws, torch.cat([offsets, flips[None].long()]))
    assert torch.equal(generator.get_state(), reference.get_state())  # advanced alike
    assert offsets.min() >= 0 and offsets.max() <= 4


@pytest.mark.gpu
def test_augmentation_refuses_a_cuda_generator():
    with pytest.raises(ValueError, match="CPU generator"):
        random_crop_flip(torch.zeros(2, 3, 8, 8), torch.Generator(device="cuda"))


@pytest.mark.gpu
def test_cuda_dataset_and_augmentation_match_cpu():
    cpu = load_dataset("digits")
    cuda = load_dataset("digits", device="cuda")
    assert cuda.x_train.is_cuda and torch.equal(cuda.x_train.cpu(), cpu.x_train)
    x = torch.randn(8, 3, 32, 32)
    on_cpu = random_crop_flip(x, torch.Generator().manual_seed(5))
    on_cuda = random_crop_flip(x.cuda(), torch.Generator().manual_seed(5))
    assert torch.equal(on_cuda.cpu(), on_cpu)


# --- the per-process dataset cache ----------------------------------------------------


@pytest.fixture
def empty_cache():
    from robustness.data import _cache

    _cache.clear()
    yield _cache
    _cache.clear()


def test_a_cached_dataset_is_loaded_once_per_name_options_and_device(empty_cache, monkeypatch):
    from robustness import data as data_module

    loads = []
    real = data_module.DATASETS["blobs"]

    @functools.wraps(real)  # the same signature, which the option check reads
    def counting(**kwargs):
        loads.append(kwargs)
        return real(**kwargs)

    monkeypatch.setitem(data_module.DATASETS, "blobs", counting)
    args = {"n_samples": 300, "n_features": 4, "n_classes": 3}
    first = load_dataset("blobs", cache=True, **args)
    again = load_dataset("blobs", cache=True, **args)
    assert len(loads) == 1 and again.x_train is first.x_train  # the same tensors, no copy
    again.metadata["n_train"] = -1  # each caller has its own metadata
    assert load_dataset("blobs", cache=True, **args).metadata["n_train"] == 240
    other = load_dataset("blobs", cache=True, **{**args, "data_seed": 1})
    assert len(loads) == 2 and not torch.equal(other.x_train, first.x_train)
    uncached = load_dataset("blobs", **args)
    assert len(loads) == 3 and uncached.x_train is not first.x_train
    assert torch.equal(uncached.x_train, first.x_train)


def test_a_cached_dataset_changed_in_place_is_loaded_again(empty_cache):
    fresh = load_dataset("digits")
    first = load_dataset("digits", cache=True)
    first.x_train.mul_(0.0)  # a mistake no caller should make
    again = load_dataset("digits", cache=True)
    assert again.x_train is not first.x_train
    assert torch.equal(again.x_train, fresh.x_train)


def test_the_cache_keeps_only_the_last_few_datasets(empty_cache):
    for seed in range(empty_cache.MAX_ENTRIES + 2):
        load_dataset("mnist1d", cache=True, num_samples=200, data_seed=seed)
    assert len(empty_cache._entries) == empty_cache.MAX_ENTRIES
