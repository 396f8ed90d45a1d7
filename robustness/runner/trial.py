"""``run_trial``: one hyperparameter configuration trained on each of its seeds.

Pure and Ray-free (the engine wraps it; the ``trial`` CLI verb and the tests call
it directly). Read ``_train_seed`` top to bottom for the training loop itself.

Conventions, so that records from different runs compare:

- Steps are optimizer updates, counted from 1. An evaluation "at step s" happens
  after s updates; the curve row at step 0 is the initialized model.
- ``initial_loss`` and ``initial_train_acc`` are the mean loss and the accuracy
  over the whole training set of the initialized model, in eval mode and without
  augmentation (BatchNorm then uses its initial running statistics);
  ``initial_val_loss`` and ``initial_val_acc`` the same on the validation split
  (the curve's step-0 row). The final metrics are measured the same way after the
  last step, so each compares with its initial value directly: that is what the
  capping rule (``robustness.runner.outcome.capped_value``) needs. Train accuracy
  is measured only at the end (``best_train_acc == final_train_acc``).
- A curve's ``train_loss`` is the mean of the minibatch losses since the previous
  evaluation (train mode, augmented batches: what the optimizer saw).
- ``best_*`` are over the evaluations (step 0 included); for the training loss
  also the final whole-set loss.
- Divergence: a step whose minibatch loss is non-finite or above
  ``divergence.loss_factor x initial_loss``; the run stops at the next check
  (every ``_CHECK_EVERY`` steps and at every evaluation), and ``diverged_step`` is
  the exact first bad step. A non-finite initial loss is a divergence at step 0.
- Seeding: ``torch.manual_seed(seed)`` before the model is built (PyTorch's own
  init and anything else using the global generator), plus one CPU
  ``torch.Generator`` per purpose (init scheme, data order, augmentation) seeded
  from ``(seed, purpose)``, so the same seed gives bit-identical metrics on CPU
  and the same data order and crops on every device. On CUDA the run holds
  ``reproducible_cuda`` (deterministic cuDNN, no autotuning, TF32 only with
  ``config.tf32``; see ``robustness.runner.device``).
  ``torch.use_deterministic_algorithms`` is not set: on CPU it changed neither the
  results nor the time (MLP and CNN on digits, checked), so it buys nothing there,
  and it is process-wide state that on CUDA also needs ``CUBLAS_WORKSPACE_CONFIG``.
- Data: the dataset is loaded with ``cache=True``, so a worker that runs several
  configurations of one study copies it to the device once (``robustness.data``).
"""

from __future__ import annotations

import importlib
import math
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustness._import_path import is_import_path
from robustness._transfer import to_device
from robustness.data import DATASETS, Dataset, load_dataset
from robustness.errors import UserInputError, unknown_choice
from robustness.init_schemes import INIT_SCHEMES, apply_init
from robustness.models import MODELS, build_model, check_input_kind
from robustness.optim import build_optimizer, optimizer_entry
from robustness.results.schema import TRIAL_COLUMNS
from robustness.runner.config import TrialConfig
from robustness.runner.device import reproducible_cuda, resolve_device
from robustness.runner.divergence import Divergence, DivergenceWatch
from robustness.runner.outcome import (
    TrialStopped,
    capped_value,
    check_objective,
    classify_outcome,
    initial_column,
    is_maximized,
    mean_objective,
)
from robustness.runner.schedule import lr_multiplier

Callback = Callable[[dict[str, Any]], None]
LossFn = Callable[..., torch.Tensor]  # (outputs, targets, reduction=...) -> loss

_CHECK_EVERY = 10  # steps between divergence checks (host syncs) outside evaluations
_EVAL_CHUNK = 2048  # samples per forward pass when evaluating a whole split
_INIT_STREAM, _ORDER_STREAM, _AUGMENT_STREAM = 0, 1, 2


@dataclass
class TrialResult:
    """What ``run_trial`` returns.

    Attributes:
        config: the configuration that was run.
        records: one dict per seed, keys ``TRIAL_COLUMNS`` plus ``config.tags``
            (``study`` is None and ``node_id`` this host: the engine overwrites both).
        curves: one dict per evaluation of every seed, keys ``CURVE_COLUMNS``.
        dataset_metadata: the dataset's ``metadata``.
        objective: the mean over seeds of the records' capped ``objective``
            (``capped_value``), skipping seeds without one; NaN only when no seed
            has one (every seed failed before its initial model was measured).
        stopped: the callback stopped the trial (``TrialStopped``): the seed it
            stopped and every seed after it are ``pruned`` records.
    """

    config: TrialConfig
    records: list[dict[str, Any]]
    curves: list[dict[str, Any]]
    dataset_metadata: dict[str, Any]
    objective: float
    stopped: bool = False


def run_trial(
    config: TrialConfig, *, callback: Callback | None = None, trial_id: str = "local"
) -> TrialResult:
    """Train ``config`` once per seed and return per-seed records and curves.

    Args:
        config: the configuration.
        callback: called at every evaluation of every seed with a dict: ``seed``,
            ``seed_index``, ``step``, ``epoch``, ``train_loss``, ``val_loss``,
            ``val_acc``, ``outcome`` (None until the seed's last call) and the
            seed's step-0 values ``initial_loss``, ``initial_val_loss`` and
            ``initial_val_acc``. ``TrialStopped`` stops the trial (see there);
            other exceptions it raises propagate.
        trial_id: names the runs: ``run_id = f"{trial_id}-s{seed}"``.

    Raises:
        UserInputError: a bad configuration (unknown optimizer, model, dataset or
            init scheme, bad options, objective or device). A seed that fails
            otherwise is recorded with outcome ``error`` and the other seeds run.
    """
    records: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    stopped = False
    with prepared(config) as (device, data, loss_fn):
        for seed_index, seed in enumerate(config.seeds):
            run = RunLog(run_id=f"{trial_id}-s{seed}", seed=seed, seed_index=seed_index)
            if stopped:  # never started: a pruned record with nothing measured
                run.stopped = True
                records.append(make_record(config, trial_id, run, 0.0))
                continue
            try:
                records.append(_run_seed(config, data, loss_fn, device, trial_id, run, callback))
            except _CallbackFailed as exc:
                raise exc.__cause__ from None
            curves.extend(run.curves)
            stopped = run.stopped or run.stop_after

    return trial_result(config, records, curves, data, stopped=stopped)


@contextmanager
def prepared(config: TrialConfig) -> Iterator[tuple[torch.device, Dataset, LossFn]]:
    """What every run of ``config`` needs, under its thread count (and on CUDA
    ``reproducible_cuda``): the device, the data (on the device) and the loss
    function. Shared with ``run_population``.

    Raises:
        UserInputError: unknown names, a bad device, objective or loss.
    """
    _check_names(config)
    device = resolve_device(config.device)
    # torch.optim imports torch._dynamo on its first step (seconds); do it here, so
    # the first seed's wall_seconds measure its training, not a one-off import
    importlib.import_module("torch._dynamo")
    with _cpu_threads(config.threads), reproducible_cuda(device, tf32=config.tf32):
        data = load_dataset(
            config.dataset, root=config.data_root, device=device, cache=True, **config.dataset_args
        )
        check_objective(config.objective, data.task)
        yield device, data, _loss_function(config.loss, data.task)


def trial_result(
    config: TrialConfig,
    records: list[dict[str, Any]],
    curves: list[dict[str, Any]],
    data: Dataset,
    *,
    stopped: bool = False,
) -> TrialResult:
    """The configuration's result from its seeds' records (``make_record``) and curves."""
    objective = mean_objective(records)
    return TrialResult(config, records, curves, dict(data.metadata), objective, stopped)


# --- one seed ----------------------------------------------------------------------


@dataclass
class RunLog:
    """What one seed's run has measured so far (an error keeps what was measured).

    ``make_record`` turns it into the seed's record; a training loop other than
    ``_train_seed`` fills one the same way so that its records match exactly.
    """

    run_id: str
    seed: int
    seed_index: int
    steps_per_epoch: int = 1
    steps_done: int = 0
    initial_loss: float = math.nan
    initial_train_acc: float = math.nan
    initial_val_loss: float = math.nan
    initial_val_acc: float = math.nan
    divergence: Divergence | None = None
    final_train_loss: float = math.nan
    final_train_acc: float = math.nan
    normalized_fraction: float = math.nan  # INSGD's, NaN for other optimizers
    curves: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stopped: bool = False  # stopped early by the callback: outcome ``pruned``
    stop_after: bool = False  # the stop came with this seed's last report

    def add_eval(self, step: int, lr: float, train_loss: float, val: tuple[float, float]) -> None:
        self.curves.append(
            {
                "run_id": self.run_id,
                "step": step,
                "epoch": step / self.steps_per_epoch,
                "lr": lr,
                "train_loss": train_loss,
                "val_loss": val[0],
                "val_acc": val[1],
            }
        )


def _run_seed(
    config: TrialConfig,
    data: Dataset,
    loss_fn: LossFn,
    device: torch.device,
    trial_id: str,
    log: RunLog,
    callback: Callback | None,
) -> dict[str, Any]:
    """One seed: train, classify, report the last evaluation with the outcome.

    Returns the seed's record. Any exception but a ``UserInputError`` (a bad
    configuration) or the callback's own becomes outcome ``error``.
    """
    notify = _Notifier(callback, log)
    start = time.perf_counter()
    try:
        _train_seed(config, data, loss_fn, device, log, notify)
    except (UserInputError, _CallbackFailed):
        raise
    except TrialStopped:
        log.stopped = True
    except Exception as exc:
        log.error = f"{type(exc).__name__}: {exc}"
    record = make_record(config, trial_id, log, time.perf_counter() - start)
    if not log.stopped:
        try:
            notify(record["outcome"])
        except TrialStopped:
            log.stop_after = True
    return record


def _train_seed(
    config: TrialConfig,
    data: Dataset,
    loss_fn: LossFn,
    device: torch.device,
    log: RunLog,
    notify: _Notifier,
) -> None:
    """Train one seed, filling ``log``: the whole training loop, top to bottom."""
    model, optimizer = build_run(config, log.seed, data, device)
    log.normalized_fraction = float(getattr(optimizer, "normalized_fraction", math.nan))
    try:
        # budget and learning-rate schedule
        batch_size, log.steps_per_epoch, total_steps = budget(config, data)
        lr_factor = lr_multiplier(config.schedule, total_steps)
        scheduler = None
        if config.schedule.name != "constant" or config.schedule.warmup_steps:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        classification = data.task == "classification"

        # the starting point: the initialized model on both splits (the capping
        # rule's reference values, and the curve's step-0 row)
        initial_train = _evaluate(model, data.x_train, data.y_train, loss_fn, classification)
        log.initial_loss, log.initial_train_acc = initial_train
        initial_val = _evaluate(model, data.x_val, data.y_val, loss_fn, classification)
        log.initial_val_loss, log.initial_val_acc = initial_val
        watch = DivergenceWatch(log.initial_loss, config.divergence.loss_factor, device)
        if not math.isfinite(log.initial_loss):
            log.divergence = Divergence(0, "nonfinite")
        else:
            log.add_eval(0, curve_lr(config, lr_factor, 0), log.initial_loss, initial_val)
            notify()

            # the loop
            model.train()
            batches, augment_generator = data_streams(log.seed, data, batch_size, device)
            for step in range(1, total_steps + 1):
                x, y = data.x_train, data.y_train
                idx = next(batches)
                if idx is not None:
                    x, y = x.index_select(0, idx), y.index_select(0, idx)
                if data.augment is not None:
                    x = data.augment(x, augment_generator)
                loss = loss_fn(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                watch.record(loss)
                log.steps_done = step

                at_eval = step % config.eval_every == 0
                if is_check_step(step, config.eval_every, total_steps):
                    log.divergence = watch.check()
                    if log.divergence is not None:
                        break
                if at_eval and step < total_steps:
                    val = _evaluate(model, data.x_val, data.y_val, loss_fn, classification)
                    log.add_eval(step, curve_lr(config, lr_factor, step), watch.pop_mean(), val)
                    notify()
                    model.train()

        # the final evaluation (budget done or stopped by divergence); the caller
        # reports it with the outcome
        step = log.steps_done
        if step > 0:
            train_loss = watch.pop_mean()
            val = _evaluate(model, data.x_val, data.y_val, loss_fn, classification)
            final_train = _evaluate(model, data.x_train, data.y_train, loss_fn, classification)
        else:  # the model is the initialized one, already measured
            train_loss, val, final_train = log.initial_loss, initial_val, initial_train
        log.final_train_loss, log.final_train_acc = final_train
        log.add_eval(step, curve_lr(config, lr_factor, step), train_loss, val)
    finally:
        close = getattr(optimizer, "close", None)
        if close is not None:
            close()


def build_run(
    config: TrialConfig, seed: int, data: Dataset, device: torch.device
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model (built, initialized, on ``device``) and optimizer of one run, all
    seeded from the run's ``seed``. Shared with ``run_population``, whose members
    start exactly where their sequential runs start."""
    torch.manual_seed(seed)
    check_input_kind(config.model, tokens=not data.x_train.is_floating_point())
    model = build_model(config.model, data.input_shape, data.num_outputs, **config.model_args)
    apply_init(model, config.init, generator=_generator(seed, _INIT_STREAM), **config.init_args)
    model.to(device)
    optimizer = build_optimizer(
        optimizer_entry(config.optimizer, axes=config.optimizer_axes, takes=config.optimizer_takes),
        model,
        lr=config.lr,
        beta=config.beta,
        beta2=config.beta2,
        **config.optimizer_args,
    )
    return model, optimizer


def budget(config: TrialConfig, data: Dataset) -> tuple[int, int, int]:
    """``(batch_size, steps_per_epoch, total_steps)`` of ``config`` on ``data``."""
    n_train = data.x_train.shape[0]
    batch_size = n_train if config.batch_size == "full" else min(config.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / batch_size)
    if config.steps is not None:
        return batch_size, steps_per_epoch, config.steps
    return batch_size, steps_per_epoch, max(1, round(config.epochs * steps_per_epoch))


def is_check_step(step: int, eval_every: int, total_steps: int) -> bool:
    """Whether the loop checks for divergence after ``step``: every ``_CHECK_EVERY``
    steps, at every evaluation and after the last step."""
    return step % eval_every == 0 or step % _CHECK_EVERY == 0 or step == total_steps


def curve_lr(config: TrialConfig, lr_factor: Callable[[int], float], step: int) -> float:
    """The learning rate a curve row at ``step`` reports: the one its last update
    used (the first update's at step 0)."""
    return config.lr * lr_factor(max(step - 1, 0))


def data_streams(
    seed: int, data: Dataset, batch_size: int, device: torch.device
) -> tuple[Iterator[torch.Tensor | None], torch.Generator]:
    """One run's training batches (``_batch_indices`` from its order stream) and
    the generator of its augmentation stream (drawn on the CPU)."""
    order_generator = _generator(seed, _ORDER_STREAM)
    batches = _batch_indices(data.x_train.shape[0], batch_size, order_generator, device)
    return batches, _generator(seed, _AUGMENT_STREAM)


def _batch_indices(
    n: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> Iterator[torch.Tensor | None]:
    """Endless training batches as index tensors on ``device`` (None: the whole set).

    Each epoch is a fresh permutation drawn on the CPU from ``generator`` (the
    same order on every device); the last batch of an epoch is smaller when
    ``batch_size`` does not divide ``n``.
    """
    if batch_size >= n:
        while True:
            yield None
    while True:
        order = to_device(torch.randperm(n, generator=generator), device)
        yield from order.split(batch_size)


@torch.no_grad()
def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, classification: bool
) -> tuple[float, float]:
    """Mean loss and accuracy (NaN for regression) over a whole split, in eval mode.

    With per-position targets (a language model: (N, T) targets, (N, T, C) outputs)
    both are per position: loss in nats per token, accuracy per token.
    """
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, x.shape[0], _EVAL_CHUNK):
        out = model(x[start : start + _EVAL_CHUNK])
        target = y[start : start + _EVAL_CHUNK]
        loss_sum += loss_fn(out, target, reduction="sum").double()
        if classification:
            correct += (out.argmax(dim=-1) == target).sum()
    total, n_correct = torch.stack([loss_sum, correct.double()]).tolist()  # one host sync
    return eval_means(total, n_correct, y, classification)


def eval_means(
    loss_sum: float, n_correct: float, y: torch.Tensor, classification: bool
) -> tuple[float, float]:
    """A split's mean loss (over every target element: the mean reduction, as in
    training) and accuracy (NaN for regression) from its summed loss and hits."""
    return loss_sum / y.numel(), (n_correct / y.numel() if classification else math.nan)


def make_record(config: TrialConfig, trial_id: str, log: RunLog, wall_seconds: float) -> dict:
    """The seed's row of ``trials.parquet``: every ``TRIAL_COLUMNS`` key plus
    ``config.tags``. ``objective`` is the capped value (``capped_value``) of the
    configuration's objective metric."""
    curves = log.curves
    best_train_loss = _nan_best(min, [r["train_loss"] for r in curves] + [log.final_train_loss])
    if log.error is not None:
        outcome = "error"
    elif log.stopped:
        outcome = "pruned"
    else:
        outcome = classify_outcome(
            diverged=log.divergence is not None,
            best_train_loss=best_train_loss,
            initial_loss=log.initial_loss,
            stall_margin=config.divergence.stall_margin,
        )
    last = curves[-1] if curves else {}
    record: dict[str, Any] = dict.fromkeys(TRIAL_COLUMNS)
    record.update(
        study=None,
        trial_id=trial_id,
        run_id=log.run_id,
        optimizer=config.optimizer,
        lr=config.lr,
        beta=config.beta,
        beta2=config.beta2,
        init=config.init,
        seed=log.seed,
        model=config.model,
        dataset=config.dataset,
        outcome=outcome,
        diverged_step=log.divergence.step if log.divergence else None,
        divergence_cause=log.divergence.cause if log.divergence else None,
        error=log.error,
        initial_loss=log.initial_loss,
        initial_train_acc=log.initial_train_acc,
        initial_val_loss=log.initial_val_loss,
        initial_val_acc=log.initial_val_acc,
        final_train_loss=log.final_train_loss,
        best_train_loss=best_train_loss,
        final_train_acc=log.final_train_acc,
        best_train_acc=log.final_train_acc,
        final_val_loss=last.get("val_loss", math.nan),
        best_val_loss=_nan_best(min, [r["val_loss"] for r in curves]),
        final_val_acc=last.get("val_acc", math.nan),
        best_val_acc=_nan_best(max, [r["val_acc"] for r in curves]),
        insgd_normalized_fraction=log.normalized_fraction,
        steps_done=log.steps_done,
        wall_seconds=wall_seconds,
        node_id=socket.gethostname(),
        objective=None,
    )
    metric = config.objective
    record["objective"] = capped_value(
        record[metric], record[initial_column(metric)], outcome, maximize=is_maximized(metric)
    )
    record.update(config.tags)  # extra swept axes; a tag may also relabel e.g. `optimizer`
    return record


# --- small helpers -----------------------------------------------------------------


class _CallbackFailed(Exception):
    """Wraps an exception raised by the user's callback, so it is not taken for a
    failure of the run."""


class _Notifier:
    """Sends ``log``'s latest evaluation to the callback."""

    def __init__(self, callback: Callback | None, log: RunLog) -> None:
        self._callback = callback
        self._log = log

    def __call__(self, outcome: str | None = None) -> None:
        if self._callback is None:
            return
        log = self._log
        row = log.curves[-1] if log.curves else {}
        if row.get("step") != log.steps_done:  # an error before this step was evaluated
            row = {"step": log.steps_done, "epoch": log.steps_done / log.steps_per_epoch}
        event = {
            "seed": log.seed,
            "seed_index": log.seed_index,
            "step": row["step"],
            "epoch": row["epoch"],
            "train_loss": row.get("train_loss", math.nan),
            "val_loss": row.get("val_loss", math.nan),
            "val_acc": row.get("val_acc", math.nan),
            "outcome": outcome,
            "initial_loss": log.initial_loss,
            "initial_val_loss": log.initial_val_loss,
            "initial_val_acc": log.initial_val_acc,
        }
        try:
            self._callback(event)
        except TrialStopped:
            raise
        except Exception as exc:
            raise _CallbackFailed from exc


def _check_names(config: TrialConfig) -> None:
    """Refuse unknown registry names, and an optimizer class that does not resolve,
    before any data is loaded (a model or dataset import path resolves where used)."""
    optimizer_entry(config.optimizer, axes=config.optimizer_axes, takes=config.optimizer_takes)
    for kind, value, allowed in (
        ("model", config.model, MODELS),
        ("dataset", config.dataset, DATASETS),
        ("init scheme", config.init, INIT_SCHEMES),
    ):
        if value not in allowed and not (kind != "init scheme" and is_import_path(value)):
            raise unknown_choice(kind, value, allowed)


def resolve_loss(name: str, task: str) -> str:
    """The loss ``name`` means for a ``task``: ``auto`` is cross-entropy for
    classification, mean squared error for regression; the other one is refused.

    Raises:
        UserInputError: a loss that does not fit the task, naming the allowed ones.
    """
    wanted = "cross_entropy" if task == "classification" else "mse"
    if name not in ("auto", wanted):
        raise UserInputError(f"loss {name!r} does not fit a {task} task; allowed: auto, {wanted}")
    return wanted


def _loss_function(name: str, task: str) -> LossFn:
    return cross_entropy if resolve_loss(name, task) == "cross_entropy" else F.mse_loss


def cross_entropy(
    outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy over the last axis of ``outputs``: (N, C) logits with (N,) classes,
    or one class per position, (N, T, C) with (N, T) (the mean is then per token).

    ``F.cross_entropy`` wants the classes on axis 1; flattening the positions into
    the batch instead lets a model keep the (N, T, C) layout sequence models use.
    """
    return F.cross_entropy(outputs.flatten(0, -2), targets.flatten(), reduction=reduction)


def _generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one purpose (``stream``) of one run, independent of the
    others. Every random draw of a run is made on the CPU, so a seed gives the same
    numbers on every device."""
    entropy = np.random.SeedSequence([seed % 2**64, stream]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(entropy))


@contextmanager
def _cpu_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the duration, then the previous count."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _nan_best(pick: Callable[[list[float]], float], values: list[float]) -> float:
    """``pick`` (min or max) over the non-NaN values, NaN when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return pick(finite) if finite else math.nan
