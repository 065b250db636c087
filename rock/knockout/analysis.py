"""From the gathered per-problem table to the knockout's results [Sec. 3.3, App. D.1-D.4].

:func:`analyze` is pure: per-problem table + screening pool + candidate->set mapping + config in,
:class:`KnockoutResults` out (Delta per set/task/level, categories by Eq. 22, Table 2 census and
cross-task agreement, D.2 multiple testing, Table 1 correlations). The CLI writes it to disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rock.knockout.config import KnockoutConfig
from rock.knockout.pool import BASELINE_ID, size_distribution
from rock.knockout import stats
from rock.knockout.correlations import correlation_table

log = logging.getLogger(__name__)

#: Table 1 predictors (App. D.1), canonical pool column -> label, in the paper's row order.
#: ``kl_improvement`` = kl_pre - kl_post (positive: OPD lowered the token's mean KL).
PREDICTORS = {
    "freq": "Frequency",
    "rock_count": "Rock count",
    "rock_rate": "Rock rate",
    "kl_pre": "Pre-OPD KL",
    "kl_post": "Post-OPD KL",
    "kl_improvement": "KL improvement",
    "ent_teacher": "Teacher entropy",
    "ent_student_pre": "Pre-OPD student entropy",
    "ent_student_post": "Post-OPD student entropy",
}
#: names the detection table may give each predictor (first found wins); ``mean_loss`` is the
#: post-OPD mean per-token loss, the reverse KL of Eq. 15 with detection.loss = reverse_kl
PREDICTOR_ALIASES = {
    "freq": ("freq", "frequency"),
    "rock_count": ("rock_count", "n_rock_occ"),
    "rock_rate": ("rock_rate", "ccr"),
    "kl_pre": ("kl_pre", "mean_kl_pre", "mean_loss_pre"),
    "kl_post": ("kl_post", "mean_kl_post", "mean_kl", "mean_loss"),
    "kl_improvement": ("kl_improvement",),
    "ent_teacher": ("ent_teacher", "mean_entropy_teacher", "entropy_teacher", "teacher_entropy"),
    "ent_student_pre": ("ent_student_pre", "mean_entropy_student_pre", "entropy_student_pre",
                        "student_entropy_pre"),
    "ent_student_post": ("ent_student_post", "mean_entropy_student_post", "entropy_student_post",
                         "student_entropy_post", "mean_entropy_student", "entropy_student"),
}
#: Figure 6 panels (App. D.5 caption order), pool column -> axis label
FIGURE6_PREDICTORS = {
    "ent_student_post": "post-OPD student entropy",
    "ent_student_pre": "pre-OPD student entropy",
    "ent_teacher": "teacher entropy",
    "log10_freq": "log10 frequency",
    "rock_rate": "rock rate",
    "kl_post": "mean post-OPD KL",
}


@dataclass
class KnockoutResults:
    deltas: pd.DataFrame            # per (set_id, task): acc, Delta, p, se, CI
    candidates: pd.DataFrame        # per (token_id, task): both levels, category (Eq. 22)
    census: pd.DataFrame            # Table 2 rows
    agreement: pd.DataFrame         # Table 2 cross-task agreement
    multiple_testing: dict          # App. D.2
    correlations: pd.DataFrame      # Table 1
    predictors: pd.DataFrame        # per candidate: token_id + predictor columns (Figure 6)


def predictor_frame(pool: pd.DataFrame) -> pd.DataFrame:
    """Predictor columns of the pool (Table 1, Figure 6); derives kl_improvement and log10_freq.

    Pool columns are found by :data:`PREDICTOR_ALIASES` (detection's names, e.g. ``ccr`` for the
    rock rate CCR(v) of Eq. 12 and ``n_rock_occ`` for the rock count |R(v)| of Eq. 11).

    A predictor the pool lacks becomes NaN (its correlation is reported as NaN) with a warning.
    """
    out = pool[["token_id"]].copy()
    for col in PREDICTORS:
        src = next((a for a in PREDICTOR_ALIASES[col] if a in pool.columns), None)
        if src is not None:
            out[col] = pool[src].astype(float)
        elif col == "kl_improvement" and {"kl_pre", "kl_post"} <= set(out.columns):
            out[col] = out["kl_pre"] - out["kl_post"]
        else:
            log.warning("pool has no predictor column '%s'; its correlation will be NaN", col)
            out[col] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        out["log10_freq"] = np.log10(out["freq"].where(out["freq"] > 0))
    return out


def analyze(per_problem: pd.DataFrame, pool: pd.DataFrame, mapping: pd.DataFrame,
            cfg: KnockoutConfig) -> KnockoutResults:
    """All statistics of the knockout (see :mod:`rock.knockout.stats` for the definitions)."""
    tasks = [t for t in cfg.tasks if t in set(per_problem["task"])]
    deltas = stats.knockout_deltas(per_problem, mapping[["set_id"]], baseline_id=BASELINE_ID,
                                   n_resamples=cfg.n_resamples, seed=cfg.bootstrap_seed,
                                   alpha=cfg.alpha)
    base_acc = {t: float(deltas.loc[deltas["task"] == t, "baseline_acc"].iloc[0]) for t in tasks}
    # candidate x level -> its set's Delta, p and accuracy on every task (identical sets share them)
    cols = ["set_id", "task", "delta", "p_value", "acc"]
    m = mapping.merge(deltas[cols], on="set_id", how="left")
    wide = m.pivot_table(index=["token_id", "rank", "task"], columns="level",
                         values=["delta", "p_value", "acc"], aggfunc="first")
    wide.columns = [f"{a}_{b}" for a, b in wide.columns]
    wide = wide.reset_index()
    for lv in ("token", "window"):
        for a in ("delta", "p_value", "acc"):
            if f"{a}_{lv}" not in wide.columns:
                wide[f"{a}_{lv}"] = np.nan
    wide = wide.merge(mapping.pivot(index="token_id", columns="level", values="set_id")
                      .add_prefix("set_").reset_index(), on="token_id", how="left")
    n_tests = stats.perturbation_counts(wide["set_token"] if "set_token" in wide else wide["set_window"],
                                        wide["set_window"] if "set_window" in wide else None)
    cat = stats.categorize(wide["delta_token"], wide["p_value_token"], wide["delta_window"],
                           wide["p_value_window"], epsilon=cfg.epsilon, alpha=cfg.alpha,
                           n_tests=n_tests, correction=cfg.level_correction)
    candidates = pd.concat([wide, cat], axis=1)
    candidates["baseline_acc"] = candidates["task"].map(base_acc)
    extra = [c for c in ("token", "in_core") if c in pool.columns]
    candidates = candidates.merge(pool[["token_id", *extra]], on="token_id", how="left")
    order = {t: i for i, t in enumerate(tasks)}
    candidates = candidates.sort_values(["task", "rank"], key=lambda s: s.map(order) if s.name == "task"
                                        else s).reset_index(drop=True)
    census = stats.census(candidates, base_acc)
    census = census.set_index("benchmark").loc[tasks].reset_index()
    agreement = (stats.cross_task_agreement(candidates, tasks[:2]) if len(tasks) >= 2
                 else pd.DataFrame(columns=["label", "count", "pct"]))
    mt = stats.multiple_testing(candidates, alpha=cfg.alpha, fdr_q=cfg.fdr_q, tasks=tasks,
                                n_resamples=cfg.n_resamples)
    if "window_set_size" in pool.columns:             # Eq. 21 set sizes, |S_W(v)| with v
        mt["window_sets"] = size_distribution(pool["window_set_size"])
        mt["window_sets"].update(rule=cfg.window_rule, min_share=cfg.window_min_share)
        log.info("window sets: %s", mt["window_sets"]["text"])
    mt["level_correction"] = cfg.level_correction
    preds = predictor_frame(pool)
    token_level = candidates[["task", "token_id", "delta_token"]].rename(columns={"delta_token": "delta"})
    corr = correlation_table(token_level, preds, PREDICTORS, tasks)
    for t in tasks:
        c = census[census["benchmark"] == t].iloc[0]
        log.info("%s: %d Strong Pillar, %d Neutral, %d Strong Stumbling (baseline acc %.3f)", t,
                 c["pillar"], c["neutral"], c["stumbling"], c["baseline_acc"])
    return KnockoutResults(deltas=deltas, candidates=candidates, census=census, agreement=agreement,
                           multiple_testing=mt, correlations=corr, predictors=preds)
