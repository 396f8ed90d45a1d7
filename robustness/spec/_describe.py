"""The plan as text, for ``robustness validate`` and ``robustness run --dry-run``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robustness.spec._schema import AUTO_PACK_SECONDS

if TYPE_CHECKING:
    from robustness.spec._plan import Plan


def _args(args: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in args.items())


def _problem_line(plan: Plan) -> str:
    p = plan.spec.problem
    model = f"{p.model} ({_args(p.model_args)})" if p.model_args else p.model
    data = f"{p.dataset} ({_args(p.dataset_args)})" if p.dataset_args else p.dataset
    budget = f"{p.steps} steps" if p.steps is not None else f"{p.epochs:g} epochs"
    parts = [f"{model} on {data}", f"batch {p.batch_size}", budget, f"eval every {p.eval_every}"]
    if p.schedule.name != "constant":
        parts.append(f"{p.schedule.name} schedule")
    if p.init_args:
        parts.append(f"init args {_args(p.init_args)}")
    return ", ".join(parts)


def _search_line(plan: Plan) -> str:
    s = plan.spec.search
    line = f"{s.sampler} sampler"
    if plan.is_boundary:
        line += (
            f": per cell, the largest stable lr to a ratio of {s.resolution:g} "
            "(bracket, then bisect in log lr)"
        )
    elif not plan.is_grid:
        line += f" (seed {s.seed}), {s.n_trials} trials per optimizer"
    line += f"; objective {s.objective} ({s.direction})"
    if s.scheduler is not None:
        line += f"; {s.scheduler.name} early stopping (grace {s.scheduler.grace_period:g} runs)"
    return line


def _resources_line(plan: Plan) -> str:
    r = plan.spec.resources
    concurrent = r.max_concurrent or "as many as the CPUs/GPUs allow"
    return f"{r.cpu:g} CPU, {r.gpu:g} GPU per trial; concurrent trials: {concurrent}"


def _packing_line(plan: Plan) -> str:
    spec = plan.spec
    setting = spec.resources.configs_per_trial
    size = spec.pack_size()
    if size is None:
        return (
            "auto: adaptive, several configurations per Ray trial (about "
            f"{AUTO_PACK_SECONDS:g} s of compute each) once the first ones have finished"
        )
    if setting != "auto":
        return f"{size} configuration{'s' if size > 1 else ''} per Ray trial"
    why = (
        f"the {spec.search.scheduler.name} scheduler stops trials one configuration at a time"
        if spec.search.scheduler is not None
        else f"the {spec.search.sampler} sampler learns from every result"
    )
    return f"auto: 1 configuration per Ray trial ({why})"


def _population_line(plan: Plan) -> str:
    from robustness.runner.grouping import MEMBER_FIELDS, population_key

    setting = plan.spec.resources.population
    if setting == "off":
        return "off: one run at a time"
    size = (
        "as many runs at once as fit the memory budget"
        if setting == "auto"
        else f"up to {setting} runs at once"
    )
    line = (
        f"{setting}: a pack's configurations that differ only in "
        f"{', '.join(f for f in MEMBER_FIELDS if f != 'tags')} or numeric optimizer "
        f"options train as one model, {size}"
    )
    if plan.is_grid:
        keys = {
            population_key(plan.trial_config(label, point))
            for label in plan.labels
            for point in plan.grid_points(label)
        }
        line += f"; this grid has {len(keys)} such group{'s' if len(keys) != 1 else ''}"
    return line


def describe_plan(plan: Plan) -> str:
    """A readable summary: problem, search, per optimizer its axes and counts, totals."""
    spec = plan.spec
    lines = [f"study {spec.name}"]
    if spec.description:
        lines.append("  " + " ".join(spec.description.split()))
    lines += [
        f"  problem    {_problem_line(plan)}",
        f"  search     {_search_line(plan)}",
        f"  seeds      {', '.join(map(str, spec.seeds))}",
        f"  resources  {_resources_line(plan)}",
        f"  packing    {_packing_line(plan)}",
        f"  population {_population_line(plan)}",
        "",
    ]
    for label, entry in plan.optimizers.items():
        head = label if label == entry.base else f"{label} ({entry.base})"
        if entry.fixed_args:
            head += f" with {_args(dict(entry.fixed_args))}"
        n = plan.n_configurations(label)
        if plan.is_boundary:
            lines.append(
                f"{head}: {plan.n_cells(label)} cells, at most "
                f"{plan.max_probes_per_cell(label)} probes each: at most {n} configurations, "
                f"{plan.n_runs(label)} runs"
            )
        else:
            lines.append(f"{head}: {n} configurations, {plan.n_runs(label)} runs")
        width = max((len(name) for name in entry.axes), default=0)
        for name, axis in entry.axes.items():
            lines.append(f"  {name:<{width}}  {axis.describe()}")
        for name, why in entry.dropped:
            lines.append(f"  {name:<{width}}  not swept: {why}")
        size = entry.grid_size
        if not plan.is_grid and not plan.is_boundary and size is not None and size < n:
            lines.append(
                f"  note: only {size} distinct configurations; the sampler may repeat some"
            )
    most = "at most " if plan.is_boundary else ""
    lines += [
        "",
        f"total: {most}{plan.n_configurations()} configurations x {plan.n_seeds} seeds "
        f"= {plan.n_runs()} runs",
    ]
    return "\n".join(lines)
