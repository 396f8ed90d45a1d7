"""Reading a spec: from a file or a bundled study name, with a safe YAML loader only."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from robustness.errors import UserInputError
from robustness.results.schema import PROVENANCE_KEY
from robustness.spec._problems import invalid_spec, validation_problems
from robustness.spec._schema import StudySpec

_BUNDLE = "robustness.studies"
_SUFFIXES = (".yaml", ".yml")


def _bundled_files() -> dict[str, Any]:
    files = resources.files(_BUNDLE)
    return {
        Path(f.name).stem: f
        for f in sorted(files.iterdir(), key=lambda f: f.name)
        if f.is_file() and f.name.endswith(_SUFFIXES)
    }


def bundled_studies() -> dict[str, str]:
    """Name -> description of every study that ships with the toolkit."""
    out = {}
    for name, file in _bundled_files().items():
        data = _read_yaml(file.read_text(encoding="utf-8"), f"bundled study {name!r}")
        out[name] = str(data.get("description", "")).strip() if isinstance(data, dict) else ""
    return out


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        hint = ""
        if isinstance(exc, yaml.constructor.ConstructorError):
            hint = " (specs are read with a safe loader: only plain YAML, no !!python tags)"
        raise UserInputError(f"{source}:{where}: not valid YAML: {problem}{hint}") from None


def parse_spec(data: Any, source: str = "<spec>") -> StudySpec:
    """Validate already-loaded spec data (a ``provenance`` block is ignored).

    Raises:
        UserInputError: every problem found, one line each, naming its key path.
    """
    if data is None:
        raise UserInputError(f"{source}: the spec is empty")
    if not isinstance(data, dict):
        raise UserInputError(
            f"{source}: a spec is a mapping with keys name, problem, optimizers, space, "
            f"seeds, ...; got {type(data).__name__}"
        )
    # a results directory's spec.yaml is the resolved spec plus its provenance: it
    # can be validated and rerun as it is, the provenance being only a record
    data = {key: value for key, value in data.items() if key != PROVENANCE_KEY}
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise invalid_spec(source, validation_problems(exc)) from None


def load_spec(path_or_name: str | Path) -> StudySpec:
    """Read and validate a spec file, or a bundled study by name (e.g. ``"quickstart"``).

    An existing file wins over a bundled study of the same name. The YAML is read
    with ``yaml.safe_load``; tags that would build Python objects are refused.

    Raises:
        UserInputError: no such file or bundled study, unreadable YAML (with its
            line), or an invalid spec (every problem, one line each).
    """
    path = Path(path_or_name)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserInputError(f"cannot read spec file {str(path)!r}: {exc}") from None
        return parse_spec(_read_yaml(text, str(path)), str(path))
    if path.exists():
        raise UserInputError(f"{str(path)!r} is a directory, not a spec file")
    bundled = _bundled_files()
    name = str(path_or_name)
    stem = Path(name).stem if name.endswith(_SUFFIXES) else name
    if "/" not in name and stem in bundled:
        source = f"bundled study {stem!r}"
        return parse_spec(_read_yaml(bundled[stem].read_text(encoding="utf-8"), source), source)
    raise UserInputError(
        f"no spec file {name!r} and no bundled study of that name; "
        f"bundled studies: {', '.join(bundled) or 'none'}"
    )
