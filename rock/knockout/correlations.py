"""Correlations of the knockout effect with the nine predictors [App. D.1, Table 1, Figure 6].

Pure functions over dataframes and arrays (``scipy.stats.pearsonr``); the token-level Delta of
Eq. 20 per candidate comes from :mod:`rock.knockout.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps


def pearson(x, y) -> tuple[float, float]:
    """Pearson r and two-sided p (``scipy.stats.pearsonr``) over the finite pairs.

    Fewer than 3 finite pairs, or a constant input, has no defined correlation: (NaN, NaN).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    res = sps.pearsonr(x, y)
    return float(res.statistic), float(res.pvalue)


def correlation_table(deltas: pd.DataFrame, predictors: pd.DataFrame,
                      names: dict[str, str], tasks: Sequence[str]) -> pd.DataFrame:
    """Table 1: Pearson r and p of the token-level Delta against each predictor, per task.

    Args:
        deltas: columns ``task, token_id, delta`` (token-level Delta per candidate, Eq. 20).
        predictors: one row per candidate, column ``token_id`` and one column per predictor.
        names: predictor column -> label (row order of the table).
    """
    rows = []
    for col, label in names.items():
        row = {"predictor": label, "column": col}
        for task in tasks:
            d = deltas[deltas["task"] == task][["token_id", "delta"]]
            j = d.merge(predictors[["token_id", col]], on="token_id", how="inner")
            r, p = pearson(j[col], j["delta"])
            row[f"{task}_r"], row[f"{task}_p"], row[f"{task}_n"] = r, p, len(j)
        rows.append(row)
    return pd.DataFrame(rows)
