"""Cutoff stability and coverage (Sec. 2.4, App. E) and clusters (Sec. 2.5, App. B) on hand examples."""

import numpy as np
import pandas as pd
import pytest

from rock.detect.clusters import (categorize, cluster_summary, cluster_table, frequency_matched_controls,
                                  matching_quality)
from rock.detect.core import DetectionConfig, Occurrences, official_ranking
from rock.detect.stability import coverage_curve, jaccard, stability_summary, stability_sweep, top_k


def test_jaccard_hand():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard({1}, {1}) == 1.0 and jaccard({1}, {2}) == 0.0
    assert np.isnan(jaccard(set(), set()))


def _ranking(scores: dict[int, float]) -> pd.DataFrame:
    ids = sorted(scores, key=lambda t: (-scores[t], t))
    return pd.DataFrame({"token_id": ids, "rank": pd.array(range(1, len(ids) + 1), dtype="Int64"),
                         "rock_score": [scores[t] for t in ids]})


def test_coverage_hand():
    r = _ranking({1: 5.0, 2: 3.0, 3: 2.0})
    cov = coverage_curve(r, corpus_loss=20.0, k_grid=[1, 2, 3, 5]).set_index("k")
    assert cov.loc[1, "coverage"] == 0.25 and cov.loc[2, "coverage"] == 0.4
    assert cov.loc[3, "coverage"] == 0.5 and cov.loc[5, "coverage"] == 0.5   # only 3 ranked types
    assert cov.loc[5, "n_selected"] == 3
    # unranked types (<NA>) are never in a top-K
    r2 = pd.concat([r, pd.DataFrame({"token_id": [9], "rank": pd.array([pd.NA], dtype="Int64"),
                                     "rock_score": [100.0]})])
    assert top_k(r2, 10) == {1, 2, 3}


def test_stability_sweep_is_one_for_identical_subcorpora():
    """Every trajectory is a copy of the same one: every sub-corpus ranks exactly as the full one."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 30, size=200)
    loss = rng.exponential(0.3, size=200)
    n = 20
    occ = Occurrences(np.repeat(np.arange(n), 200), np.tile(np.arange(200), n), np.tile(base, n),
                      np.tile(loss, n))
    cfg = DetectionConfig.official(drop_top_frequent=0, top_k=5, k_screen=5, n_controls=5)
    sweep = stability_sweep(occ, cfg, None, sizes=[2, 5, 10], k_grid=[1, 3, 5], n_repeats=2, seed=0)
    assert len(sweep) == 3 * 2 * 3 and (sweep["jaccard"] == 1.0).all()


def test_stability_sweep_hand_two_halves():
    """Two kinds of trajectories with different top tokens: a sub-corpus of one kind has J = 0."""
    def traj(tok):
        return np.array([tok] * 5 + [50, 51])
    seqs = [traj(1) for _ in range(4)] + [traj(2) for _ in range(6)]
    tok = np.concatenate(seqs)
    occ = Occurrences(np.repeat(np.arange(10), 7), np.tile(np.arange(7), 10), tok,
                      np.where(tok < 50, 1.0, 0.01))
    cfg = DetectionConfig.official(drop_top_frequent=0, top_k=1, k_screen=1, n_controls=1)
    full = official_ranking(occ, cfg)
    assert top_k(full, 1) == {2}            # 30 occurrences of token 2 vs 20 of token 1
    sweep = stability_sweep(occ, cfg, None, sizes=[1], k_grid=[1], n_repeats=40, seed=0)
    # a one-trajectory sub-corpus picks token 2 (J = 1) or token 1 (J = 0): P(token 2) = 0.6
    assert set(sweep["jaccard"]) <= {0.0, 1.0}
    assert 0.3 < sweep["jaccard"].mean() < 0.9
    summary = stability_summary(sweep, coverage_curve(full, float(occ.loss_post.sum()), [1]))
    assert summary.loc[0, "jaccard_mean"] == pytest.approx(sweep["jaccard"].mean())
    assert summary.loc[0, "coverage"] == pytest.approx(30 / (50 + 20 * 0.01))


@pytest.mark.parametrize("text,category", [
    ("$", "latex_math"), ("\\", "latex_math"), ("$$", "latex_math"), ("=", "latex_math"), ("^", "latex_math"),
    ("{", "latex_math"), ("}", "latex_math"), ("frac", "latex_math"), (" (", "latex_math"), (")", "latex_math"),
    ("\\frac", "latex_math"), (" \\(", "latex_math"), ("-", "latex_math"),
    ("**", "markdown_whitespace"), ("\n", "markdown_whitespace"), ("\n\n", "markdown_whitespace"),
    (":\n\n", "markdown_whitespace"), ("—\n\n", "markdown_whitespace"), ("###", "markdown_whitespace"),
    (" ", "markdown_whitespace"),
    ("So", "discourse"), (" So", "discourse"), ("Wait", "discourse"), (" Then", "discourse"), ("Let", "discourse"),
    ("0", "digits"), (" 7", "digits"), ("12", "digits"),
    (" triangle", "other"), (" in", "other"), (" text", "other"), (".", "other"), (" a", "other"),
])
def test_categories_follow_appendix_b(text, category):
    assert categorize(text) == category


def test_frequency_matched_controls_hand():
    pool_ids = [10, 11, 12, 13, 14]
    pool_freq = [1000, 95, 30, 12, 5]
    ctrl = frequency_matched_controls([100, 10, 1100], pool_ids, pool_freq, seed=0)
    # descending rock frequency: 1100 -> 1000, 100 -> 95, 10 -> 12 (each pool type used once)
    assert ctrl == [10, 11, 13]
    q = matching_quality([100, 10, 1100], [1000, 95, 12])
    assert q["sum_ratio"] == pytest.approx(1107 / 1210) and q["median_ratio"] == pytest.approx(0.95)
    assert q["ks_pvalue"] > 0.5


def test_cluster_table_and_summary():
    ranking = pd.DataFrame({"token_id": [1, 2, 3, 4], "rank": pd.array([1, 2, 3, pd.NA], dtype="Int64"),
                            "freq": [10, 9, 8, 9], "mean_loss": [1.0, 1.0, 1.0, 0.1], "score": [10.0, 9, 8, 0],
                            "is_rock": [True, True, True, False], "is_control": [False, False, False, True]})
    strings = {1: " So", 2: "$", 3: "\n\n", 4: " triangle"}
    table = cluster_table(ranking, strings.get)
    assert table["category"].tolist() == ["discourse", "latex_math", "markdown_whitespace", "other"]
    assert table.loc[2, "token"] == "\\n\\n"          # escaped for the csv
    assert pd.isna(table.loc[3, "rank"])
    s = cluster_summary(table).set_index(["group", "category"])
    assert s.loc[("rock", "discourse"), "n"] == 1 and s.loc[("control", "other"), "share"] == 1.0
