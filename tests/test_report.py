"""The report of a results directory: files, findings backed by tables, degenerate studies."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.load import load_results
from analysis.report import build_report, render_report, write_report
from tests._synthetic import write_synthetic_results

FIGURES = ("divergence_map", "sensitivity", "stability", "lr_shift", "tunability", "importance")
TABLES = (
    "outcomes",
    "axes",
    "divergence_probability",
    "max_stable_lr",
    "lr_profile",
    "lr_band",
    "lr_sensitivity",
    "lr_margin",
    "lr_shift",
    "lr_shift_profiles",
    "init_worst_case",
    "paired",
    "expected_max",
    "tunability",
    "importance",
)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, Path]:
    """A synthetic study with every outcome, and its report (written once)."""
    results = write_synthetic_results(tmp_path_factory.mktemp("mixed"))
    return results, write_report(results)


def test_report_writes_html_markdown_figures_and_tables(mixed):
    results, index = mixed
    out = results / "report"
    assert index == out / "index.html"
    assert (out / "report.md").stat().st_size > 1000
    for name in (*FIGURES, "training_curves"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000, name
        assert (out / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    for name in TABLES:
        csv = pd.read_csv(out / "tables" / f"{name}.csv")
        assert len(csv) > 0, name
        tex = (out / "tables" / f"{name}.tex").read_text()
        assert "\\begin{tabular}" in tex and "\\end{tabular}" in tex, name
        body = re.sub(r"\\label\{[^}]*\}", "", tex).replace("\\_", "")
        assert "_" not in body, f"unescaped underscore in {name}.tex"


def test_html_is_self_contained(mixed):
    _, index = mixed
    page = index.read_text()
    assert "<script" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(FIGURES) + 1
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<link" not in page  # no external stylesheet
    for href in re.findall(r'href="([^"#][^"]*)"', page):  # links to the report's own files
        assert (index.parent / href).is_file(), href


def test_markdown_references_figures_by_relative_path(mixed):
    _, index = mixed
    text = (index.parent / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(images) == sorted(f"figures/{n}.png" for n in (*FIGURES, "training_curves"))
    assert "| optimizer |" in text  # tables rendered as Markdown tables


_NUMBER = re.compile(r"(?<![\w.])-?(\d+(?:\.(\d+))?)(?:e([-+]\d+))?(%?)")


def _numbers(text: str) -> list[tuple[float, float]]:
    """(value, half a unit of its last printed digit) for every number in a sentence."""
    found = []
    for match in _NUMBER.finditer(text):
        mantissa, decimals, exponent, percent = match.groups()
        scale = 10.0 ** int(exponent or 0) / (100.0 if percent else 1.0)
        found.append((abs(float(mantissa)) * scale, 0.5 * 10.0 ** -len(decimals or "") * scale))
    return found


def _assert_findings_backed_by_tables(findings, index: Path) -> None:
    page = html.unescape(index.read_text())
    for finding in findings:
        assert f'href="#table-{finding.table}"' in page
        assert f'id="table-{finding.table}"' in page
        assert finding.text in page
        table = pd.read_csv(index.parent / "tables" / f"{finding.table}.csv")
        cells = table.select_dtypes("number").abs().to_numpy().ravel()
        numbers = _numbers(finding.text)
        assert numbers, finding.text
        for value, tol in numbers:
            assert (abs(cells - value) <= tol * 1.0001 + 1e-12).any(), (value, finding.text)


def test_every_summary_number_appears_in_its_linked_table(mixed):
    results, index = mixed
    report = build_report(load_results(results))
    assert not report.failures
    assert len(report.findings) == 11  # 9 tables, the shift one sentence per optimizer
    _assert_findings_backed_by_tables(report.findings, index)


def test_accuracy_objective_is_maximized_throughout(tmp_path):
    results = write_synthetic_results(tmp_path / "acc", inits=("default",))
    spec = yaml.safe_load((results / "spec.yaml").read_text())
    spec["search"] = {"sampler": "grid", "objective": "final_val_acc", "direction": "maximize"}
    (results / "spec.yaml").write_text(yaml.safe_dump(spec))
    report = build_report(load_results(results))
    assert not report.failures, report.failures
    assert report.metric == "final_val_acc" and report.maximize
    best = next(f.text for f in report.findings if "search objective" in f.text)
    assert best.startswith("The highest search objective")
    profile = report.tables["lr_profile"].frame
    assert profile["median"].between(0, 1).all()  # accuracies, diverged runs count as 0
    index = render_report(report, tmp_path / "out")
    _assert_findings_backed_by_tables(report.findings, index)


def test_continuously_sampled_axes_are_binned_for_the_maps(tmp_path):
    rng = np.random.default_rng(1)
    results = write_synthetic_results(
        tmp_path / "random",
        optimizers=("sgd", "novograd"),
        inits=("default",),
        lrs=list(10 ** rng.uniform(-4, 1, 40)),
        betas=list(rng.uniform(0.0, 0.95, 10)),
        seeds=(0,),
    )
    report = build_report(load_results(results))
    assert not report.failures, report.failures
    assert len(report.binned) == 2
    probability = report.tables["divergence_probability"].frame
    assert probability["lr"].nunique() <= 15 and probability["beta"].nunique() <= 6
    assert probability["n_runs"].max() > 1  # several runs per cell after binning
    assert report.tables["outcomes"].frame["n_runs"].sum() == 800  # raw runs untouched
    note = next(s.note for s in report.sections if s.key == "divergence")
    assert "binned into 15 log-spaced bins" in note


def test_summary_band_sentence_reports_the_tuned_cells_width(mixed):
    results, _ = mixed
    report = build_report(load_results(results))
    band = report.tables["lr_band"].frame
    sentence = next(f.text for f in report.findings if f.table == "lr_band")
    for label, own in band.groupby("optimizer"):
        best = own.loc[own["best"].idxmin()]
        if not best["resolved"]:  # narrower than the grid step: never "0 decades wide"
            step = best["grid_step_decades"]
            assert f"{label}'s is narrower than one grid step ({step:.3g} decades)" in sentence
            assert best["width_decades"] < step
        else:
            assert f"{label}'s is {best['width_decades']:.3g} decades wide" in sentence
    assert "0 decades wide" not in sentence


def test_report_states_what_beta_and_beta2_mean(mixed):
    _, index = mixed
    page = html.unescape(index.read_text())
    axes = pd.read_csv(index.parent / "tables" / "axes.csv").set_index("optimizer")
    assert axes.loc["sgd", "beta means"] == "momentum μ"
    assert axes.loc["sgd", "beta2 means"] == "does not apply"
    assert axes.loc["novograd", "beta means"].startswith("β1")
    assert axes.loc["novograd", "beta2 means"].startswith("β2")
    assert axes.loc["insgd", "beta2 means"].startswith("input-power momentum β")
    assert "input-power momentum β" in page and "β1, first-moment coefficient" in page
    # the share of the parameters INSGD normalized (0.97 in the synthetic records)
    assert axes.loc["insgd", "INSGD normalizes"] == "97.0% of parameters"
    assert axes.loc["sgd", "INSGD normalizes"] == "not INSGD"
    assert "97.0% of parameters" in page


def test_report_ends_with_provenance(mixed):
    results, index = mixed
    page = html.unescape(index.read_text())
    provenance = page[page.index('id="provenance"') :]
    trials = pd.read_parquet(results / "trials.parquet")
    counts = trials["outcome"].value_counts()
    assert f"{len(trials)} runs of {trials['trial_id'].nunique()} configurations" in provenance
    assert "seeds 0, 1" in provenance
    for outcome, n in counts.items():
        assert f"{n} {outcome}" in provenance
    assert "synthetic-host" in provenance and "git_commit" in provenance
    assert "sampler: grid" in provenance  # the spec itself


def _trials_of(index: Path) -> pd.DataFrame:
    return pd.read_parquet(index.parent.parent / "trials.parquet")


@pytest.mark.parametrize(
    ("case", "kwargs", "expected_note"),
    [
        ("all_diverged", {"scenario": "all_diverged"}, None),
        ("none_diverged", {"scenario": "none_diverged"}, "No run diverged anywhere"),
        ("one_optimizer", {"optimizers": ("novograd",)}, "single optimizer"),
        (
            "one_of_each",
            {"optimizers": ("sgd", "insgd"), "inits": ("default",), "betas": (0.9,), "seeds": (3,)},
            "single init scheme",
        ),
        ("no_curves", {"with_curves": False}, "no training curves"),
    ],
)
def test_degenerate_study_still_gets_a_report(tmp_path, case, kwargs, expected_note):
    small = {"lrs": [1e-3, 1e-2, 1e-1, 1.0, 10.0], "inits": ("default",), **kwargs}
    results = write_synthetic_results(tmp_path / case, **small)
    report = build_report(load_results(results))
    assert not report.failures, report.failures
    index = render_report(report, tmp_path / "out")
    page = html.unescape(index.read_text())
    assert report.findings, case
    if expected_note:
        assert expected_note in page
    if case == "all_diverged":
        stable = report.tables["max_stable_lr"].frame
        assert stable["max_stable_lr"].isna().all()
        assert "diverges already at its smallest learning rate" in page
    if case == "none_diverged":
        assert report.tables["max_stable_lr"].frame["censored"].all()
        assert "No run diverged" in report.findings[0].text
    assert (tmp_path / "out" / "figures" / "divergence_map.png").is_file()


def test_report_cli_writes_to_out_and_prints_a_summary(cli, tmp_path):
    results = write_synthetic_results(
        tmp_path / "results", inits=("default",), lrs=[1e-3, 1e-2, 1e-1, 1.0, 10.0]
    )
    result = cli("report", results, "--out", tmp_path / "elsewhere")
    assert result.code == 0, result.err
    assert "60 runs of 3 optimizer(s) (insgd, novograd, sgd)" in result.out
    assert str(tmp_path / "elsewhere" / "index.html") in result.out.replace("\n", "")
    assert (tmp_path / "elsewhere" / "index.html").is_file()


def test_report_cli_refuses_missing_dir(cli, tmp_path):
    result = cli("report", tmp_path / "nowhere")
    assert result.code == 2
    assert "does not exist" in result.err and "Traceback" not in result.err


def test_report_cli_refuses_empty_dir(cli, tmp_path):
    result = cli("report", tmp_path)
    assert result.code == 2
    assert "has no trials.parquet" in result.err and "Traceback" not in result.err


def test_report_cli_refuses_corrupt_trials_file(cli, tmp_path):
    (tmp_path / "trials.parquet").write_bytes(b"not a parquet file")
    result = cli("report", tmp_path)
    assert result.code == 2
    assert "cannot read" in result.err and "as parquet" in result.err


def test_report_cli_refuses_trials_without_required_columns(cli, tmp_path):
    pd.DataFrame({"optimizer": ["sgd"], "lr": [0.1]}).to_parquet(tmp_path / "trials.parquet")
    result = cli("report", tmp_path)
    assert result.code == 2
    assert "lacks required column(s)" in result.err and "outcome" in result.err


def test_study_where_every_run_errored_says_so_instead_of_analysing(tmp_path):
    results = write_synthetic_results(tmp_path / "errors", inits=("default",), lrs=[0.01, 0.1])
    trials = pd.read_parquet(results / "trials.parquet")
    trials["outcome"] = "error"
    trials.to_parquet(results / "trials.parquet")
    report = build_report(load_results(results))
    assert not report.failures
    assert [f.text for f in report.findings] == [
        "Every run ended in an error (insgd: 8 of 8, novograd: 8 of 8, sgd: 8 of 8)."
    ]
    notes = {s.key: s.note for s in report.sections}
    assert notes["divergence"].startswith("Every run ended in an error")
    index = render_report(report, tmp_path / "out")
    assert "Every run ended in an error" in index.read_text()


def test_an_extra_swept_axis_is_a_column_of_every_table_never_pooled(tmp_path):
    # the same synthetic study twice, once per weight decay; with weight decay 1e-3
    # every run at lr >= 0.005 diverges, so the two stability limits differ
    results = write_synthetic_results(
        tmp_path / "wd", optimizers=("sgd", "insgd"), inits=("default",), betas=(0.9,)
    )
    trials = pd.read_parquet(results / "trials.parquet")
    decayed = trials.assign(weight_decay=1e-3, trial_id=trials["trial_id"] + "-wd")
    decayed["run_id"] = decayed["trial_id"] + "-s" + decayed["seed"].astype(str)
    decayed.loc[decayed["lr"] >= 0.005, "outcome"] = "diverged"
    both = pd.concat([trials.assign(weight_decay=0.0), decayed], ignore_index=True)
    both.to_parquet(results / "trials.parquet")
    spec = yaml.safe_load((results / "spec.yaml").read_text())
    spec["space"]["weight_decay"] = [0.0, 1e-3]
    (results / "spec.yaml").write_text(yaml.safe_dump(spec))
    report = build_report(load_results(results))
    assert not report.failures, report.failures
    assert report.axes == ["weight_decay"]
    for name, table in report.tables.items():
        if name in ("axes", "importance"):  # per optimizer: the axis is a row / a param
            continue
        assert set(table.frame["weight_decay"]) == {0.0, 1e-3}, name
    stable = report.tables["max_stable_lr"].frame.set_index(["optimizer", "weight_decay"])
    for label in ("sgd", "insgd"):
        assert stable.loc[(label, 1e-3), "max_stable_lr"] == pytest.approx(10**-2.75)
        assert (
            stable.loc[(label, 1e-3), "max_stable_lr"] < stable.loc[(label, 0.0), "max_stable_lr"]
        )
    assert "weight_decay" in set(report.tables["importance"].frame["param"])
    sentence = next(f.text for f in report.findings if f.table == "max_stable_lr")
    assert "sgd (weight_decay 0.001)" in sentence and "sgd (weight_decay 0)" in sentence
