"""The detection cut (Sec. 2.2, Eq. 14): top-K takes only types with sufficient context consistency.

A planted table: three rock types in fixed contexts (every occurrence hard before and after OPD),
two isolated high-loss types (hard at a third of their occurrences, at random places), three rare
types learned after OPD (hard before, easy after). The old cut (any ``R_ctx > 0``) fills K = 10
with the isolated types, whose few chance context matches give them a small positive ``R_ctx``;
the default floor ``CCR >= share of high-loss occurrences`` (20%) keeps exactly the three rocks.
"""

import logging

import numpy as np
from pathlib import Path

import pytest

from rock.detect.config import DetectionSettings
from rock.detect.context import ContextSpec
from rock.detect.core import DetectionConfig, Occurrences, ccr_floor, detect, select_scores
from rock.errors import ConfigError

ROCKS = {100: [10, 11, 100, 12, 13], 101: [20, 21, 101, 22, 23], 102: [30, 31, 102, 32, 33]}
ISOLATED = (200, 201)
RARE = (300, 301, 302)


def planted_cut_table(n_traj=200, seed=0) -> Occurrences:
    """Per trajectory: 40 background tokens (ids 1000-2999, loss ~0.05), each rock motif 3 times
    (the rock's loss 1.0-1.4 after, 1.0-1.2 before OPD), each isolated type 3 times alone (loss 2.0
    before and after at its first occurrence in even trajectories, 0.02 otherwise); the rare types
    once each in trajectories 0-5 (loss 2.0 before, 0.01 after)."""
    rng = np.random.default_rng(seed)
    toks, post, pre, traj = [], [], [], []
    for i in range(n_traj):
        seq = rng.integers(1000, 3000, size=40).tolist()
        lp, lq = rng.exponential(0.05, size=40).tolist(), rng.exponential(0.05, size=40).tolist()

        def put(seg, l_post, l_pre):
            at = int(rng.integers(0, len(seq) + 1))
            seq[at:at], lp[at:at], lq[at:at] = seg, l_post, l_pre

        for v, motif in ROCKS.items():
            c = motif.index(v)
            for _ in range(3):
                hp, hq = [0.02] * len(motif), [0.02] * len(motif)
                hp[c] = 1.0 + 0.1 * (v - 100) + 0.2 * rng.random()
                hq[c] = 1.0 + 0.2 * rng.random()
                put(motif, hp, hq)
        for v in ISOLATED:
            for k in range(3):
                hot = k == 0 and i % 2 == 0
                put([v], [2.0 if hot else 0.02], [2.0 if hot else 0.02])
        if i < 6:
            put([RARE[i % 3]], [0.01], [2.0])
        toks.append(seq), post.append(lp), pre.append(lq), traj.append([i] * len(seq))
    return Occurrences(np.concatenate(traj).astype(np.int64),
                       np.concatenate([np.arange(len(s)) for s in toks]).astype(np.int64),
                       np.concatenate(toks).astype(np.int64), np.concatenate(post), np.concatenate(pre))


CFG = dict(mode="context", top_k=10, k_screen=10, n_controls=0)


@pytest.fixture(scope="module")
def occ():
    return planted_cut_table()


def test_old_cut_fills_top_k_with_isolated_types(occ):
    ranking, _, _, info = detect(occ, DetectionConfig(**CFG, min_ccr=0.0), ContextSpec())
    r = ranking.set_index("token_id")
    # the rocks: 600 occurrences, every one persistent and context consistent
    for v in ROCKS:
        assert r.loc[v, "freq"] == 600 and r.loc[v, "ccr"] > 0.99
        assert 600 < r.loc[v, "r_ctx"] < 850
    # the isolated types: 100 persistent occurrences (first of three, even trajectories) of 600,
    # a few of them in chance context matches: 0 < CCR < 100/600, tiny R_ctx, but > 0
    for v in ISOLATED:
        assert r.loc[v, "n_ph"] == 100 and 0 < r.loc[v, "ccr"] < 100 / 600
        assert 0 < r.loc[v, "r_ctx"] < 0.05 * r.loc[100, "r_ctx"]
    for v in RARE:   # learned after OPD: never persistent (Eq. 5)
        assert r.loc[v, "n_ph"] == 0 and r.loc[v, "r_ctx"] == 0
    assert set(r.index[r["is_rock"]]) == set(ROCKS) | set(ISOLATED)
    assert info["n_qualifying"] == 5 and info["min_ccr"] == 0.0


def test_default_cut_selects_only_the_planted_rocks(occ, caplog):
    with caplog.at_level(logging.INFO, logger="rock.detect.core"):
        ranking, windows, _, info = detect(occ, DetectionConfig(**CFG), ContextSpec())
    r = ranking.set_index("token_id")
    assert sorted(r.index[r["is_rock"]]) == sorted(ROCKS)
    # floor = share of occurrences with l_post >= tau_post (the 0.8 quantile): 20% (ties aside)
    assert info["min_ccr"] == pytest.approx(0.2, abs=1e-3)
    assert info["n_qualifying"] == 3 and info["n_rocks"] == 3
    for v in ISOLATED:
        assert not r.loc[v, "eligible"] and not r.loc[v, "is_screen"] and r.loc[v, "r_ctx"] > 0
    assert "3 of 5 types with R_ctx > 0 qualify" in caplog.text
    assert "only 3 eligible candidates for top_k=10" in caplog.text
    assert set(windows["token_id"]) == set(ROCKS)   # W(v) only around qualifying types
    # the stability sweep ranks with the same cut
    sub = select_scores(occ, DetectionConfig(**CFG), ContextSpec())
    assert sorted(sub.loc[sub["is_rock"], "token_id"]) == sorted(ROCKS)


def test_a_numeric_floor_is_a_ccr_threshold(occ):
    """min_ccr = 0.05 still admits the isolated types (CCR 8-10% from chance matches); 0.5 does not."""
    ranking, *_ = detect(occ, DetectionConfig(**CFG, min_ccr=0.05), ContextSpec())
    ccr = ranking.set_index("token_id")["ccr"]
    admitted = {v for v in ISOLATED if ccr[v] >= 0.05}
    assert admitted and set(ranking.loc[ranking["is_rock"], "token_id"]) == set(ROCKS) | admitted
    ranking, *_ = detect(occ, DetectionConfig(**CFG, min_ccr=0.5), ContextSpec())
    assert sorted(ranking.loc[ranking["is_rock"], "token_id"]) == sorted(ROCKS)


def test_ccr_floor_by_hand():
    post = np.array([0.1, 0.5, 0.9, 1.0])
    assert ccr_floor(post, 0.9, "high_loss_share") == 0.5       # 2 of 4 losses >= 0.9
    assert ccr_floor(post, 0.9, 0.3) == 0.3
    assert ccr_floor(np.zeros(0), 0.9, "high_loss_share") == 0.0


def test_min_ccr_config():
    s = DetectionSettings.from_dict({"context": {"min_ccr": 0.25}})
    assert s.modes["context"].min_ccr == 0.25
    assert DetectionSettings.from_dict({}).modes["context"].min_ccr == "high_loss_share"
    with pytest.raises(ConfigError, match="min_ccr"):
        DetectionSettings.from_dict({"context": {"min_ccr": 1.5}})
    with pytest.raises(ConfigError, match="min_ccr"):
        DetectionConfig(min_ccr="median")
    # the official mode has no CCR: the schema rejects the key there (unknown keys: schema only)
    import copy

    from rock.config import load_config, validate_config

    toy = load_config(Path(__file__).resolve().parents[1] / "tests/config_toy/config.yaml")
    bad = copy.deepcopy(toy)
    bad["detection"]["official"]["min_ccr"] = 0.2
    with pytest.raises(ConfigError, match="min_ccr"):
        validate_config(bad, "toy")
