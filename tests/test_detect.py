"""Rock Token detection (Sec. 2.2, Eq. 4-14): hand-built occurrence tables with hand-checked answers."""

import numpy as np
import pandas as pd
import pytest

from rock.detect.context import ContextSpec, context_consistency, naive_rho, trajectory_bounds, window_keys
from rock.detect.core import (DetectionConfig, Occurrences, detect, official_ranking,
                              persistent_high_loss, sequence_density, type_aggregates)
from rock.errors import ConfigError, DataError


def _occ(seqs, post, pre=None):
    """Occurrences from lists of token lists and matching loss lists."""
    traj = np.concatenate([[i] * len(s) for i, s in enumerate(seqs)])
    pos = np.concatenate([np.arange(len(s)) for s in seqs])
    tok = np.concatenate([np.asarray(s) for s in seqs])
    return Occurrences(traj.astype(np.int64), pos.astype(np.int64), tok.astype(np.int64),
                       np.concatenate(post).astype(float),
                       None if pre is None else np.concatenate(pre).astype(float))


# ------------------------------------------------------------------------------------------
# official mode: tiny table, hand computation
# ------------------------------------------------------------------------------------------

def test_official_mode_matches_hand_computation():
    # token: freq, losses            sum (R)   note
    # 1: 5 x 0.1                     0.5       most frequent -> dropped (drop_top_frequent=1)
    # 2: 3 x [1, 1, 1]               3.0       rank 1
    # 3: 2 x [2, 0.4]                2.4       rank 2
    # 4: 1 x [9]                     9.0       freq 1 < min_freq 2 -> ineligible
    # 5: 2 x [0.5, 0.5]              1.0       rank 3 -> control (ranks 3..4)
    # 6: 2 x [0.3, 0.1]              0.4       rank 4 -> control
    # 7: 2 x [0.1, 0.1]              0.2       rank 5 (neither)
    seqs = [[1, 2, 3, 1, 4, 5, 6, 7], [1, 2, 3, 1, 5, 6, 7, 1, 2]]
    post = [[0.1, 1, 2, 0.1, 9, 0.5, 0.3, 0.1], [0.1, 1, 0.4, 0.1, 0.5, 0.1, 0.1, 0.1, 1]]
    occ = _occ(seqs, post)
    cfg = DetectionConfig.official(drop_top_frequent=1, top_k=2, k_screen=3, n_controls=2)
    r = official_ranking(occ, cfg).set_index("token_id")
    assert r.loc[2, "rank"] == 1 and r.loc[3, "rank"] == 2 and r.loc[5, "rank"] == 3
    assert r.loc[6, "rank"] == 4 and r.loc[7, "rank"] == 5
    assert pd.isna(r.loc[1, "rank"]) and bool(r.loc[1, "dropped_top_frequent"])   # unranked: <NA>
    assert pd.isna(r.loc[4, "rank"]) and not bool(r.loc[4, "eligible"])
    # sorting by rank (as the knockout's screening pool does) never puts an unranked type first
    assert r.sort_values("rank").index[:5].tolist() == [2, 3, 5, 6, 7]
    assert r.loc[2, "score"] == pytest.approx(3.0) and r.loc[3, "score"] == pytest.approx(2.4)
    assert r.loc[3, "mean_loss"] == pytest.approx(1.2) and r.loc[3, "freq"] == 2
    assert sorted(r.index[r["is_rock"]]) == [2, 3]
    assert sorted(r.index[r["is_control"]]) == [5, 6]
    assert sorted(r.index[r["is_screen"]]) == [2, 3, 5]
    assert r.loc[4, "rock_score"] == pytest.approx(9.0)  # R(v) is still reported for every type


def test_official_ties_break_by_token_id():
    occ = _occ([[9, 8, 9, 8]], [[1, 1, 1, 1]])
    r = official_ranking(occ, DetectionConfig.official(drop_top_frequent=0, top_k=1, k_screen=1, n_controls=1))
    assert r.set_index("token_id").loc[8, "rank"] == 1


def test_type_aggregates_eq4():
    agg = type_aggregates(np.array([3, 1, 3, 3]), np.array([0.5, 2.0, 1.0, 1.5])).set_index("token_id")
    assert agg.loc[3, "freq"] == 3 and agg.loc[3, "mean_loss"] == pytest.approx(1.0)
    assert agg.loc[3, "rock_score"] == pytest.approx(3.0)  # R = mean * freq


def test_persistent_high_loss_eq5():
    pre = np.array([0.9, 0.1, 0.9, 0.5])
    post = np.array([0.9, 0.9, 0.1, 0.5])
    assert persistent_high_loss(pre, post, 0.5, 0.5).tolist() == [True, False, False, True]


# ------------------------------------------------------------------------------------------
# rho (Eq. 10): blocked/packed/deduplicated == naive all pairs
# ------------------------------------------------------------------------------------------

def _random_table(rng, n_traj=12, length=40, vocab=8):
    seqs = [rng.integers(0, vocab, size=rng.integers(1, length)).tolist() for _ in range(n_traj)]
    traj = np.concatenate([[i] * len(s) for i, s in enumerate(seqs)])
    tok = np.concatenate(seqs)
    return traj, tok


@pytest.mark.parametrize("representation,similarity", [
    ("bag", "cosine"), ("bag", "jaccard"), ("positional", "cosine"), ("positional", "jaccard"),
    ("hidden", "cosine")])
@pytest.mark.parametrize("gamma", [0.0, 0.34, 0.5, 1.0])
def test_rho_equals_naive_all_pairs(representation, similarity, gamma):
    rng = np.random.default_rng(1)
    traj, tok = _random_table(rng)
    ph = np.flatnonzero(rng.random(len(tok)) < 0.6)
    hidden = rng.normal(size=(len(tok), 5)).astype(np.float32) if representation == "hidden" else None
    if hidden is not None:
        hidden[::7] = 0.0
    # tiny blocks / one type per batch / everything heavy / nothing heavy: same answer
    for pack_rows, block, patterns in ((1, 7, 1), (64, 50, 5), (4096, 2**20, 10**6)):
        spec = ContextSpec(representation=representation, similarity=similarity, radius=2, gamma=gamma,
                           pack_rows=pack_rows, block_elements=block, max_patterns=patterns)
        fast = context_consistency(ph, tok, traj, spec, hidden=hidden)
        slow = naive_rho(ph, tok, traj, spec, hidden=hidden)
        np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_rho_hand_example():
    # token 5 occurs 3 times: twice after "1 2" and before "3 4", once in a different context
    seqs = [[1, 2, 5, 3, 4], [1, 2, 5, 3, 4], [7, 8, 5, 9, 6]]
    traj = np.repeat([0, 1, 2], 5)
    tok = np.array(sum(seqs, []))
    ph = np.array([2, 7, 12])
    spec = ContextSpec(representation="bag", similarity="jaccard", radius=2, gamma=0.5)
    # pairs: (0,1) identical -> 1; others share nothing -> 0. rho = hits / (3 - 1)
    assert context_consistency(ph, tok, traj, spec).tolist() == [0.5, 0.5, 0.0]


def test_windows_are_clipped_to_the_trajectory():
    traj = np.array([0, 0, 0, 1, 1])
    tok = np.array([10, 11, 12, 13, 14])
    lo, hi = trajectory_bounds(traj)
    keys = window_keys(np.array([0, 3]), tok, lo, hi, ContextSpec(representation="positional", radius=2))
    # offsets -2,-1,+1,+2
    assert keys.tolist() == [[-1, -1, 11, 12], [-1, -1, 14, -1]]


def test_sampling_cap_within_hoeffding_bound():
    rng = np.random.default_rng(0)
    n = 3000
    # one type (token 0) with two context patterns, 70% / 30%, then noise
    left = np.where(rng.random(n) < 0.7, 1, 2)
    seqs = np.stack([left, np.zeros(n, int), left + 10], axis=1)
    traj = np.repeat(np.arange(n), 3)
    tok = seqs.reshape(-1)
    ph = np.arange(1, 3 * n, 3)
    exact = context_consistency(ph, tok, traj, ContextSpec(radius=1, gamma=0.9))
    m = 400
    approx = context_consistency(ph, tok, traj, ContextSpec(radius=1, gamma=0.9, max_per_type=m, seed=3))
    # Hoeffding: P(|err| >= eps) <= 2 exp(-2 m eps^2); eps = 0.1 -> 6.7e-4 per occurrence
    assert np.abs(approx - exact).max() < 0.1
    assert abs(approx.mean() - exact.mean()) < 0.02
    assert exact[left == 1].mean() == pytest.approx((0.7 * n - 1) / (n - 1), abs=0.02)


# ------------------------------------------------------------------------------------------
# planted Rock Tokens
# ------------------------------------------------------------------------------------------

ROCK_A, ROCK_B, SPIKY, TRANSIENT = 100, 101, 200, 300


def planted_table(seed=0, n_traj=60, length=80):
    """Background tokens 0..49 with low loss, plus:

    * ROCK_A inside the motif 10 11 [A] 12 13, ROCK_B inside 20 [B] 21: high loss before and after
      OPD, every time (persistent, context consistent);
    * SPIKY: 12 times per trajectory at random places, high loss at a random 20% of them before and
      after (persistent spikes in unrelated contexts);
    * TRANSIENT: in the motif 30 [T] 31 with high post-OPD loss but low pre-OPD loss (not persistent).
    """
    rng = np.random.default_rng(seed)
    seqs, post, pre = [], [], []
    for _ in range(n_traj):
        tok = list(rng.integers(0, 50, size=length))
        lp = list(rng.exponential(0.05, size=length))
        lq = list(rng.exponential(0.05, size=length))
        inserts = [([10, 11, ROCK_A, 12, 13], 2, 1.0, 1.0)] * 3 + [([20, ROCK_B, 21], 1, 0.9, 1.2)] * 2 \
            + [([30, TRANSIENT, 31], 1, 1.5, 0.02)] * 2
        for motif, center, l_post, l_pre in inserts:
            at = int(rng.integers(0, len(tok)))
            tok[at:at] = motif
            lp[at:at] = [0.05] * len(motif)
            lq[at:at] = [0.05] * len(motif)
            lp[at + center] = l_post * rng.uniform(0.8, 1.2)
            lq[at + center] = l_pre * rng.uniform(0.8, 1.2)
        for _ in range(12):
            at = int(rng.integers(0, len(tok)))
            hot = rng.random() < 0.2
            tok.insert(at, SPIKY)
            lp.insert(at, 2.5 if hot else 0.02)
            lq.insert(at, 2.5 if hot else 0.02)
        seqs.append(tok), post.append(lp), pre.append(lq)
    return _occ(seqs, post, pre)


def test_planted_rocks_are_recovered_and_spikes_are_not():
    occ = planted_table()
    spec = ContextSpec(representation="bag", similarity="cosine", radius=2, gamma=0.5)
    cfg = DetectionConfig(mode="context", top_k=2, k_screen=4, n_controls=2, tau_pre=0.9, tau_post=0.9, eta=0.2)
    ranking, windows, density, info = detect(occ, cfg, spec)
    r = ranking.set_index("token_id")
    assert sorted(r.index[r["is_rock"]]) == [ROCK_A, ROCK_B]
    # the spiky token has a large aggregate burden but no recurring context
    assert r.loc[SPIKY, "rock_score"] > r.loc[ROCK_B, "rock_score"]
    assert r.loc[SPIKY, "n_ph"] > 50 and r.loc[SPIKY, "ccr"] < 0.02
    # nearly every occurrence is a rock occurrence (a later insertion can split a motif)
    assert r.loc[ROCK_A, "ccr"] > 0.95 and r.loc[ROCK_B, "ccr"] > 0.95
    assert r.loc[TRANSIENT, "n_ph"] == 0 and r.loc[TRANSIENT, "r_ctx"] == 0   # Eq. 5: not persistent
    # the official selection (no context, no pre-OPD check) ranks the spiky and transient tokens first
    off = official_ranking(occ, DetectionConfig.official(drop_top_frequent=0, top_k=2, k_screen=4, n_controls=2))
    top2 = set(off.loc[off["is_rock"], "token_id"])
    assert top2 == {SPIKY, TRANSIENT}
    # windows: one per rock occurrence, radius 2, inside the trajectory
    wa = windows[windows["token_id"] == ROCK_A]
    assert len(wa) == r.loc[ROCK_A, "n_rock_occ"] > 0.95 * 3 * 60
    assert ((wa["end"] - wa["start"]) <= 4).all() and (wa["start"] <= wa["position"]).all()
    assert info["n_rocks"] == 2
    # density: 3 A + 2 B per trajectory over its length
    lengths = density["length"].to_numpy()
    np.testing.assert_allclose(density["density"], 5 / lengths)


@pytest.mark.parametrize("representation,gamma", [("positional", 0.5), ("hidden", 0.6)])
def test_planted_rocks_other_representations(representation, gamma):
    occ = planted_table(seed=1)
    hidden = None
    if representation == "hidden":
        # a stand-in for student states: an embedding of the token plus noise
        rng = np.random.default_rng(0)
        emb = rng.normal(size=(400, 16)).astype(np.float32)
        hidden = emb[occ.token_id] + 0.1 * rng.normal(size=(len(occ), 16)).astype(np.float32)
        occ.hidden = hidden
    # ROCK_B's motif fixes 2 of the 4 neighbours: positional similarity 0.5 between its windows
    spec = ContextSpec(representation=representation, radius=2, gamma=gamma)
    cfg = DetectionConfig(mode="context", top_k=2, k_screen=4, n_controls=2, tau_pre=0.9, tau_post=0.9, eta=0.2)
    ranking, *_ = detect(occ, cfg, spec)
    assert sorted(ranking.loc[ranking["is_rock"], "token_id"]) == [ROCK_A, ROCK_B]


def test_frequency_matched_controls_in_context_mode():
    occ = planted_table()
    cfg = DetectionConfig(mode="context", top_k=2, k_screen=4, n_controls=2, tau_pre=0.9, tau_post=0.9, eta=0.2)
    ranking, *_ = detect(occ, cfg, ContextSpec(radius=2))
    r = ranking.set_index("token_id")
    ctrl = r[r["is_control"]]
    assert len(ctrl) == 2 and not ctrl["is_rock"].any()
    # controls come from types whose frequency is close to the rocks' (180 and 120 per 60 trajectories)
    rock_f = sorted(r.loc[r["is_rock"], "freq"])
    assert all(abs(np.log(f) - np.log(g)) < 0.35 for f, g in zip(sorted(ctrl["freq"]), rock_f))


def test_sequence_density_hand():
    occ = _occ([[1, 2, 1, 3], [2, 2]], [[0] * 4, [0] * 2])
    d = sequence_density(occ, [1], rock_occ_index=np.array([0]))
    assert d["density"].tolist() == [0.5, 0.0]
    assert d["density_occ"].tolist() == [0.25, 0.0]


def test_tables_must_cover_the_same_occurrences():
    post = pd.DataFrame({"trajectory": [0, 0], "position": [0, 1], "token_id": [1, 2], "reverse_kl": [0.1, 0.2]})
    pre = post.assign(token_id=[1, 3])
    with pytest.raises(DataError, match="different occurrences"):
        Occurrences.from_tables(post, pre)
    with pytest.raises(DataError, match="missing columns"):
        Occurrences.from_tables(post.drop(columns="reverse_kl"))


def test_config_checks():
    with pytest.raises(ConfigError, match="tau_pre"):
        DetectionConfig(tau_pre=1.5)
    with pytest.raises(ConfigError, match="k_screen"):
        DetectionConfig(top_k=10, k_screen=5)
    with pytest.raises(ConfigError, match="similarity"):
        ContextSpec(representation="hidden", similarity="jaccard")


@pytest.mark.parametrize("pair_cost", [0.0, 1.0, 1e9])
@pytest.mark.parametrize("representation,similarity", [("bag", "cosine"), ("positional", "jaccard")])
def test_rho_heavy_light_split_is_exact(monkeypatch, pair_cost, representation, similarity):
    """Force every heavy/light split (none heavy, some, as many as allowed) on a Zipf-like table."""
    import rock.detect.pair_counts as pair_counts

    monkeypatch.setattr(pair_counts, "SPARSE_PAIR_COST", pair_cost)
    rng = np.random.default_rng(5)
    p = 1.0 / np.arange(1, 41)
    tok = rng.choice(40, size=900, p=p / p.sum())
    traj = np.repeat(np.arange(30), 30)
    ph = np.flatnonzero(rng.random(len(tok)) < 0.7)
    spec = ContextSpec(representation=representation, similarity=similarity, radius=2, gamma=0.4,
                       max_patterns=200)
    np.testing.assert_allclose(context_consistency(ph, tok, traj, spec), naive_rho(ph, tok, traj, spec),
                               atol=1e-12)
