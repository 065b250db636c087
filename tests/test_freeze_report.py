"""Figure 5 data, regime table, time-to-accuracy: hand-checked numbers."""

import math

import pandas as pd
import pytest

from rock.freeze.report import (AVERAGE, markdown_table, pass_at_1, plot_figure5, regime_table,
                                speedup_summary)


def _evals():
    rows = []
    # baseline: aime24 solves (3, 5) of 30 at step 0 in runs 0/1, ...; hmmt25 always 30 problems
    table = {
        ("baseline", 0): {"aime24": (3, 5), "hmmt25": (0, 2)},
        ("baseline", 2): {"aime24": (6, 6), "hmmt25": (3, 3)},
        ("baseline", 4): {"aime24": (9, 9), "hmmt25": (3, 5)},
        ("rock_freeze", 0): {"aime24": (3, 5), "hmmt25": (0, 2)},
        ("rock_freeze", 2): {"aime24": (9, 8), "hmmt25": (3, 4)},
        ("rock_freeze", 4): {"aime24": (9, 9), "hmmt25": (2, 2)},
    }
    for (regime, step), benches in table.items():
        for bench, counts in benches.items():
            for run, c in enumerate(counts):
                rows.append({"regime": regime, "step": step, "benchmark": bench, "run": run,
                             "correct": c, "n_problems": 30})
    return pd.DataFrame(rows)


def _logs():
    rows = []
    for regime, sec, frozen in (("baseline", 2.0, 0), ("rock_freeze", 1.0, 30)):
        for step in (1, 2, 3, 4):
            rows.append({"regime": regime, "step": step, "step_seconds": sec,
                         "generate_seconds": 0.75 * sec, "train_seconds": 0.25 * sec,
                         "freeze_response_tokens": 100, "freeze_frozen_tokens": frozen,
                         "freeze_frozen_windows": frozen // 10,
                         "freeze_weight_sum": 100 - frozen})
    return pd.DataFrame(rows)


def test_pass_at_1_and_pooled_average():
    c = pass_at_1(_evals()).set_index(["regime", "step", "benchmark"])
    assert c.loc[("baseline", 0, "aime24"), "pass1"] == pytest.approx(4 / 30)
    assert c.loc[("baseline", 0, "aime24"), "pass1_sd"] == pytest.approx(math.sqrt(2) / 30)
    # average pools 60 problems per run: run0 (3+0)/60, run1 (5+2)/60 -> mean 5/60
    assert c.loc[("baseline", 0, AVERAGE), "pass1"] == pytest.approx(5 / 60)
    assert c.loc[("rock_freeze", 2, AVERAGE), "pass1"] == pytest.approx(((9 + 3) + (8 + 4)) / 120)
    assert c.loc[("rock_freeze", 2, AVERAGE), "n_runs"] == 2


def test_regime_table_tokens_wallclock_and_time_to_accuracy():
    curves = pass_at_1(_evals())
    regimes = [{"name": "baseline", "selection": "none", "lambda": 1.0},
               {"name": "rock_freeze", "selection": "rock", "lambda": 0.0}]
    table, target = regime_table(curves, _logs(), regimes, baseline="baseline", tta_fraction=0.9)
    # baseline best average: step 4, (9+3 + 9+5)/120 = 26/120; target = 0.9 * 26/120 = 0.195
    assert target == pytest.approx(0.9 * 26 / 120)
    t = table.set_index("regime")
    assert t.loc["baseline", "final_average"] == pytest.approx(26 / 120)
    assert t.loc["rock_freeze", "final_average"] == pytest.approx(22 / 120)
    assert t.loc["rock_freeze", "tokens_trained"] == 280
    assert t.loc["rock_freeze", "frozen_fraction"] == pytest.approx(0.3)
    assert t.loc["rock_freeze", "frozen_windows"] == 12
    assert t.loc["rock_freeze", "train_seconds"] == 4.0
    assert t.loc["rock_freeze", "throughput_speedup"] == pytest.approx(2.0)
    # baseline reaches 0.195 at step 4 (8 s); rock_freeze at step 2 (0.2 >= 0.195; 2 s) -> 4x
    assert t.loc["baseline", "tta_step"] == 4 and t.loc["baseline", "tta_seconds"] == 8.0
    assert t.loc["rock_freeze", "tta_step"] == 2 and t.loc["rock_freeze", "tta_seconds"] == 2.0
    assert t.loc["rock_freeze", "tta_speedup"] == pytest.approx(4.0)
    md = markdown_table(table, target)
    assert "| rock_freeze | rock | 0 |" in md
    s = speedup_summary(table, baseline="baseline", target=target, loss_seconds_share=0.5)
    assert s["regimes"]["rock_freeze"]["throughput_upper_bound"] == pytest.approx(1 / (1 - 0.15))
    assert "cannot arise" in s["mechanism"]
    # default share: the baseline's measured update share (0.25 of each step)
    s = speedup_summary(table, baseline="baseline", target=target)
    assert s["update_share_of_baseline_step"] == pytest.approx(0.25)
    assert s["regimes"]["rock_freeze"]["throughput_upper_bound"] == pytest.approx(1 / (1 - 0.3 * 0.25))
    assert t.loc["rock_freeze", "rollout_seconds_per_step"] == pytest.approx(0.75)


def test_unreached_target_is_nan():
    curves = pass_at_1(_evals())
    regimes = [{"name": "baseline", "selection": "none", "lambda": 1.0},
               {"name": "rock_freeze", "selection": "rock", "lambda": 0.0}]
    table, _ = regime_table(curves, _logs(), regimes, baseline="baseline", tta_fraction=1.0)
    t = table.set_index("regime")
    assert math.isnan(t.loc["rock_freeze", "tta_seconds"])  # never reaches 26/120


def test_figure5_written(tmp_path):
    curves = pass_at_1(_evals())
    plot_figure5(curves, ["baseline", "rock_freeze"], ["aime24", "hmmt25"],
                 tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
