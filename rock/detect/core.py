"""Rock Token scores and selection [Sec. 2.2, Eq. 3-14; authors' selection, reference/README.md].

Input: the occurrence table of ``rock stats`` at the post-OPD checkpoint (and, for the context-aware
mode, the pre-OPD checkpoint scoring the same trajectories): one row per token occurrence with
``trajectory, position, token_id`` and the losses. Everything here is a pure function over numpy
arrays / dataframes.

Two modes produce the same ranking table (one row per observed token type):

``context`` (Section 2.2, the paper's definition)
    1. ``R(v) = mean_loss(v) * Freq(v)`` (Eq. 4; the sum of the post-OPD losses of v);
    2. persistent high-loss occurrences ``O_PH = {l_pre >= tau_pre and l_post >= tau_post}`` (Eq. 5);
    3. ``rho(o)`` over the context windows (Eq. 6-10, :mod:`rock.detect.context`);
    4. ``R(v) = {o in O_PH(v): rho(o) >= eta}`` (Eq. 11), ``CCR(v) = |R(v)| / Freq(v)`` (Eq. 12),
       ``R_ctx(v) = R(v) * CCR(v)`` (Eq. 13);
    5. rocks: top-K by ``R_ctx`` or ``R_ctx >= tau_R`` (Eq. 14), among the types that *qualify*
       (the detection cut below).
``official`` (the authors' released selection)
    frequency >= 2, the 5 most frequent tokens dropped, score ``freq * mean KL``, ranks 1-100 are the
    rocks and ranks 101-200 the controls. No context filtering.

The detection cut (context mode). Eq. 14 keeps a type that "satisfies both a high aggregate burden
and sufficient context consistency"; top-K alone (Sec. 2.4) would fill K with any ``R_ctx > 0``,
e.g. an isolated high-loss type with a few chance context matches. A type qualifies only when
``CCR(v) >= min_ccr`` (ASSUMED, ``detection.context.min_ccr``; Eq. 14 with a per-type
``tau_R = R(v) * min_ccr``). Default ``high_loss_share``: the share of all occurrences with
``l_post >= tau_post`` (20% with the default quantile), i.e. v must be persistent and context
consistent at least as often as a random occurrence is merely high-loss after OPD. Planted isolated
types reach 8-10% from chance matches (so 5% would not do), planted rocks ~100%. A number sets the
floor directly (0 = the old cut). ``info.json`` records ``n_qualifying`` (also logged).

The loss is the full-vocabulary reverse KL (Eq. 15, the authors' choice) or the sampled log-ratio
``l_t`` (Eq. 2), config ``detection.loss``. Ties in any ranking are broken by token id (ascending).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rock.detect.context import ContextSpec, context_consistency, trajectory_bounds, window_spans
from rock.detect.occurrences import LOSSES, OCCURRENCE_COLUMNS, Occurrences  # noqa: F401  (re-exported)
from rock.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MODES = ("context", "official")
TAU_MODES = ("quantile", "absolute")
CONTROL_METHODS = ("matched", "ranks")
#: named floors of the detection cut (module docstring)
MIN_CCR_RULES = ("high_loss_share",)

#: ranking table columns, in order (both modes; NaN where a mode does not define a column)
RANKING_COLUMNS = (
    "rank", "token_id", "freq", "mean_loss", "rock_score", "mean_loss_pre", "n_high_post", "n_ph",
    "n_rock_occ", "ccr", "r_ctx", "score", "dropped_top_frequent", "eligible", "is_rock",
    "is_control", "is_screen")


@dataclass(frozen=True)
class DetectionConfig:
    """Settings of one detection mode (config section ``detection``). ASSUMED values: config.yaml."""

    mode: str = "context"
    loss: str = "reverse_kl"          # per-occurrence loss: reverse_kl (Eq. 15) | log_ratio (Eq. 2)
    min_freq: int = 2                 # candidates need Freq(v) >= min_freq
    drop_top_frequent: int = 0        # drop the n most frequent types (official: 5)
    tau_mode: str = "quantile"        # tau_pre/tau_post are quantiles of the per-checkpoint loss, or absolute
    tau_pre: float = 0.8              # Eq. 5
    tau_post: float = 0.8             # Eq. 5
    eta: float = 0.05                 # Eq. 11
    min_ccr: float | str = "high_loss_share"   # detection cut: CCR(v) >= min_ccr (module docstring)
    top_k: int = 100                  # K of Eq. 14 / Sec. 2.4
    tau_r: float | None = None        # Eq. 14 threshold; when set it replaces top_k
    k_screen: int = 200               # knockout screening pool (App. D.3): ranks 1..k_screen
    n_controls: int = 100             # control set size
    controls: str = "matched"         # matched (frequency-matched, App. B) | ranks (top_k+1..top_k+n)
    seed: int = 0

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"detection.{name}: {why} (got {getattr(self, name)!r})")

        if self.mode not in MODES:
            bad("mode", f"must be one of {MODES}")
        if self.loss not in LOSSES:
            bad("loss", f"must be one of {tuple(LOSSES)}")
        if self.tau_mode not in TAU_MODES:
            bad("tau_mode", f"must be one of {TAU_MODES}")
        if self.tau_mode == "quantile":
            for name in ("tau_pre", "tau_post"):
                if not 0.0 <= getattr(self, name) <= 1.0:
                    bad(name, "is a quantile with tau_mode 'quantile': must be in [0, 1]")
        if not 0.0 <= self.eta <= 1.0:
            bad("eta", "must be in [0, 1]")
        if isinstance(self.min_ccr, str):
            if self.min_ccr not in MIN_CCR_RULES:
                bad("min_ccr", f"must be a number in [0, 1] or one of {MIN_CCR_RULES}")
        elif isinstance(self.min_ccr, bool) or not 0.0 <= self.min_ccr <= 1.0:
            bad("min_ccr", "must be a number in [0, 1]")
        for name in ("min_freq", "top_k", "k_screen"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(name, "must be an integer >= 1")
        for name in ("drop_top_frequent", "n_controls"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                bad(name, "must be an integer >= 0")
        if self.k_screen < self.top_k:
            bad("k_screen", f"must be >= top_k ({self.top_k}): the screening pool extends R")
        if self.controls not in CONTROL_METHODS:
            bad("controls", f"must be one of {CONTROL_METHODS}")

    @staticmethod
    def official(**overrides) -> "DetectionConfig":
        """The authors' selection (reference/README.md)."""
        base = dict(mode="official", loss="reverse_kl", min_freq=2, drop_top_frequent=5,
                    top_k=100, k_screen=200, n_controls=100, controls="ranks", tau_r=None)
        base.update(overrides)
        return DetectionConfig(**base)


# --------------------------------------------------------------------------------------------
# Eq. 3-5
# --------------------------------------------------------------------------------------------

def type_aggregates(token_id: np.ndarray, loss: np.ndarray) -> pd.DataFrame:
    """Per observed type: ``freq`` = Freq(v), ``rock_score`` = R(v) = sum of losses = mean * freq
    (Eq. 3-4), ``mean_loss`` (Eq. 15 with the KL loss). Sorted by token id."""
    ids, inverse, freq = np.unique(token_id, return_inverse=True, return_counts=True)
    total = np.bincount(inverse.ravel(), weights=loss, minlength=len(ids))
    return pd.DataFrame({"token_id": ids.astype(np.int64), "freq": freq.astype(np.int64),
                         "mean_loss": total / freq, "rock_score": total})


def thresholds(occ: Occurrences, cfg: DetectionConfig) -> tuple[float, float]:
    """``(tau_pre, tau_post)`` in loss units: quantiles of each checkpoint's losses over all
    occurrences (``tau_mode='quantile'``), or the configured values (``'absolute'``)."""
    if occ.loss_pre is None:
        raise DataError("the context-aware mode needs the pre-OPD token table (Eq. 5)",
                        field="loss_pre", fix="score the trajectories with the pre-OPD checkpoint")
    if cfg.tau_mode == "absolute":
        return float(cfg.tau_pre), float(cfg.tau_post)
    return (float(np.quantile(occ.loss_pre, cfg.tau_pre)), float(np.quantile(occ.loss_post, cfg.tau_post)))


def persistent_high_loss(loss_pre: np.ndarray, loss_post: np.ndarray, tau_pre: float, tau_post: float) -> np.ndarray:
    """Boolean mask of O_PH (Eq. 5): high loss both before and after OPD."""
    return (loss_pre >= tau_pre) & (loss_post >= tau_post)


# --------------------------------------------------------------------------------------------
# rankings
# --------------------------------------------------------------------------------------------

def _rank(score: np.ndarray, token_id: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """1-based rank by score (desc), ties by token id; ineligible rows get rank 0."""
    order = np.lexsort((token_id, -score))
    order = order[eligible[order]]
    rank = np.zeros(len(score), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def _drop_most_frequent(agg: pd.DataFrame, n: int) -> np.ndarray:
    dropped = np.zeros(len(agg), dtype=bool)
    if n:
        order = np.lexsort((agg["token_id"].to_numpy(), -agg["freq"].to_numpy()))
        dropped[order[:n]] = True
    return dropped


def official_ranking(occ: Occurrences, cfg: DetectionConfig) -> pd.DataFrame:
    """The authors' selection: freq >= min_freq, drop the most frequent, score freq * mean loss."""
    agg = type_aggregates(occ.token_id, occ.loss_post)
    agg["dropped_top_frequent"] = _drop_most_frequent(agg, cfg.drop_top_frequent)
    agg["eligible"] = (agg["freq"] >= cfg.min_freq) & ~agg["dropped_top_frequent"]
    agg["score"] = agg["rock_score"]
    for c in ("mean_loss_pre", "n_high_post", "n_ph", "n_rock_occ", "ccr", "r_ctx"):
        agg[c] = np.nan
    return _finish(agg, cfg)


@dataclass
class ContextResult:
    """Context-aware detection: the ranking plus what windows and density need."""

    ranking: pd.DataFrame
    ph_index: np.ndarray          # flat indices of O_PH
    rho: np.ndarray               # rho per O_PH occurrence
    rock_occ: np.ndarray          # bool per O_PH occurrence: in R(v) (Eq. 11)
    tau_pre: float
    tau_post: float
    min_ccr: float = 0.0          # the detection cut's floor on CCR(v), in [0, 1]
    n_qualifying: int = 0         # types with R_ctx > 0 and CCR >= min_ccr (before min_freq, top-K)


def ccr_floor(loss_post: np.ndarray, tau_post: float, min_ccr: float | str) -> float:
    """The detection cut's floor on CCR(v) (module docstring): ``min_ccr`` itself, or with
    ``'high_loss_share'`` the share of all occurrences whose post-OPD loss is ``>= tau_post``."""
    if min_ccr == "high_loss_share":
        return float(np.mean(loss_post >= tau_post)) if len(loss_post) else 0.0
    return float(min_ccr)


def context_ranking(occ: Occurrences, cfg: DetectionConfig, spec: ContextSpec, *,
                    progress: bool = False) -> ContextResult:
    """Eq. 4-14 over all observed types (module docstring)."""
    tau_pre, tau_post = thresholds(occ, cfg)
    agg = type_aggregates(occ.token_id, occ.loss_post)
    ids = agg["token_id"].to_numpy()
    loc = np.searchsorted(ids, occ.token_id)
    agg["mean_loss_pre"] = np.bincount(loc, weights=occ.loss_pre, minlength=len(ids)) / agg["freq"].to_numpy()
    agg["n_high_post"] = np.bincount(loc[occ.loss_post >= tau_post], minlength=len(ids))
    ph = persistent_high_loss(occ.loss_pre, occ.loss_post, tau_pre, tau_post)
    ph_index = np.flatnonzero(ph)
    agg["n_ph"] = np.bincount(loc[ph_index], minlength=len(ids))
    rho = context_consistency(ph_index, occ.token_id, occ.trajectory, spec, hidden=occ.hidden,
                              progress=progress)
    rock_occ = (rho >= cfg.eta) & (agg["n_ph"].to_numpy()[loc[ph_index]] >= 2)
    agg["n_rock_occ"] = np.bincount(loc[ph_index[rock_occ]], minlength=len(ids))
    agg["ccr"] = agg["n_rock_occ"] / agg["freq"]                      # Eq. 12
    agg["r_ctx"] = agg["rock_score"] * agg["ccr"]                     # Eq. 13
    agg["dropped_top_frequent"] = _drop_most_frequent(agg, cfg.drop_top_frequent)
    floor = ccr_floor(occ.loss_post, tau_post, cfg.min_ccr)
    positive = agg["r_ctx"].to_numpy() > 0
    qualifies = positive & (agg["ccr"].to_numpy() >= floor)                # the detection cut
    agg["eligible"] = (agg["freq"] >= cfg.min_freq) & ~agg["dropped_top_frequent"] & qualifies
    agg["score"] = agg["r_ctx"]
    log.info("context detection: tau_pre=%.4g tau_post=%.4g |O_PH|=%d (%.1f%% of %d) rock occurrences=%d",
             tau_pre, tau_post, len(ph_index), 100 * len(ph_index) / max(1, len(occ)), len(occ),
             int(rock_occ.sum()))
    log.info("detection cut: %d of %d types with R_ctx > 0 qualify (CCR >= %.4g, min_ccr=%s); "
             "%d of them eligible (freq >= %d) for top_k=%d", int(qualifies.sum()), int(positive.sum()),
             floor, cfg.min_ccr, int(agg["eligible"].sum()), cfg.min_freq, cfg.top_k)
    return ContextResult(_finish(agg, cfg), ph_index, rho, rock_occ, tau_pre, tau_post,
                         min_ccr=floor, n_qualifying=int(qualifies.sum()))


def _finish(agg: pd.DataFrame, cfg: DetectionConfig) -> pd.DataFrame:
    """Rank, select rocks (Eq. 14), screening pool and controls; order columns."""
    agg = agg.copy()
    score = agg["score"].to_numpy(np.float64)
    elig = agg["eligible"].to_numpy(bool)
    agg["rank"] = _rank(score, agg["token_id"].to_numpy(), elig)
    rank = agg["rank"].to_numpy()
    if cfg.tau_r is not None:
        agg["is_rock"] = elig & (score >= cfg.tau_r)
    else:
        agg["is_rock"] = (rank >= 1) & (rank <= cfg.top_k)
    n_rock = int(agg["is_rock"].sum())
    agg["is_screen"] = (rank >= 1) & (rank <= max(cfg.k_screen, n_rock))
    if cfg.controls == "ranks":
        agg["is_control"] = (rank > n_rock) & (rank <= n_rock + cfg.n_controls)
    else:
        from rock.detect.clusters import frequency_matched_controls
        pool = agg[(agg["freq"] >= cfg.min_freq) & ~agg["is_rock"] & ~agg["dropped_top_frequent"]]
        rocks = agg[agg["is_rock"]]
        ctrl = frequency_matched_controls(rocks["freq"].to_numpy(), pool["token_id"].to_numpy(),
                                          pool["freq"].to_numpy(), n=min(cfg.n_controls, len(rocks)) if
                                          cfg.n_controls else 0, seed=cfg.seed)
        agg["is_control"] = agg["token_id"].isin(ctrl)
    if n_rock < cfg.top_k and cfg.tau_r is None:
        log.warning("only %d eligible candidates for top_k=%d: |R| = %d", n_rock, cfg.top_k, n_rock)
    # ranked rows first (by rank), then the ineligible ones by score and token id
    order = np.lexsort((agg["token_id"].to_numpy(), -score, np.where(rank > 0, rank, 0), rank == 0))
    agg = agg.iloc[order].reset_index(drop=True)
    for c in ("freq", "n_high_post", "n_ph", "n_rock_occ"):
        if agg[c].notna().all():
            agg[c] = agg[c].astype(np.int64)
    # ineligible types have no rank (<NA>, sorted last), so "sort by rank, take the head" never
    # picks them before a ranked type
    ranks = pd.array(agg["rank"].to_numpy(), dtype="Int64")
    ranks[ranks == 0] = pd.NA
    agg["rank"] = ranks
    return agg[list(RANKING_COLUMNS)]


def rank_values(ranking: pd.DataFrame) -> np.ndarray:
    """The ``rank`` column as int64 with 0 for unranked (ineligible) types."""
    return ranking["rank"].fillna(0).to_numpy(np.int64)


# --------------------------------------------------------------------------------------------
# windows W(v) and per-sequence density
# --------------------------------------------------------------------------------------------

def rock_windows(occ: Occurrences, ranking: pd.DataFrame, radius: int, *,
                 anchors: np.ndarray) -> pd.DataFrame:
    """W(v): one row per anchor occurrence of a screening-pool type (``is_screen``).

    ``anchors`` are flat occurrence indices: the context-consistent rock occurrences R(v) (Eq. 11)
    in the context mode, the occurrences with ``l_post >= tau_post`` in the official mode. Each
    window is the Eq. 6 span ``[t - w, t + w]`` clipped to the response; ``start``/``end`` are
    inclusive response positions. Columns: ``token_id, rank, trajectory, position, start, end``.
    """
    pool = ranking.loc[ranking["is_screen"], ["token_id", "rank"]]
    anchors = np.asarray(anchors, np.int64)
    anchors = anchors[np.isin(occ.token_id[anchors], pool["token_id"].to_numpy())]
    lo, hi = trajectory_bounds(occ.trajectory)
    a, b = window_spans(anchors, lo, hi, radius)
    rank_of = dict(zip(pool["token_id"].astype(int), pool["rank"].astype(int)))
    out = pd.DataFrame({
        "token_id": occ.token_id[anchors],
        "rank": [rank_of[int(v)] for v in occ.token_id[anchors]],
        "trajectory": occ.trajectory[anchors],
        "position": occ.position[anchors],
        "start": occ.position[a],
        "end": occ.position[b],
    })
    return out.sort_values(["rank", "trajectory", "position"], kind="stable").reset_index(drop=True)


def sequence_density(occ: Occurrences, rock_ids, rock_occ_index: np.ndarray | None = None) -> pd.DataFrame:
    """Per trajectory: length, occurrences of rock types and their share (Fig. 2b, Sec. 2.3).

    ``density`` counts every occurrence of a type in R (type level, the authors' 18.5% median);
    ``density_occ`` counts only context-consistent rock occurrences (Eq. 11) when given.
    """
    traj, inv = np.unique(occ.trajectory, return_inverse=True)
    length = np.bincount(inv, minlength=len(traj))
    is_rock = np.isin(occ.token_id, np.asarray(list(rock_ids), np.int64))
    n_rock = np.bincount(inv[is_rock], minlength=len(traj))
    out = pd.DataFrame({"trajectory": traj, "length": length, "n_rock_tokens": n_rock,
                        "density": n_rock / np.maximum(length, 1)})
    if rock_occ_index is not None:
        sel = np.asarray(rock_occ_index, np.int64)
        sel = sel[is_rock[sel]]
        n_occ = np.bincount(inv[sel], minlength=len(traj))
        out["n_rock_occ"] = n_occ
        out["density_occ"] = n_occ / np.maximum(length, 1)
    return out


def detect(occ: Occurrences, cfg: DetectionConfig, spec: ContextSpec | None = None, *,
           progress: bool = False):
    """Run one mode. Returns ``(ranking, windows, density, info)``."""
    spec = spec or ContextSpec()
    if cfg.mode == "official":
        ranking = official_ranking(occ, cfg)
        tau_post = (float(np.quantile(occ.loss_post, cfg.tau_post)) if cfg.tau_mode == "quantile"
                    else float(cfg.tau_post))
        anchors = np.flatnonzero(occ.loss_post >= tau_post)
        rock_occ_index = None
        info = {"tau_post": tau_post, "n_ph": None}
    else:
        res = context_ranking(occ, cfg, spec, progress=progress)
        ranking = res.ranking
        anchors = res.ph_index[res.rock_occ]
        rock_occ_index = anchors
        info = {"tau_pre": res.tau_pre, "tau_post": res.tau_post, "n_ph": int(len(res.ph_index)),
                "n_rock_occ": int(res.rock_occ.sum()), "min_ccr": res.min_ccr,
                "n_qualifying": res.n_qualifying}
    windows = rock_windows(occ, ranking, spec.radius, anchors=anchors)
    rocks = ranking.loc[ranking["is_rock"], "token_id"].to_numpy()
    density = sequence_density(occ, rocks, rock_occ_index)
    info.update({"mode": cfg.mode, "n_occurrences": int(len(occ)),
                 "n_trajectories": int(len(np.unique(occ.trajectory))),
                 "n_types": int(len(ranking)), "n_rocks": int(len(rocks)),
                 "corpus_loss": float(occ.loss_post.sum()),
                 "median_density": float(density["density"].median()) if len(density) else float("nan")})
    return ranking, windows, density, info


def select_scores(occ: Occurrences, cfg: DetectionConfig, spec: ContextSpec | None = None) -> pd.DataFrame:
    """The ranking alone (used by the stability sweep on sub-corpora)."""
    if cfg.mode == "official":
        return official_ranking(occ, cfg)
    return context_ranking(occ, cfg, spec or ContextSpec()).ranking
