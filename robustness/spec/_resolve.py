"""``make_plan``: resolve a spec against the registries, refusing what cannot run.

Checked here, before anything starts (every problem reported, one line each):
dataset, model and init scheme names and their options (a dataset or model of
the user's own, by import path, is loaded and built once on the CPU); optimizer
labels and their ``base`` or ``class`` (an optimizer class by import path, with
its ``axes`` mapping); which axes apply to each optimizer (``beta2`` does not
apply to SGD: a study-wide axis is dropped there, so no duplicate configurations
run; an override that sets it is refused; for a class, an axis its mapping leaves
out is refused, since the mapping is the user's); the grid sampler's need for
finite axes; and every optimizer keyword argument and axis value, by building the
optimizer on a tiny ``nn.Linear``; then, on a spec with no such problem, the
combinations of keys that are each valid and wrong together (``_combinations``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from robustness._import_path import is_import_path
from robustness.errors import UserInputError
from robustness.spec._axis import AxisSpec
from robustness.spec._combinations import check_combinations
from robustness.spec._plan import OptimizerPlan, Plan
from robustness.spec._problems import invalid_spec
from robustness.spec._schema import CORE_AXES, OptimizerSpec, StudySpec

if TYPE_CHECKING:
    from robustness.optim import OptimizerEntry

_SAMPLER_PACKAGES = {"cmaes": "cmaes"}  # samplers that need a package optuna does not require


def make_plan(spec: StudySpec, *, source: str | None = None) -> Plan:
    """Resolve ``spec`` into a ``Plan``.

    Args:
        spec: a validated spec (``load_spec`` / ``parse_spec``).
        source: how to name the spec in messages (default: its ``name``).

    Raises:
        UserInputError: every problem found, one line each, naming its key path.
    """
    problems: list[str] = []
    _check_problem(spec, problems)
    optimizers = {}
    for label in spec.optimizers:
        entry = _resolve_optimizer(spec, label, problems)
        if entry is not None:
            optimizers[label] = entry
    sampler = spec.search.sampler
    if (
        sampler in _SAMPLER_PACKAGES
        and importlib.util.find_spec(_SAMPLER_PACKAGES[sampler]) is None
    ):
        problems.append(
            f"search.sampler: {sampler!r} needs the {_SAMPLER_PACKAGES[sampler]!r} package "
            f"(pip install {_SAMPLER_PACKAGES[sampler]}), or choose another sampler"
        )
    if not problems:  # combinations of keys that are each valid
        check_combinations(spec, optimizers, problems)
    if problems:
        raise invalid_spec(source or repr(spec.name), list(dict.fromkeys(problems)))
    return Plan(spec=spec, optimizers=optimizers)


def _unknown_options(builder: Callable[..., Any], given: Mapping[str, Any]) -> str | None:
    from robustness._options import keyword_options

    allowed = keyword_options(builder)
    unknown = sorted(set(given) - set(allowed))
    if not unknown:
        return None
    return f"unknown option(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed) or 'none'}"


def _check_problem(spec: StudySpec, problems: list[str]) -> None:
    from robustness.data import DATASETS
    from robustness.models import MODELS

    problem = spec.problem
    count = len(problems)
    for key, name, registry, args in (
        ("dataset", problem.dataset, DATASETS, problem.dataset_args),
        ("model", problem.model, MODELS, problem.model_args),
    ):
        if is_import_path(name):
            continue  # checked below, by calling it
        if name not in registry:
            problems.append(
                f"problem.{key}: unknown {key} {name!r}; allowed: {', '.join(registry)}"
            )
            continue
        unknown = _unknown_options(registry[name], args)
        if unknown:
            problems.append(f"problem.{key}_args: {unknown} for {key} {name!r}")
    user_code = is_import_path(problem.dataset) or is_import_path(problem.model)
    if user_code and len(problems) == count:
        _check_user_code(spec, problems)


def _check_user_code(spec: StudySpec, problems: list[str]) -> None:
    """Load the dataset and build the model once, on the CPU, when either is the
    user's own code by import path: an import that fails, options the function does
    not take, or a result that breaks the contract (a loader that returns no
    ``Dataset``, a factory that returns no ``nn.Module``) is refused now, not in
    every trial. The global RNG is left as it was."""
    import torch

    from robustness.data import load_dataset
    from robustness.models import build_model

    problem = spec.problem
    try:
        data = load_dataset(problem.dataset, root=problem.data_root, **problem.dataset_args)
    except UserInputError as exc:
        problems.append(f"problem.dataset: {exc}")
        return
    except Exception as exc:  # the user's loader may raise anything
        problems.append(f"problem.dataset: {problem.dataset!r} raised {type(exc).__name__}: {exc}")
        return
    with torch.random.fork_rng(devices=[]):
        try:
            build_model(problem.model, data.input_shape, data.num_outputs, **problem.model_args)
        except UserInputError as exc:
            problems.append(f"problem.model: {exc}")
        except Exception as exc:  # the user's factory may raise anything
            problems.append(f"problem.model: {problem.model!r} raised {type(exc).__name__}: {exc}")


def _resolve_optimizer(spec: StudySpec, label: str, problems: list[str]) -> OptimizerPlan | None:
    from robustness.optim import unmapped_axis_message

    entry = spec.optimizers[label]
    where = f"optimizers.{label}"
    built = _optimizer_entry(entry, label, where, problems)
    if built is None:
        return None
    base = built.name
    user_class = entry.class_ is not None

    count = len(problems)
    applies = set(built.swept_axes())
    axes: dict[str, AxisSpec] = {}
    sources: dict[str, str] = {}
    dropped: list[tuple[str, str]] = []
    overrides = entry.space.given() if entry.space is not None else {}
    for name, axis in spec.space.given().items():
        if name in overrides:
            continue
        if name in ("beta", "beta2") and name not in applies and axis is not None:
            if user_class:  # a mapping the user wrote: an axis left out is a mistake
                problems.append(
                    f"{where}: {unmapped_axis_message(built, name)} (the study sweeps it at "
                    f"space.{name}; `space: {{{name}: null}}` under {where} drops it here)"
                )
            else:
                dropped.append((name, f"does not apply to {base}"))
        elif axis is not None:
            axes[name], sources[name] = axis, f"space.{name}"
    for name, axis in overrides.items():
        path = f"{where}.space.{name}"
        if name == "lr" and axis is None:
            problems.append(f"{path}: the learning rate cannot be dropped; give its values")
        elif name in ("beta", "beta2") and name not in applies and axis is not None:
            if user_class:
                problems.append(f"{path}: {unmapped_axis_message(built, name)}")
            else:
                problems.append(
                    f"{path}: {name} does not apply to {base} (its axes: "
                    f"{', '.join(sorted(applies)) or 'none'}); remove it"
                )
        elif axis is None:
            dropped.append((name, f"dropped by {path}"))
        else:
            axes[name], sources[name] = axis, path
    for name in sorted(set(entry.fixed_args) & set(axes)):
        problems.append(
            f"{where}.{name}: fixed here and swept at {sources[name]}; set it in one place"
        )
    order = [n for n in CORE_AXES if n in axes] + [n for n in axes if n not in CORE_AXES]
    axes = {name: axes[name] for name in order}

    if spec.search.sampler == "grid":
        for name, axis in axes.items():
            if not axis.is_finite:
                problems.append(
                    f"{sources[name]}: a {axis.form} distribution cannot be enumerated by the "
                    "grid sampler; give a list, or add `points: n` to a log/linear range"
                )
    if spec.search.sampler == "boundary":
        _check_boundary_axes(axes, sources, problems)
    if "init" in axes:
        _check_inits(spec, axes["init"], sources["init"], problems)
    if len(problems) == count:
        _probe_optimizer(built, entry.fixed_args, axes, sources, where, problems)
    return OptimizerPlan(
        label=label,
        base=base,
        fixed_args=dict(entry.fixed_args),
        axes=axes,
        sources=sources,
        dropped=tuple(dropped),
        optimizer_axes=dict(entry.axes) if entry.axes is not None else None,
        takes=entry.takes,
    )


def _optimizer_entry(
    entry: OptimizerSpec, label: str, where: str, problems: list[str]
) -> OptimizerEntry | None:
    """What an optimizer entry builds: the registered optimizer its label or ``base``
    names, or the class its ``class`` names (with ``axes`` and ``takes``)."""
    from robustness.optim import OPTIMIZERS, optimizer_entry

    if entry.class_ is not None:
        if entry.base is not None:
            problems.append(
                f"{where}: give base (a registered optimizer) or class (an import path), not both"
            )
            return None
        if label in OPTIMIZERS:
            problems.append(
                f"{where}.class: the label {label!r} is itself a registered optimizer; give "
                f"this entry another label to build {entry.class_!r}"
            )
            return None
        try:
            return optimizer_entry(entry.class_, axes=entry.axes, takes=entry.takes)
        except UserInputError as exc:
            problems.append(f"{where}.class: {exc}")
            return None
    for key in ("axes", "takes"):
        if getattr(entry, key) is not None:
            problems.append(
                f"{where}.{key}: only for an optimizer class given by import path "
                f"(`class: package.module:Class`); a registered optimizer's mapping is fixed "
                "(`robustness list optimizers` shows it)"
            )
            return None
    if entry.base is not None and entry.base not in OPTIMIZERS:
        hint = "; a class by import path goes under `class:`" if ":" in entry.base else ""
        problems.append(
            f"{where}.base: unknown optimizer {entry.base!r}; allowed: {', '.join(OPTIMIZERS)}"
            + hint
        )
        return None
    if entry.base is not None and label in OPTIMIZERS and entry.base != label:
        problems.append(
            f"{where}.base: the label {label!r} is itself an optimizer; give this entry "
            f"another label to build {entry.base!r}"
        )
        return None
    base = entry.base or label
    if base not in OPTIMIZERS:
        problems.append(
            f"{where}: {label!r} is not an optimizer ({', '.join(OPTIMIZERS)}); "
            f"a label of your own needs `base: <optimizer>`, or `class: package.module:Class` "
            "for an optimizer class of your own"
        )
        return None
    return optimizer_entry(base)


def _check_inits(spec: StudySpec, axis: AxisSpec, source: str, problems: list[str]) -> None:
    """Apply each init scheme, with ``problem.init_args``, to a tiny layer."""
    import torch
    from torch import nn

    from robustness.init_schemes import INIT_SCHEMES, apply_init

    for i, scheme in enumerate(axis.grid_values()):
        path = f"{source}[{i}]" if axis.form == "list" else source
        if scheme not in INIT_SCHEMES:
            problems.append(
                f"{path}: unknown init scheme {scheme!r}; allowed: {', '.join(INIT_SCHEMES)}"
            )
            continue
        try:
            apply_init(
                nn.Linear(2, 2), scheme, generator=torch.Generator(), **spec.problem.init_args
            )
        except (UserInputError, TypeError, ValueError) as exc:
            problems.append(f"problem.init_args: {exc} (with init scheme {scheme!r})")


def _probe_optimizer(
    base: OptimizerEntry,
    fixed_args: Mapping[str, Any],
    axes: Mapping[str, AxisSpec],
    sources: Mapping[str, str],
    where: str,
    problems: list[str],
) -> None:
    """Build the optimizer with the fixed arguments and every axis value (both bounds of
    a distribution), so a bad argument or value is refused now, not in a trial."""
    count = len(problems)
    probed = {name: axis for name, axis in axes.items() if name != "init"}
    first = {name: axis.extreme_values()[0] for name, axis in probed.items()}
    core = {name: value for name, value in first.items() if name in CORE_AXES}
    error = _build_error(base, fixed_args, core)
    if error:
        point = ", ".join(f"{k}={v!r}" for k, v in core.items())
        problems.append(f"{where}: {error} (building {base.name} with {point})")
        return
    for name in [n for n in first if n not in core]:
        error = _build_error(base, fixed_args, {**core, name: first[name]})
        if error:
            problems.append(
                f"{sources[name]}: {error}; to sweep {name!r} for the other optimizers only, "
                f"write `space: {{{name}: null}}` under {where}"
            )
    if len(problems) > count:
        return
    for name, axis in probed.items():
        for value in axis.extreme_values()[1:]:
            error = _build_error(base, fixed_args, {**first, name: value})
            if error:
                problems.append(f"{sources[name]}: value {value!r} refused by {base.name}: {error}")
                break


def _build_error(
    base: OptimizerEntry, fixed_args: Mapping[str, Any], point: Mapping[str, Any]
) -> str | None:
    from torch import nn

    from robustness.optim import build_optimizer

    extras = {k: v for k, v in point.items() if k not in CORE_AXES}
    try:
        optimizer = build_optimizer(
            base,
            nn.Linear(2, 2),
            lr=point["lr"],
            beta=point.get("beta"),
            beta2=point.get("beta2"),
            **fixed_args,
            **extras,
        )
    except (UserInputError, TypeError, ValueError) as exc:
        return str(exc)
    close = getattr(optimizer, "close", None)
    if close is not None:
        close()
    return None


def _check_boundary_axes(
    axes: Mapping[str, AxisSpec], sources: Mapping[str, str], problems: list[str]
) -> None:
    """The boundary sampler bisects lr on a log range and enumerates every other axis."""
    lr = axes["lr"]
    if lr.form != "log-uniform":
        problems.append(
            f"{sources['lr']}: the boundary sampler bisects lr on a log range; write it as "
            f"{{log: [LO, HI]}} (no points), not a {lr.form}"
        )
    for name, axis in axes.items():
        if name != "lr" and not axis.is_finite:
            problems.append(
                f"{sources[name]}: the boundary sampler enumerates every axis but lr into "
                f"cells; a {axis.form} distribution cannot be enumerated, give a list, or "
                "add `points: n` to a log/linear range"
            )
