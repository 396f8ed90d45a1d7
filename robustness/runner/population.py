"""``run_population``: many configurations of one architecture trained as one model.

A robustness study trains many small configurations that differ only in their
hyperparameters. Trained one after another, each pays the full per-step cost of
launching small kernels. Here the runs (members: one per (configuration, seed)
pair) are stacked into one population model (``robustness.models.population``)
and one population optimizer (``robustness.optim.population``), so a step is
one batched kernel per layer for all members.

Members are exactly the runs they stand for (``run_trial``'s conventions hold
member by member):

- each member's model and optimizer are built by ``trial.build_run`` for its own
  seed and init scheme, then stacked; its data order and augmentation come from
  its own generators (``trial.data_streams``);
- divergence is watched per member with the sequential rules
  (``PopulationWatch``): the same check steps, the exact first bad step. A member
  whose check finds a divergence stops there, exactly as its sequential run
  breaks out of its loop: it gets its final evaluation and record, and is
  dropped from the population (compacted away), so it costs nothing more;
- records and curves are built by the runner's own functions (``trial._record``,
  ``trial.trial_result``): same columns, outcome rules and capped objective.

What differs: floating-point rounding (a batched matmul sums in another order;
in float64 the losses agree to ~1e-12 relative, in float32 to ~1e-6, enough to
move a run that sits exactly on a stability boundary), and ``wall_seconds``,
which is the member's share of the population's wall time (each stretch of
time divided among the members training then). No per-evaluation callback.

What can share a population: ``population_key`` (everything but the members'
own values: ``lr``, ``beta``, ``beta2``, ``init``, ``init_args``, ``seeds``,
``tags`` and numeric optimizer arguments). A model or optimizer without a
population form, a single member, or a failure of the population's training
falls back to ``run_trial`` for the configurations not yet finished: the same
results, one run at a time.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustness.data import Dataset
from robustness.errors import UserInputError
from robustness.models import build_model
from robustness.models.population import (
    NoPopulationForm,
    has_population_form,
    population_model,
    select_members,
)
from robustness.optim.population import POPULATION_OPTIMIZERS, build_population_optimizer
from robustness.runner import trial as _trial
from robustness.runner.config import TrialConfig
from robustness.runner.divergence import Divergence, PopulationWatch
from robustness.runner.grouping import check_one_population
from robustness.runner.schedule import lr_multiplier
from robustness.runner.trial import TrialResult

__all__ = ["auto_members", "member_bytes", "run_population"]

# member-samples per forward pass when a population evaluates a whole split
_EVAL_MEMBER_SAMPLES = 16 * _trial._EVAL_CHUNK

OnResult = Callable[[TrialResult], None]

#: ``max_members="auto"``: the share of physical memory a CPU population may use
#: (several Ray trials may run populations at once)
CPU_MEMORY_SHARE = 0.1
#: ``max_members="auto"`` never trains more members at once (beyond a few dozen,
#: a CPU population gains little per run; past this, nothing)
AUTO_MAX_MEMBERS = 256


def run_population(
    configs: Sequence[TrialConfig],
    *,
    trial_ids: Sequence[str] | None = None,
    on_result: OnResult | None = None,
    max_members: int | str | None = None,
) -> list[TrialResult]:
    """Train ``configs`` (all seeds of each) as one population; one result per config.

    Each result holds what ``run_trial(config, trial_id=...)`` returns (module
    docstring: rounding and ``wall_seconds`` aside).

    Args:
        configs: configurations with one ``population_key``.
        trial_ids: one per configuration (default ``"local"`` for all), as
            ``run_trial``'s ``trial_id``.
        on_result: called with each configuration's result as soon as all its
            seeds are done (a configuration whose seeds all diverge early is
            done early), e.g. to persist it.
        max_members: the most runs (members) trained at once: None for all,
            ``"auto"`` for as many as fit the memory budget (``auto_members``).
            The configurations are split into consecutive populations of at most
            that many members (a configuration is never split; one with more
            seeds than that is a population of its own).

    Raises:
        UserInputError: configurations that cannot share a population, a bad
            ``trial_ids``, or a bad configuration (as ``run_trial`` raises).
    """
    configs = list(configs)
    ids = ["local"] * len(configs) if trial_ids is None else [str(t) for t in trial_ids]
    if len(ids) != len(configs):
        raise UserInputError(
            f"run_population: {len(ids)} trial ids for {len(configs)} configurations; "
            "give one per configuration"
        )
    check_one_population(configs)
    results: list[TrialResult | None] = [None] * len(configs)

    def finished(index: int, result: TrialResult) -> None:
        results[index] = result
        if on_result is not None:
            try:
                on_result(result)
            except Exception as exc:
                raise _OnResultFailed from exc

    if max_members not in (None, "auto") and not _is_count(max_members):
        raise UserInputError(
            f"run_population: max_members must be a positive integer, 'auto' or None, "
            f"got {max_members!r}"
        )
    members = sum(len(config.seeds) for config in configs)
    try:
        if members > 1 and configs[0].optimizer in POPULATION_OPTIMIZERS:
            _train_populations(configs, ids, finished, max_members)
        for index, config in enumerate(configs):
            if results[index] is None:
                finished(index, _trial.run_trial(config, trial_id=ids[index]))
    except _OnResultFailed as exc:
        raise exc.__cause__ from None
    return [r for r in results if r is not None]


class _OnResultFailed(Exception):
    """Wraps an exception raised by ``on_result`` (e.g. a part that cannot be
    written), so that it is not taken for a failure of the population's training."""


def _train_populations(
    configs: list[TrialConfig],
    ids: list[str],
    finished: Callable[[int, TrialResult], None],
    max_members: int | str | None,
) -> None:
    """Train the configurations as populations of at most ``max_members`` members,
    reporting each configuration as it completes.

    Trains nothing when the model has no population form, and gives up on a
    population whose training fails for any reason other than bad input (with a
    warning): the caller then runs the unfinished configurations one by one.
    """
    first = configs[0]
    with _trial.prepared(first) as (device, data, loss_fn):
        if not has_population_form(
            first.model, data.input_shape, data.num_outputs, **first.model_args
        ):
            return
        if max_members == "auto":
            max_members = auto_members(first, data, device)
        if max_members == 1:
            return
        for chunk in _chunks(configs, max_members):
            if sum(len(configs[i].seeds) for i in chunk) < 2:
                continue  # one run: run_trial, exactly
            chunk_configs = [configs[i] for i in chunk]

            def report(index: int, result: TrialResult, chunk=chunk) -> None:
                finished(chunk[index], result)

            try:
                population = _Population(
                    chunk_configs, [ids[i] for i in chunk], data, loss_fn, device, report
                )
                try:
                    population.train()
                finally:
                    close = getattr(population.optimizer, "close", None)
                    if close is not None:
                        close()
            except (UserInputError, NoPopulationForm, _OnResultFailed):
                raise
            except Exception as exc:  # the caller reruns what is unfinished with run_trial
                warnings.warn(
                    f"population training failed ({type(exc).__name__}: {exc}); its "
                    "unfinished configurations are trained one by one",
                    RuntimeWarning,
                    stacklevel=3,
                )


def _chunks(configs: list[TrialConfig], max_members: int | None) -> list[list[int]]:
    """Consecutive groups of configuration indices with at most ``max_members`` seeds
    in all (a configuration with more seeds is a group of its own)."""
    if max_members is None:
        return [list(range(len(configs)))]
    chunks: list[list[int]] = []
    size = 0
    for index, config in enumerate(configs):
        seeds = len(config.seeds)
        if not chunks or size + seeds > max_members:
            chunks.append([])
            size = 0
        chunks[-1].append(index)
        size += seeds
    return chunks


def auto_members(config: TrialConfig, data: Dataset, device: torch.device) -> int:
    """How many members of ``config`` fit the memory budget (at least 1, at most
    ``AUTO_MAX_MEMBERS``): half the free GPU memory on a GPU, ``CPU_MEMORY_SHARE``
    of the physical memory on a CPU, divided by a member's training footprint
    (``member_bytes``). On a CPU a model with convolutions gets 1 (no population):
    a grouped convolution there costs as much per member as the members' own
    convolutions, so a population was measured no faster (BENCHMARKS.md)."""
    if device.type == "cpu" and _has_convolutions(config, data):
        return 1
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free * 0.5
    else:
        budget = _physical_memory() * CPU_MEMORY_SHARE
    fits = int(budget // member_bytes(config, data))
    return max(1, min(AUTO_MAX_MEMBERS, fits))


def member_bytes(config: TrialConfig, data: Dataset) -> int:
    """An upper estimate of one member's training memory: parameters, gradients and
    two optimizer states (4 per parameter), plus three copies (output, saved for
    backward, gradient) of every layer's output for a training batch. Measured on
    the meta device (no memory used)."""
    batch_size, _, _ = _trial.budget(config, data)
    with torch.device("meta"):
        model = build_model(config.model, data.input_shape, data.num_outputs, **config.model_args)
        outputs = [0]

        def count(_module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                outputs[0] += output.numel()

        hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
        with torch.no_grad():
            model(torch.empty(1, *data.input_shape))
        for hook in hooks:
            hook.remove()
    parameters = sum(p.numel() for p in model.parameters())
    element = torch.empty((), dtype=data.x_train.dtype).element_size()
    return element * (4 * parameters + 3 * batch_size * outputs[0])


def _has_convolutions(config: TrialConfig, data: Dataset) -> bool:
    with torch.device("meta"):
        model = build_model(config.model, data.input_shape, data.num_outputs, **config.model_args)
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 8 * 2**30


@dataclass
class _Member:
    config_index: int
    log: _trial.RunLog


class _Population:
    """The members, the population model and optimizer, and the training loop."""

    def __init__(
        self,
        configs: list[TrialConfig],
        ids: list[str],
        data: Dataset,
        loss_fn: _trial.LossFn,
        device: torch.device,
        finished: Callable[[int, TrialResult], None],
    ) -> None:
        self.configs, self.ids, self.data, self.loss_fn = configs, ids, data, loss_fn
        self.finished = finished
        first = configs[0]
        self.batch_size, steps_per_epoch, self.total_steps = _trial.budget(first, data)
        self.lr_factor = lr_multiplier(first.schedule, self.total_steps)
        self.classification = data.task == "classification"
        self.clock = _ShareClock()

        self.members: list[_Member] = []  # the living members, in population order
        models, optimizers = [], []
        for index, (config, trial_id) in enumerate(zip(configs, ids, strict=True)):
            for seed_index, seed in enumerate(config.seeds):
                log = _trial.RunLog(f"{trial_id}-s{seed}", seed, seed_index, steps_per_epoch)
                self.members.append(_Member(index, log))
                model, optimizer = _trial.build_run(config, seed, data, device)
                log.normalized_fraction = float(getattr(optimizer, "normalized_fraction", math.nan))
                close = getattr(optimizer, "close", None)
                if close is not None:
                    close()
                models.append(model)
                optimizers.append(optimizer)
        self.model = population_model(models)
        self.optimizer = build_population_optimizer(first.optimizer, self.model, optimizers)
        # per configuration: seed index -> the finished member's record and curves
        self.records: dict[int, dict[int, dict[str, Any]]] = {i: {} for i in range(len(configs))}
        self.curves: dict[int, dict[int, list[dict[str, Any]]]] = {
            i: {} for i in range(len(configs))
        }
        self.clock.start(len(self.members))

    # --- the loop -----------------------------------------------------------------

    def train(self) -> None:
        data, first = self.data, self.configs[0]
        initial = self._evaluate(self.model, data.x_train, data.y_train)
        val = self._evaluate(self.model, data.x_val, data.y_val)
        bad_start = []
        for k, member in enumerate(self.members):
            log = member.log
            log.initial_loss, log.initial_train_acc = initial[k]
            log.initial_val_loss, log.initial_val_acc = val[k]
            if not math.isfinite(log.initial_loss):  # a divergence at step 0
                log.divergence = Divergence(0, "nonfinite")
                log.final_train_loss, log.final_train_acc = initial[k]
                bad_start.append(k)
            self._add_eval(member, 0, log.initial_loss, val[k])
        self._record([self.members[k] for k in bad_start])
        self._drop(bad_start)
        if not self.members:
            return

        watch = PopulationWatch(
            [m.log.initial_loss for m in self.members],
            first.divergence.loss_factor,
            next(self.model.parameters()),
        )
        streams = [
            _trial.data_streams(m.log.seed, data, self.batch_size, data.x_train.device)
            for m in self.members
        ]
        self.model.train()
        for step in range(1, self.total_steps + 1):
            losses = self._step(step, streams)
            watch.record(losses)
            for member in self.members:
                member.log.steps_done = step
            if _trial.is_check_step(step, first.eval_every, self.total_steps):
                divergences = watch.check()
                stopped = [k for k, d in enumerate(divergences) if d is not None]
                if stopped:
                    for k in stopped:
                        self.members[k].log.divergence = divergences[k]
                    self._finish(stopped, watch.mean())
                    keep = self._drop(stopped)
                    watch.select_members(keep)
                    streams = [streams[k] for k in keep.tolist()]
                    if not self.members:
                        return
            if step % first.eval_every == 0 and step < self.total_steps:
                means = watch.pop_mean()
                val = self._evaluate(self.model, data.x_val, data.y_val)
                for k, member in enumerate(self.members):
                    self._add_eval(member, step, means[k], val[k])
                self.model.train()
        self._finish(list(range(len(self.members))), watch.mean())

    def _step(self, step: int, streams: list) -> torch.Tensor:
        """One optimizer step of every member; returns the members' losses."""
        data, members = self.data, len(self.members)
        indices = [next(batches) for batches, _ in streams]
        if indices[0] is None:  # full batch: every member sees the whole set
            x = data.x_train.expand(members, *data.x_train.shape)
            y = data.y_train.expand(members, *data.y_train.shape)
        else:
            index = torch.stack(indices)
            x, y = data.x_train[index], data.y_train[index]
        if data.augment is not None:
            x = torch.stack(
                [data.augment(x[k], generator) for k, (_, generator) in enumerate(streams)]
            )
        out = self.model(x)
        losses = self.loss_fn(out.flatten(0, 1), y.flatten(0, 1), reduction="none")
        losses = losses.reshape(members, -1).mean(1)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        for group in self.optimizer.param_groups:
            group["lr_scale"] = self.lr_factor(step - 1)
        self.optimizer.step()
        return losses

    # --- members finishing --------------------------------------------------------

    def _finish(self, positions: list[int], train_means: list[float]) -> None:
        """Final evaluation and record of the members at ``positions`` (run_trial's
        end of a seed: validation, whole training set, the last curve row)."""
        data = self.data
        model = self.model
        if len(positions) < len(self.members):
            model = copy.deepcopy(self.model)
            select_members(model, torch.tensor(positions, device=data.x_train.device))
        val = self._evaluate(model, data.x_val, data.y_val)
        train = self._evaluate(model, data.x_train, data.y_train)
        self.model.train()
        for j, k in enumerate(positions):
            member = self.members[k]
            log = member.log
            log.final_train_loss, log.final_train_acc = train[j]
            self._add_eval(member, log.steps_done, train_means[k], val[j])
        self._record([self.members[k] for k in positions])

    def _record(self, members: list[_Member]) -> None:
        wall = self.clock.now()
        for member in members:
            index = member.config_index
            config = self.configs[index]
            record = _trial.make_record(config, self.ids[index], member.log, wall)
            self.records[index][member.log.seed_index] = record
            self.curves[index][member.log.seed_index] = member.log.curves
            if len(self.records[index]) == len(config.seeds):
                self._report(index)

    def _report(self, index: int) -> None:
        config = self.configs[index]
        seeds = range(len(config.seeds))
        records = [self.records[index][s] for s in seeds]
        curves = [row for s in seeds for row in self.curves[index][s]]
        self.finished(index, _trial.trial_result(config, records, curves, self.data))

    def _drop(self, positions: list[int]) -> torch.Tensor:
        """Compact the members at ``positions`` away; returns the kept positions."""
        gone = set(positions)
        kept = [k for k in range(len(self.members)) if k not in gone]
        keep = torch.tensor(kept, dtype=torch.long, device=self.data.x_train.device)
        if gone:
            self.clock.tick(len(self.members))
            self.members = [self.members[k] for k in kept]
            if kept:
                self.optimizer.select_members(keep, select_members(self.model, keep))
        return keep

    # --- helpers ------------------------------------------------------------------

    def _add_eval(
        self, member: _Member, step: int, train_loss: float, val: tuple[float, float]
    ) -> None:
        config = self.configs[member.config_index]
        member.log.add_eval(step, _trial.curve_lr(config, self.lr_factor, step), train_loss, val)

    @torch.no_grad()
    def _evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> list[tuple[float, float]]:
        """Each member's mean loss and accuracy over a whole split, in eval mode
        (``trial._evaluate`` member by member; one host sync)."""
        model.eval()
        members = next(model.parameters()).shape[0]
        loss_sum = torch.zeros(members, dtype=torch.float64, device=x.device)
        correct = torch.zeros(members, dtype=torch.int64, device=x.device)
        chunk = max(1, _EVAL_MEMBER_SAMPLES // members)
        for start in range(0, x.shape[0], chunk):
            xb, target = x[start : start + chunk], y[start : start + chunk]
            out = model(xb.expand(members, *xb.shape))
            targets = target.expand(members, *target.shape)
            losses = self.loss_fn(out.flatten(0, 1), targets.flatten(0, 1), reduction="none")
            loss_sum += losses.reshape(members, -1).sum(1).double()
            if self.classification:
                correct += (out.argmax(dim=-1) == target).flatten(1).sum(1)
        totals, hits = torch.stack([loss_sum, correct.double()]).tolist()
        return [
            _trial.eval_means(total, n, y, self.classification)
            for total, n in zip(totals, hits, strict=True)
        ]


class _ShareClock:
    """Each member's share of the population's wall time: every stretch of time
    is divided among the members training during it."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._share = 0.0
        self._members = 1

    def start(self, members: int) -> None:
        """Divide the time so far (building the members) among ``members``."""
        self.tick(members)

    def tick(self, members: int) -> None:
        """Close the stretch since the last tick, trained by ``members`` members."""
        now = time.perf_counter()
        self._share += (now - self._last) / max(members, 1)
        self._last = now
        self._members = members

    def now(self) -> float:
        """The share of a member that has trained from the start until now."""
        self.tick(self._members)
        return self._share
