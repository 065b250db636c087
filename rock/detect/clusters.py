"""Functional clusters of Rock Tokens and frequency-matched controls [Sec. 2.5, App. B].

Rock tokens and their controls are decoded to strings with the run's tokenizer and sorted into the
paper's four clusters plus a remainder (App. B):

``latex_math``           LaTeX and math delimiters: ``$``, ``\\``, ``$$``, ``=``, ``^``, ``{``, ``}``,
                         ``frac``, ``(``, ``)`` and other math operators / LaTeX command names;
``markdown_whitespace``  markdown and whitespace structure: ``**``, ``\\n``, ``\\n\\n``, ``:\\n\\n``,
                         ``###`` (any token containing a newline, whitespace-only tokens, runs of
                         markdown symbols);
``discourse``            sentence-initial discourse markers (``So``, ``Let``, ``We``, ``But``, ...;
                         the list is config ``clusters.discourse_markers``);
``digits``               tokens made of digits only (``0``-``9`` in Qwen3);
``other``                everything else (content words, punctuation, variable letters).

The rules are checked in the order digits, markdown/whitespace, LaTeX/math, discourse, other
(ASSUMED: the paper gives examples, not rules). The controls are the comparison set of App. B
("sampled at the same frequency distribution"); :func:`frequency_matched_controls` draws them and
:func:`matching_quality` reports how well the frequencies match (the authors' released controls are
ranks 101-200 and not frequency matched: rock frequencies sum to 85,120, control ones to 16,893).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats

CATEGORIES = ("latex_math", "markdown_whitespace", "discourse", "digits", "other")

#: App. B's discourse markers plus common sentence-initial step openers (config can replace them)
DEFAULT_DISCOURSE_MARKERS = (
    "So", "Let", "We", "But", "Now", "Wait", "Then", "Since", "This", "Thus", "First", "Next",
    "Therefore", "Hence", "Also", "However", "Finally", "Alternatively", "Hmm", "Okay")

_MATH_CHARS = re.compile(r"[$\\{}^_=()\[\]+\-*/<>|&]+")
_MARKDOWN = re.compile(r"[*#>|`~\-—–_:.]*[*#>|`~—–][*#>|`~\-—–_:.]*")
_LATEX_WORD = re.compile(r"\\?[A-Za-z]+")
#: LaTeX command names that appear as bare word pieces after a ``\`` token (``\frac`` -> ``\``, ``frac``)
LATEX_WORDS = frozenset({
    "frac", "dfrac", "tfrac", "sqrt", "boxed", "cdot", "times", "text", "textbf", "mathrm", "mathbf",
    "left", "right", "pi", "le", "ge", "leq", "geq", "neq", "ne", "approx", "quad", "qquad", "sum",
    "int", "infty", "binom", "div", "pm", "circ", "angle", "begin", "end", "align", "cases", "ldots",
    "cdots", "dots", "log", "ln", "sin", "cos", "tan", "theta", "alpha", "beta", "implies", "equiv",
    "mod", "pmod", "overline", "hat", "vec", "in", "mid", "lfloor", "rfloor", "lceil", "rceil"})


def categorize(text: str, discourse_markers=DEFAULT_DISCOURSE_MARKERS) -> str:
    """Cluster of one decoded token string (module docstring)."""
    stripped = text.strip()
    if stripped and stripped.isdigit():
        return "digits"
    if "\n" in text or not stripped or _MARKDOWN.fullmatch(stripped):
        return "markdown_whitespace"
    # a bare LaTeX name counts only without leading whitespace (``\frac`` splits into ``\`` +
    # ``frac``), so the English word `` in`` or `` text`` stays "other"
    bare_latex = text == stripped and stripped.lstrip("\\") in LATEX_WORDS
    if _MATH_CHARS.fullmatch(stripped) or (stripped.startswith("\\") and _LATEX_WORD.fullmatch(stripped)) \
            or bare_latex:
        return "latex_math"
    if stripped.rstrip(",:") in set(discourse_markers):
        return "discourse"
    return "other"


def frequency_matched_controls(rock_freq, pool_ids, pool_freq, *, n: int | None = None,
                               seed: int = 0) -> list[int]:
    """Greedy nearest-frequency matching without replacement (App. B, ``S_ctrl``).

    Rocks are matched in descending frequency; each takes the unused pool type whose log-frequency
    is closest (ties broken by a seeded random order). Returns up to ``n`` (default: one per rock)
    control ids, fewer if the pool is smaller.
    """
    rock_freq = np.asarray(rock_freq, np.float64)
    pool_ids = np.asarray(pool_ids, np.int64)
    pool_freq = np.asarray(pool_freq, np.float64)
    n = len(rock_freq) if n is None else n
    if n == 0 or len(pool_ids) == 0:
        return []
    rng = np.random.default_rng(seed)
    tie = rng.permutation(len(pool_ids))
    order = np.lexsort((tie, pool_freq))        # pool sorted by frequency, random tie order
    lf = np.log(pool_freq[order])
    used = np.zeros(len(order), dtype=bool)
    chosen = []
    for f in np.sort(rock_freq)[::-1][:n]:
        target = np.log(max(f, 1.0))
        j = int(np.searchsorted(lf, target))
        # walk outwards to the nearest unused entry on each side
        left, right = j - 1, j
        while left >= 0 and used[left]:
            left -= 1
        while right < len(lf) and used[right]:
            right += 1
        cands = [k for k in (left, right) if 0 <= k < len(lf)]
        if not cands:
            break
        best = min(cands, key=lambda k: (abs(lf[k] - target), tie[order[k]]))
        used[best] = True
        chosen.append(int(pool_ids[order[best]]))
    return chosen


def matching_quality(rock_freq, control_freq) -> dict[str, float]:
    """How well control frequencies match the rocks': two-sample KS on log10 frequency, ratio of
    summed and of median frequencies (1 = perfect)."""
    rf = np.asarray(rock_freq, np.float64)
    cf = np.asarray(control_freq, np.float64)
    if len(rf) == 0 or len(cf) == 0:
        return {"n_rocks": len(rf), "n_controls": len(cf), "ks_statistic": float("nan"),
                "ks_pvalue": float("nan"), "sum_freq_rocks": float(rf.sum()),
                "sum_freq_controls": float(cf.sum()), "sum_ratio": float("nan"), "median_ratio": float("nan")}
    ks = stats.ks_2samp(np.log10(rf), np.log10(cf))
    return {"n_rocks": int(len(rf)), "n_controls": int(len(cf)), "ks_statistic": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue), "sum_freq_rocks": float(rf.sum()),
            "sum_freq_controls": float(cf.sum()), "sum_ratio": float(cf.sum() / rf.sum()),
            "median_ratio": float(np.median(cf) / np.median(rf))}


def cluster_table(ranking: pd.DataFrame, decode, discourse_markers=DEFAULT_DISCOURSE_MARKERS) -> pd.DataFrame:
    """Rocks and controls decoded and categorized.

    ``decode(token_id) -> str``. Columns: ``group`` (rock/control), ``rank``, ``token_id``,
    ``token`` (the decoded string, repr-escaped so whitespace is visible), ``category``, ``freq``,
    ``mean_loss``, ``score``.
    """
    rows = []
    for group, col in (("rock", "is_rock"), ("control", "is_control")):
        sub = ranking[ranking[col]]
        for r in sub.itertuples(index=False):
            text = decode(int(r.token_id))
            rows.append({"group": group, "rank": None if pd.isna(r.rank) else int(r.rank),
                         "token_id": int(r.token_id),
                         "token": repr(text)[1:-1], "category": categorize(text, discourse_markers),
                         "freq": int(r.freq), "mean_loss": float(r.mean_loss), "score": float(r.score)})
    out = pd.DataFrame(rows, columns=["group", "rank", "token_id", "token", "category", "freq",
                                      "mean_loss", "score"])
    out["rank"] = pd.array(out["rank"].tolist(), dtype="Int64")   # unranked controls: <NA>
    return out


def cluster_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Count and share of each category per group (rows: categories, plus 'total')."""
    out = []
    for group in ("rock", "control"):
        sub = table[table["group"] == group]
        total = max(1, len(sub))
        for cat in CATEGORIES:
            k = int((sub["category"] == cat).sum())
            out.append({"group": group, "category": cat, "n": k, "share": k / total,
                        "freq_sum": int(sub.loc[sub["category"] == cat, "freq"].sum())})
    return pd.DataFrame(out)
