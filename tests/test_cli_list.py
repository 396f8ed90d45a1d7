"""`robustness list [what]`: the registries and the bundled studies."""

from __future__ import annotations

import re

from robustness.data import DATASETS
from robustness.init_schemes import INIT_SCHEMES
from robustness.models import MODELS
from robustness.spec import bundled_studies


def names_under(out: str, title: str) -> list[str]:
    """The entry names listed under a section title (indented two spaces)."""
    section = out.split(f"{title}\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  (\S+)", section, flags=re.MULTILINE)


def test_list_without_argument_shows_every_registry(cli):
    result = cli("list")
    assert result.code == 0, result.err
    assert names_under(result.out, "optimizers") == ["sgd", "insgd", "novograd", "adam", "adamw"]
    assert names_under(result.out, "models") == list(MODELS)
    assert names_under(result.out, "datasets") == list(DATASETS)
    assert names_under(result.out, "inits") == list(INIT_SCHEMES)
    assert names_under(result.out, "studies") == list(bundled_studies())


def test_list_optimizers_says_which_argument_each_axis_sets(cli):
    out = " ".join(cli("list", "optimizers").out.split())
    assert "sgd torch.optim.SGD; swept axes: lr, init, beta -> momentum (0.9) " in out
    assert (
        "insgd robustness.optim.INSGD (takes the model); swept axes: lr, init, "
        "beta -> momentum (0.9), beta2 -> beta (0.99)"
    ) in out
    assert (
        "adamw torch.optim.AdamW; swept axes: lr, init, "
        "beta -> betas.0 (0.9), beta2 -> betas.1 (0.999)"
    ) in out
    assert "models" not in out


def test_list_models_shows_each_builders_options(cli):
    out = " ".join(cli("list", "models").out.split())
    assert "mlp Fully connected net" in out
    assert "(options: widths, activation)" in out


def test_list_studies_shows_each_bundled_study_with_its_description(cli):
    out = " ".join(cli("list", "studies").out.split())
    assert {"quickstart", "insgd_modes", "cifar10_resnet20", "tpe_best"} <= set(bundled_studies())
    assert "insgd_modes Control study: INSGD as the paper states it" in out


def test_list_unknown_what_exits_2_listing_the_allowed(cli):
    result = cli("list", "optimisers")
    assert result.code == 2
    assert "unknown thing to list 'optimisers'" in result.err
    assert "allowed: datasets, inits, models, optimizers, studies" in result.err
