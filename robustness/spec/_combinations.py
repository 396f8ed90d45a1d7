"""Keys that are valid one at a time and wrong together.

Each check below refuses a combination that would otherwise pass validation and
then fail or silently do nothing in every configuration of the study: an error
row per run, a scheduler that can stop nothing, a sampler that samples at random.
The message names both keys with their values and what is allowed. The rules
themselves live where they are enforced at run time (``resolve_loss``,
``check_objective``, ``lr_multiplier``), and are called here, so the spec and the
runner never disagree.

Refusing ``device: cuda`` without a GPU request is not here: the device follows
``resources.gpu``, which is checked with it.
"""

from __future__ import annotations

from robustness.errors import UserInputError
from robustness.spec._plan import OptimizerPlan
from robustness.spec._schema import StudySpec


def check_combinations(
    spec: StudySpec, optimizers: dict[str, OptimizerPlan], problems: list[str]
) -> None:
    """Append one line per conflicting combination of ``spec`` to ``problems``."""
    _budget(spec, problems)
    _task(spec, problems)
    _threads(spec, problems)
    _scheduler(spec, problems)
    _cmaes(spec, optimizers, problems)


def _budget(spec: StudySpec, problems: list[str]) -> None:
    """What must fit in a step budget (an epoch budget's steps depend on the data).

    ``eval_every`` above the budget is allowed on its own: the runner always
    evaluates at step 0 and at the end, so it means "no curve in between". Only a
    scheduler needs evaluations in between (``_scheduler``)."""
    problem = spec.problem
    schedule = problem.schedule
    if schedule.name != "step":
        if schedule.milestones:
            problems.append(
                f"problem.schedule.milestones: {list(schedule.milestones)} apply only to "
                f"the 'step' schedule, and problem.schedule.name is {schedule.name!r}; "
                "remove them, or set name: step"
            )
        default_gamma = type(schedule).model_fields["gamma"].default
        if schedule.gamma != default_gamma:
            problems.append(
                f"problem.schedule.gamma: {schedule.gamma} applies only to the 'step' "
                f"schedule, and problem.schedule.name is {schedule.name!r}; remove it, "
                "or set name: step"
            )
    steps = problem.steps
    if steps is None:
        return
    from robustness.runner.schedule import lr_multiplier

    try:
        lr_multiplier(schedule, steps)
    except UserInputError as exc:
        problems.append(
            f"problem.schedule.warmup_steps: {schedule.warmup_steps} with problem.steps: "
            f"{steps}: {exc}"
        )


def _task(spec: StudySpec, problems: list[str]) -> None:
    """The loss and the objective must fit the dataset's task (the runner refuses
    them in every run otherwise)."""
    from robustness.data import TASKS
    from robustness.runner.outcome import check_objective
    from robustness.runner.trial import resolve_loss

    problem = spec.problem
    task = TASKS.get(problem.dataset)
    if task is None:
        return
    dataset = f"problem.dataset {problem.dataset!r}"
    try:
        resolve_loss(problem.loss, task)
    except UserInputError as exc:
        problems.append(f"problem.loss: {exc} ({dataset} is {task})")
    try:
        check_objective(spec.search.objective, task)
    except UserInputError as exc:
        problems.append(f"search.objective: {exc} ({dataset} is {task})")


def _threads(spec: StudySpec, problems: list[str]) -> None:
    threads, cpu = spec.problem.threads, spec.resources.cpu
    if threads is not None and threads > cpu:
        problems.append(
            f"problem.threads: {threads} is more than resources.cpu: {cpu:g}, the CPUs "
            "Ray reserves for a trial, so concurrent trials would fight for cores; allowed: "
            f"at most {int(cpu)}, or raise resources.cpu to {threads}"
        )


def _scheduler(spec: StudySpec, problems: list[str]) -> None:
    """ASHA must be able to stop a configuration before it finishes (its grace
    period is in runs, see ``SchedulerSpec``), and on something better than its
    initial model: at least one evaluation between the start and the end."""
    scheduler = spec.search.scheduler
    if scheduler is None:
        return
    seeds = len(spec.seeds)
    if scheduler.grace_period >= seeds:
        problems.append(
            f"search.scheduler.grace_period: {scheduler.grace_period:g} runs is not below "
            f"the {seeds} seed(s) of a configuration, so {scheduler.name} could stop no "
            f"configuration before it finishes; allowed: below {seeds}, or remove "
            "search.scheduler"
        )
    steps = spec.problem.steps
    if seeds == 1 and steps is not None and spec.problem.eval_every >= steps:
        problems.append(
            f"search.scheduler: {scheduler.name} decides at evaluations, but "
            f"problem.eval_every: {spec.problem.eval_every} with problem.steps: {steps} and one "
            "seed leaves none between the start and the end; allowed: eval_every below "
            f"{steps}, or remove search.scheduler"
        )


def _cmaes(spec: StudySpec, optimizers: dict[str, OptimizerPlan], problems: list[str]) -> None:
    """CMA-ES samples only numeric ranges; list axes are drawn at random beside it, so
    with no range it would be a random search under another name."""
    if spec.search.sampler != "cmaes":
        return
    from optuna.distributions import FloatDistribution, IntDistribution

    for label, entry in optimizers.items():
        numeric = (FloatDistribution, IntDistribution)
        if not any(isinstance(axis.distribution(), numeric) for axis in entry.axes.values()):
            listed = ", ".join(entry.axes)
            problems.append(
                f"search.sampler: 'cmaes' searches numeric ranges only, and every axis of "
                f"optimizers.{label} ({listed}) is a set of values, which it would draw at "
                "random; give at least one axis as a range (e.g. lr: {log: [1e-3, 1]}), "
                "or choose sampler random or tpe"
            )
