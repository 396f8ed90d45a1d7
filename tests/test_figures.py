"""Figures are pure drawing from tidy tables: panels, log axes, markers, paper sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.figure import Figure

from analysis import figures

LRS = [1e-3, 1e-2, 1e-1, 1.0]


def _probability() -> pd.DataFrame:
    rows = []
    for opt, edge in (("sgd", 2), ("novograd", 3)):
        for init in ("default", "orthogonal"):
            for beta in (0.0, 0.9):
                for k, lr in enumerate(LRS):
                    rows.append((opt, init, beta, lr, float(k >= edge - (beta > 0))))
    return pd.DataFrame(rows, columns=["optimizer", "init", "beta", "lr", "p_diverged"])


def _boundary() -> pd.DataFrame:
    rows = []
    for opt, edge in (("sgd", 2), ("novograd", 3)):
        for init in ("default", "orthogonal"):
            for beta in (0.0, 0.9):
                stable = LRS[edge - 1 - (beta > 0)]
                rows.append((opt, init, beta, stable, stable / 10, stable, stable * 3, False))
    columns = ["optimizer", "init", "beta", "max_stable_lr", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=[*columns, "lr_boundary_logistic", "censored"])


def _panels(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def test_divergence_map_has_one_heatmap_per_optimizer_and_init_on_a_log_lr_axis():
    fig = figures.divergence_map(_probability(), _boundary())
    panels = _panels(fig)
    assert len(panels) == 4
    # facets: inits over the top row, optimizers left of each row
    assert [ax.get_title() for ax in panels] == ["init: default", "init: orthogonal", "", ""]
    assert [ax.get_ylabel() for ax in panels] == ["novograd\nβ", "", "sgd\nβ", ""]
    for ax in panels:
        assert ax.get_xscale() == "log"
        meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
        assert len(meshes) == 1
        assert meshes[0].get_cmap().name == figures.HEATMAP_CMAP
        assert meshes[0].get_array().shape == (2, 4)  # beta x lr
    assert fig.get_figwidth() == figures.DOUBLE_COLUMN


def test_divergence_map_draws_the_boundary_at_the_max_stable_lr_of_each_beta():
    fig = figures.divergence_map(_probability(), _boundary())
    ax = _panels(fig)[2]  # sgd (second row) x default (first column)
    markers = [c for c in ax.collections if isinstance(c, PathCollection)]
    drawn = np.concatenate([m.get_offsets() for m in markers if len(m.get_offsets())])
    # sgd's edge is lr index 2: beta 0 stable up to 1e-2 (row 0), beta 0.9 up to 1e-3 (row 1)
    assert sorted(map(tuple, np.asarray(drawn))) == [(1e-3, 1.0), (1e-2, 0.0)]
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh)).get_array()
    assert mesh[0].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_sensitivity_curves_mark_mostly_diverged_points_with_crosses():
    profile = pd.DataFrame(
        {
            "optimizer": ["sgd"] * 4 + ["insgd"] * 4,
            "init": "default",
            "lr": LRS * 2,
            "median": [1.0, 0.3, 2.3, 2.3, 1.2, 0.5, 0.2, 2.3],
            "low": [0.9, 0.25, 2.2, 2.3, 1.1, 0.4, 0.15, 2.3],
            "high": [1.1, 0.35, 2.3, 2.3, 1.3, 0.6, 0.25, 2.3],
            "diverged": [0, 0, 1.0, 1.0, 0, 0, 0.5, 1.0],
        }
    )
    fig = figures.sensitivity_curves(profile, metric="final_val_loss")
    (ax,) = _panels(fig)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    crosses = [c for c in ax.collections if isinstance(c, PathCollection)]
    points = sorted(tuple(p) for c in crosses for p in np.asarray(c.get_offsets()))
    # diverged > 0.5 only: sgd at 1e-1 and 1, insgd at 1 (0.5 is not "mostly")
    assert points == [(0.1, 2.3), (1.0, 2.3), (1.0, 2.3)]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["sgd"].get_ydata()) == [1.0, 0.3, 2.3, 2.3]


def test_each_optimizer_keeps_its_colour_across_figures():
    colours = figures.optimizer_colors(["sgd", "novograd", "insgd"])
    assert colours == figures.optimizer_colors(["insgd", "sgd", "novograd", "sgd"])
    assert len(set(colours.values())) == 3
    curve = pd.DataFrame(
        {
            "optimizer": ["sgd", "sgd", "insgd", "insgd", "novograd", "novograd"],
            "k": [1, 2] * 3,
            "expected_best": [0.5, 0.4, 0.6, 0.3, 0.7, 0.2],
            "std": [0.1, 0.05] * 3,
        }
    )
    fig = figures.tunability_curves(curve)
    (ax,) = _panels(fig)
    for line in ax.get_lines():
        assert tuple(line.get_color()) == tuple(colours[line.get_label()])


def test_stability_intervals_draw_points_and_bands_on_log_axes():
    stable = _boundary()
    band = stable.assign(
        band_lo=stable["max_stable_lr"] / 100,
        band_hi=stable["max_stable_lr"] / 10,
        best_lr=stable["max_stable_lr"] / 30,
        width_decades=1.0,
    )
    fig = figures.stability_intervals(stable, band)
    left, right = _panels(fig)
    assert left.get_xscale() == right.get_xscale() == "log"
    labels = [t.get_text() for t in left.get_yticklabels()]
    assert labels == [
        "novograd · default",
        "novograd · orthogonal",
        "sgd · default",
        "sgd · orthogonal",
    ]
    points = [line for line in left.get_lines() if line.get_marker() in ("o", "s")]
    assert sorted(float(line.get_xdata()[0]) for line in points) == sorted(stable["max_stable_lr"])
    assert sum("1 dec" in t.get_text() for t in right.texts) == len(band)


def test_importance_bars_put_objective_and_divergence_side_by_side():
    table = pd.DataFrame(
        {
            "optimizer": ["sgd"] * 4,
            "param": ["lr", "beta"] * 2,
            "importance": [0.7, 0.3, 0.9, 0.1],
            "target": ["objective", "objective", "diverged", "diverged"],
        }
    )
    fig = figures.importance_bars(table)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["target: diverged", "target: objective"]
    widths = sorted(round(p.get_width(), 3) for p in panels[0].patches)
    assert widths == [0.1, 0.9]


def test_training_curves_plot_converged_beside_diverged_and_mark_nonfinite_end():
    curves = pd.DataFrame(
        {
            "run_id": ["a"] * 3 + ["b"] * 3,
            "step": [0, 10, 20, 0, 10, 20],
            "train_loss": [2.3, 1.0, 0.5, 2.3, 50.0, np.nan],
        }
    )
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "optimizer": ["sgd", "sgd"],
            "outcome": ["converged", "diverged"],
            "lr": [0.01, 1.0],
        }
    )
    fig = figures.training_curves(curves, runs)
    (ax,) = _panels(fig)
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles["converged, lr=0.01"] == "-" and styles["diverged, lr=1"] == "--"
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert len(crosses) == 1 and crosses[0].get_xdata()[0] == 20


@pytest.mark.parametrize(
    "draw",
    [
        lambda: figures.divergence_map(
            pd.DataFrame(columns=["optimizer", "lr", "beta", "p_diverged"])
        ),
        lambda: figures.importance_bars(
            pd.DataFrame(columns=["optimizer", "param", "importance", "target"])
        ),
        lambda: figures.training_curves(pd.DataFrame(), pd.DataFrame()),
    ],
)
def test_empty_tables_give_a_placeholder_figure_not_an_error(draw):
    fig = draw()
    assert isinstance(fig, Figure)
    assert fig.texts and fig.texts[0].get_text().startswith("no ")


def test_save_figure_writes_png_at_paper_dpi_and_svg_with_text_at_least_8pt(tmp_path):
    fig = figures.divergence_map(_probability(), _boundary())
    png, svg = figures.save_figure(fig, tmp_path, "map")
    from PIL import Image

    with Image.open(png) as image:
        assert image.size[0] == pytest.approx(figures.DOUBLE_COLUMN * figures.PNG_DPI, abs=2)
    text = svg.read_text()
    assert text.startswith("<?xml") and "P(diverge)" in text  # text kept as text
    sizes = [float(s) for s in __import__("re").findall(r"font-size: ?([\d.]+)px", text)]
    assert sizes and min(sizes) >= 8.0 * 0.9  # svg px at 72 dpi == pt; tick labels are 8 pt
