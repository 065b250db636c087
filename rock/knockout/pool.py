"""Screening pool, window-level suppression sets and the knockout plan [App. D.3, Eq. 20-21].

* **Screening pool** R~ (D.3): detection's screened types (``is_screen``: ranks 1..K_screen of its
  ranking, ``detection.k_screen``), a strict superset of the K rock tokens (``is_rock``,
  ``detection.top_k``: the stable core of D.2) when K_screen > K. The knockout has no K of its own:
  both come from detection's output, so they cannot disagree.
* **Window set** S_W(v) (Eq. 21: the window-level policy "suppresses all Rock Token candidates
  appearing in the local high-divergence window W(v) during decoding"; D.3: W(v) "denotes the
  surrounding decoding context in which the teacher-student divergence remains consistently
  elevated"). W(v) is detection's list of v's *high-divergence* windows: one span
  ``[start, end]`` (inclusive token positions, radius w of Eq. 6) around each context-consistent
  persistent high-loss occurrence of v, R(v) of Eq. 11 (:func:`rock.detect.core.rock_windows`;
  the official mode anchors on ``l_post >= tau_post``), never around every occurrence of v.
  A candidate u "appears in W(v)" (rule ``high_divergence``, the default) where one of *its own*
  high-divergence occurrences (an anchor row of u in the same table) lies inside a window of v,
  and joins S_W(v) when that happens in at least ``window_min_share`` of v's windows
  (ASSUMED, config.yaml: "consistently elevated" = a recurring part of v's high-divergence
  context, not a token that happens to sit next to v once). Members are pool candidates (or the
  core R, config ``window_members``); so stop/EOS/pad/chat-template tokens, which
  never enter the pool, never enter a set. S_W(v) always contains v; a candidate without windows
  gets S_W(v) = {v}, i.e. its window knockout is its token knockout. Rule ``any_occurrence`` (the
  earlier reading: every occurrence of u in v's windows, from the token table) stays reachable.
* **Plan**: the distinct suppression sets to decode (the empty baseline, {v} for the token level,
  S_W(v) for the window level; identical sets are decoded once) and which shard decodes each.

Set ids are stable names of their content: ``base`` (empty set), ``t<id>`` ({id}) and ``w<hash>``
(sha1 of the sorted ids), so a plan rebuilt from the same pool names its sets the same way.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rock.errors import DataError

log = logging.getLogger(__name__)

BASELINE_ID = "base"
CANDIDATE_COLUMNS = ("token_id", "rank", "is_screen", "is_rock")
WINDOW_COLUMNS = ("token_id", "trajectory", "start", "end")
TOKEN_COLUMNS = ("trajectory", "position", "token_id")


@dataclass(frozen=True)
class SuppressionSet:
    """Token ids whose logits are set to -inf at every decoding step (Eq. 20/21)."""

    set_id: str
    token_ids: tuple[int, ...]

    @staticmethod
    def of(token_ids) -> "SuppressionSet":
        ids = tuple(sorted({int(t) for t in token_ids}))
        return SuppressionSet(set_id(ids), ids)


def set_id(token_ids: Sequence[int]) -> str:
    """Stable id of a suppression set (module docstring)."""
    ids = sorted({int(t) for t in token_ids})
    if not ids:
        return BASELINE_ID
    if len(ids) == 1:
        return f"t{ids[0]}"
    return "w" + hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:12]


def _require(df: pd.DataFrame, cols: Sequence[str], source: str, fix: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"missing columns {missing}; have {list(df.columns)}", file=source,
                        field=missing[0], fix=fix)


def screening_pool(candidates: pd.DataFrame, *, exclude=(), source: str = "candidates") -> pd.DataFrame:
    """Detection's screened types in rank order, re-ranked 1..n (D.3); ``in_core`` = its rocks.

    Args:
        candidates: detection's ranking (``token_id, rank, is_screen, is_rock``; rank 1 = top).
        exclude: token ids that never enter the pool (stop, EOS, pad and chat-template tokens,
            :func:`rock.knockout.specials.excluded_ids`); they are dropped and logged, the others
            keep their order. ``detection_rank`` keeps detection's rank.

    Raises :class:`DataError` for duplicate token ids or a missing column.
    """
    _require(candidates, CANDIDATE_COLUMNS, source, "use the ranked candidate table of rock detect")
    if candidates["token_id"].duplicated().any():
        dup = int(candidates.loc[candidates["token_id"].duplicated(), "token_id"].iloc[0])
        raise DataError(f"token id {dup} appears twice", file=source, field="token_id",
                        fix="one row per token type")
    screened = candidates[candidates["is_screen"].astype(bool) & (candidates["rank"].fillna(0) >= 1)]
    screened = screened.sort_values(["rank", "token_id"], kind="stable")
    excluded = screened["token_id"].astype(int).isin({int(t) for t in exclude})
    if excluded.any():
        dropped = screened.loc[excluded]
        log.info("%s: %d special token(s) never screened: ids %s at ranks %s", source, len(dropped),
                 dropped["token_id"].astype(int).tolist(), dropped["rank"].astype(int).tolist())
    pool = screened.loc[~excluded].copy()
    pool["token_id"] = pool["token_id"].astype(int)
    pool["in_core"] = pool["is_rock"].astype(bool)
    pool["detection_rank"] = pool["rank"].astype(int)
    pool["rank"] = np.arange(1, len(pool) + 1)
    log.info("%s: screening pool %d candidates (%d of detection's K rocks)", source, len(pool),
             int(pool["in_core"].sum()))
    return pool.reset_index(drop=True)


def window_tokens(windows: pd.DataFrame, tokens: pd.DataFrame) -> pd.DataFrame:
    """Token ids inside every window: one row per (window, position) with its token id.

    Args:
        windows: ``token_id, trajectory, start, end`` (inclusive span of one rock occurrence of
            ``token_id``); one row per window.
        tokens: ``trajectory, position, token_id`` of the same trajectories (the token statistics).

    Returns columns ``window, candidate, member`` (``window`` = row number in ``windows``).
    """
    _require(tokens, TOKEN_COLUMNS, "tokens", "use the token statistics table of rock stats")
    start, end = _spans(windows)
    lengths = end - start + 1
    win = np.repeat(np.arange(len(windows)), lengths)
    pos = np.repeat(start, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    spans = pd.DataFrame({"window": win, "trajectory": windows["trajectory"].to_numpy()[win],
                          "position": pos,
                          "candidate": windows["token_id"].to_numpy(np.int64)[win]})
    tok = tokens[list(TOKEN_COLUMNS)].rename(columns={"token_id": "member"})
    merged = spans.merge(tok, on=["trajectory", "position"], how="inner")
    return merged[["window", "candidate", "member"]]


def _spans(windows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``start``/``end`` of every window as int64, checked (inclusive spans)."""
    _require(windows, WINDOW_COLUMNS, "windows", "use the window table of rock detect")
    start = windows["start"].to_numpy(np.int64)
    end = windows["end"].to_numpy(np.int64)
    if (end < start).any():
        i = int(np.argmax(end < start))
        raise DataError(f"window {i} ends ({end[i]}) before it starts ({start[i]})", file="windows",
                        line=i, field="end", fix="spans are inclusive [start, end]")
    return start, end


def high_divergence_members(windows: pd.DataFrame) -> pd.DataFrame:
    """High-divergence occurrences inside every window: one row per (window, occurrence).

    Detection writes one row of ``windows`` per high-divergence occurrence of a screened type
    (its anchor ``trajectory, position``: in the context mode the context-consistent persistent
    high-loss occurrences R(v) of Eq. 11, :func:`rock.detect.core.rock_windows`). An occurrence
    of u lies in v's window w when it is an anchor of u in w's trajectory with
    ``start <= position <= end``; v's own anchor is not a member of its window.

    Returns columns ``window, candidate, member`` (``window`` = row number in ``windows``).
    """
    _require(windows, ("position",), "windows", "use the window table of rock detect (anchor position)")
    start, end = _spans(windows)
    traj = windows["trajectory"].to_numpy(np.int64)
    pos = windows["position"].to_numpy(np.int64)
    tok = windows["token_id"].to_numpy(np.int64)
    span = int(max(pos.max(initial=0), end.max(initial=0))) + 1
    key = traj * span + pos                                   # anchors, sorted by (trajectory, position)
    order = np.argsort(key, kind="stable")
    lo = np.searchsorted(key[order], traj * span + start, side="left")
    hi = np.searchsorted(key[order], traj * span + end, side="right")
    n = hi - lo
    win = np.repeat(np.arange(len(windows)), n)
    hit = order[np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))]
    out = pd.DataFrame({"window": win, "candidate": tok[win], "member": tok[hit]})
    return out[hit != win].reset_index(drop=True)


def window_sets(pool: pd.DataFrame, windows: pd.DataFrame, tokens: pd.DataFrame | None, *,
                members: Sequence[int], min_share: float = 0.0,
                rule: str = "high_divergence") -> pd.DataFrame:
    """S_W(v) for every pool candidate (module docstring, Eq. 21).

    Args:
        pool: screening pool (``token_id``).
        windows: W(v) table (``token_id, trajectory, position, start, end``): one row per
            high-divergence occurrence of a screened type; rows of other types only count as
            members (rule ``high_divergence``).
        tokens: token ids of the trajectories (``trajectory, position, token_id``); only the rule
            ``any_occurrence`` reads them, and not when ``windows`` has a list column
            ``token_ids`` (the ids inside each window).
        members: token ids allowed into a window set (besides v itself).
        min_share: keep u when it occurs (as the rule says) in >= min_share of v's windows
            (0: any window).
        rule: ``high_divergence`` (u counts only where it is a high-divergence occurrence itself:
            :func:`high_divergence_members`) or ``any_occurrence`` (any occurrence of u).

    Returns one row per pool candidate: ``token_id, n_windows, window_set`` (sorted list of ids,
    always containing v) and ``window_set_size``.
    """
    ids = pool["token_id"].astype(int).tolist()
    keep_rows = windows["token_id"].isin(ids).to_numpy()
    if rule == "high_divergence":
        inside = high_divergence_members(windows.reset_index(drop=True))
        inside = inside[keep_rows[inside["window"].to_numpy()]]
    elif "token_ids" in windows.columns:
        w = windows[keep_rows].reset_index(drop=True)
        inside = pd.DataFrame({"window": np.arange(len(w)), "candidate": w["token_id"].astype(int),
                               "member": w["token_ids"]}).explode("member").dropna()
        inside["member"] = inside["member"].astype(np.int64)
    else:
        if tokens is None:
            raise DataError("window-level sets need the trajectories' token ids", file="windows",
                            field="token_ids", fix="pass --tokens (token statistics parquet)")
        inside = window_tokens(windows[keep_rows].reset_index(drop=True), tokens)
    n_win = windows[keep_rows].groupby("token_id").size()
    member_set = {int(m) for m in members}
    inside = inside[inside["member"].isin(member_set)].drop_duplicates(["window", "member"])
    hits = inside.groupby(["candidate", "member"]).size().rename("n").reset_index()
    hits["share"] = hits["n"] / hits["candidate"].map(n_win)
    keep = hits[hits["share"] >= min_share - 1e-12] if min_share > 0 else hits
    by_cand = keep.groupby("candidate")["member"].apply(lambda s: set(s.astype(int)))
    rows = []
    for v in ids:
        s = sorted(by_cand.get(v, set()) | {v})
        rows.append({"token_id": v, "n_windows": int(n_win.get(v, 0)), "window_set": s,
                     "window_set_size": len(s)})
    out = pd.DataFrame(rows)
    log.info("window sets (%s, share >= %g): %d candidates, %d without windows; sizes %s", rule,
             min_share, len(out), int((out["n_windows"] == 0).sum()),
             size_distribution(out["window_set_size"])["text"])
    return out


def size_distribution(sizes) -> dict:
    """Summary of window-set sizes (|S_W(v)|, v included): quantiles, max and counts per size."""
    s = pd.Series(sizes, dtype=float).dropna()
    if s.empty:
        return {"n": 0, "median": None, "mean": None, "p90": None, "max": None, "n_singletons": 0,
                "counts": {}, "text": "none"}
    counts = {int(k): int(v) for k, v in s.astype(int).value_counts().sort_index().items()}
    d = {"n": int(len(s)), "median": float(s.median()), "mean": float(s.mean()),
         "p90": float(s.quantile(0.9)), "max": int(s.max()), "n_singletons": counts.get(1, 0),
         "counts": {str(k): v for k, v in counts.items()}}
    d["text"] = (f"n {d['n']}, median {d['median']:g}, mean {d['mean']:.2f}, p90 {d['p90']:g}, "
                 f"max {d['max']}, singletons {d['n_singletons']}; size:count "
                 + " ".join(f"{k}:{v}" for k, v in counts.items()))
    return d


def window_set_table(pool: pd.DataFrame, decode=None) -> pd.DataFrame:
    """One row per candidate: its window set's size and members, decoded (``decode(id) -> str``).

    Columns ``rank, token_id, token, n_windows, window_set_size, member_ids, members``; members
    are listed v first, then by pool rank, decoded texts quoted (``repr``) and joined by ``" | "``.
    """
    rank = dict(zip(pool["token_id"].astype(int), pool["rank"].astype(int)))
    dec = decode or str
    rows = []
    for r in pool.sort_values("rank").itertuples(index=False):
        v = int(r.token_id)
        ids = [v] + sorted((int(u) for u in r.window_set if int(u) != v),
                           key=lambda u: (rank.get(u, 1 << 30), u))
        rows.append({"rank": int(r.rank), "token_id": v, "token": dec(v),
                     "n_windows": int(r.n_windows), "window_set_size": len(ids),
                     "member_ids": " ".join(map(str, ids)),
                     "members": " | ".join(repr(dec(u)) for u in ids)})
    return pd.DataFrame(rows)


#: token-statistics columns (rock.stats) averaged per candidate for the Table 1 predictors:
#: (table, column) -> predictor. The teacher scores the post-OPD student's trajectories, so its
#: entropy comes from the post table; the pre-OPD student scores the same trajectories.
TOKEN_PREDICTORS = {
    ("post", "reverse_kl"): "kl_post",
    ("pre", "reverse_kl"): "kl_pre",
    ("post", "teacher_entropy"): "ent_teacher",
    ("post", "student_entropy"): "ent_student_post",
    ("pre", "student_entropy"): "ent_student_pre",
}


def type_predictors(token_ids: Sequence[int], post: pd.DataFrame | None,
                    pre: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-candidate means of the token statistics (Table 1 predictors, App. D.1).

    Args:
        token_ids: the candidates.
        post / pre: token-statistics tables of the post-/pre-OPD checkpoints scoring the same
            trajectories (``token_id`` plus any of the columns of :data:`TOKEN_PREDICTORS`).

    Returns ``token_id`` plus one column per available predictor (mean over the candidate's
    occurrences; NaN for a candidate that never occurs). ``kl_improvement = kl_pre - kl_post``.
    """
    out = pd.DataFrame({"token_id": [int(t) for t in token_ids]})
    tables = {"post": post, "pre": pre}
    for (which, col), name in TOKEN_PREDICTORS.items():
        t = tables[which]
        if t is None or col not in t.columns:
            continue
        sub = t[t["token_id"].isin(out["token_id"])]
        means = sub.groupby("token_id")[col].mean()
        out[name] = out["token_id"].map(means).astype(float)
    if {"kl_pre", "kl_post"} <= set(out.columns):
        out["kl_improvement"] = out["kl_pre"] - out["kl_post"]
    return out


def build_plan(pool: pd.DataFrame, *, levels: Sequence[str], n_shards: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Distinct suppression sets and the candidate -> set mapping.

    Args:
        pool: screening pool with ``token_id, rank`` and, for the window level, ``window_set``.
        levels: subset of ("token", "window").
        n_shards: sets are dealt round-robin over shards in plan order (the baseline first, then by
            candidate rank), so every shard holds about the same number of equally costly sets.

    Returns ``(sets, mapping)``: ``sets`` has ``set_id, kind, token_ids, n_tokens, shard``
    (kind ``baseline``/``token``/``window``: the first level that needed the set); ``mapping`` has
    ``token_id, rank, level, set_id``.
    """
    order: dict[str, tuple[str, tuple[int, ...]]] = {BASELINE_ID: ("baseline", ())}
    mapping = []
    for row in pool.sort_values("rank").itertuples(index=False):
        v = int(row.token_id)
        for level in levels:
            ids = (v,) if level == "token" else tuple(int(t) for t in row.window_set)
            s = SuppressionSet.of(ids)
            order.setdefault(s.set_id, (level, s.token_ids))
            mapping.append({"token_id": v, "rank": int(row.rank), "level": level, "set_id": s.set_id})
    sets = pd.DataFrame([{"set_id": k, "kind": kind, "token_ids": list(ids), "n_tokens": len(ids)}
                         for k, (kind, ids) in order.items()])
    sets["shard"] = np.arange(len(sets)) % n_shards
    if len(sets) < n_shards:
        log.warning("%d suppression sets for %d shards: %d shard(s) will be empty",
                    len(sets), n_shards, n_shards - len(sets))
    return sets, pd.DataFrame(mapping)


def shard_sets(sets: pd.DataFrame, shard: int) -> list[SuppressionSet]:
    """The suppression sets that shard ``shard`` decodes, in plan order."""
    sub = sets[sets["shard"] == shard]
    return [SuppressionSet(str(r.set_id), tuple(int(t) for t in r.token_ids)) for r in sub.itertuples()]
