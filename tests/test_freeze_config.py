"""Freeze regimes as config: validation and evaluation steps."""

import pytest

from rock.errors import ConfigError
from rock.freeze.config import FreezeConfig, from_section
from rock.freeze.plan import checkpoint_steps, eval_steps, regime_total_steps, stage2_total_steps

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
    ([{"name": "baseline", "selection": "none", "lambda": 1},
      {"name": "stage1", "selection": "rock", "lambda": 0}], "reserved"),
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
    ({"window_anchor": "some"}, "window_anchor"),
    ({"eval_every": 0}, "eval_every"),
    ({"benchmarks": ["aime26"]}, "aime26"),
    ({"loss_normalization": "mean"}, "loss_normalization"),
    ({"control": {"bin_base": 1.0}}, "bin_base"),
    ({"control": {"bins": 3}}, "unknown"),
    ({"windows": 3}, "unknown"),
    ({"eval_limit": 0}, "eval_limit"),
])
def test_bad_fields(extra, match):
    with pytest.raises(ConfigError, match=match):
        from_section({"regimes": REGIMES, **extra})


def test_eval_steps_are_the_engines_kept_checkpoints():
    from rock.distill.loop import checkpoint_steps as engine_steps

    assert eval_steps(10000, 200) == list(range(0, 10001, 200))
    assert eval_steps(6, 3) == [0, 3, 6]
    assert eval_steps(7, 3) == [0, 3, 5, 7]  # not divisible: 3 evenly spaced checkpoints
    for total, every in ((10000, 200), (7, 3), (6, 3), (1, 5), (33, 4)):
        n = -(-total // every)
        assert checkpoint_steps(total, n) == engine_steps(total, n)


def test_total_steps_formula():
    # paper: 10k prompts, global batch 4 sequences = 1 prompt x 4 rollouts per step [C]
    assert stage2_total_steps(10000, global_batch=4, n_rollouts=4) == 10000
    # toy: 64 prompts, global batch 8 = 2 prompts x 4 rollouts
    assert stage2_total_steps(64, global_batch=8, n_rollouts=4) == 32
    assert stage2_total_steps(64, global_batch=8, n_rollouts=4, max_steps=6) == 6
    # two optimizer steps per rollout round (the authors' rollout_batch 2 with global batch 4)
    assert stage2_total_steps(10, global_batch=4, n_rollouts=4, rollout_batch=2) == 10
    cfg = {"freeze": {"max_steps": 0}, "data": {"stage2_slice": [20000, 30000]},
           "stage2": {"global_batch": 4, "n_rollouts": 4, "epochs": 1}}
    assert regime_total_steps(cfg) == 10000
    cfg["freeze"]["max_steps"] = 6
    assert regime_total_steps(cfg) == 6


@pytest.mark.parametrize("path", ["config.yaml", "tests/config_toy/config.yaml"])
def test_shipped_freeze_sections_are_valid(path):
    """The freeze section of both shipped configs passes the JSON schema and the dataclass checks,
    and names the paper's three regimes plus the two soft lambdas."""
    import jsonschema

    from rock.config import load_schema, load_yaml
    from rock.freeze.plan import planned_eval_steps

    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    cfg = load_yaml(root / path)
    schema = load_schema()
    sub = {"$defs": schema["$defs"], **schema["properties"]["freeze"]}
    jsonschema.validate(cfg["freeze"], sub)
    for k in ("freeze_train", "freeze_evaluate", "freeze_report"):
        jsonschema.validate(cfg["resources"][k], {"$defs": schema["$defs"],
                                                  **schema["properties"]["resources"]["properties"][k]})
    fc = from_section(cfg["freeze"])
    assert {(r.selection, r.lam) for r in fc.regimes} == {
        ("none", 1.0), ("rock", 0.0), ("random", 0.0), ("rock", 0.25), ("rock", 0.5)}
    steps = planned_eval_steps(cfg)
    if cfg["scale"] == "paper":
        assert fc.eval_every == 200 and steps[:3] == [0, 200, 400] and steps[-1] == 10000
    else:
        assert steps == [0, 2, 4]


def test_schema_rejects_bad_freeze_values():
    import jsonschema

    from rock.config import load_schema

    schema = load_schema()
    sub = {"$defs": schema["$defs"], **schema["properties"]["freeze"]}
    good = {"regimes": REGIMES, "window_radius": None, "window_anchor": "all",
            "anchor_loss_threshold": None, "loss_normalization": "token_mean", "eval_every": 200,
            "max_steps": 0, "benchmarks": ["aime24"], "eval_limit": None, "eval_job": "checkpoint",
            "keep_checkpoints": False,
            "tta_fraction": 0.95,
            "control": {"bin_base": 2.0, "exclude_rock_centres": True, "n_proposals": 16,
                        "max_tries": 64, "max_bin_distance": 2}}
    jsonschema.validate(good, sub)
    for key, value in (("eval_every", 0), ("window_anchor", "some"), ("tta_fraction", 1.5), ("eval_job", "step"), ("keep_checkpoints", "yes"),
                       ("regimes", [{"name": "x", "selection": "rock", "lambda": 2.0}]),
                       ("regimes", [{"name": "X y", "selection": "rock", "lambda": 0.0}])):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**good, key: value}, sub)


def test_high_loss_anchor_defaults_to_detections_threshold(tmp_path):
    """Issue 13: windows open at high-divergence rock occurrences; with no explicit threshold the
    cut is detection's max(tau_pre, tau_post) in nats (info.json), else the configured value."""
    import json

    from rock import paths
    from rock.errors import DataError
    from rock.freeze.train import anchor_threshold, detection_threshold

    cfg = from_section({"regimes": REGIMES})
    assert cfg.window_anchor == "high_loss" and cfg.anchor_loss_threshold is None
    assert detection_threshold({"tau_pre": 0.31, "tau_post": 0.12, "config": {"loss": "reverse_kl"}}) == 0.31
    assert detection_threshold({"tau_post": 0.12, "tau_pre": None}) == 0.12  # official mode
    with pytest.raises(DataError, match="reverse_kl"):
        detection_threshold({"tau_pre": 1.0, "tau_post": 1.0, "config": {"loss": "log_ratio"}})
    info = paths.detection_file(tmp_path, "context", "info.json")
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"tau_pre": 0.2, "tau_post": 0.45}))
    assert anchor_threshold(tmp_path, "context", cfg) == 0.45
    explicit = from_section({"regimes": REGIMES, "anchor_loss_threshold": 0.7})
    assert anchor_threshold(tmp_path, "context", explicit) == 0.7
    assert anchor_threshold(tmp_path, "context", from_section({"regimes": REGIMES, "window_anchor": "all"})) is None
