"""Screening pool, window-level suppression sets and the knockout plan [App. D.3, Eq. 20-21].

* **Screening pool** R~ (D.3): the top ``k_screen`` candidates of detection's ranking (rank 1 =
  largest score), a strict superset of the K = 100 rock set when k_screen > K.
* **Window set** S_W(v) (Eq. 21: "suppresses all Rock Token candidates appearing in the local
  high-divergence window W(v)"): W(v) is detection's list of v's rock occurrences, each a span
  ``[start, end]`` (inclusive token positions) of one student trajectory. S_W(v) = {v} plus every
  member token u (member = in the pool, or in the top-``k_core`` core, config ``window_members``)
  that occurs in at least ``window_min_share`` of v's windows (0 = in any window: the union).
  A candidate without windows gets S_W(v) = {v}, i.e. its window knockout is its token knockout.
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
CANDIDATE_COLUMNS = ("token_id", "rank")
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


def screening_pool(candidates: pd.DataFrame, k_screen: int, *, source: str = "candidates") -> pd.DataFrame:
    """Top ``k_screen`` rows of detection's ranking by ``rank`` (1 = top), re-ranked 1..k (D.3).

    Rows with rank < 1 are ineligible (detection's ``rank`` 0) and never screened.

    Raises :class:`DataError` for duplicate token ids; warns when fewer than ``k_screen`` exist.
    """
    _require(candidates, CANDIDATE_COLUMNS, source, "use the ranked candidate table of rock detect")
    if candidates["token_id"].duplicated().any():
        dup = int(candidates.loc[candidates["token_id"].duplicated(), "token_id"].iloc[0])
        raise DataError(f"token id {dup} appears twice", file=source, field="token_id",
                        fix="one row per token type")
    ranked = candidates[candidates["rank"] >= 1]          # rank 0 = ineligible (rock.detect)
    pool = ranked.sort_values(["rank", "token_id"], kind="stable").head(k_screen).copy()
    if len(pool) < k_screen:
        log.warning("%s: only %d candidates, fewer than k_screen=%d; screening all of them",
                    source, len(pool), k_screen)
    pool["token_id"] = pool["token_id"].astype(int)
    pool["rank"] = np.arange(1, len(pool) + 1)
    return pool.reset_index(drop=True)


def window_tokens(windows: pd.DataFrame, tokens: pd.DataFrame) -> pd.DataFrame:
    """Token ids inside every window: one row per (window, position) with its token id.

    Args:
        windows: ``token_id, trajectory, start, end`` (inclusive span of one rock occurrence of
            ``token_id``); one row per window.
        tokens: ``trajectory, position, token_id`` of the same trajectories (the token statistics).

    Returns columns ``window, candidate, member`` (``window`` = row number in ``windows``).
    """
    _require(windows, WINDOW_COLUMNS, "windows", "use the window table of rock detect")
    _require(tokens, TOKEN_COLUMNS, "tokens", "use the token statistics table of rock stats")
    start = windows["start"].to_numpy(np.int64)
    end = windows["end"].to_numpy(np.int64)
    if (end < start).any():
        i = int(np.argmax(end < start))
        raise DataError(f"window {i} ends ({end[i]}) before it starts ({start[i]})", file="windows",
                        line=i, field="end", fix="spans are inclusive [start, end]")
    lengths = end - start + 1
    win = np.repeat(np.arange(len(windows)), lengths)
    pos = np.repeat(start, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    spans = pd.DataFrame({"window": win, "trajectory": windows["trajectory"].to_numpy()[win],
                          "position": pos,
                          "candidate": windows["token_id"].to_numpy(np.int64)[win]})
    tok = tokens[list(TOKEN_COLUMNS)].rename(columns={"token_id": "member"})
    merged = spans.merge(tok, on=["trajectory", "position"], how="inner")
    return merged[["window", "candidate", "member"]]


def window_sets(pool: pd.DataFrame, windows: pd.DataFrame, tokens: pd.DataFrame | None, *,
                members: Sequence[int], min_share: float = 0.0) -> pd.DataFrame:
    """S_W(v) for every pool candidate (module docstring, Eq. 21).

    Args:
        pool: screening pool (``token_id``).
        windows: W(v) table (``token_id, trajectory, start, end``); rows of tokens outside the pool
            are ignored.
        tokens: token ids of the trajectories (``trajectory, position, token_id``). May be None
            when ``windows`` already has a list column ``token_ids`` (the ids inside each window).
        members: token ids allowed into a window set (besides v itself).
        min_share: keep u when it occurs in >= min_share of v's windows (0: any window).

    Returns one row per pool candidate: ``token_id, n_windows, window_set`` (sorted list of ids,
    always containing v) and ``window_set_size``.
    """
    ids = pool["token_id"].astype(int).tolist()
    w = windows[windows["token_id"].isin(ids)].reset_index(drop=True)
    if "token_ids" in w.columns:
        inside = pd.DataFrame({"window": np.arange(len(w)), "candidate": w["token_id"].astype(int),
                               "member": w["token_ids"]}).explode("member").dropna()
        inside["member"] = inside["member"].astype(np.int64)
    else:
        if tokens is None:
            raise DataError("window-level sets need the trajectories' token ids", file="windows",
                            field="token_ids", fix="pass --tokens (token statistics parquet)")
        inside = window_tokens(w, tokens)
    member_set = {int(m) for m in members}
    inside = inside[inside["member"].isin(member_set)].drop_duplicates(["window", "member"])
    n_win = w.groupby("token_id").size()
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
    log.info("window sets: %d candidates, %d without windows, size median %.1f max %d",
             len(out), int((out["n_windows"] == 0).sum()), out["window_set_size"].median(),
             int(out["window_set_size"].max()))
    return out


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
