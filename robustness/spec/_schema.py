"""The study spec as validated pydantic models (docs/design.md, "The study spec").

``StudySpec`` checks everything that can be checked from the YAML alone: key names,
types, ranges, the search settings. Checks against the registries (is ``resnet20``
a model, does NovoGrad take ``nesterov``) happen when the plan is made
(``robustness.spec.make_plan``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PlainValidator,
    PositiveFloat,
    PositiveInt,
    StrictInt,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from robustness.results.schema import TRIAL_COLUMNS
from robustness.runner.config import DivergenceConfig, ScheduleConfig
from robustness.runner.device import device_conflict
from robustness.spec._axis import AxisSpec
from robustness.spec._section import KnownKeys, Section

OBJECTIVES: tuple[str, ...] = tuple(c for c in TRIAL_COLUMNS if c.startswith(("final_", "best_")))
"""Record columns a search may optimize; ``*_acc`` ones are maximized, the others minimized."""

Sampler = Literal["grid", "random", "tpe", "gp", "qmc", "cmaes", "boundary"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)
CORE_AXES = ("lr", "init", "beta", "beta2")
"""Axes with their own TrialConfig field; any other axis is an optimizer keyword argument."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "name",
            "a name is letters, digits, '_', '.' and '-', starting with a letter or digit "
            f"(it names files and results columns), got {value!r}",
        )
    return value


Name = Annotated[str, AfterValidator(_name)]
Coefficient = Annotated[float, Field(ge=0.0, lt=1.0)]


def _scalar(value: Any) -> Any:
    if isinstance(value, str) and any(ch.isdigit() for ch in value):
        # YAML 1.1 (PyYAML) reads 1e-4 without a dot as a string; mean the number.
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, (bool, int, float, str)):
        return value
    raise PydanticCustomError(
        "scalar", f"an axis value must be a number, a string or a boolean, got {value!r}"
    )


def _batch_size(value: Any) -> int | str:
    if value == "full" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise PydanticCustomError("batch_size", f"must be a positive integer or 'full' (got {value!r})")


def _configs_per_trial(value: Any) -> int | str:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise PydanticCustomError(
        "configs_per_trial",
        f"must be a positive integer (configurations per Ray trial) or 'auto' (got {value!r})",
    )


def _population(value: Any) -> int | str:
    if value is False:  # YAML 1.1 (the safe loader) reads a bare `off` as false
        return "off"
    if value in ("auto", "off") or (
        isinstance(value, int) and not isinstance(value, bool) and value > 0
    ):
        return value
    raise PydanticCustomError(
        "population",
        "must be 'auto', 'off' or a positive integer (runs trained at once as one "
        f"model) (got {value!r})",
    )


Scalar = Annotated[Any, PlainValidator(_scalar)]
BatchSize = Annotated[Any, PlainValidator(_batch_size)]
ConfigsPerTrial = Annotated[Any, PlainValidator(_configs_per_trial)]
Population = Annotated[Any, PlainValidator(_population)]

PACKING_SAMPLERS = ("grid", "random", "qmc", "boundary")
"""Samplers whose suggestions within one pack never depend on each other's results:
``auto`` packs configurations into Ray trials only for these. ``boundary`` learns
from every result, but a pack holds at most one probe of a cell in bisection (the
next probe of a cell waits for the previous one), so packing only groups cells."""
DEFAULT_RESOLUTION = 1.1
"""``search.resolution`` of the boundary sampler: first unstable / last stable lr."""
AUTO_PACK_SECONDS = 2.5
"""``configs_per_trial: auto`` sizes a pack to about this much compute (seconds)."""


def direction_of(objective: str) -> Literal["minimize", "maximize"]:
    """Accuracies are maximized, everything else (losses) minimized."""
    return "maximize" if objective.endswith("_acc") else "minimize"


class SpaceSpec(BaseModel):
    """The swept axes. Keys other than the core ones are extra axes: optimizer kwargs.

    Under an optimizer entry (``optimizers.<label>.space``) the same keys override
    the study's axes for that optimizer, and ``null`` drops an axis there.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, AxisSpec[Scalar] | None]  # type: ignore[assignment]

    lr: AxisSpec[PositiveFloat] | None = Field(None, description="learning rate (> 0)")
    init: AxisSpec[str] | None = Field(None, description="init scheme names")
    beta: AxisSpec[Coefficient] | None = Field(
        None, description="SGD / INSGD momentum, NovoGrad beta1, in [0, 1)"
    )
    beta2: AxisSpec[Coefficient] | None = Field(
        None, description="NovoGrad beta2, INSGD input-power beta, in [0, 1)"
    )

    @model_validator(mode="after")
    def _extra_axes_are_not_columns(self) -> SpaceSpec:
        for name in self.model_extra or {}:
            if not name.isidentifier():
                raise ValueError(f"axis name {name!r} is not a keyword-argument name")
            if name in TRIAL_COLUMNS:
                raise ValueError(
                    f"{name!r} is a results column, not an optimizer argument; extra axes "
                    f"(beyond {', '.join(CORE_AXES)}) are optimizer keyword arguments"
                )
        return self

    @model_serializer
    def _as_written(self) -> dict[str, Any]:
        """Only the axes that were written, so an override's unset axes stay unset."""
        return self.given()

    def given(self) -> dict[str, AxisSpec | None]:
        """The axes written in the YAML, core ones first (``None``: explicitly dropped)."""
        core = {name: getattr(self, name) for name in CORE_AXES if name in self.model_fields_set}
        return {**core, **(self.model_extra or {})}


class OptimizerSpec(BaseModel):
    """One optimizer entry: ``base`` (when the label is not a registered name) or
    ``class`` (a ``torch.optim.Optimizer`` subclass by import path, with ``axes``
    and ``takes``), axis overrides under ``space``, and any other key is a fixed
    keyword argument."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    base: str | None = Field(None, description="registered optimizer name, if the label is not one")
    class_: str | None = Field(
        None,
        alias="class",
        description="a torch.optim.Optimizer subclass by import path, package.module:Class",
    )
    axes: dict[str, str] | None = Field(
        None,
        description="with class: the constructor argument each swept axis sets, e.g. "
        "{beta: betas.0, beta2: betas.1}",
    )
    takes: Literal["params", "model"] | None = Field(
        None,
        description="with class: whether its first argument is the model's parameters or the "
        "model (default: the class attribute takes_model, else params)",
    )
    space: SpaceSpec | None = Field(None, description="this optimizer's axis overrides")

    @model_validator(mode="before")
    @classmethod
    def _empty_entry(cls, data: Any) -> Any:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise PydanticCustomError(
                "optimizer_entry",
                "an optimizer entry is a mapping of fixed keyword arguments (or empty), "
                f"got {data!r}",
            )
        axes = [key for key in CORE_AXES if key in data]
        if axes:
            raise PydanticCustomError(
                "optimizer_axis",
                f"{', '.join(axes)}: swept axes, not fixed arguments; to fix one for this "
                f"optimizer write `space: {{{axes[0]}: [{data[axes[0]]!r}]}}` under it",
            )
        return data

    @property
    def fixed_args(self) -> dict[str, Any]:
        """The fixed keyword arguments passed to the optimizer on every run."""
        return dict(self.model_extra or {})


class SchedulerSpec(Section):
    """Early stopping of unpromising configurations by Ray Tune's ASHA."""

    name: Literal["asha"] = "asha"
    grace_period: PositiveFloat = Field(
        0.25,
        description="progress before a configuration may be stopped, in runs: 0.25 is a "
        "quarter of its first seed's budget, 1.0 its whole first seed",
    )
    reduction_factor: float = Field(3.0, gt=1.0)


class SearchSpec(Section):
    """How configurations are chosen and what they are ranked by."""

    sampler: Sampler = "grid"
    n_trials: PositiveInt | None = Field(
        None, description="configurations per optimizer (non-grid samplers)"
    )
    seed: int = Field(0, description="the sampler's seed")
    objective: str = "final_val_loss"
    direction: Literal["minimize", "maximize"] | None = None
    scheduler: SchedulerSpec | None = None
    resolution: float = Field(
        DEFAULT_RESOLUTION,
        description="boundary sampler: stop when first unstable / last stable lr is at "
        "most this (> 1)",
    )
    band: bool = Field(
        False,
        description="boundary sampler: also locate each cell's good band (the lrs whose "
        "capped objective is within the report's tolerance of the cell's best) to "
        "resolution",
    )

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, value: str) -> str:
        if value not in OBJECTIVES:
            raise ValueError(f"unknown objective {value!r}; allowed: {', '.join(OBJECTIVES)}")
        return value

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_shorthand(cls, value: Any) -> Any:
        if value in (None, "none"):
            return None
        return {"name": value} if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _boundary_keys_for_boundary(self, handler: Any) -> dict[str, Any]:
        """``resolution`` and ``band`` only where they mean something, so the resolved spec of a
        study with another sampler is the same as before the key existed (resume)."""
        data = handler(self)
        if self.sampler != "boundary":
            data.pop("resolution", None)
        if not self.band:  # a boundary study from before the key resolves as it did
            data.pop("band", None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpec:
        if self.sampler == "boundary":
            self._check_boundary()
        else:
            for key in ("resolution", "band"):
                if key in self.model_fields_set:
                    raise ValueError(
                        f"{key} is used only by the boundary sampler, not {self.sampler!r}; "
                        "remove it, or set sampler: boundary"
                    )
        if self.sampler == "grid" and self.n_trials is not None:
            raise ValueError(
                "n_trials is not used by the grid sampler (it runs every configuration of "
                "the grid); remove it, or choose a non-grid sampler"
            )
        if self.sampler not in ("grid", "boundary") and self.n_trials is None:
            raise ValueError(
                f"the {self.sampler!r} sampler needs n_trials (configurations per optimizer)"
            )
        wanted = direction_of(self.objective)
        if self.direction is not None and self.direction != wanted:
            raise ValueError(
                f"direction {self.direction!r} contradicts objective {self.objective!r}, "
                f"which is {wanted}d; remove direction or set it to {wanted!r}"
            )
        if self.direction is None:
            object.__setattr__(self, "direction", wanted)
        return self

    def _check_boundary(self) -> None:
        if self.n_trials is not None:
            raise ValueError(
                "n_trials is not used by the boundary sampler (it probes each cell until "
                "the boundary is bracketed to search.resolution); remove n_trials"
            )
        if self.scheduler is not None:
            raise ValueError(
                f"the {self.scheduler.name} scheduler cannot be used with the boundary "
                "sampler: a run stopped early says nothing about divergence; remove "
                "search.scheduler"
            )
        if not (math.isfinite(self.resolution) and self.resolution > 1):
            raise ValueError(
                f"resolution must be a number greater than 1 (the ratio first unstable / "
                f"last stable lr, e.g. 1.1 for 10%), got {self.resolution!r}"
            )


class ScheduleSpec(KnownKeys, ScheduleConfig):
    """``ScheduleConfig`` with the spec's unknown-key message."""


class DivergenceSpec(KnownKeys, DivergenceConfig):
    """``DivergenceConfig`` with the spec's unknown-key message."""


class ProblemSpec(Section):
    """What is trained, on what, for how long: the fixed part of every TrialConfig."""

    dataset: str
    dataset_args: dict[str, Any] = Field(default_factory=dict)
    data_root: str | None = None
    model: str
    model_args: dict[str, Any] = Field(default_factory=dict)
    init_args: dict[str, Any] = Field(
        default_factory=dict, description="options of the init schemes, e.g. gain"
    )
    batch_size: BatchSize = 128
    steps: PositiveInt | None = None
    epochs: PositiveFloat | None = None
    eval_every: PositiveInt = 50
    loss: Literal["auto", "cross_entropy", "mse"] = "auto"
    schedule: ScheduleSpec = Field(default_factory=lambda: ScheduleSpec())
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA exactly when resources.gpu > 0"
    )
    tf32: bool = Field(
        False,
        description="allow TF32 matmuls and convolutions on CUDA (faster on Ampere and "
        "later, ~1e-3 relative error; off: full float32)",
    )
    threads: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_budget(self) -> ProblemSpec:
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give one budget, 'steps' or 'epochs', not both")
        if self.steps is None and self.epochs is None:
            raise ValueError("give a budget: 'steps' or 'epochs'")
        return self


class ResourcesSpec(Section):
    """What Ray reserves per trial, how many trials run at once, and how many
    configurations one Ray trial carries."""

    cpu: PositiveFloat = 1.0
    gpu: NonNegativeFloat = Field(0.0, description="fractions share one GPU, e.g. 0.25")
    max_concurrent: PositiveInt | None = Field(
        None,
        description="default: as many as the cluster's CPUs (and GPUs) allow when the "
        "study starts (on an autoscaling cluster, set it to the size it may grow to)",
    )
    configs_per_trial: ConfigsPerTrial = Field(
        "auto",
        description="configurations one Ray trial runs one after another (each on every "
        "seed), so Ray's per-trial cost is paid once per pack: a positive integer, or "
        "'auto' (adaptive, for the grid, random, qmc and boundary samplers without a scheduler; "
        "1 otherwise)",
    )

    max_retries: NonNegativeInt = Field(
        2,
        description="times a Ray trial whose worker died (killed, out of memory, node "
        "lost) is run again before its configuration is recorded as an error",
    )

    population: Population = Field(
        "auto",
        description="population training: the configurations of a Ray trial's pack that "
        "differ only in lr, beta, beta2, init, seeds and numeric optimizer options train "
        "at once as one vectorised model. 'auto' (as many runs at once as fit a memory "
        "budget), 'off' (one run at a time), or the most runs (configuration x seed) "
        "trained at once",
    )

    @field_validator("gpu")
    @classmethod
    def _whole_beyond_one(cls, value: float) -> float:
        if value > 1 and not float(value).is_integer():
            raise ValueError(
                f"a trial may take a fraction of one GPU (0 < gpu <= 1) or whole GPUs, got {value}"
            )
        return value


class AnalysisSpec(Section):
    """How the report compares optimizers."""

    baseline: Name | None = Field(
        None,
        description="the optimizer label every other one is compared with (paired "
        "comparison, learning-rate shift); default sgd when the study has it, else the "
        "first label in alphabetical order",
    )


class StudySpec(Section):
    """A whole study: the problem, the optimizers, the swept axes, seeds, search."""

    name: Name
    description: str = ""
    problem: ProblemSpec
    optimizers: dict[Name, OptimizerSpec] = Field(min_length=1)
    space: SpaceSpec
    seeds: list[StrictInt] = Field(min_length=1)
    search: SearchSpec = Field(default_factory=lambda: SearchSpec())
    divergence: DivergenceSpec = Field(default_factory=lambda: DivergenceSpec())
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)

    @model_validator(mode="after")
    def _baseline_is_an_optimizer(self) -> StudySpec:
        wanted = self.analysis.baseline
        if wanted is not None and wanted not in self.optimizers:
            raise ValueError(
                f"analysis.baseline {wanted!r} is not an optimizer of this study; "
                f"allowed: {', '.join(self.optimizers)}"
            )
        return self

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        repeated = sorted({s for s in value if value.count(s) > 1})
        if repeated:
            raise ValueError(f"seeds repeat: {repeated}; list each seed once")
        return value

    @model_validator(mode="after")
    def _device_fits_resources(self) -> StudySpec:
        conflict = device_conflict(self.problem.device, self.resources.gpu)
        if conflict is not None:
            raise ValueError(conflict)
        return self

    @model_validator(mode="after")
    def _packing_without_scheduler(self) -> StudySpec:
        packed = self.resources.configs_per_trial
        if self.search.scheduler is not None and packed != "auto" and packed > 1:
            raise ValueError(
                f"resources.configs_per_trial: {packed} configurations per Ray trial cannot "
                f"be used with the {self.search.scheduler.name} scheduler, which stops Ray "
                "trials early and must stop one configuration at a time; allowed with a "
                "scheduler: 1 or 'auto' (which then means 1), or remove search.scheduler"
            )
        return self

    def pack_size(self) -> int | None:
        """Configurations per Ray trial: a fixed number, or None for adaptive packing.

        An explicit ``resources.configs_per_trial`` applies to any sampler. ``auto`` is
        adaptive (None) for the samplers of ``PACKING_SAMPLERS`` without a scheduler,
        and 1 otherwise: a model-based sampler (tpe, gp, cmaes) would suggest a pack's
        later configurations without the results of its earlier ones, and a scheduler
        stops Ray trials, so it needs one configuration per trial.
        """
        packed = self.resources.configs_per_trial
        if packed != "auto":
            return int(packed)
        if self.search.scheduler is not None or self.search.sampler not in PACKING_SAMPLERS:
            return 1
        return None

    @field_validator("space")
    @classmethod
    def _has_lr(cls, value: SpaceSpec) -> SpaceSpec:
        if value.lr is None:
            raise ValueError("the learning-rate axis 'lr' is required")
        return value

    def resolved(self) -> dict[str, Any]:
        """The spec with every default filled in, as plain YAML-ready data.

        Axes keep the form they were written in, so ``parse_spec(spec.resolved())``
        gives back an equal spec.
        """
        return self.model_dump(mode="json", by_alias=True)
