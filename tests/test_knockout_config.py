"""The ``knockout`` config section: both shipped configs parse, bad values are named errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rock.errors import ConfigError
from rock.config import load_config
from rock.knockout import config as kconfig

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_configs_parse():
    paper = kconfig.from_config(load_config(ROOT / "config.yaml"))
    assert (paper.epsilon, paper.alpha, paper.n_resamples) == (0.01, 0.05, 10_000)
    assert (paper.window_rule, paper.window_min_share, paper.level_correction) == (
        "high_divergence", 0.25, "bonferroni")
    assert paper.tasks == ["math500", "ifeval"] and paper.temperature == 1.0
    assert paper.fdr_q == [0.05, 0.10, 0.20]
    toy = kconfig.from_config(load_config(ROOT / "tests/config_toy/config.yaml"))
    assert toy.n_shards >= 2
    assert toy.seeds == [toy.seed + r for r in range(toy.n_runs)]
    assert kconfig.from_config(load_config(ROOT / "config.yaml"), {"n_shards": 7, "n_resamples": None}).n_shards == 7


@pytest.mark.parametrize("key,value,words", [
    ("levels", ["token", "span"], "levels"),
    ("alpha", 1.5, "alpha"),
    ("n_runs", 0, "n_runs"),
    ("window_rule", "anywhere", "window_rule"),
    ("window_min_share", 1.5, "window_min_share"),
    ("level_correction", "holm", "level_correction"),
    ("temperature", 0.0, "temperature"),
    ("window_members", "all", "window_members"),
    ("limit", 0, "limit"),
    ("fdr_q", [], "fdr_q"),
])
def test_bad_values_are_named(key, value, words):
    with pytest.raises(ConfigError, match=words):
        kconfig.from_dict({key: value})


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="k_scren"):
        kconfig.from_dict({"k_scren": 3})
