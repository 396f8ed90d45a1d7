"""The study spec (YAML) and the plan made from it.

Public API:

- ``load_spec(path_or_name) -> StudySpec``: a spec file, or a bundled study by name
  (``"quickstart"``); safe YAML only; a bad spec raises ``UserInputError`` listing
  every problem with its key path.
- ``parse_spec(data, source) -> StudySpec``: the same for already-loaded data.
- ``make_plan(spec) -> Plan``: checks the spec against the registries (datasets,
  models, init schemes, optimizers and their arguments) and resolves, per
  optimizer label, the axes that apply, the grid or distributions, and the counts.
- ``Plan``: ``labels``, ``grid(label)``, ``grid_points(label)``,
  ``distributions(label)``, ``n_configurations(label=None)``, ``n_runs(label=None)``,
  ``trial_config(label, params)``, ``describe()``.
- ``describe_plan(plan) -> str``: the plan as text.
- ``bundled_studies() -> dict[str, str]``: name -> description of the shipped studies.
- ``OBJECTIVES``, ``SAMPLERS``: the allowed ``search.objective`` and ``search.sampler``.
- ``PACKING_SAMPLERS``, ``AUTO_PACK_SECONDS``: the samplers ``resources.configs_per_trial: auto`` packs for
  and the compute per Ray trial it aims at (``StudySpec.pack_size()`` resolves the
  setting).
"""

from robustness.spec._axis import AxisSpec
from robustness.spec._describe import describe_plan
from robustness.spec._load import bundled_studies, load_spec, parse_spec
from robustness.spec._plan import OptimizerPlan, Plan
from robustness.spec._resolve import make_plan
from robustness.spec._schema import (
    AUTO_PACK_SECONDS,
    OBJECTIVES,
    PACKING_SAMPLERS,
    SAMPLERS,
    StudySpec,
    direction_of,
)

__all__ = [
    "AUTO_PACK_SECONDS",
    "OBJECTIVES",
    "PACKING_SAMPLERS",
    "SAMPLERS",
    "AxisSpec",
    "OptimizerPlan",
    "Plan",
    "StudySpec",
    "bundled_studies",
    "describe_plan",
    "direction_of",
    "load_spec",
    "make_plan",
    "parse_spec",
]
