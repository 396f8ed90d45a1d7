"""`robustness trial`: train one configuration on its seeds, without Ray.

Prints a table per seed (outcome, divergence, losses, accuracy, steps, seconds),
or with ``--json`` one JSON object on stdout: ``config``, ``dataset_metadata``,
``objective``, ``records`` and ``curves`` (non-finite numbers are written as null). Progress
goes to stderr.

With comma lists for ``--lr`` and/or ``--beta`` it trains every combination at once
as one population (``run_population``; trial ids ``c0``, ``c1``, ... in lr-major
order) and prints one summary per configuration, or with ``--json`` a JSON array
of such objects.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from robustness.cli._app import app, stderr, stdout
from robustness.errors import UserInputError
from robustness.runner import TrialConfig

if TYPE_CHECKING:
    from robustness.runner import TrialResult

_DEFAULT_STEPS = 500


@app.command("trial")
def trial_command(
    optimizer: Annotated[
        str,
        typer.Option(
            help="sgd, insgd, novograd, adam, adamw, or a torch.optim.Optimizer subclass by "
            "import path (package.module:Class)"
        ),
    ],
    lr: Annotated[
        str,
        typer.Option(
            help="learning rate, or a comma list: several configurations, trained at once "
            "as one population"
        ),
    ],
    beta: Annotated[
        str | None,
        typer.Option(
            help="first-moment coefficient (SGD/INSGD momentum, NovoGrad/Adam β1), or a comma list"
        ),
    ] = None,
    beta2: Annotated[
        float | None,
        typer.Option(help="second coefficient (NovoGrad/Adam β2, INSGD input-power β)"),
    ] = None,
    init: Annotated[str, typer.Option(help="init scheme")] = "default",
    model: Annotated[str, typer.Option(help="model name")] = "mlp",
    dataset: Annotated[str, typer.Option(help="dataset name")] = "digits",
    seed: Annotated[
        list[str] | None, typer.Option(help="seed; repeat it or give a comma list (default 0)")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help=f"step budget (default {_DEFAULT_STEPS} without --epochs)")
    ] = None,
    epochs: Annotated[float | None, typer.Option(help="epoch budget instead of steps")] = None,
    batch_size: Annotated[str, typer.Option(help="batch size, or 'full'")] = "128",
    eval_every: Annotated[int, typer.Option(help="steps between evaluations")] = 50,
    loss: Annotated[str, typer.Option(help="auto, cross_entropy or mse")] = "auto",
    schedule: Annotated[str, typer.Option(help="lr schedule: constant, step or cosine")] = (
        "constant"
    ),
    milestones: Annotated[
        str | None, typer.Option(help="step schedule milestones, fractions of the budget: 0.5,0.75")
    ] = None,
    gamma: Annotated[float, typer.Option(help="step schedule factor per milestone")] = 0.1,
    warmup_steps: Annotated[int, typer.Option(help="linear lr warmup steps")] = 0,
    loss_factor: Annotated[
        float, typer.Option(help="diverged when a loss exceeds this x the initial loss")
    ] = 10.0,
    stall_margin: Annotated[
        float, typer.Option(help="stalled unless best train loss < (1 - margin) x initial")
    ] = 0.01,
    objective: Annotated[str, typer.Option(help="record column the search would optimize")] = (
        "final_val_loss"
    ),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads (torch)")] = None,
    opt: Annotated[
        list[str] | None, typer.Option(help="optimizer argument KEY=VALUE (repeatable)")
    ] = None,
    axis: Annotated[
        list[str] | None,
        typer.Option(
            help="for an optimizer class by import path: AXIS=ARGUMENT, the constructor "
            "argument an axis sets, e.g. beta=betas.0 (repeatable)"
        ),
    ] = None,
    takes: Annotated[
        str | None,
        typer.Option(
            help="for an optimizer class by import path: 'model' or 'params', what its "
            "first argument is (default: its takes_model attribute, else params)"
        ),
    ] = None,
    model_arg: Annotated[
        list[str] | None, typer.Option(help="model argument KEY=VALUE (repeatable)")
    ] = None,
    init_arg: Annotated[
        list[str] | None, typer.Option(help="init-scheme argument KEY=VALUE (repeatable)")
    ] = None,
    data_arg: Annotated[
        list[str] | None, typer.Option(help="dataset argument KEY=VALUE (repeatable)")
    ] = None,
    data_root: Annotated[str | None, typer.Option(help="where file-based datasets are")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object instead of tables")
    ] = False,
) -> None:
    """Train one configuration on each seed (no Ray) and print what happened."""
    if steps is not None and epochs is not None:
        raise UserInputError("give either --steps or --epochs, not both")
    lrs = _parse_numbers("--lr", lr)
    betas: list[float | None] = [None] if beta is None else list(_parse_numbers("--beta", beta))
    fields: dict[str, Any] = {
        "optimizer": optimizer,
        "optimizer_axes": _parse_axes(axis),
        "optimizer_takes": takes,
        "lr": lrs[0],
        "beta": betas[0],
        "beta2": beta2,
        "init": init,
        "init_args": parse_assignments("--init-arg", init_arg),
        "optimizer_args": parse_assignments("--opt", opt),
        "model": model,
        "model_args": parse_assignments("--model-arg", model_arg),
        "dataset": dataset,
        "dataset_args": parse_assignments("--data-arg", data_arg),
        "data_root": data_root,
        "batch_size": _parse_batch_size(batch_size),
        "steps": _DEFAULT_STEPS if steps is None and epochs is None else steps,
        "epochs": epochs,
        "eval_every": eval_every,
        "loss": loss,
        "schedule": {
            "name": schedule,
            "milestones": _parse_milestones(milestones),
            "gamma": gamma,
            "warmup_steps": warmup_steps,
        },
        "divergence": {"loss_factor": loss_factor, "stall_margin": stall_margin},
        "objective": objective,
        "seeds": _parse_seeds(seed),
        "device": device,
        "threads": threads,
    }
    configs = [_make_config({**fields, "lr": a, "beta": b}) for a in lrs for b in betas]
    if len(configs) > 1:
        _run_population(configs, as_json)
        return
    config = configs[0]
    with stderr.status("training…") as status:

        def show(event: dict[str, Any]) -> None:
            status.update(
                f"seed {event['seed']} ({event['seed_index'] + 1}/{len(config.seeds)}): "
                f"step {event['step']}, train loss {event['train_loss']:.4g}, "
                f"val loss {event['val_loss']:.4g}"
            )

        from robustness.runner import run_trial

        result = run_trial(config, callback=show)
    if as_json:
        typer.echo(json.dumps(_finite_or_null(_as_json(result)), indent=2))
    else:
        _print_summary(result)


def _run_population(configs: list[TrialConfig], as_json: bool) -> None:
    """Several configurations (the lr x beta grid) trained at once as one population."""
    from robustness.runner import run_population

    runs = sum(len(c.seeds) for c in configs)
    with stderr.status(f"training {len(configs)} configurations ({runs} runs) as one population…"):
        results = run_population(configs, trial_ids=[f"c{i}" for i in range(len(configs))])
    if as_json:
        typer.echo(json.dumps(_finite_or_null([_as_json(r) for r in results]), indent=2))
        return
    for result in results:
        _print_summary(result)


def _parse_numbers(option: str, text: str) -> list[float]:
    """A number or a comma list of numbers."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise UserInputError(
            f"{option} takes a number or a comma list of numbers, got {text!r}"
        ) from None
    return values


def _make_config(fields: dict[str, Any]) -> TrialConfig:
    """A ``TrialConfig`` from plain fields; a validation failure is a ``UserInputError``."""
    try:
        return TrialConfig(**fields)
    except ValidationError as exc:
        from robustness.spec._problems import validation_problems  # the spec's wording

        problems = "; ".join(validation_problems(exc))
        raise UserInputError(f"invalid trial configuration: {problems}") from None


def parse_assignments(option: str, items: list[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` as a dict, values read by ``parse_value``.

    Raises:
        UserInputError: an item without ``=`` or with an empty key.
    """
    parsed: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"{option} takes KEY=VALUE, got {item!r}")
        parsed[key.strip()] = parse_value(value.strip())
    return parsed


def parse_value(text: str) -> Any:
    """A command-line value as a Python value.

    ``true``/``false`` → bool, ``none``/``null`` → None, integers and floats as
    numbers, a comma list (optionally in brackets) → list of such values, anything
    else stays a string.
    """
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [parse_value(t.strip()) for t in inner.split(",")] if inner else []
    if "," in text:
        return [parse_value(t.strip()) for t in text.split(",")]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def _parse_axes(items: list[str] | None) -> dict[str, str] | None:
    """``--axis beta=betas.0 ...`` as ``{"beta": "betas.0"}`` (None when not given)."""
    if not items:
        return None
    axes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserInputError(f"--axis takes AXIS=ARGUMENT, e.g. beta=betas.0, got {item!r}")
        axes[key.strip()] = value.strip()
    return axes


def _parse_seeds(items: list[str] | None) -> tuple[int, ...]:
    if not items:
        return (0,)
    seeds = []
    for part in (p.strip() for item in items for p in item.split(",")):
        try:
            seeds.append(int(part))
        except ValueError:
            raise UserInputError(f"--seed takes integers, got {part!r}") from None
    return tuple(seeds)


def _parse_milestones(text: str | None) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UserInputError(
            f"--milestones takes a comma list of fractions, e.g. 0.5,0.75; got {text!r}"
        ) from None


def _parse_batch_size(text: str) -> int | str:
    if text == "full":
        return text
    try:
        return int(text)
    except ValueError:
        raise UserInputError(
            f"--batch-size takes a positive integer or 'full', got {text!r}"
        ) from None


def _as_json(result: TrialResult) -> dict[str, Any]:
    return {
        "config": result.config.model_dump(mode="json"),
        "dataset_metadata": result.dataset_metadata,
        "objective": result.objective,
        "records": result.records,
        "curves": result.curves,
    }


def _finite_or_null(value: Any) -> Any:
    """Replace NaN and ±inf by None, recursively, so the output is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value


def _print_summary(result: TrialResult) -> None:
    c = result.config
    budget = f"{c.steps} steps" if c.steps is not None else f"{c.epochs:g} epochs"
    coefficients = "".join(
        f" {name}={value:g}"
        for name, value in (("beta", c.beta), ("beta2", c.beta2))
        if value is not None
    )
    stdout.print(
        f"[bold]{c.optimizer}[/] lr={c.lr:g}{coefficients} · {c.model} on {c.dataset} · "
        f"init {c.init} · {budget}, batch {c.batch_size}"
    )
    table = Table(show_edge=False)
    table.add_column("")
    for r in result.records:
        table.add_column(f"seed {r['seed']}", justify="right")
    for label, cell in _SUMMARY_ROWS:
        table.add_row(label, *(cell(r) for r in result.records))
    stdout.print(table)
    for r in result.records:
        if r["error"]:
            stdout.print(f"seed {r['seed']} error: {r['error']}", markup=False)
    stdout.print(f"objective ({c.objective}, capped, mean over seeds): {result.objective:.6g}")


def _diverged(record: dict[str, Any]) -> str:
    if record["diverged_step"] is None:
        return "-"
    return f"step {record['diverged_step']} ({record['divergence_cause']})"


_OUTCOME_STYLE = {
    "converged": "[green]{}[/]",
    "diverged": "[red]{}[/]",
    "stalled": "[yellow]{}[/]",
    "error": "[bold red]{}[/]",
}


_SUMMARY_ROWS = (
    ("outcome", lambda r: _OUTCOME_STYLE[r["outcome"]].format(r["outcome"])),
    ("diverged", _diverged),
    ("initial loss", lambda r: _number(r["initial_loss"])),
    ("final train loss", lambda r: _number(r["final_train_loss"])),
    ("best train loss", lambda r: _number(r["best_train_loss"])),
    ("final val loss", lambda r: _number(r["final_val_loss"])),
    ("best val loss", lambda r: _number(r["best_val_loss"])),
    ("final val acc", lambda r: _number(r["final_val_acc"])),
    ("best val acc", lambda r: _number(r["best_val_acc"])),
    ("steps", lambda r: str(r["steps_done"])),
    ("seconds", lambda r: f"{r['wall_seconds']:.2f}"),
)


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"
