"""Every Markdown file the code, the tests and the docs name exists in the
repository: a user who follows a reference finds the page."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    "README.md",
    "BENCHMARKS.md",
    "pyproject.toml",
    "Makefile",
    "docs/*.md",
    "robustness/**/*.py",
    "analysis/**/*.py",
    "benchmarks/**/*.py",
    "tests/**/*.py",
]
MD_PATH = re.compile(r"[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b")
# names of files the toolkit or a test writes, not references to a document
WRITTEN = {"report.md", "notes.md"}


def _named() -> dict[str, set[str]]:
    """Each .md path named in a source file -> the files naming it."""
    named: dict[str, set[str]] = {}
    for pattern in SOURCES:
        for source in ROOT.glob(pattern):
            if not source.is_file() or source.name == Path(__file__).name:
                continue
            for path in MD_PATH.findall(source.read_text(encoding="utf-8")):
                if Path(path).name not in WRITTEN:
                    named.setdefault(path, set()).add(str(source.relative_to(ROOT)))
    return named


def test_every_markdown_file_named_exists():
    named = _named()
    assert {"docs/design.md", "docs/algorithms.md", "BENCHMARKS.md"} <= set(named)
    missing = {
        path: sorted(sources)
        for path, sources in named.items()
        # a path is relative to the repository, or (in docs/) to the page naming it
        if not any(
            (ROOT / path).is_file() or (ROOT / s).parent.joinpath(path).is_file() for s in sources
        )
    }
    assert not missing, f"named but not in the repository: {missing}"


def test_the_shared_drafts_are_not_cited():
    for pattern in SOURCES:
        for source in ROOT.glob(pattern):
            if source.is_file() and source.name != Path(__file__).name:
                text = source.read_text(encoding="utf-8")
                assert "DESIGN.md" not in text and "ALGORITHMS.md" not in text, source
