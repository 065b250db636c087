"""Figures 4 and 6 and Tables 1 and 2 of the knockout [Sec. 3.1, App. D.1, D.4, D.5].

Each function takes results frames and returns a matplotlib figure or a markdown string; writing
(PNG + PDF, CSV + markdown, atomically) happens in the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rock.knockout import stats  # noqa: E402
from rock.knockout.correlations import pearson  # noqa: E402

COLORS = {stats.PILLAR: "#c0392b", stats.STUMBLING: "#2471a3", stats.NEUTRAL: "#9e9e9e"}
TASK_LABELS = {"math500": "MATH-500", "ifeval": "IFEval"}


def task_label(task: str) -> str:
    return TASK_LABELS.get(task, task)


def figure4(candidates: pd.DataFrame, tasks: Sequence[str], *, epsilon: float, alpha: float,
            n_resamples: int):
    """Figure 4: per-candidate Delta sorted, epsilon band, significant bars coloured by category.

    One panel per task. Bar height = token-level Delta (Eq. 20, "its logit masked at decode
    time"); a dot marks the window-level Delta (Eq. 21) of the same candidate. Bars are coloured
    when the candidate is a Strong Pillar (red) or Strong Stumbling (blue) by Eq. 22, grey else.
    """
    fig, axes = plt.subplots(len(tasks), 1, figsize=(10, 2.8 * len(tasks)), squeeze=False)
    for ax, task in zip(axes[:, 0], tasks):
        g = candidates[candidates["task"] == task].sort_values("delta_token", kind="stable")
        x = np.arange(len(g))
        colors = [COLORS[c] for c in g["category"]]
        ax.bar(x, g["delta_token"], width=0.85, color=colors, linewidth=0)
        if g["delta_window"].notna().any():
            ax.scatter(x, g["delta_window"], s=6, color="black", zorder=3, label="window-level Δ")
        ax.axhspan(-epsilon, epsilon, color="grey", alpha=0.2, linewidth=0,
                   label=f"|Δ| < ε = {epsilon:g}")
        ax.axhline(0, color="black", linewidth=0.5)
        n_p = int((g["category"] == stats.PILLAR).sum())
        n_s = int((g["category"] == stats.STUMBLING).sum())
        ax.set_title(f"{task_label(task)}: {len(g)} candidates, {n_p} Strong Pillar, "
                     f"{n_s} Strong Stumbling (paired bootstrap, α = {alpha:g}, "
                     f"{n_resamples:,} resamples)", fontsize=9)
        ax.set_ylabel("Δ accuracy")
        ax.set_xlim(-1, max(len(g), 1))
        ax.set_xticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[c]) for c in
               (stats.PILLAR, stats.STUMBLING, stats.NEUTRAL)]
    labels = [stats.PILLAR, stats.STUMBLING, "Neutral / not significant"]
    h2, l2 = axes[0, 0].get_legend_handles_labels()
    axes[-1, 0].set_xlabel("candidates, sorted by token-level Δ (bars); dots: window-level Δ")
    top = 1 - 0.35 / (2.8 * len(tasks))
    fig.legend(handles + h2, labels + l2, fontsize=8, loc="upper center", ncol=5, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, top))
    return fig


def figure6(candidates: pd.DataFrame, predictors: pd.DataFrame, task: str,
            panels: dict[str, str]):
    """Figure 6: token-level Delta on ``task`` against each predictor, Pearson r and p annotated.

    Strong Pillars are red. r and p are computed over all candidates with a finite predictor
    (:func:`rock.knockout.correlations.pearson`), the same numbers as Table 1.
    """
    g = candidates[candidates["task"] == task].merge(predictors, on="token_id", how="left")
    ncol = 3
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.9 * nrow), squeeze=False)
    pillar = g["category"] == stats.PILLAR
    for ax, (col, label) in zip(axes.ravel(), panels.items()):
        x, y = g[col].to_numpy(float), g["delta_token"].to_numpy(float)
        ax.scatter(x[~pillar], y[~pillar], s=10, color=COLORS[stats.NEUTRAL], alpha=0.8)
        ax.scatter(x[pillar], y[pillar], s=18, color=COLORS[stats.PILLAR], label=stats.PILLAR)
        r, p = pearson(x, y)
        ax.set_title(f"r = {r:+.3f}, p = {p:.3f}" if np.isfinite(r) else "r undefined (constant)",
                     fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel(f"Δ {task_label(task)}")
        ax.axhline(0, color="black", linewidth=0.5)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{task_label(task)} knockout Δ vs predictors ({len(g)} candidates)", fontsize=10)
    fig.tight_layout()
    return fig


def _fmt(x, spec: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def table1_markdown(corr: pd.DataFrame, tasks: Sequence[str]) -> str:
    """Table 1 (App. D.1) as markdown: one row per predictor, r and two-sided p per task."""
    head = "| Predictor | " + " | ".join(f"{task_label(t)} r | {task_label(t)} p" for t in tasks) + " |"
    sep = "|---|" + "---:|---:|" * len(tasks)
    lines = [head, sep]
    for row in corr.itertuples(index=False):
        d = row._asdict()
        cells = []
        for t in tasks:
            cells += [_fmt(d[f"{t}_r"], "+.3f"), _fmt(d[f"{t}_p"], ".3f")]
        lines.append(f"| {d['predictor']} | " + " | ".join(cells) + " |")
    n = ", ".join(f"{task_label(t)} n = {int(corr[f'{t}_n'].max()) if len(corr) else 0}" for t in tasks)
    return "\n".join(lines) + f"\n\nPearson r of the token-level Δ (Eq. 20) over the screened candidates ({n}); p two-sided.\n"


def table2_markdown(census: pd.DataFrame, agreement: pd.DataFrame, note: str | None = None) -> str:
    """Table 2 (App. D.4) as markdown, with the cross-task agreement line and an optional note."""
    lines = ["| Benchmark | Strong Pillar | Neutral | Strong Stumbling | Baseline acc. |",
             "|---|---:|---:|---:|---:|"]
    for r in census.itertuples(index=False):
        lines.append(f"| {task_label(r.benchmark)} | {r.pillar} ({r.pillar_pct:.1f}%) | "
                     f"{r.neutral} ({r.neutral_pct:.1f}%) | {r.stumbling} ({r.stumbling_pct:.1f}%) | "
                     f"{_fmt(r.baseline_acc, '.3f')} |")
    text = "\n".join(lines) + "\n"
    if len(agreement):
        shown = agreement[(agreement["count"] > 0) | agreement["label"].isin(["N||N", "P||N", "N||P", "P||P"])]
        text += "\nCross-task agreement: " + ", ".join(f"{int(r.count)} {r.label}" for r in
                                                       shown.itertuples(index=False)) + "\n"
    if note:
        text += f"\n{note}\n"
    return text


def multiple_testing_markdown(mt: dict, tasks: Sequence[str]) -> str:
    """App. D.2 summary: Bonferroni, BH, sign tests, stable core."""
    qs = [str(q) for q in mt["fdr_q"]]
    lines = ["| Benchmark | m | min p | Bonferroni thr. | Bonferroni rej. | "
             + " | ".join(f"BH q={q}" for q in qs) + " | signs (-:+) | sign p | core signs | core sign p |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(qs) + "---:|---:|---:|---:|"]
    B = mt.get("n_resamples")
    for t in tasks:
        d = mt["per_task"][t]
        min_p = f"< {2 / B:.1g}" if B and d["min_p"] == 0 else _fmt(d["min_p"], ".4f")
        lines.append(f"| {task_label(t)} | {d['m']} | {min_p} | "
                     f"{_fmt(d['bonferroni_threshold'], '.2e')} | {d['bonferroni_rejections']} | "
                     + " | ".join(str(d["bh_rejections"][q]) for q in qs)
                     + f" | {d['sign_negative']}:{d['sign_positive']} | {_fmt(d['sign_p'], '.3g')} | "
                     f"{d['core_negative']}:{d['core_positive']} | {_fmt(d['core_sign_p'], '.3g')} |")
    c = mt["combined"]
    lines.append(f"| combined | | | | | " + " | ".join("" for _ in qs)
                 + f" | {c['sign_negative']}:{c['sign_positive']} | {_fmt(c['sign_p'], '.3g')} | "
                 f"{c['core_negative']}:{c['core_positive']} | {_fmt(c['core_sign_p'], '.3g')} |")
    text = "\n".join(lines) + (f"\n\nSign test: two-sided exact binomial of Pillar (-) vs Stumbling (+) "
                               f"calls; core = detection's K rock tokens ({mt['n_core']} in the pool).\n")
    if mt.get("level_correction") == "bonferroni":
        text += ("\nCandidate p-value: min(1, L * min(p_token, p_window)), L = the candidate's distinct "
                 "perturbations (2, or 1 when its window set is {v}); m counts candidates.\n")
    ws = mt.get("window_sets")
    if ws:
        text += (f"\nWindow sets |S_W(v)| (Eq. 21, rule {ws.get('rule')}, share >= "
                 f"{ws.get('min_share')}): {ws['text']}.\n")
    return text
