"""Knockout statistics against independent computations on constructed data [App. D.2-D.4]."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from rock.errors import DataError
from rock.knockout import correlations, stats
from rock.knockout.stats import NEUTRAL, PILLAR, STUMBLING


# ---------------------------------------------------------------- constructed per-problem tables

def make_table(outcomes: dict[str, np.ndarray], task: str = "math500", seed0: int = 0) -> pd.DataFrame:
    """outcomes[set_id] = [n_problems, n_runs] 0/1 array -> per-problem table."""
    rows = []
    for sid, y in outcomes.items():
        n, r = y.shape
        for i in range(n):
            for k in range(r):
                rows.append((sid, task, f"p{i:03d}", k, seed0 + k, float(y[i, k])))
    return pd.DataFrame(rows, columns=list(stats.PER_PROBLEM_COLUMNS))


def planted(n=200, runs=4, seed=0):
    """Baseline ~0.6 accuracy; 'harm' breaks 30% of the solved (problem, run) pairs; 'neutral'
    flips 2% of pairs at random in both directions; 'help' fixes 30% of the failed pairs."""
    rng = np.random.default_rng(seed)
    base = (rng.random((n, runs)) < 0.6).astype(int)
    harm = base * (rng.random((n, runs)) >= 0.3)
    flip = rng.random((n, runs)) < 0.02
    neutral = np.where(flip, 1 - base, base)
    helpful = np.maximum(base, (rng.random((n, runs)) < 0.3).astype(int))
    return {"base": base, "harm": harm, "neutral": neutral, "help": helpful}


# ---------------------------------------------------------------- bootstrap

def test_chunked_resampling_consumes_stream_like_single_draws():
    n, B, seed = 7, 2500, 11
    counts = np.concatenate(list(stats.bootstrap_counts(n, B, seed, chunk=1000)))
    rng = np.random.default_rng(seed)
    direct = np.stack([np.bincount(rng.integers(0, n, size=n), minlength=n) for _ in range(B)])
    assert counts.shape == (B, n)
    np.testing.assert_array_equal(counts, direct)


def direct_bootstrap_p(d, B, seed):
    """Independent loop: same stream, resample means, two-sided percentile-inversion p."""
    rng = np.random.default_rng(seed)
    n = len(d)
    means = np.array([d[rng.integers(0, n, size=n)].mean() for _ in range(B)])
    le, ge = (means <= 1e-12).sum(), (means >= -1e-12).sum()
    return min(1.0, 2 * min(le, ge) / B), means


def test_bootstrap_matches_direct_loop_with_same_seed():
    rng = np.random.default_rng(3)
    d = rng.choice([-1.0, -0.5, 0.0, 0.25, 0.5], size=40, p=[0.15, 0.15, 0.4, 0.15, 0.15])
    res = stats.paired_bootstrap(d, n_resamples=3000, seed=5)
    p, means = direct_bootstrap_p(d, 3000, 5)
    assert res["p_value"].iloc[0] == pytest.approx(p, abs=0)
    assert res["delta"].iloc[0] == pytest.approx(d.mean())
    assert res["se"].iloc[0] == pytest.approx(means.std(ddof=1))
    assert res["ci_low"].iloc[0] == pytest.approx(np.quantile(means, 0.025))
    # several rows share the stream: each row's p equals its own single-row computation
    D = np.stack([d, -d, np.zeros_like(d)])
    multi = stats.paired_bootstrap(D, n_resamples=3000, seed=5)
    assert multi["p_value"].iloc[0] == res["p_value"].iloc[0]
    assert multi["p_value"].iloc[1] == pytest.approx(direct_bootstrap_p(-d, 3000, 5)[0], abs=0)
    assert multi["p_value"].iloc[2] == 1.0


def exact_bootstrap_p(d):
    """Exact bootstrap p by enumerating all n^n equally likely index tuples."""
    n = len(d)
    means = np.array([np.mean([d[i] for i in idx]) for idx in itertools.product(range(n), repeat=n)])
    return min(1.0, 2 * min((means <= 1e-12).mean(), (means >= -1e-12).mean()))


@pytest.mark.parametrize("d", [[-1.0, 0.0], [-1.0, -1.0, 0.0, 0.5], [-0.5, -0.25, 0.0, 0.25, -1.0]])
def test_bootstrap_p_matches_exact_enumeration(d):
    d = np.array(d)
    exact = exact_bootstrap_p(d)
    B = 10_000
    p = stats.paired_bootstrap(d, n_resamples=B, seed=0)["p_value"].iloc[0]
    # p = 2 * (count/B): binomial Monte-Carlo error of the smaller tail, 4 standard errors
    tail = exact / 2
    assert abs(p - exact) <= 4 * 2 * np.sqrt(tail * (1 - tail) / B) + 1e-9


def test_bootstrap_hand_example_two_problems():
    # d = [-1, 0]: resample means -1 (1/4), -0.5 (1/2), 0 (1/4) -> P(>=0) = 1/4, p = 1/2 exactly
    assert exact_bootstrap_p(np.array([-1.0, 0.0])) == 0.5
    p = stats.paired_bootstrap(np.array([-1.0, 0.0]), n_resamples=10_000, seed=1)["p_value"].iloc[0]
    assert p == pytest.approx(0.5, abs=0.03)


def test_bootstrap_limits():
    assert stats.paired_bootstrap(np.zeros(30), n_resamples=500, seed=0)["p_value"].iloc[0] == 1.0
    assert stats.paired_bootstrap(-np.ones(30), n_resamples=500, seed=0)["p_value"].iloc[0] == 0.0
    with pytest.raises(DataError):
        stats.paired_bootstrap(np.zeros((2, 0)))


# ---------------------------------------------------------------- Delta and planted tokens

def test_planted_harmful_token_is_pillar_and_neutral_is_not():
    outs = planted()
    table = make_table(outs)
    d = stats.knockout_deltas(table, pd.DataFrame({"set_id": ["harm", "neutral", "help"]}),
                              baseline_id="base", n_resamples=10_000, seed=0, alpha=0.05)
    d = d.set_index("set_id")
    base_acc = outs["base"].mean()
    for sid in ("harm", "neutral", "help"):
        assert d.loc[sid, "delta"] == pytest.approx(outs[sid].mean() - base_acc)
        assert d.loc[sid, "baseline_acc"] == pytest.approx(base_acc)
        assert d.loc[sid, "n_runs"] == 4 and d.loc[sid, "n_problems"] == 200
    assert d.loc["harm", "delta"] < -0.1 and d.loc["harm", "p_value"] < 0.001
    assert d.loc["help", "delta"] > 0.05 and d.loc["help", "p_value"] < 0.001
    assert abs(d.loc["neutral", "delta"]) < 0.01 and d.loc["neutral", "p_value"] > 0.05
    cat = stats.categorize(d.loc[["harm", "neutral", "help"], "delta"], d.loc[["harm", "neutral", "help"], "p_value"],
                           [np.nan] * 3, [np.nan] * 3, epsilon=0.01, alpha=0.05)
    assert cat["category"].tolist() == [PILLAR, NEUTRAL, STUMBLING]


def test_delta_is_mean_over_problems_of_run_means():
    base = np.array([[1, 1], [0, 1], [0, 0]])
    ko = np.array([[1, 0], [0, 0], [0, 1]])
    table = make_table({"base": base, "k": ko})
    d = stats.knockout_deltas(table, pd.DataFrame({"set_id": ["k"]}), baseline_id="base",
                              n_resamples=100, seed=0, alpha=0.05)
    # per-problem indicators: base (1, .5, 0), ko (.5, 0, .5) -> Delta = (1 - 1.5) / 3
    assert d["delta"].iloc[0] == pytest.approx(-1 / 6)
    assert d["acc"].iloc[0] == pytest.approx(1 / 3)


def test_unpaired_tables_are_rejected():
    outs = planted(n=10, runs=2)
    table = make_table({"base": outs["base"], "harm": outs["harm"]})
    table.loc[(table["set_id"] == "harm") & (table["run"] == 1), "seed"] = 99
    with pytest.raises(DataError, match="seeds"):
        stats.paired_matrix(table, "math500", ["harm"], "base")
    table = make_table({"base": outs["base"], "harm": outs["harm"]}).iloc[:-1]
    with pytest.raises(DataError, match="paired"):
        stats.paired_matrix(table, "math500", ["harm"], "base")


# ---------------------------------------------------------------- Eq. 22

def test_categorize_hand_cases():
    dt = [-0.02, -0.001, -0.05, 0.03, -0.005, -0.01, -0.02, 0.0]
    pt = [0.001, 0.001, 0.20, 0.01, 0.50, 0.049, 0.01, 1.0]
    dw = [np.nan, -0.04, -0.05, 0.00, 0.02, -0.02, 0.04, 0.0]
    pw = [np.nan, 0.03, 0.30, 0.90, 0.04, 0.30, 0.001, 1.0]
    # the Eq. 22 decision logic alone (uncorrected p; the correction has its own test below)
    c = stats.categorize(dt, pt, dw, pw, epsilon=0.01, alpha=0.05, correction="none")
    assert c["category"].tolist() == [
        PILLAR,      # token-level -0.02, p .001
        PILLAR,      # token-level too small, window-level -0.04 significant
        NEUTRAL,     # large but not significant
        STUMBLING,   # +0.03 significant
        STUMBLING,   # window-level +0.02 significant
        PILLAR,      # exactly -epsilon (float noise tolerated), p .049 < .05
        STUMBLING,   # conflict: token -0.02 sig, window +0.04 sig: larger |Delta| decides
        NEUTRAL,
    ]
    assert c["decisive_level"].tolist()[:7] == ["token", "window", "token", "token", "window", "token", "window"]
    assert c["conflict"].tolist() == [False] * 6 + [True, False]
    assert c.loc[1, "p_decisive"] == 0.03 and c.loc[1, "delta"] == -0.04
    # Delta computed as -0.009999999999999998 still reaches -epsilon
    assert stats.categorize([0.59 - 0.6], [0.0], [np.nan], [np.nan])["category"][0] == PILLAR
    assert stats.categorize([-0.02], [0.049], [np.nan], [np.nan])["category"][0] == PILLAR  # L = 1
    assert stats.categorize([-0.0099], [0.0], [np.nan], [np.nan])["category"][0] == NEUTRAL


# ---------------------------------------------------------------- census and agreement (Table 2)

def paper_like_categories():
    """200 candidates: 7 MATH-500 Pillars, 3 other IFEval Pillars (App. D.2 ranks), rest Neutral."""
    math_p = [16, 93, 99, 109, 143, 166, 185]
    if_p = [35, 64, 69]
    rows = []
    for rank in range(1, 201):
        for task, ps in (("math500", math_p), ("ifeval", if_p)):
            rows.append({"token_id": 1000 + rank, "rank": rank, "task": task, "in_core": rank <= 100,
                         "category": PILLAR if rank in ps else NEUTRAL,
                         "p_value": 0.01 if rank in ps else 0.5})
    return pd.DataFrame(rows)


def test_census_and_agreement_paper_numbers():
    cats = paper_like_categories()
    c = stats.census(cats, {"math500": 0.75, "ifeval": 0.752}).set_index("benchmark")
    assert (c.loc["math500", ["pillar", "neutral", "stumbling"]].tolist()) == [7, 193, 0]
    assert c.loc["math500", "pillar_pct"] == pytest.approx(3.5)
    assert c.loc["ifeval", "neutral_pct"] == pytest.approx(98.5)
    assert c.loc["ifeval", "baseline_acc"] == 0.752
    a = stats.cross_task_agreement(cats, ["math500", "ifeval"]).set_index("label")["count"]
    assert (a["N||N"], a["P||N"], a["N||P"], a["P||P"]) == (190, 7, 3, 0)
    assert a.sum() == 200


def test_agreement_counts_small():
    cats = pd.DataFrame({"token_id": [1, 1, 2, 2, 3, 3], "task": ["a", "b"] * 3,
                         "category": [PILLAR, PILLAR, STUMBLING, NEUTRAL, NEUTRAL, PILLAR]})
    a = stats.cross_task_agreement(cats, ["a", "b"]).set_index("label")["count"]
    assert (a["P||P"], a["S||N"], a["N||P"], a["N||N"]) == (1, 1, 1, 0)


# ---------------------------------------------------------------- multiple testing (App. D.2)

def test_sign_test_values():
    assert stats.sign_test(10, 0) == pytest.approx(2 ** -10 * 2)
    assert stats.sign_test(0, 10) == pytest.approx(2 ** -10 * 2)
    assert stats.sign_test(7, 0) == pytest.approx(2 ** -7 * 2)          # paper: 0.016
    assert stats.sign_test(3, 0) == pytest.approx(0.25)
    assert stats.sign_test(6, 0) == pytest.approx(2 ** -6 * 2)          # paper: 3.1e-2
    assert stats.sign_test(5, 5) == pytest.approx(1.0)
    assert np.isnan(stats.sign_test(0, 0))


def hand_bh(p, q):
    p = np.asarray(p)
    m = len(p)
    order = np.argsort(p)
    ok = np.nonzero(p[order] <= q * np.arange(1, m + 1) / m)[0]
    rej = np.zeros(m, bool)
    if len(ok):
        rej[order[: ok.max() + 1]] = True
    return rej


def test_bh_and_bonferroni_hand_examples():
    p = [0.001, 0.012, 0.03, 0.2]                  # thresholds .0125 .025 .0375 .05 -> 3 rejected
    assert stats.bh_reject(p, 0.05).tolist() == [True, True, True, False]
    assert stats.bonferroni_reject(p, 0.05).tolist() == [True, True, False, False]    # p < .0125
    p = [0.043, 0.04, 0.041, 0.042]                # step-up: p_(4) = .043 <= .05 -> all rejected
    assert stats.bh_reject(p, 0.05).all()
    assert not stats.bonferroni_reject(p, 0.05).any()
    assert stats.bonferroni_reject([0.0125, 0.0124, 0.5, 0.5], 0.05).tolist() == [False, True, False, False]
    # the paper's case: min p .0016 over 200 candidates, BH at q=.2 needs p_(1) <= .001 -> none
    p = np.r_[0.0016, 0.0038, np.linspace(0.01, 1, 198)]
    for q in (0.05, 0.10, 0.20):
        assert not stats.bh_reject(p, q).any()
    assert not stats.bonferroni_reject(p, 0.05).any()
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = np.concatenate([rng.uniform(0, 0.01, rng.integers(0, 10)), rng.uniform(0, 1, 40)])
        for q in (0.05, 0.1, 0.2):
            np.testing.assert_array_equal(stats.bh_reject(p, q), hand_bh(p, q))


def test_multiple_testing_paper_like():
    mt = stats.multiple_testing(paper_like_categories(), alpha=0.05, fdr_q=[0.05, 0.1, 0.2],
                                tasks=["math500", "ifeval"])
    m = mt["per_task"]["math500"]
    assert (m["sign_negative"], m["sign_positive"]) == (7, 0)
    assert m["sign_p"] == pytest.approx(0.015625)
    assert (m["core_negative"], m["core_positive"]) == (3, 0)
    assert m["bonferroni_threshold"] == pytest.approx(2.5e-4)
    assert m["bonferroni_rejections"] == 0
    assert m["min_p"] == 0.01 and m["min_p_token_id"] == 1016
    assert [s["rank"] for s in m["significant"]] == [16, 93, 99, 109, 143, 166, 185]
    assert mt["per_task"]["ifeval"]["core_negative"] == 3
    c = mt["combined"]
    assert (c["sign_negative"], c["sign_positive"], c["core_negative"]) == (10, 0, 6)
    assert c["sign_p"] == pytest.approx(2 * 2 ** -10)
    assert c["core_sign_p"] == pytest.approx(2 * 2 ** -6)


# ---------------------------------------------------------------- correlations (Table 1)

def test_correlations_match_scipy():
    rng = np.random.default_rng(1)
    n = 60
    preds = pd.DataFrame({"token_id": np.arange(n), "a": rng.normal(size=n), "const": np.ones(n)})
    y = 0.5 * preds["a"] + rng.normal(size=n)
    deltas = pd.concat([pd.DataFrame({"task": t, "token_id": np.arange(n), "delta": y * s})
                        for t, s in (("math500", 1), ("ifeval", -1))])
    t1 = correlations.correlation_table(deltas, preds, {"a": "A", "const": "C"}, ["math500", "ifeval"]).set_index("predictor")
    ref = sps.pearsonr(preds["a"], y)
    assert t1.loc["A", "math500_r"] == pytest.approx(ref.statistic)
    assert t1.loc["A", "math500_p"] == pytest.approx(ref.pvalue)
    assert t1.loc["A", "ifeval_r"] == pytest.approx(-ref.statistic)
    assert t1.loc["A", "math500_n"] == n
    assert np.isnan(t1.loc["C", "math500_r"]) and np.isnan(t1.loc["C", "math500_p"])
    # NaN predictor values are dropped pairwise
    x = preds["a"].to_numpy().copy()
    x[:5] = np.nan
    r, p = correlations.pearson(x, y)
    assert r == pytest.approx(sps.pearsonr(x[5:], y[5:]).statistic)


def test_bootstrap_is_calibrated_under_the_null():
    """Knockouts that change nothing but the sampling noise: ~alpha of them are rejected."""
    rng = np.random.default_rng(7)
    n, runs, m = 200, 4, 300
    p_i = rng.beta(2, 1, size=n)                                   # per-problem solve rates
    # a fresh baseline per replicate: marginal calibration (one shared baseline would make the
    # m tests dependent and the rate a conditional one)
    base = (rng.random((m, n, runs)) < p_i[None, :, None]).mean(2)
    ko = (rng.random((m, n, runs)) < p_i[None, :, None]).mean(2)   # same policy, new samples
    res = stats.paired_bootstrap(ko - base, n_resamples=2000, seed=0)
    rate = (res["p_value"] < 0.05).mean()
    assert 0.02 <= rate <= 0.09, rate
    # p-values roughly uniform: about a quarter below .25
    assert 0.17 <= (res["p_value"] < 0.25).mean() <= 0.33


# ---------------------------------------------------------------- within-candidate correction (D.2)

def test_within_candidate_bonferroni_by_hand():
    # candidate 0: token p .03, window p .04, two distinct sets -> candidate p = 2 * .03 = .06:
    #   no longer significant (uncorrected it was a Pillar)
    # candidate 1: token p .02, window set == {v} (one decoded set, L = 1) -> p .02, Pillar
    # candidate 2: window p .01 -> .02 < .05, Pillar through the window level
    # candidate 3: token p .6, window p .7 -> 2 * .6 = 1.2, capped at 1
    dt, pt = [-0.05, -0.05, 0.0, 0.0], [0.03, 0.02, 0.5, 0.6]
    dw, pw = [-0.05, -0.05, -0.03, 0.0], [0.04, 0.02, 0.01, 0.7]
    L = stats.perturbation_counts(["t1", "t2", "t3", "t4"], ["w1", "t2", "w3", "w4"])
    assert L.tolist() == [2, 1, 2, 2]
    new = stats.categorize(dt, pt, dw, pw, n_tests=L)
    assert new["category"].tolist() == [NEUTRAL, PILLAR, PILLAR, NEUTRAL]
    assert new["p_value"].tolist() == pytest.approx([0.06, 0.02, 0.02, 1.0])
    assert new["p_raw_min"].tolist() == pytest.approx([0.03, 0.02, 0.01, 0.6])
    assert new.loc[2, "decisive_level"] == "window" and new.loc[2, "p_decisive"] == pytest.approx(0.02)
    old = stats.categorize(dt, pt, dw, pw, n_tests=L, correction="none")
    assert old["category"].tolist() == [PILLAR, PILLAR, PILLAR, NEUTRAL]
    assert old["p_value"].tolist() == pytest.approx([0.03, 0.02, 0.01, 0.6])
    # no window level at all: one test, nothing to correct
    assert stats.perturbation_counts(["t1", "t2"], None).tolist() == [1, 1]
    assert stats.perturbation_counts(["t1", "t2"], [None, "w"]).tolist() == [1, 2]
    with pytest.raises(ValueError, match="correction"):
        stats.categorize(dt, pt, dw, pw, correction="holm")


def test_within_candidate_correction_holds_alpha_on_a_simulated_null():
    """2,000 null candidates, each with a token- and a window-level knockout that change nothing
    but the sampling noise, paired with one shared baseline per candidate and tested by the
    stage's paired bootstrap (shared resample indices). The old rule (min of the two p-values,
    uncorrected) rejects ~2 alpha of them; Bonferroni over the two policies holds alpha."""
    rng = np.random.default_rng(11)
    n, runs, m, alpha = 500, 4, 2000, 0.05                  # MATH-500 x 4 runs, as in D.3
    p_i = rng.beta(2, 1, size=n)                            # per-problem solve rates

    def decode():                                           # per-problem indicators [m, n]
        return (rng.random((m, n, runs)) < p_i[None, :, None]).mean(2)

    base, tok, win = decode(), decode(), decode()
    res = stats.paired_bootstrap(np.concatenate([tok - base, win - base]), n_resamples=2000, seed=0)
    pt, pw = res["p_value"].to_numpy()[:m], res["p_value"].to_numpy()[m:]
    dt, dw = tok.mean(1) - base.mean(1), win.mean(1) - base.mean(1)
    old = stats.categorize(dt, pt, dw, pw, alpha=alpha, correction="none")
    new = stats.categorize(dt, pt, dw, pw, alpha=alpha)
    rate_old, rate_new = (old["p_value"] < alpha).mean(), (new["p_value"] < alpha).mean()
    rate_single = (pt < alpha).mean()
    print(f"null false-positive rate at alpha={alpha}: single perturbation {rate_single:.4f}, "
          f"old min(p_token, p_window) {rate_old:.4f}, new min(1, 2 min) {rate_new:.4f} "
          f"({m} candidates)")
    assert rate_old > alpha + 0.02                          # measured 0.0855
    assert rate_new <= alpha                                # measured 0.0445
    assert abs(rate_single - alpha) < 0.01                  # the bootstrap itself is calibrated
    # the census (Eq. 22) is what the rate feeds: its non-Neutral share is the same rate here
    assert (new["category"] != NEUTRAL).mean() <= alpha < (old["category"] != NEUTRAL).mean()
