"""``TrialConfig``: everything one trial needs, as plain validated values.

This is the contract between the study plan (which makes one ``TrialConfig`` per
configuration) and the trial runner (which trains it on each seed). It is
JSON-serializable so Ray can ship it and ``--json`` can print it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DivergenceConfig(_Strict):
    """When a run counts as diverged or stalled (docs/design.md, "Outcomes")."""

    loss_factor: float = Field(10.0, gt=1.0, description="diverged when loss > factor x initial")
    stall_margin: float = Field(
        0.01,
        ge=0.0,
        lt=1.0,
        description="stalled unless best train loss < (1 - margin) x initial loss",
    )


class ScheduleConfig(_Strict):
    """Learning-rate schedule over the step budget.

    ``step``: multiply by ``gamma`` at each milestone, given as fractions of the
    budget (the INSGD paper's CIFAR schedule is ``[0.5, 0.75]``, gamma 0.1).
    ``cosine``: cosine decay to zero. ``warmup_steps`` applies to all.
    """

    name: Literal["constant", "step", "cosine"] = "constant"
    milestones: tuple[float, ...] = ()
    gamma: float = Field(0.1, gt=0.0)
    warmup_steps: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _milestones_are_fractions(self) -> ScheduleConfig:
        if any(not 0.0 < m < 1.0 for m in self.milestones):
            raise ValueError(
                f"milestones must be fractions of the budget in (0, 1), got {list(self.milestones)}"
            )
        if self.name == "step" and not self.milestones:
            raise ValueError("schedule 'step' needs at least one milestone, e.g. [0.5, 0.75]")
        return self


class TrialConfig(_Strict):
    """One hyperparameter configuration, trained once per seed."""

    optimizer: str = Field(
        description="a registered optimizer name, or a torch.optim.Optimizer subclass by "
        "import path (package.module:Class)"
    )
    optimizer_axes: dict[str, str] | None = Field(
        None,
        description="for a class by import path: the constructor argument each swept axis "
        "sets, e.g. {beta: betas.0, beta2: betas.1}",
    )
    optimizer_takes: Literal["params", "model"] | None = Field(
        None, description="for a class by import path: what its first argument is"
    )
    lr: PositiveFloat
    beta: float | None = Field(None, description="first-moment coefficient; None = default")
    beta2: float | None = Field(None, description="second coefficient; None = default")
    init: str = "default"
    init_args: dict[str, Any] = Field(default_factory=dict)
    optimizer_args: dict[str, Any] = Field(default_factory=dict)
    model: str = "mlp"
    model_args: dict[str, Any] = Field(default_factory=dict)
    dataset: str = "digits"
    dataset_args: dict[str, Any] = Field(default_factory=dict)
    data_root: str | None = None
    batch_size: PositiveInt | Literal["full"] = 128
    steps: PositiveInt | None = None
    epochs: PositiveFloat | None = None
    eval_every: PositiveInt = 50
    loss: Literal["auto", "cross_entropy", "mse"] = "auto"
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    divergence: DivergenceConfig = Field(default_factory=DivergenceConfig)
    objective: str = Field(
        "final_val_loss",
        description="record column the search optimizes; *_acc columns are maximized",
    )
    seeds: tuple[int, ...] = (0,)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    tf32: bool = Field(False, description="allow TF32 matmuls and convolutions on CUDA")
    threads: PositiveInt | None = None
    tags: dict[str, Any] = Field(
        default_factory=dict,
        description="extra swept axes, copied into every record as columns",
    )

    @model_validator(mode="after")
    def _one_budget(self) -> TrialConfig:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one budget: 'steps' or 'epochs'")
        if not self.seeds:
            raise ValueError("'seeds' must list at least one seed")
        return self
