"""The study report: metric tables, figures and plain-words findings, as HTML and Markdown.

Contract: ``write_report(results_dir, out_dir=None) -> Path`` reads a results
directory (``analysis.load.load_results``; a missing, empty or malformed one raises
``ResultsError``, exit code 2 on the CLI) and writes the report into ``out_dir``
(default ``results_dir/report``; the files are listed in ``analysis.render``). It
returns the path of ``index.html``.

The work is three stages, each in its own module, public so that callers (the CLI,
the benchmark) can use or time them one by one:

- ``build_report`` (here): the study's metric and cells (``analysis.study``), every
  section's tables (``analysis.sections``), the summary sentences made from those
  tables (``analysis.findings``);
- ``report_figures`` (``analysis.render``): the figures, drawn from the tables;
- ``render_report`` (``analysis.render``): the files.

Every sentence of the summary is generated from one table, its numbers formatted
from that table's values, and links to it. A section that cannot be computed for
this study says why instead of failing; an unexpected error inside one section is
reported in that section and the rest of the report is still written.
"""

from __future__ import annotations

from pathlib import Path

from analysis.document import Finding, Report, Section, Table
from analysis.findings import Tables, findings_of
from analysis.load import Results, load_results
from analysis.render import render_report, report_figures
from analysis.sections import compute_sections
from analysis.study import describe_study

__all__ = [
    "Finding",
    "Report",
    "Section",
    "Table",
    "build_report",
    "render_report",
    "report_figures",
    "write_report",
]


def build_report(results: Results) -> Report:
    """Compute every section's tables and the summary findings (no drawing, no writing)."""
    study = describe_study(results)
    sections, failures = compute_sections(study)
    report = Report(
        results=results,
        metric=study.metric,
        maximize=study.maximize,
        axes=study.axes,
        sections=sections,
        failures=failures,
        binned=study.binned,
    )
    findings, finding_failures = findings_of(
        Tables(report.tables, study.metric, study.maximize, study.axes)
    )
    report.findings = findings
    report.failures += finding_failures
    return report


def write_report(results_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Analyse a results directory and write its report; return the path of ``index.html``.

    Raises ``ResultsError`` (exit code 2 on the CLI) for a missing, empty or malformed
    results directory.
    """
    return render_report(build_report(load_results(results_dir)), out_dir)
