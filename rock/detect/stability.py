"""Cutoff K: selection stability across sub-corpora and loss coverage [Sec. 2.4, App. E].

Procedure (App. E): for each sub-corpus size ``n`` (paper: 50, 100, 200, 300, 400 of the N = 500
trajectories) the score is recomputed on a random sub-corpus of ``n`` trajectories and its top-K
set is compared with the top-K of the full corpus by the Jaccard index, for every K of a grid. The
coverage of a cutoff K is ``sum_{v in top-K} R(v) / L_corpus``, the share of the corpus loss
(sum of all per-occurrence losses) carried by the selected types.

The sweep ranks by the mode's selection score (``R_ctx`` in the context-aware mode, the authors'
``freq * mean KL`` in the official mode), recomputing the whole procedure (thresholds, O_PH, rho)
on each sub-corpus. App. E writes ``R_hat(v)``; in the official mode this is exactly that score.
Sub-corpora are drawn without replacement with a seeded generator (ASSUMED: the paper does not say
how they are drawn or how many times; config ``stability.n_repeats``).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from rock.detect.context import ContextSpec
from rock.detect.core import DetectionConfig, Occurrences, rank_values, select_scores

log = logging.getLogger(__name__)


def jaccard(a, b) -> float:
    """|A n B| / |A u B|; NaN when both sets are empty."""
    a, b = set(a), set(b)
    union = len(a | b)
    return len(a & b) / union if union else float("nan")


def top_k(ranking: pd.DataFrame, k: int) -> set[int]:
    """Token ids with rank 1..k (rank 0 = not eligible)."""
    r = rank_values(ranking)
    return set(ranking.loc[(r >= 1) & (r <= k), "token_id"].astype(int))


def coverage_curve(ranking: pd.DataFrame, corpus_loss: float, k_grid) -> pd.DataFrame:
    """Cumulative share of the corpus loss carried by the top-K types (App. E), for K in k_grid.

    Uses R(v) (``rock_score``: the whole post-OPD loss of type v) of the ranked types.
    """
    ranked = ranking[rank_values(ranking) >= 1].sort_values("rank")
    cum = np.cumsum(ranked["rock_score"].to_numpy(np.float64))
    rows = []
    for k in k_grid:
        kk = min(int(k), len(cum))
        covered = float(cum[kk - 1]) if kk else 0.0
        rows.append({"k": int(k), "n_selected": kk, "coverage": covered / corpus_loss if corpus_loss else float("nan")})
    return pd.DataFrame(rows)


def stability_sweep(occ: Occurrences, cfg: DetectionConfig, spec: ContextSpec | None, *, sizes,
                    k_grid, n_repeats: int = 1, seed: int = 0,
                    full_ranking: pd.DataFrame | None = None) -> pd.DataFrame:
    """Jaccard of the top-K at each sub-corpus size against the full corpus (App. E).

    Returns one row per (n, repeat, K): ``n, repeat, k, jaccard, n_full, n_sub`` (the last two are
    the sizes of the two top-K sets; smaller than K when fewer types are eligible).
    """
    trajectories = np.unique(occ.trajectory)
    full = full_ranking if full_ranking is not None else select_scores(occ, cfg, spec)
    full_sets = {k: top_k(full, k) for k in k_grid}
    rows = []
    for n in sizes:
        if n > len(trajectories):
            log.warning("stability: sub-corpus size %d exceeds the %d trajectories; skipped", n, len(trajectories))
            continue
        for rep in range(n_repeats):
            rng = np.random.default_rng([seed, int(n), rep])
            pick = rng.choice(trajectories, size=int(n), replace=False)
            sub = select_scores(occ.subset(pick), cfg, spec)
            for k in k_grid:
                s = top_k(sub, k)
                rows.append({"n": int(n), "repeat": rep, "k": int(k), "jaccard": jaccard(s, full_sets[k]),
                             "n_full": len(full_sets[k]), "n_sub": len(s)})
        log.info("stability: n=%d done (%d repeats)", n, n_repeats)
    return pd.DataFrame(rows, columns=["n", "repeat", "k", "jaccard", "n_full", "n_sub"])


def stability_summary(sweep: pd.DataFrame, coverage: pd.DataFrame) -> pd.DataFrame:
    """Per K: mean Jaccard per n (columns ``jaccard_n<n>``), the average over n, and coverage."""
    per_n = sweep.groupby(["k", "n"])["jaccard"].mean().unstack("n")
    per_n.columns = [f"jaccard_n{int(c)}" for c in per_n.columns]
    per_n["jaccard_mean"] = per_n.mean(axis=1)
    out = coverage.set_index("k").join(per_n, how="left").reset_index()
    return out
