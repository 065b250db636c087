"""Ground truth recovered end to end: the toy world's planted mechanisms against what the analysis
found (issue 14). The world names them in ``world.json`` (:mod:`rock.toy.truth`); each check below
reads one stage's artifact and fails ``report_check`` when the planted answer is not recovered:

=========================  ======================================================================
``rock_set``               Jaccard(detected rocks R, planted rocks the trajectories carry) >= 0.8 (Sec. 2.2-2.5)
``rocks_persist``          planted persistent rocks: median |relative KL change| early -> late < 0.2
``learnable_in_high_kl``   at least half of the geometry's high-KL group are planted learnable types
``learnable_kl_falls``     planted learnable types: median relative KL change early -> late <= -0.4
``knockout_neutral``       no planted neutral candidate is a Strong Pillar (Sec. 3.2)
``knockout_pillar``        at least one planted Pillar is a Strong Pillar on MATH-500
``knockout_no_stray``      no Strong Pillar outside the planted Pillars
``knockout_neutral_set``   the window sets S_W(v) of planted neutral candidates hold no planted
                           Pillar (Eq. 21: a set built from every window would drag the digits in)
``freeze_sign``            random_window_freeze - rock_freeze has the planted sign (Sec. 4.3), judged
                           only when the run can detect it: the minimal detectable difference
                           (:func:`min_detectable_difference`) must be <= min(0.2, Rock-Freeze's
                           accuracy); otherwise ``underpowered`` with the power in the row
=========================  ======================================================================

A check whose artifact is missing is ``not run`` (it never passes silently and never fails a partial
run); a world without ``ground_truth`` (built before issue 14) gives an empty table.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd

from rock import paths
from rock.report.readers import Context

COLUMNS = ["check", "planted", "found", "value", "threshold", "status", "detail"]
OK, FAIL, NOT_RUN, UNDERPOWERED = "recovered", "not recovered", "not run", "underpowered"
#: thresholds of the issue (Jaccard, relative KL change of learnable types) and the share of the
#: high-KL group that must be planted learnable types (ASSUMED: a majority)
MIN_JACCARD, MAX_LEARNABLE_CHANGE, MIN_LEARNABLE_SHARE = 0.8, -0.4, 0.5
#: the largest relative KL change of a planted persistent rock (the paper's rocks: ~10%)
MAX_ROCK_CHANGE = 0.2


def planted(ctx: Context) -> dict:
    """``world.json``'s ``ground_truth`` ({} when the run has no toy world or an old one)."""
    info = paths.world_dir(ctx.run_dir) / "world.json"
    return json.loads(info.read_text()).get("ground_truth", {}) if info.is_file() else {}


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def _row(check: str, planted_ids, found, value, threshold: str, ok: bool | None, detail: str) -> dict:
    status = NOT_RUN if ok is None else (OK if ok else FAIL)
    return {"check": check, "planted": " ".join(map(str, planted_ids)), "found": " ".join(map(str, found)),
            "value": "" if value is None else f"{value:.4g}", "threshold": threshold,
            "status": status, "detail": detail}


def check_rock_set(truth: dict, rocks: list[int], seen: set[int] | None = None) -> dict:
    """Jaccard of the detected rocks with the planted rocks that the analysed trajectories carry
    (``seen``: the types detection could rank, freq >= min_freq; None = every planted type). A
    planted choice between two variants shows up only as the variant the student writes."""
    ids = truth["rocks"]["ids"]
    names = dict(zip(ids, truth["rocks"]["tokens"]))
    target = [i for i in ids if seen is None or i in seen]
    j = jaccard(rocks, target)
    unseen = [names[i] for i in ids if i not in target]
    return _row("rock_set", target, sorted(rocks), j, f">= {MIN_JACCARD}", j >= MIN_JACCARD,
                f"{len(set(rocks) & set(target))} of {len(rocks)} detected rocks are planted "
                f"({', '.join(names[i] for i in target)}"
                + (f"; planted but not in the trajectories: {', '.join(unseen)})" if unseen else ")"))


def check_detected_rocks(truth: dict, run_dir: str | Path) -> dict:
    """:func:`check_rock_set` on the context-mode detection of ``run_dir`` (its ``rocks.json``;
    ``seen``: the ranking's eligible types); "not run" without a detection."""
    rocks_json = paths.detection_file(run_dir, "context", "rocks.json")
    if not rocks_json.is_file():
        return _row("rock_set", truth["rocks"]["ids"], [], None, f">= {MIN_JACCARD}", None, f"no {rocks_json}")
    ranking = rocks_json.with_name("ranking.parquet")
    seen = (set(pd.read_parquet(ranking, columns=["token_id", "eligible"]).query("eligible")["token_id"]
                .astype(int)) if ranking.is_file() else None)
    return check_rock_set(truth, json.loads(rocks_json.read_text())["rocks"], seen)


def _relative_changes(ids, kl_early: pd.Series, kl_late: pd.Series) -> tuple[list[int], list[float], str]:
    """The planted ``ids`` seen at both checkpoints, their (KL_late - KL_early) / KL_early, and the
    ``early -> late`` values as text for the row's detail."""
    seen = [i for i in ids if i in kl_early.index and i in kl_late.index and kl_early[i] > 0]
    rel = [(kl_late[i] - kl_early[i]) / kl_early[i] for i in seen]
    return seen, rel, ", ".join(f"{i}: {kl_early[i]:.3g} -> {kl_late[i]:.3g}" for i in seen)


def check_learnable(truth: dict, per_type: pd.DataFrame, kl_early: pd.Series,
                    kl_late: pd.Series) -> list[dict]:
    """``per_type``: geometry's ``per_type.csv`` (its ``high_kl`` group is the top types by post-OPD
    KL); ``kl_early``/``kl_late``: mean KL per type id at the persistence checkpoints (Sec. 2.6c).

    ``learnable_in_high_kl``: at least half of the high-KL group are planted learnable types (the
    rare concluding markers or the misconception digits; the group is chosen by KL alone; a planted
    type learnt well enough to fall below the group's cut is not a failure as long as the group is
    still made of the planted mechanism).
    ``learnable_kl_falls``: the median over the planted rare learnable types (concluding markers)
    seen at both checkpoints of (KL_late - KL_early) / KL_early is <= -0.4."""
    ids = truth["learnable_high_kl"]["ids"]
    digits = truth.get("misconception_digits") or {"ids": [], "tokens": []}
    learnable = ids + [i for i in digits["ids"] if i not in ids]
    high = per_type.loc[per_type["group"] == "high_kl", "token_id"].astype(int).tolist()
    found = sorted(set(learnable) & set(high))
    share = len(found) / len(high) if high else 0.0
    rows = [_row("learnable_in_high_kl", learnable, found, share, f"share >= {MIN_LEARNABLE_SHARE}",
                 bool(ids) and share >= MIN_LEARNABLE_SHARE,
                 f"planted {truth['learnable_high_kl']['tokens'] + digits['tokens']}: {len(found)} of "
                 f"the {len(high)} types of the high-KL group {high}")]
    seen, rel, values = _relative_changes(ids, kl_early, kl_late)
    med = statistics.median(rel) if rel else None
    rows.append(_row("learnable_kl_falls", ids, seen, med, f"<= {MAX_LEARNABLE_CHANGE}",
                     None if med is None else med <= MAX_LEARNABLE_CHANGE,
                     "median (KL_late - KL_early) / KL_early over the planted types seen: " + values))
    return rows


def check_persistent(truth: dict, kl_early: pd.Series, kl_late: pd.Series) -> dict:
    """``rocks_persist``: the planted persistent rocks seen at both checkpoints keep their KL, median
    |KL_late - KL_early| / KL_early < 0.2 (the paper: rocks 0.21 -> 0.19, Sec. 2.6c)."""
    group = truth.get("persistent_rocks") or {"ids": [], "tokens": []}
    ids = group["ids"]
    seen, rel, values = _relative_changes(ids, kl_early, kl_late)
    med = statistics.median(map(abs, rel)) if rel else None
    return _row("rocks_persist", ids, seen, med, f"< {MAX_ROCK_CHANGE}",
                None if med is None else med < MAX_ROCK_CHANGE,
                f"planted {group['tokens']}: median |KL_late - KL_early| / KL_early over the ones seen: "
                + values)


def type_mean_kl(table: pd.DataFrame, min_freq: int = 2) -> pd.Series:
    """Mean reverse KL per type id of a token table, types with >= ``min_freq`` occurrences."""
    g = table.groupby("token_id")["reverse_kl"].agg(["size", "mean"])
    return g.loc[g["size"] >= min_freq, "mean"].rename(index=int)


def check_knockout(truth: dict, candidates: pd.DataFrame) -> list[dict]:
    pillars, neutral = truth["knockout"]["pillars"]["ids"], truth["knockout"]["neutral"]["ids"]
    strong = candidates[candidates["category"] == "Strong Pillar"]
    sp = sorted(set(strong["token_id"].astype(int)))
    sp_math = sorted(set(strong.loc[strong["task"] == "math500", "token_id"].astype(int)))
    screened = set(candidates["token_id"].astype(int))
    bad_neutral = sorted(set(neutral) & set(sp))
    stray = sorted(set(sp) - set(pillars))
    return [
        _row("knockout_neutral", neutral, bad_neutral, len(bad_neutral), "0 Strong Pillars",
             not bad_neutral, f"planted neutral candidates screened: {sorted(screened & set(neutral))}"),
        _row("knockout_pillar", pillars, sp_math, len(sp_math), ">= 1 on math500",
             len(set(sp_math) & set(pillars)) >= 1,
             f"planted Pillars screened: {sorted(screened & set(pillars))}"),
        _row("knockout_no_stray", pillars, stray, len(stray), "0", not stray,
             "Strong Pillars outside the planted Pillars"),
    ]


def check_neutral_sets(truth: dict, sets: pd.DataFrame) -> dict:
    """``sets``: ``knockout/window_sets.csv`` (``token_id``, space-separated ``member_ids``)."""
    pillars, neutral = set(truth["knockout"]["pillars"]["ids"]), truth["knockout"]["neutral"]["ids"]
    bad = {int(r.token_id): sorted(set(map(int, str(r.member_ids).split())) & pillars)
           for r in sets.itertuples() if int(r.token_id) in neutral}
    bad = {k: v for k, v in bad.items() if v}
    n = int(sets["token_id"].astype(int).isin(neutral).sum())
    return _row("knockout_neutral_set", neutral, sorted(bad), sum(map(len, bad.values())),
                "0 planted Pillars", None if n == 0 else not bad,
                f"{n} planted neutral candidates screened; Pillars in their window sets: {bad or 'none'}")


def min_detectable_difference(n: int, p: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest accuracy difference between two regimes evaluated on the same ``n`` problems that a
    two-sided test at ``alpha`` finds with probability ``power`` (normal approximation, two
    proportions near ``p``, clamped to [0.05, 0.95]): ``(z_{1-a/2} + z_power) sqrt(2 p (1-p) / n)``."""
    from scipy.stats import norm

    p = min(max(p, 0.05), 0.95)
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * (2 * p * (1 - p) / n) ** 0.5)


def check_freeze(truth: dict, delta: float | None, acc_rock: float | None = None,
                 n_problems: int | None = None) -> dict:
    sign = truth["freeze"]["expected_sign"]
    ok = None if delta is None else (delta < 0 if sign == "<0" else delta > 0)
    row = _row("freeze_sign", [truth["freeze"]["contrast"]], [], delta, sign, ok, truth["freeze"]["why"])
    if ok is None or acc_rock is None or not n_problems:
        return row
    mdd = min_detectable_difference(n_problems, acc_rock)
    row["detail"] += (f"; {n_problems} problems, Rock-Freeze accuracy {acc_rock:.3f}: minimal "
                      f"detectable difference {mdd:.3f} (alpha 0.05, power 0.8)")
    if mdd > min(0.2, acc_rock):
        row["status"] = UNDERPOWERED
    return row


def truth_frame(ctx: Context) -> pd.DataFrame:
    """Every check of the module docstring for the run in ``ctx`` (empty without ground truth)."""
    truth = planted(ctx)
    if not truth:
        return pd.DataFrame(columns=COLUMNS)
    run = Path(ctx.run_dir)
    rows = []
    rows.append(check_detected_rocks(truth, run))
    geo = (ctx.config or {}).get("geometry") or {}
    pt = run / "geometry" / "per_type.csv"
    early, late = (paths.token_stats(run, geo.get(k, k)) for k in ("early", "late"))
    if pt.is_file() and early.is_file() and late.is_file():
        cols = ["token_id", "reverse_kl"]
        kl_early = type_mean_kl(pd.read_parquet(early, columns=cols))
        kl_late = type_mean_kl(pd.read_parquet(late, columns=cols))
        rows.append(check_persistent(truth, kl_early, kl_late))
        rows += check_learnable(truth, pd.read_csv(pt), kl_early, kl_late)
    else:
        rows += [_row(c, truth["learnable_high_kl"]["ids"], [], None, "", None, f"no {pt}")
                 for c in ("rocks_persist", "learnable_in_high_kl", "learnable_kl_falls")]
    ws = run / "knockout" / "window_sets.csv"
    rows.append(check_neutral_sets(truth, pd.read_csv(ws, dtype={"member_ids": str}))
                if ws.is_file() else _row("knockout_neutral_set", [], [], None, "", None, f"no {ws}"))
    cand = run / "knockout" / "results" / "candidates.csv"
    if cand.is_file():
        rows += check_knockout(truth, pd.read_csv(cand))
    else:
        rows += [_row(c, [], [], None, "", None, f"no {cand}")
                 for c in ("knockout_neutral", "knockout_pillar", "knockout_no_stray")]
    rows.append(check_freeze(truth, *_freeze_numbers(ctx)))
    return pd.DataFrame(rows, columns=COLUMNS)


def _freeze_numbers(ctx: Context) -> tuple[float | None, float | None, int | None]:
    """``(random - rock_freeze, rock_freeze accuracy, problems per evaluation)`` of the run."""
    from rock.report.extract import NotRun, resolve

    try:
        delta = float(resolve("freeze.acc_delta.random_minus_rock_freeze").read(ctx).value)
    except (NotRun, TypeError, ValueError):
        return None, None, None
    regimes = pd.read_csv(Path(ctx.run_dir) / "freeze" / "results" / "regimes.csv").set_index("regime")
    acc = float(regimes.loc["rock_freeze", "final_average"]) if "rock_freeze" in regimes.index else None
    fz = (ctx.config or {}).get("freeze") or {}
    n = (fz.get("eval_limit") or 0) * len(fz.get("benchmarks") or [])
    return delta, acc, n or None


def failures(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["status"] == FAIL]


def write(table: pd.DataFrame, out_csv: str | Path) -> Path:
    from rock.atomic import atomic_path

    with atomic_path(Path(out_csv)) as tmp:
        table.to_csv(tmp, index=False)
    return Path(out_csv)
