"""Freeze regimes as config: validation and evaluation steps."""

import pytest

from rock.errors import ConfigError
from rock.freeze.config import FreezeConfig, eval_steps, from_section

REGIMES = [
    {"name": "baseline", "selection": "none", "lambda": 1.0},
    {"name": "rock_freeze", "selection": "rock", "lambda": 0.0},
    {"name": "random_window_freeze", "selection": "random", "lambda": 0.0},
    {"name": "rock_soft_0p25", "selection": "rock", "lambda": 0.25},
    {"name": "rock_soft_0p5", "selection": "rock", "lambda": 0.5},
]


def test_valid_section():
    cfg = from_section({"regimes": REGIMES, "window_radius": 2, "eval_every": 200,
                        "control": {"n_proposals": 4}})
    assert isinstance(cfg, FreezeConfig)
    assert cfg.regime_names == [r["name"] for r in REGIMES]
    assert cfg.baseline.name == "baseline"
    assert cfg.regime("rock_soft_0p25").lam == 0.25
    assert cfg.control.n_proposals == 4
    assert cfg.benchmarks == ("aime24", "aime25", "hmmt25")


@pytest.mark.parametrize("bad, match", [
    ([{"name": "baseline", "selection": "none", "lambda": 0.5}], "baseline"),
    ([{"name": "baseline", "selection": "none", "lambda": 1},
      {"name": "r", "selection": "rock", "lambda": 1.5}], "lambda"),
    ([{"name": "baseline", "selection": "none", "lambda": 1},
      {"name": "r", "selection": "rock", "lambda": 1.0}], "freezes nothing"),
    ([{"name": "baseline", "selection": "none", "lambda": 1},
      {"name": "baseline", "selection": "rock", "lambda": 0}], "duplicate"),
    ([{"name": "Rock Freeze", "selection": "rock", "lambda": 0}], "must match"),
    ([{"name": "r", "selection": "rocks", "lambda": 0}], "unknown"),
    ([{"name": "r", "selection": "rock", "lambda": 0}], "baseline"),
    ([{"name": "r", "selection": "rock"}], "missing"),
    ([{"name": "r", "selection": "rock", "lambda": 0, "lam": 0}], "unknown key"),
])
def test_bad_regimes(bad, match):
    with pytest.raises(ConfigError, match=match):
        from_section({"regimes": bad})


@pytest.mark.parametrize("extra, match", [
    ({"window_radius": -1}, "window_radius"),
    ({"window_anchor": "high_loss"}, "threshold"),
    ({"window_anchor": "some"}, "window_anchor"),
    ({"eval_every": 0}, "eval_every"),
    ({"benchmarks": ["aime26"]}, "aime26"),
    ({"loss_normalization": "mean"}, "loss_normalization"),
    ({"control": {"bin_base": 1.0}}, "bin_base"),
    ({"control": {"bins": 3}}, "unknown"),
    ({"windows": 3}, "unknown"),
])
def test_bad_fields(extra, match):
    with pytest.raises(ConfigError, match=match):
        from_section({"regimes": REGIMES, **extra})


def test_eval_steps():
    assert eval_steps(2500, 200) == [0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000,
                                     2200, 2400, 2500]
    assert eval_steps(6, 2) == [0, 2, 4, 6]
    assert eval_steps(5, 2) == [0, 2, 4, 5]
