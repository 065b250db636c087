"""A Zipf corpus with planted high-divergence segments, for the window sets of Eq. 21.

Used by ``benchmarks/bench_knockout_sets.py`` (paper scale: 500 trajectories of 300-1,500 tokens,
as the MATH-500 detection corpus) and by the tests (small scale). Token ids follow a Zipf law
(s = 1.1) over ``n_types`` ids; per-occurrence post-OPD losses are log-normal (median e^-3 nats)
and the pre-OPD loss is correlated with them, as ``benchmarks/bench_detect.py``. On top of that
noise, ``n_segments`` recurring segments are planted: each is a fixed run of tokens
``[c1, c2, r1 .. rk]`` (two ordinary context tokens, then k = 2-3 "rock" tokens drawn from the
frequent ids) written over random places of the trajectories, its rock tokens with high loss
before and after OPD (log-normal around 1 nat). The truth a window-set rule should recover:
a rock token r of a segment has the other rock tokens of its segment as its high-divergence
window partners, and nothing else recurs next to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def zipf_corpus(n_traj: int = 500, *, min_len: int = 300, max_len: int = 1500, n_types: int = 6000,
                s: float = 1.1, n_segments: int = 30, per_traj: float = 8.0, seed: int = 0):
    """Post and pre token tables (``trajectory, position, token_id, reverse_kl``) and the planted
    segments (``segment, rock_ids, context_ids``)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, size=n_traj)
    n = int(lengths.sum())
    p = np.arange(1, n_types + 1, dtype=np.float64) ** -s
    ids = rng.choice(n_types, size=n, p=p / p.sum())
    post = np.exp(rng.normal(-3.0, 1.5, size=n))
    pre = post * np.exp(0.8 * rng.normal(size=n))
    starts = np.cumsum(lengths) - lengths
    # planted segments: rock ids from ranks 5..404 (frequent words, as the paper's rocks), each
    # rock id in one segment only; context ids from the rest of the head
    head = rng.permutation(np.arange(5, 405))
    k = rng.integers(2, 4, size=n_segments)
    rock_ids = np.split(head[:k.sum()], np.cumsum(k)[:-1])
    context = rng.choice(np.arange(405, 2000), size=(n_segments, 2), replace=False)
    for t in range(n_traj):
        for seg in rng.integers(0, n_segments, size=rng.poisson(per_traj)):
            toks = np.r_[context[seg], rock_ids[seg]]
            at = starts[t] + rng.integers(0, lengths[t] - len(toks))
            ids[at:at + len(toks)] = toks
            hi = slice(at + 2, at + len(toks))
            post[hi] = np.exp(rng.normal(0.0, 0.5, size=len(toks) - 2))
            pre[hi] = post[hi] * np.exp(0.3 * rng.normal(size=len(toks) - 2))
    base = {"trajectory": np.repeat(np.arange(n_traj), lengths),
            "position": np.arange(n) - np.repeat(starts, lengths), "token_id": ids}
    segments = pd.DataFrame({"segment": np.arange(n_segments),
                             "rock_ids": [sorted(int(x) for x in r) for r in rock_ids],
                             "context_ids": [sorted(int(x) for x in c) for c in context]})
    return (pd.DataFrame({**base, "reverse_kl": post}), pd.DataFrame({**base, "reverse_kl": pre}),
            segments)


def unexplained_members(sets: pd.DataFrame, segments: pd.DataFrame) -> int:
    """Members u of S_W(v), u != v, that share no planted segment with v (rock or context token):
    co-occurrences the simulation did not plant, i.e. chance (Zipf noise)."""
    seg_of: dict[int, set[int]] = {}
    for i, (rocks, ctx) in enumerate(zip(segments["rock_ids"], segments["context_ids"])):
        for t in (*rocks, *ctx):
            seg_of.setdefault(int(t), set()).add(i)
    return sum(not (seg_of.get(int(v), set()) & seg_of.get(int(u), set()))
               for v, ws in zip(sets["token_id"], sets["window_set"]) for u in ws if int(u) != int(v))


def planted_partners(segments: pd.DataFrame, pool_ids) -> dict[int, set[int]]:
    """For every pool candidate that is a planted rock token: the planted window set (its segment's
    rock tokens that are in the pool, itself included)."""
    pool = {int(v) for v in pool_ids}
    out = {}
    for rocks in segments["rock_ids"]:
        members = {int(r) for r in rocks} & pool
        for r in members:
            out[r] = members
    return out
