"""Rendering the report: figures drawn from its tables, and the files written.

Contract: ``render_report(report, out_dir=None, figures=None) -> Path`` writes, into
``out_dir`` (default ``<results dir>/report``):

- ``index.html``: self-contained (figures as base64 PNG data URIs, inline CSS, no
  script, no external resource), opens from a file with no server;
- ``report.md``: the same content, figures referenced by relative path;
- ``figures/``: every figure as PNG and SVG;
- ``tables/``: every table as CSV (full precision) and LaTeX;

and returns the path of ``index.html``. ``report_figures`` draws the figures the
sections name, from the report's tables only (``analysis.figures`` draws, it
computes nothing), so every number a figure shows is in a table.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import os
import platform
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from analysis import figures as fig
from analysis.boundary import boundary_map, is_boundary_study
from analysis.document import Report, Table
from analysis.study import axes_label, direction_word
from robustness.results.schema import OUTCOMES, REPORT_DIR

__all__ = ["FIGURE_CAPTIONS", "render_report", "report_figures"]

HTML_TABLE_ROWS = 40  # longer tables are cut in the page; the CSV holds every row


def report_figures(report: Report) -> dict[str, Figure]:
    """Draw every figure the sections ask for, by name. A figure that fails is dropped
    from its section, which then says why.

    The study's extra swept axes (``report.axes``) are a dimension of every figure:
    each line, row of panels or colour is one optimizer *and* one value of those
    axes, labelled e.g. "sgd (weight_decay 0.0005)".
    """
    boundary = is_boundary_study(report.results.spec)

    def table(name: str) -> pd.DataFrame:
        return labelled(report.tables[name].frame, report.axes)

    drawers: dict[str, Callable[[], Figure]] = {
        "divergence_map": lambda: (boundary_map if boundary else fig.divergence_map)(
            table("divergence_probability"), labelled(report.data("map_boundary"), report.axes)
        ),
        "sensitivity": lambda: fig.sensitivity_curves(table("lr_profile"), metric=report.metric),
        "stability": lambda: fig.stability_intervals(
            _stability_frame(table("max_stable_lr"), boundary), table("lr_band")
        ),
        "lr_shift": lambda: fig.shift_profiles(table("lr_shift_profiles"), metric=report.metric),
        "tunability": lambda: fig.tunability_curves(table("expected_max"), metric=report.metric),
        "importance": lambda: fig.importance_bars(report.tables["importance"].frame),
        "training_curves": lambda: fig.training_curves(
            report.data("example_curves"), labelled(report.data("example_runs"), report.axes)
        ),
    }
    figures = {}
    for section in report.sections:
        for name in list(section.figures):
            try:
                figures[name] = drawers[name]()
            except Exception as exc:
                section.figures.remove(name)
                message = f"figure {name} could not be drawn: {type(exc).__name__}: {exc}"
                section.add_note(message)
                report.failures.append(message)
    return figures


def labelled(frame: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """``frame`` with its extra axes folded into the optimizer label, so every figure
    draws one line/row/colour per optimizer and axis value (unchanged without axes)."""
    if not axes or frame.empty or not set(axes) <= set(frame.columns):
        return frame
    words = [axes_label(row, axes) for _, row in frame[axes].iterrows()]
    label = frame["optimizer"].astype(str) + " (" + pd.Series(words, index=frame.index) + ")"
    return frame.assign(optimizer=label)


def _stability_frame(frame: pd.DataFrame, boundary: bool) -> pd.DataFrame:
    """A boundary study's interval on the stable lr is its bracket (the boundary lies
    between the last stable and the first diverging probe)."""
    if not boundary:
        return frame
    return frame.assign(ci_low=frame["max_stable_lr"], ci_high=frame["first_diverging_lr"])


FIGURE_CAPTIONS = {
    "divergence_map": "Divergence probability (colour) over learning rate × β.",
    "sensitivity": "Final metric against learning rate at the best β: median and IQR.",
    "stability": "Maximum stable learning rate (with its interval where the study has "
    "enough seeds for one) and the good learning-rate band.",
    "lr_shift": "Each optimizer's learning-rate profile shifted by its estimated shift "
    "(x: lr / 10^shift_decades), over the baseline's (black): where they coincide, the "
    "optimizer is the baseline at a rescaled learning rate.",
    "tunability": "Expected best result after k configurations, ± one std.",
    "importance": "PED-ANOVA importance for the objective and for divergence.",
    "training_curves": "Training loss of example runs: converged beside diverged.",
}


def render_report(
    report: Report, out_dir: str | Path | None = None, figures: dict[str, Figure] | None = None
) -> Path:
    """Write figures, tables, ``index.html`` and ``report.md``; return ``index.html``'s path.

    ``figures`` default: ``report_figures(report)``. ``out_dir`` default:
    ``<results dir>/report``.
    """
    out = Path(out_dir) if out_dir is not None else report.results.path / REPORT_DIR
    figures = report_figures(report) if figures is None else figures
    fig_dir, table_dir = out / "figures", out / "tables"
    for directory, patterns in ((fig_dir, ("*.png", "*.svg")), (table_dir, ("*.csv", "*.tex"))):
        directory.mkdir(parents=True, exist_ok=True)
        for pattern in patterns:  # drop stale files of an earlier report
            for stale in directory.glob(pattern):
                stale.unlink()
    images = {}
    for name, figure in figures.items():
        png, _svg = fig.save_figure(figure, fig_dir, name)
        images[name] = base64.b64encode(png.read_bytes()).decode("ascii")
    for table in report.tables.values():
        table.frame.to_csv(table_dir / f"{table.name}.csv", index=False)
        _atomic_write(table_dir / f"{table.name}.tex", _latex(table))
    context = _context(report, images)
    env = _environment()
    _atomic_write(out / "index.html", env.get_template("report.html").render(context))
    _atomic_write(out / "report.md", env.get_template("report.md").render(context))
    return out / "index.html"


def _atomic_write(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _latex(table: Table) -> str:
    caption = table.caption.replace("\\", "/")
    return table.frame.to_latex(
        index=False,
        float_format=lambda x: f"{x:.4g}",
        na_rep="--",
        escape=True,
        caption=_latex_escape(caption),
        label=f"tab:{table.name}",
    )


def _latex_escape(text: str) -> str:
    for char, escaped in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("analysis", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md_cell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    return env


def _cell(value: Any) -> str:
    """How a table cell is shown on the page (the CSV keeps full precision)."""
    if value is None or value is pd.NA:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _display(table: Table) -> dict[str, Any]:
    frame = table.frame
    shown = frame.head(HTML_TABLE_ROWS)
    return {
        "name": table.name,
        "title": table.title,
        "caption": table.caption,
        "columns": [str(c) for c in frame.columns],
        "numeric": [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns],
        "rows": [[_cell(v) for v in row] for row in shown.itertuples(index=False)],
        "n_rows": len(frame),
        "truncated": len(frame) > len(shown),
    }


def _context(report: Report, images: dict[str, str]) -> dict[str, Any]:
    results = report.results
    spec = dict(results.spec)
    provenance = spec.pop("provenance", None) or {}
    trials = results.trials
    counts = trials["outcome"].value_counts()
    sections = [
        {
            "key": s.key,
            "title": s.title,
            "intro": s.intro,
            "note": s.note,
            "figures": [
                {
                    "name": name,
                    "caption": s.captions.get(name, FIGURE_CAPTIONS.get(name, "")),
                    "png": images.get(name),
                }
                for name in s.figures
                if name in images
            ],
            "tables": [_display(t) for t in s.tables],
        }
        for s in report.sections
    ]
    return {
        "title": f"Robustness report: {spec.get('name') or results.path.name}",
        "description": str(spec.get("description") or "").strip(),
        "headline": report.headline,
        "metric": report.metric,
        "direction": direction_word(report.maximize),
        "findings": report.findings,
        "sections": sections,
        "failures": report.failures,
        "spec_yaml": yaml.safe_dump(spec, sort_keys=False, allow_unicode=True) if spec else "",
        "provenance": _flatten(provenance),
        "environment": _environment_versions(),
        "seeds": ", ".join(str(s) for s in sorted(trials["seed"].dropna().unique())),
        "outcome_counts": [(o, int(counts.get(o, 0))) for o in OUTCOMES],
        "n_runs": len(trials),
        "n_configs": int(trials["trial_id"].nunique()),
        "results_dir": str(results.path),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _flatten(mapping: Any, prefix: str = "") -> list[tuple[str, str]]:
    if not isinstance(mapping, dict):
        return [(prefix or "value", str(mapping))]
    rows = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, name + ".")
        else:
            rows.append((name, str(value)))
    return rows


def _environment_versions() -> list[tuple[str, str]]:
    rows = [("python", platform.python_version())]
    for package in ("optim-robustness", "pandas", "numpy", "matplotlib", "seaborn", "optuna"):
        try:
            rows.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            rows.append((package, "not installed"))
    return rows
