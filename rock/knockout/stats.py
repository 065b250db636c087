"""Statistics of the inference-time knockout [Sec. 3.2-3.3, App. D.1-D.4, Eq. 17/20-22].

Pure functions over dataframes and arrays; no I/O. The input of everything here is the per-problem
table the evaluation writes (one row per suppression set, task, problem and run)::

    set_id  task  problem_id  run  seed  correct

Definitions (each one is what the code computes; the paper's wording is cited):

* **Per-problem indicator** y[s, i]: the mean of ``correct`` over the repeated runs of problem i
  under suppression set s (App. D.3: "averaging over independent rollouts").
* **Delta** (Eq. 17, 20, 21): Delta(s) = mean_i y[s, i] - mean_i y[base, i], i.e. the accuracy of the
  knockout policy minus the accuracy of the un-suppressed baseline decoded under the same seeds.
* **Paired bootstrap** (App. D.3, "10,000 resamples, alpha = 0.05"): d_i = y[s, i] - y[base, i];
  B times draw n problem indices uniformly with replacement and take the mean of d over them,
  giving Delta*_1..B. The two-sided p-value is the percentile-interval inversion

      p = min(1, 2 * min(#{b: Delta*_b <= 0}, #{b: Delta*_b >= 0}) / B),

  so p < alpha exactly when 0 lies outside the central (1 - alpha) percentile interval of
  Delta*. Resamples equal to 0 (within ``ZERO_ATOL``) count on both sides (conservative); a set
  that never changes any outcome gets p = 1. All sets of one benchmark share the same resampled
  indices (common random numbers), so a set's p-value depends only on its own d, B and the seed.
* **Category** (Eq. 22): a candidate is a *Strong Pillar* iff some perturbation (token-level Eq. 20
  or window-level Eq. 21) has Delta <= -epsilon and its bootstrap p, corrected within the
  candidate (next item), is < alpha ("its token-level or window-level perturbation significantly
  degrades accuracy"); *Strong Stumbling* symmetrically
  with Delta >= +epsilon; *Neutral* otherwise. If both directions qualify (token-level hurts,
  window-level helps), the qualifying perturbation with the larger |Delta| decides and the row is
  flagged ``conflict`` (the paper does not cover the case).
* **Within-candidate correction** (App. D.2): a candidate is tested by up to two perturbations
  (token level, Eq. 20; window level, Eq. 21), and Eq. 22 calls it significant when *either*
  rejects. Taking the smaller of two p-values uncorrected doubles (nearly) the candidate's Type-I
  rate, while D.2 counts "200 x 0.05 = 10 rejections expected under the global null", i.e. one
  level-alpha test per candidate. So each perturbation's p is Bonferroni-corrected over the
  candidate's L distinct perturbations (``correction='bonferroni'``, the default):
  ``p_adj = min(1, L * p)``, with L = 2 when the window set differs from {v} and L = 1 when it is
  {v} itself (then the two policies are one decoded set, one test). Eq. 22's condition (ii) uses
  ``p_adj < alpha``. ``correction='none'`` is the uncorrected rule (kept reachable, ASSUMED off).
  Bonferroni over the two policies (rather than one family of 2m tests) keeps D.2's family the
  m candidates the paper counts (alpha / 200, BH ranks k / 200) while each member is a valid
  level-alpha test of "neither perturbation changes accuracy".
* **Candidate p-value** (App. D.2, multiple testing): ``min(1, L * min(p_token, p_window))`` (the
  Bonferroni p of the candidate's union null); one test per candidate, family size m = number of
  screened candidates as in D.2 (alpha / 200). ``p_raw_min`` keeps the uncorrected minimum.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from rock.errors import DataError
from rock.knockout.config import CORRECTIONS
from rock.knockout.correlations import correlation_table, pearson  # noqa: F401  (Table 1, re-exported)
from rock.knockout.multitest import bh_reject, bonferroni_reject, sign_test

log = logging.getLogger(__name__)

#: the per-problem table columns the statistics need (the evaluation seam's contract)
PER_PROBLEM_COLUMNS = ("set_id", "task", "problem_id", "run", "seed", "correct")
#: category labels (Eq. 22) and their one-letter codes used in the cross-task agreement (Table 2)
PILLAR, NEUTRAL, STUMBLING = "Strong Pillar", "Neutral", "Strong Stumbling"
CATEGORY_CODE = {PILLAR: "P", NEUTRAL: "N", STUMBLING: "S"}
#: a bootstrap mean this close to 0 is a tie with 0. Indicators are means over runs (multiples of
#: 1/n_runs), so sums of a few hundred of them carry rounding error ~1e-15, far below this.
ZERO_ATOL = 1e-12
#: a Delta within this of -epsilon counts as reaching it (Delta = -0.01 exactly must qualify even
#: when it was computed as -0.009999999999999998).
EPS_ATOL = 1e-12
#: bootstrap resamples processed per matrix product (memory: chunk x n_problems float64)
BOOTSTRAP_CHUNK = 1000


# --------------------------------------------------------------------------------------------
# per-problem indicators and paired differences
# --------------------------------------------------------------------------------------------

def check_per_problem(table: pd.DataFrame, *, source: str = "per-problem table") -> None:
    """Raise :class:`DataError` if ``table`` lacks a column of :data:`PER_PROBLEM_COLUMNS`."""
    missing = [c for c in PER_PROBLEM_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"missing columns {missing}; have {list(table.columns)}", file=source,
                        field=missing[0], fix="write the table with rock.knockout.runner "
                        "(columns set_id, task, problem_id, run, seed, correct)")


def problem_indicators(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of ``correct`` over runs for every (set_id, task, problem_id).

    Returns columns ``set_id, task, problem_id, indicator, n_runs``.
    """
    check_per_problem(table)
    g = table.assign(correct=table["correct"].astype(float)).groupby(
        ["set_id", "task", "problem_id"], sort=True, observed=True)["correct"]
    out = g.agg(indicator="mean", n_runs="size").reset_index()
    return out


def paired_matrix(table: pd.DataFrame, task: str, set_ids: Sequence[str], baseline_id: str
                  ) -> tuple[np.ndarray, np.ndarray, list]:
    """Per-problem indicators of ``set_ids`` and of the baseline on ``task``, paired by problem.

    Returns ``(Y, y_base, problem_ids)`` with ``Y`` of shape [len(set_ids), n_problems] and
    ``y_base`` of shape [n_problems]. Every set must cover exactly the baseline's (problem, run)
    pairs with the same seeds (the paired design of App. D.3); otherwise :class:`DataError`.
    """
    check_per_problem(table)
    sub = table[table["task"] == task]
    base = sub[sub["set_id"] == baseline_id]
    if base.empty:
        raise DataError(f"no baseline rows (set_id '{baseline_id}') for task '{task}'",
                        field="set_id", fix="evaluate the un-suppressed baseline (plan set 'base')")
    base_key = base.set_index(["problem_id", "run"])["seed"].sort_index()
    if base_key.index.duplicated().any():
        raise DataError(f"task '{task}': duplicate (problem_id, run) rows in the baseline",
                        field="run", fix="gather each shard once")
    problems = sorted(base["problem_id"].unique().tolist())
    ind = problem_indicators(sub[sub["set_id"].isin([baseline_id, *set_ids])])
    wide = ind.pivot(index="set_id", columns="problem_id", values="indicator")
    for sid in set_ids:
        rows = sub[sub["set_id"] == sid]
        key = rows.set_index(["problem_id", "run"])["seed"].sort_index()
        if len(key) != len(base_key) or not key.index.equals(base_key.index):
            raise DataError(f"task '{task}': set '{sid}' has {len(key)} (problem, run) rows, the "
                            f"baseline has {len(base_key)}; the knockout must be paired with the "
                            "baseline problem by problem and run by run", field="problem_id",
                            fix="re-run the shard that holds this set")
        if not np.array_equal(key.to_numpy(), base_key.to_numpy()):
            raise DataError(f"task '{task}': set '{sid}' was decoded with other seeds than the "
                            "baseline (App. D.3 needs the same seeds)", field="seed",
                            fix="re-run the shard with the plan's seeds")
    y_base = wide.loc[baseline_id, problems].to_numpy(float)
    Y = wide.loc[list(set_ids), problems].to_numpy(float) if set_ids else np.zeros((0, len(problems)))
    return Y, y_base, problems


# --------------------------------------------------------------------------------------------
# paired bootstrap
# --------------------------------------------------------------------------------------------

def bootstrap_counts(n: int, n_resamples: int, seed: int, chunk: int = BOOTSTRAP_CHUNK):
    """Yield resample count matrices [c, n] (row b: how often problem i was drawn in resample b).

    Draw order: one ``numpy.random.default_rng(seed)`` stream; each chunk calls
    ``rng.integers(0, n, size=(c, n))``, which consumes the stream exactly as B successive calls
    ``rng.integers(0, n, size=n)`` would (tests check this).
    """
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        c = min(chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(c, n))
        flat = (idx + (np.arange(c) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=c * n).reshape(c, n).astype(float)
        done += c


def paired_bootstrap(diffs: np.ndarray, *, n_resamples: int = 10_000, seed: int = 0,
                     alpha: float = 0.05) -> pd.DataFrame:
    """Paired bootstrap over problems for many knockouts at once (App. D.3).

    Args:
        diffs: [m, n] per-problem paired differences d = y_knockout - y_baseline (one row per set),
            or a 1-D [n] array for one set.
        n_resamples: B (paper: 10,000).
        seed: seed of the resampling stream (shared by all rows, see module docstring).
        alpha: level of the reported percentile interval.

    Returns a frame with one row per set: ``delta`` (mean d), ``p_value`` (two-sided, module
    docstring), ``se`` (standard deviation of the bootstrap means), ``ci_low``/``ci_high``
    (percentile interval at 1 - alpha), ``n_problems``.
    """
    d = np.atleast_2d(np.asarray(diffs, dtype=float))
    m, n = d.shape
    if n == 0:
        raise DataError("paired bootstrap on zero problems", field="problem_id",
                        fix="evaluate at least one problem per benchmark")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    le = np.zeros(m, dtype=np.int64)
    ge = np.zeros(m, dtype=np.int64)
    means = np.empty((m, n_resamples))
    done = 0
    for counts in bootstrap_counts(n, n_resamples, seed):
        mu = d @ counts.T / n                                   # [m, c]
        le += (mu <= ZERO_ATOL).sum(axis=1)
        ge += (mu >= -ZERO_ATOL).sum(axis=1)
        means[:, done:done + mu.shape[1]] = mu
        done += mu.shape[1]
    p = np.minimum(1.0, 2.0 * np.minimum(le, ge) / n_resamples)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=1)
    return pd.DataFrame({"delta": d.mean(axis=1), "p_value": p, "se": means.std(axis=1, ddof=1)
                         if n_resamples > 1 else np.nan, "ci_low": lo, "ci_high": hi,
                         "n_problems": n})


def knockout_deltas(table: pd.DataFrame, sets: pd.DataFrame, *, baseline_id: str,
                    n_resamples: int, seed: int, alpha: float) -> pd.DataFrame:
    """Delta, bootstrap p-value and interval for every (suppression set, task) (Eq. 20/21).

    Args:
        table: per-problem table (:data:`PER_PROBLEM_COLUMNS`).
        sets: the set ids to test, column ``set_id`` (the baseline may be included; it is skipped).
        baseline_id: the un-suppressed set.

    Returns columns ``set_id, task, acc, baseline_acc, delta, p_value, se, ci_low, ci_high,
    n_problems, n_runs``. Each task uses its own resampling stream, seeded with
    ``seed + task index`` (tasks in sorted order).
    """
    check_per_problem(table)
    set_ids = [s for s in dict.fromkeys(sets["set_id"]) if s != baseline_id]
    out = []
    for k, task in enumerate(sorted(table["task"].unique())):
        Y, y_base, problems = paired_matrix(table, task, set_ids, baseline_id)
        res = paired_bootstrap(Y - y_base, n_resamples=n_resamples, seed=seed + k, alpha=alpha)
        n_runs = (table[(table["task"] == task) & (table["set_id"] == baseline_id)]
                  .groupby("problem_id")["run"].size())
        res.insert(0, "set_id", set_ids)
        res.insert(1, "task", task)
        res.insert(2, "acc", Y.mean(axis=1) if len(set_ids) else [])
        res.insert(3, "baseline_acc", float(y_base.mean()))
        res["n_runs"] = int(n_runs.min())
        out.append(res)
        log.info("%s: baseline acc %.4f over %d problems x %d runs; %d knockout sets", task,
                 y_base.mean(), len(problems), int(n_runs.min()), len(set_ids))
    return pd.concat(out, ignore_index=True)


# --------------------------------------------------------------------------------------------
# categories (Eq. 22), census and cross-task agreement (Table 2)
# --------------------------------------------------------------------------------------------

def perturbation_counts(set_token, set_window) -> np.ndarray:
    """L per candidate: the number of distinct decoded perturbations (1 when the window set is
    missing or is the token set {v} itself, else 2); see the module docstring."""
    st = pd.Series(list(set_token), dtype=object)
    if set_window is None:
        return np.ones(len(st), dtype=np.int64)
    sw = pd.Series(list(set_window), dtype=object)
    return np.where(sw.isna() | (sw == st), 1, 2)


def categorize(delta_token, p_token, delta_window, p_window, *, epsilon: float = 0.01,
               alpha: float = 0.05, n_tests=None, correction: str = "bonferroni") -> pd.DataFrame:
    """Strong Pillar / Neutral / Strong Stumbling by Eq. 22 (rule in the module docstring).

    All arguments are equal-length arrays (one entry per candidate and benchmark); a missing
    window-level knockout may be NaN (then only the token level can qualify). ``n_tests`` is L per
    candidate (:func:`perturbation_counts`; default: 2 where the window level has a p-value, else
    1); ``correction`` is ``bonferroni`` (p_adj = min(1, L p)) or ``none`` (raw p, the old rule).

    Returns columns ``category``, ``decisive_level`` (``token``/``window``, or the level with the
    smaller p-value for Neutral), ``delta`` and ``p_decisive`` (corrected p) of that level,
    ``p_value`` (candidate p: min(1, L * min p)), ``p_raw_min``, ``n_tests``, ``conflict``.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    dt, pt = np.asarray(delta_token, float), np.asarray(p_token, float)
    dw, pw = np.asarray(delta_window, float), np.asarray(p_window, float)
    L = (np.where(np.isfinite(pw), 2, 1) if n_tests is None
         else np.asarray(n_tests, dtype=np.int64))
    factor = L if correction == "bonferroni" else np.ones_like(L)
    levels = np.array(["token", "window"])
    D = np.stack([dt, dw], axis=1)                      # [m, 2]
    P = np.minimum(1.0, np.stack([pt, pw], axis=1) * factor[:, None])
    sig = np.nan_to_num(P, nan=np.inf) < alpha
    down = sig & (np.nan_to_num(D, nan=0.0) <= -epsilon + EPS_ATOL)
    up = sig & (np.nan_to_num(D, nan=0.0) >= epsilon - EPS_ATOL)
    absd = np.abs(np.nan_to_num(D, nan=0.0))
    # strongest qualifying perturbation per direction (-1 where none qualifies)
    best_down = np.where(down.any(1), np.argmax(np.where(down, absd, -1), axis=1), -1)
    best_up = np.where(up.any(1), np.argmax(np.where(up, absd, -1), axis=1), -1)
    rows = np.arange(len(dt))
    mag_down = np.where(best_down >= 0, absd[rows, np.maximum(best_down, 0)], -1)
    mag_up = np.where(best_up >= 0, absd[rows, np.maximum(best_up, 0)], -1)
    conflict = (best_down >= 0) & (best_up >= 0)
    is_pillar = (best_down >= 0) & (mag_down >= mag_up)
    is_stumb = (best_up >= 0) & ~is_pillar
    neutral_level = np.where(np.nan_to_num(pw, nan=np.inf) < np.nan_to_num(pt, nan=np.inf), 1, 0)
    level = np.where(is_pillar, best_down, np.where(is_stumb, best_up, neutral_level))
    category = np.where(is_pillar, PILLAR, np.where(is_stumb, STUMBLING, NEUTRAL))
    if conflict.any():
        log.warning("%d candidate(s) qualify in both directions; the larger |Delta| decides",
                    int(conflict.sum()))
    raw_min = np.fmin(pt, pw)
    return pd.DataFrame({"category": category, "decisive_level": levels[level],
                         "delta": D[rows, level], "p_decisive": P[rows, level],
                         "p_value": np.minimum(1.0, raw_min * factor), "p_raw_min": raw_min,
                         "n_tests": L, "conflict": conflict})


def census(categories: pd.DataFrame, baseline_acc: dict[str, float] | None = None) -> pd.DataFrame:
    """Table 2, one row per benchmark: counts and percentages of each category.

    Args:
        categories: columns ``task, token_id, category`` (one row per candidate and benchmark).
        baseline_acc: optional baseline accuracy per task (last column of Table 2).
    """
    rows = []
    for task, g in categories.groupby("task", sort=False):
        n = len(g)
        row = {"benchmark": task, "n_candidates": n}
        for cat, key in ((PILLAR, "pillar"), (NEUTRAL, "neutral"), (STUMBLING, "stumbling")):
            k = int((g["category"] == cat).sum())
            row[key] = k
            row[f"{key}_pct"] = 100.0 * k / n if n else float("nan")
        row["baseline_acc"] = (baseline_acc or {}).get(task, float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def cross_task_agreement(categories: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Cross-task agreement of categories (Table 2's last line: "190 N||N, 7 P||N, 3 N||P, 0 P||P").

    ``tasks`` = (first, second); the label ``X||Y`` means category X on the first task and Y on
    the second. Returns every one of the 9 combinations (``label, count, pct``), the four the paper
    reports first. Candidates missing on either task are left out.
    """
    if len(tasks) != 2:
        raise ValueError(f"cross-task agreement needs exactly two tasks, got {list(tasks)}")
    a, b = tasks
    wide = categories.pivot(index="token_id", columns="task", values="category").dropna(subset=[a, b])
    labels = wide[a].map(CATEGORY_CODE) + "||" + wide[b].map(CATEGORY_CODE)
    order = ["N||N", "P||N", "N||P", "P||P", "S||N", "N||S", "S||S", "P||S", "S||P"]
    counts = labels.value_counts()
    n = len(wide)
    return pd.DataFrame({"label": order, "count": [int(counts.get(x, 0)) for x in order],
                         "pct": [100.0 * counts.get(x, 0) / n if n else float("nan") for x in order]})


# --------------------------------------------------------------------------------------------
# multiple testing and the global sign test (App. D.2)
# --------------------------------------------------------------------------------------------

def multiple_testing(categories: pd.DataFrame, *, alpha: float, fdr_q: Sequence[float],
                     tasks: Sequence[str], n_resamples: int | None = None) -> dict:
    """App. D.2: Bonferroni, BH, sign tests per task and combined, and the stable-core restriction.

    Args:
        categories: columns ``task, token_id, rank, in_core, category, p_value`` (``in_core``:
            detection's K rock tokens, the stable core of D.2; candidate p-value
            already corrected within the candidate: :func:`categorize`); optional ``n_tests``
            (perturbations per candidate, reported as ``n_perturbations``) and ``p_raw_min``.
        tasks: task order of the report.
        n_resamples: bootstrap B, recorded as the p-value resolution (a p of 0 means < 2/B).
    """
    if "in_core" not in categories.columns:
        raise DataError("no in_core column (detection's K rock tokens)", field="in_core",
                        fix="rebuild the pool with 'rock knockout pool' (it reads detection's is_rock)")
    core_ids = set(categories.loc[categories["in_core"].astype(bool), "token_id"].astype(int))
    out: dict = {"alpha": alpha, "fdr_q": list(fdr_q), "n_core": len(core_ids),
                 "n_resamples": n_resamples, "per_task": {}}
    neg_all = pos_all = neg_core = pos_core = 0
    for task in tasks:
        g = categories[categories["task"] == task].sort_values("rank")
        p = g["p_value"].to_numpy(float)
        m = len(p)
        i_min = int(np.nanargmin(p)) if m and np.isfinite(p).any() else None
        n_neg = int((g["category"] == PILLAR).sum())
        n_pos = int((g["category"] == STUMBLING).sum())
        core = g[g["in_core"].astype(bool)]
        c_neg = int((core["category"] == PILLAR).sum())
        c_pos = int((core["category"] == STUMBLING).sum())
        sig = g[g["category"] != NEUTRAL]
        out["per_task"][task] = {
            "m": m,
            "n_perturbations": (int(g["n_tests"].sum()) if "n_tests" in g else m),
            "min_p_uncorrected": (float(np.nanmin(g["p_raw_min"])) if "p_raw_min" in g and m
                                  else float("nan")),
            "min_p": float(p[i_min]) if i_min is not None else float("nan"),
            "min_p_token_id": int(g["token_id"].iloc[i_min]) if i_min is not None else None,
            "bonferroni_threshold": alpha / m if m else float("nan"),
            "bonferroni_rejections": int(bonferroni_reject(p, alpha).sum()),
            "bh_rejections": {str(q): int(bh_reject(p, q).sum()) for q in fdr_q},
            "sign_negative": n_neg, "sign_positive": n_pos, "sign_p": sign_test(n_neg, n_pos),
            "core_negative": c_neg, "core_positive": c_pos, "core_sign_p": sign_test(c_neg, c_pos),
            "significant": [{"token_id": int(r.token_id), "rank": int(r.rank),
                             "category": r.category, "p_value": float(r.p_value),
                             "in_core": bool(r.in_core)} for r in sig.itertuples()],
        }
        neg_all += n_neg
        pos_all += n_pos
        neg_core += c_neg
        pos_core += c_pos
    out["combined"] = {"sign_negative": neg_all, "sign_positive": pos_all,
                       "sign_p": sign_test(neg_all, pos_all),
                       "core_negative": neg_core, "core_positive": pos_core,
                       "core_sign_p": sign_test(neg_core, pos_core)}
    return out
