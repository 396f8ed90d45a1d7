"""Writing a results directory: atomic files, per-trial parts, final tables, provenance.

Contract (docs/design.md, "The results directory"): every file a reader may open is written
to a temporary file in the same directory and moved into place with ``os.replace``,
so a reader (or a resumed study) never sees half a file.

Each finished configuration is persisted on its own as soon as it completes, as two
part files under ``parts/`` (``<trial_id>.trials.arrow`` and
``<trial_id>.curves.arrow``, Arrow IPC files). The final ``trials.parquet`` and
``curves.parquet`` are built from the parts (``write_tables``), so nothing computed
is lost if the driver dies, and a resumed study rebuilds the tables from what is
there. Parts are Arrow IPC rather than parquet because a study has hundreds of them
and each is a few rows: an IPC file is written in ~0.15 ms and read in ~0.15 ms, a
parquet file in ~0.7 ms and ~1.2 ms (the quickstart's 594 part files). Parquet parts
of a results directory written before this (``<trial_id>.trials.parquet``) are
still read, so such a study can be resumed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from robustness.results.schema import (
    CURVE_COLUMNS,
    CURVES_FILE,
    PROVENANCE_KEY,
    SPEC_FILE,
    TRIAL_COLUMNS,
    TRIALS_FILE,
)

PARTS_DIR = "parts"
RUNNING_DIR = "running"  # <trial_id>.json: how far a running configuration is
_TRIALS_PART = ".trials.arrow"
_CURVES_PART = ".curves.arrow"
_LEGACY_PART_SUFFIX = ".parquet"  # parts written before the Arrow IPC ones: read only
_PROVENANCE_PACKAGES = ("optim-robustness", "torch", "ray", "optuna", "pandas", "numpy")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place.

    The temporary file lives in the same directory, so the rename is atomic on POSIX
    file systems; on failure it is removed and the old ``path`` (if any) is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_frame(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as parquet, atomically."""
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_yaml(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``data`` as block-style YAML (safe dumper), atomically."""
    text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# the pandas dtype of a schema column -> the Arrow type its part files are written with
_ARROW_TYPES = {
    "string": pa.string(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "Int64": pa.int64(),
}


def _arrow_table(rows: Iterable[Mapping[str, Any]], schema: Mapping[str, str]) -> pa.Table:
    """Rows (dicts) as an Arrow table: the schema's columns first, in their types (a
    missing key or a NaN is null), then any extra keys (extra swept axes from
    ``TrialConfig.tags``) with Arrow's inferred types.

    Built column by column with no pandas in between: a part is written at the end of
    every configuration, on the worker's core, and pandas' frame construction and
    dtype conversion took ~12 ms a part for rows this few (this: ~2 ms with the write).
    """
    rows = list(rows)
    extra = dict.fromkeys(key for row in rows for key in row if key not in schema)
    columns = {
        name: pa.array([row.get(name) for row in rows], type=_ARROW_TYPES[dtype], from_pandas=True)
        for name, dtype in schema.items()
    }
    for name in extra:
        columns[name] = pa.array([row.get(name) for row in rows], from_pandas=True)
    return pa.table(columns)


def _write_part_file(table: pa.Table, path: Path) -> Path:
    def write(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
            out.write_table(table)

    return atomic_write(path, write)


def _stored(path: Path) -> Path | None:
    """The part file ``path``, or its legacy parquet twin, whichever exists."""
    if path.exists():
        return path
    legacy = path.with_suffix(_LEGACY_PART_SUFFIX)
    return legacy if legacy.exists() else None


def _read_part_file(path: Path) -> pa.Table:
    if path.suffix == _LEGACY_PART_SUFFIX:
        return pq.read_table(path)
    with pa.OSFile(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _conform(frame: pd.DataFrame, schema: Mapping[str, str]) -> pd.DataFrame:
    """The schema's columns first, in its dtypes; extra columns kept after them."""
    frame = frame.copy()
    for column in schema:
        if column not in frame.columns:
            frame[column] = None
    extra = [c for c in frame.columns if c not in schema]
    frame = frame[[*schema, *extra]]
    return frame.astype(dict(schema))


def part_paths(results_dir: str | Path, trial_id: str) -> tuple[Path, Path]:
    """Where one configuration's records and curves are written."""
    parts = Path(results_dir) / PARTS_DIR
    return parts / f"{trial_id}{_TRIALS_PART}", parts / f"{trial_id}{_CURVES_PART}"


def write_part(
    results_dir: str | Path,
    trial_id: str,
    records: Iterable[Mapping[str, Any]],
    curves: Iterable[Mapping[str, Any]],
) -> None:
    """Persist one finished configuration. The records file is written last, so its
    presence means the part is complete."""
    trials_path, curves_path = part_paths(results_dir, trial_id)
    _write_part_file(_arrow_table(curves, CURVE_COLUMNS), curves_path)
    _write_part_file(_arrow_table(records, TRIAL_COLUMNS), trials_path)


def has_part(results_dir: str | Path, trial_id: str) -> bool:
    """Whether a configuration's results were persisted completely."""
    return _stored(part_paths(results_dir, trial_id)[0]) is not None


def intact_part(results_dir: str | Path, trial_id: str) -> pd.DataFrame | None:
    """One configuration's records when its part is there and whole, else None.

    Whole: both files read as Arrow (or legacy parquet) tables and the records file
    has rows. A part is written atomically, so a damaged one was damaged afterwards
    (a truncated copy, a bad disk); a resumed study runs its configuration again.
    """
    trials_path, curves_path = (_stored(p) for p in part_paths(results_dir, trial_id))
    if trials_path is None:
        return None
    try:
        if curves_path is not None:
            _read_part_file(curves_path)
        records = _read_part_file(trials_path)
    except (OSError, pa.ArrowException):
        return None
    return records.to_pandas() if records.num_rows else None


def set_aside(results_dir: str | Path, trial_id: str) -> list[Path]:
    """Rename a damaged part's files to ``*.damaged`` (kept for inspection, never read)."""
    moved = []
    for path in part_paths(results_dir, trial_id):
        stored = _stored(path)
        if stored is not None:
            target = stored.with_name(stored.name + ".damaged")
            os.replace(stored, target)
            moved.append(target)
    return moved


def read_part_records(results_dir: str | Path, trial_id: str) -> pd.DataFrame:
    """One persisted configuration's records."""
    path = _stored(part_paths(results_dir, trial_id)[0])
    if path is None:
        raise FileNotFoundError(f"no part for {trial_id!r} in {Path(results_dir) / PARTS_DIR}")
    return _read_part_file(path).to_pandas()


class MissingPartsError(RuntimeError):
    """A configuration counted as done has no part: its runs would be missing."""


def write_tables(results_dir: str | Path, trial_ids: Iterable[str]) -> tuple[int, int]:
    """Build ``trials.parquet`` and ``curves.parquet`` from the parts of ``trial_ids``.

    Only the listed trials are included (the engine passes the ones its Optuna
    storage counts as done), so a part left by an abandoned trial never doubles a
    run. Returns the number of trial rows and curve rows written.

    Raises:
        MissingPartsError: a listed trial has no part (nothing is written then: a
            table without its runs would bias every result towards the others).
    """
    results_dir = Path(results_dir)
    ids = sorted(set(trial_ids))
    paths = {trial_id: [_stored(p) for p in part_paths(results_dir, trial_id)] for trial_id in ids}
    missing = [trial_id for trial_id, (records, _) in paths.items() if records is None]
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise MissingPartsError(
            f"{len(missing)} finished configuration(s) have no part in "
            f"{results_dir / PARTS_DIR}: {shown}; their runs would be missing from "
            f"{TRIALS_FILE}, so it is not written"
        )
    trials, curves = [], []
    for trial_id in ids:
        trials_path, curves_path = paths[trial_id]
        trials.append(_read_part_file(trials_path))
        if curves_path is not None:
            curves.append(_read_part_file(curves_path))
    # one frame, converted to the schema's dtypes once
    trials_table = _conform(_concat(trials), TRIAL_COLUMNS)
    curves_table = _conform(_concat(curves), CURVE_COLUMNS)
    write_frame(trials_table, results_dir / TRIALS_FILE)
    write_frame(curves_table, results_dir / CURVES_FILE)
    return len(trials_table), len(curves_table)


def read_parts(results_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every part under ``parts/`` as (trials, curves) frames in the schema's dtypes.

    What a results directory holds when its driver was killed before it wrote the
    tables (a SIGKILL skips every ``finally``). Without the Optuna storage it
    cannot tell a finished configuration from one a dead driver's shutdown cut
    short, so it reads them all; the tables, when written, are the record.
    """
    legacy = _TRIALS_PART.replace(".arrow", _LEGACY_PART_SUFFIX)  # .trials.parquet
    parts = Path(results_dir) / PARTS_DIR
    names = [p.name for p in parts.iterdir()] if parts.is_dir() else []
    trial_ids = sorted(
        {
            n.removesuffix(_TRIALS_PART).removesuffix(legacy)
            for n in names
            if n.endswith((_TRIALS_PART, legacy))
        }
    )
    trials, curves = [], []
    for trial_id in trial_ids:
        trials_path, curves_path = (_stored(p) for p in part_paths(results_dir, trial_id))
        trials.append(_read_part_file(trials_path))
        if curves_path is not None:
            curves.append(_read_part_file(curves_path))
    return _conform(_concat(trials), TRIAL_COLUMNS), _conform(_concat(curves), CURVE_COLUMNS)


def _concat(tables: list[pa.Table]) -> pd.DataFrame:
    """The parts' tables as one frame; a column some parts lack (an axis of another
    optimizer) is null there. Types are unified permissively, so parts written by
    pandas (large strings; a resumed study from before Arrow parts) join the rest."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pd.DataFrame()
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def write_running(results_dir: str | Path, trial_id: str, info: Mapping[str, Any]) -> None:
    """Say how far a running configuration is (``running/<trial_id>.json``, atomic).

    A small JSON object, written by the trainable at most every few seconds, read by
    the progress display and ``robustness status``; removed (``clear_running``) once
    the configuration's part is written. A file left by a killed worker is ignored by
    readers once its configuration is done or no driver runs.
    """
    text = json.dumps(dict(info), separators=(",", ":"))
    path = Path(results_dir) / RUNNING_DIR / f"{trial_id}.json"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def clear_running(results_dir: str | Path, trial_id: str) -> None:
    (Path(results_dir) / RUNNING_DIR / f"{trial_id}.json").unlink(missing_ok=True)


def read_running(results_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Trial id -> the last ``write_running`` info of each configuration that has one."""
    found = {}
    for path in sorted((Path(results_dir) / RUNNING_DIR).glob("*.json")):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # removed meanwhile
        if isinstance(info, dict):
            found[path.stem] = info
    return found


def provenance(started: _dt.datetime, finished: _dt.datetime | None = None) -> dict[str, Any]:
    """Package versions, git commit (if any), host, Python and the study's start/end."""
    versions = {}
    for package in _PROVENANCE_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "started": started.isoformat(timespec="seconds"),
        "finished": None if finished is None else finished.isoformat(timespec="seconds"),
    }


def write_spec(results_dir: str | Path, spec: Mapping[str, Any], prov: Mapping[str, Any]) -> Path:
    """Write ``spec.yaml``: the resolved spec with a ``provenance`` mapping added."""
    return write_yaml({**spec, PROVENANCE_KEY: dict(prov)}, Path(results_dir) / SPEC_FILE)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def utc_now() -> _dt.datetime:
    """The current time in UTC (what provenance timestamps use)."""
    return _dt.datetime.now(_dt.timezone.utc)
