"""What a report is made of, as data: tables, sections, summary sentences.

The report is built in stages that only pass these values along:
``analysis.sections`` computes each ``Section`` (its ``Table`` s and the names of its
figures) from the study's frames; ``analysis.findings`` turns tables into
``Finding`` s; ``analysis.render`` draws the figures and writes the files. No stage
reads another's intermediate state, so the order sections are computed in does
not matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.load import Results
from robustness.results.schema import OUTCOMES

__all__ = ["Finding", "Report", "Section", "Table"]


@dataclass(frozen=True)
class Table:
    """One table of the report: written to ``tables/<name>.csv`` and ``.tex``."""

    name: str
    title: str
    caption: str
    frame: pd.DataFrame


@dataclass(frozen=True)
class Finding:
    """One summary sentence; every number in ``text`` comes from table ``table``."""

    text: str
    table: str


@dataclass
class Section:
    """A report section: its tables and figures, or a note saying why it is empty.

    ``tables`` in page order; ``figures`` the names of the figures drawn from them
    (``analysis.render``); ``data`` frames a figure needs that are not tables of
    their own (the boundary drawn on the divergence maps, the example runs);
    ``captions`` a figure's caption where it depends on the study (else the
    renderer's default for that figure).
    """

    key: str
    title: str
    intro: str
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    data: dict[str, pd.DataFrame] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    note: str | None = None

    def add(self, name: str, title: str, caption: str, frame: pd.DataFrame) -> None:
        """Append a table (its index dropped)."""
        self.tables.append(Table(name, title, caption, frame.reset_index(drop=True)))

    def add_note(self, text: str) -> None:
        """Append a sentence to the section's note."""
        self.note = f"{self.note} {text}" if self.note else text


@dataclass
class Report:
    """Everything the report shows, computed from one results directory.

    ``sections`` in page order; ``findings`` the summary sentences; ``failures`` the
    messages of sections, sentences or figures that raised (empty when all went
    well); ``metric``/``maximize`` what "better" means; ``axes`` the extra swept
    axes (a dimension of every table and figure); ``binned`` says which
    continuously sampled axes were binned into cells.
    """

    results: Results
    metric: str
    maximize: bool
    axes: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    binned: list[str] = field(default_factory=list)

    @property
    def tables(self) -> dict[str, Table]:
        """Every table of every section, by name, in page order."""
        return {t.name: t for s in self.sections for t in s.tables}

    def data(self, name: str) -> pd.DataFrame:
        """A figure's frame (``Section.data``) by name; empty when no section made it."""
        for section in self.sections:
            if name in section.data:
                return section.data[name]
        return pd.DataFrame()

    @property
    def headline(self) -> str:
        """One line: runs, optimizers and outcomes; whether runs are missing."""
        trials = self.results.trials
        counts = trials["outcome"].value_counts()
        parts = [f"{int(counts.get(o, 0))} {o}" for o in OUTCOMES if counts.get(o, 0)]
        labels = sorted(trials["optimizer"].dropna().unique())
        line = f"{len(trials)} runs of {len(labels)} optimizer(s) ({', '.join(labels)}): "
        line += ", ".join(parts)
        return line if self.results.incomplete is None else f"{line} ({self.results.incomplete})"
