"""Multiple-testing procedures of App. D.2: Bonferroni, Benjamini-Hochberg and the global sign
test (used by :func:`rock.knockout.stats.multiple_testing`, which re-exports them)."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def bonferroni_reject(p_values, alpha: float = 0.05) -> np.ndarray:
    """Bonferroni at family-wise level alpha: reject p < alpha / m (D.2: "p < alpha/200")."""
    p = np.asarray(p_values, float)
    return p < alpha / len(p) if len(p) else np.zeros(0, bool)


def bh_reject(p_values, q: float) -> np.ndarray:
    """Benjamini-Hochberg step-up at FDR q: reject the k smallest p, k = max{k: p_(k) <= k q / m}.

    Uses ``scipy.stats.false_discovery_control`` (BH-adjusted p <= q is the same rule; tests check
    it against a direct implementation of the step-up).
    """
    p = np.asarray(p_values, float)
    if not len(p):
        return np.zeros(0, bool)
    return sps.false_discovery_control(p, method="bh") <= q


def sign_test(n_negative: int, n_positive: int) -> float:
    """Two-sided exact binomial test of the rejection signs against Bernoulli(1/2) (D.2).

    ``scipy.stats.binomtest(n_negative, n_negative + n_positive, 0.5)``; a 10:0 split gives
    2 * 2^-10. With no rejections at all there is nothing to test: NaN.
    """
    n = int(n_negative) + int(n_positive)
    if n == 0:
        return float("nan")
    return float(sps.binomtest(int(n_negative), n, 0.5, alternative="two-sided").pvalue)
