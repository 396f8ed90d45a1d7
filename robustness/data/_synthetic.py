"""Generated datasets: ``blobs`` (classification) and ``linreg`` (regression).

Both are drawn in float64 from a CPU generator seeded by ``data_seed``, then
split by ``split_seed``; neither depends on the run seed.
"""

from __future__ import annotations

import math

import torch

from robustness._options import number_in, positive_int
from robustness.data._dataset import Dataset, split_dataset

_F64 = torch.float64


def blobs(
    *,
    n_samples: int = 1000,
    n_features: int = 10,
    n_classes: int = 3,
    spread: float = 1.0,
    data_seed: int = 0,
    val_fraction: float = 0.2,
    split_seed: int = 0,
) -> Dataset:
    """A Gaussian mixture: one isotropic cluster per class.

    Class centers are drawn from N(0, I) in ``n_features`` dimensions; each sample
    is its class center plus N(0, spread² I) noise. Classes are balanced (sample i
    has class i mod n_classes before shuffling). Larger ``spread`` is harder.
    """
    owner = "dataset 'blobs'"
    n = positive_int(owner, "n_samples", n_samples, minimum=2)
    d = positive_int(owner, "n_features", n_features)
    k = positive_int(owner, "n_classes", n_classes, minimum=2)
    spread = number_in(owner, "spread", spread, 0.0, math.inf)
    g = torch.Generator().manual_seed(positive_int(owner, "data_seed", data_seed, minimum=0))
    centers = torch.randn(k, d, generator=g, dtype=_F64)
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    x = centers[labels] + spread * torch.randn(n, d, generator=g, dtype=_F64)
    return split_dataset(
        "blobs",
        x,
        labels,
        task="classification",
        num_outputs=k,
        val_fraction=val_fraction,
        split_seed=split_seed,
        metadata={"n_features": d, "n_classes": k, "spread": spread, "data_seed": data_seed},
    )


def linreg(
    *,
    n_samples: int = 1000,
    dim: int = 20,
    condition_number: float = 10.0,
    noise: float = 0.1,
    data_seed: int = 0,
    val_fraction: float = 0.2,
    split_seed: int = 0,
) -> Dataset:
    """Linear regression with a linear teacher and ill-conditioned inputs.

    Inputs are x = Σ^(1/2) z with z ~ N(0, I) and an input covariance Σ with
    eigenvalues spaced geometrically from 1 down to 1/condition_number, in a random
    basis. Targets are y = x·w* + noise·ε with w* ~ N(0, I/dim), ε ~ N(0, 1), shape
    (N, 1).

    ``metadata`` states the curvature of the training loss the runner uses,
    L = torch.nn.functional.mse_loss(model(X), y) (mean over the N train samples of
    the squared error; outputs (N, 1)). For a ``linear`` model (w, b) its Hessian is
    constant: (2/N) AᵀA with A = [X, 1] the train design matrix with a ones column.
    - ``hessian_max_eig``: the largest eigenvalue of that Hessian over (w, b), the
      default ``linear`` model (with bias);
    - ``hessian_max_eig_no_bias``: the same over w alone, (2/N) XᵀX (``bias=false``);
    - ``gd_stable_lr_max``: 2 / hessian_max_eig, the learning rate above which full-
      batch gradient descent diverges on this loss;
    - ``condition_number`` and ``noise``: the generation arguments.
    """
    owner = "dataset 'linreg'"
    n = positive_int(owner, "n_samples", n_samples, minimum=2)
    d = positive_int(owner, "dim", dim)
    kappa = number_in(owner, "condition_number", condition_number, 1.0, math.inf, closed_low=True)
    noise = number_in(owner, "noise", noise, 0.0, math.inf, closed_low=True)
    g = torch.Generator().manual_seed(positive_int(owner, "data_seed", data_seed, minimum=0))
    eigs = kappa ** -torch.linspace(0.0, 1.0, d, dtype=_F64)
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=_F64))
    x = (torch.randn(n, d, generator=g, dtype=_F64) * eigs.sqrt()) @ basis.T
    teacher = torch.randn(d, generator=g, dtype=_F64) / math.sqrt(d)
    y = (x @ teacher + noise * torch.randn(n, generator=g, dtype=_F64))[:, None]
    data = split_dataset(
        "linreg",
        x,
        y,
        task="regression",
        num_outputs=1,
        val_fraction=val_fraction,
        split_seed=split_seed,
        metadata={"dim": d, "condition_number": kappa, "noise": noise, "data_seed": data_seed},
    )
    x_train = data.x_train.to(_F64)  # the float32 values the model actually sees
    with_bias = torch.cat([x_train, torch.ones(len(x_train), 1, dtype=_F64)], dim=1)
    max_eig = _mse_hessian_max_eig(with_bias)
    data.metadata.update(
        hessian_max_eig=max_eig,
        hessian_max_eig_no_bias=_mse_hessian_max_eig(x_train),
        gd_stable_lr_max=2.0 / max_eig,
        loss="mse_loss(mean) of (N, 1) outputs; Hessian over the linear model's (w, b)",
    )
    return data


def _mse_hessian_max_eig(design: torch.Tensor) -> float:
    """Largest eigenvalue of (2/N) AᵀA, the Hessian of mean((A θ - y)²) in θ."""
    hessian = 2.0 / len(design) * design.T @ design
    return float(torch.linalg.eigvalsh(hessian)[-1])
