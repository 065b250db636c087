"""Figure 3 of the paper (gradient geometry and persistence, Sec. 2.6) from the tables of
:mod:`rock.geometry.core`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rock.atomic import save_figure
from rock.geometry.core import GROUP_COLORS, GROUPS


def figure3(per_type: pd.DataFrame, persist: pd.DataFrame, *, title: str, outputs) -> None:
    """Figure 3's four panels (caption order): (a) gradient norm by group, (b) cosine to
    G_balanced by group, (c) early vs late mean KL (log-log, diagonal), (d) Delta KL by group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    present = [g for g in GROUPS if (per_type["group"] == g).any()]
    for ax, metric, label, logy in ((axes[0, 0], "grad_norm", "||mean gradient||", True),
                                    (axes[0, 1], "cos_balanced", "cos(mean gradient, G_balanced)", False)):
        data = [per_type.loc[per_type["group"] == g, metric].to_numpy() for g in present]
        if any(len(d) for d in data):
            ax.boxplot(data, tick_labels=present, showfliers=False)
        rng = np.random.default_rng(0)
        for i, (g, d) in enumerate(zip(present, data)):
            ax.scatter(i + 1 + rng.uniform(-0.15, 0.15, len(d)), d, s=6, alpha=0.5, c=GROUP_COLORS[g])
        if logy:
            ax.set_yscale("log")
        ax.set_ylabel(label)
    axes[0, 0].set_title("(a) per-token logit-gradient magnitude")
    axes[0, 1].set_title("(b) alignment with G_balanced")
    axes[0, 1].axhline(0, color="k", lw=0.5)
    ax = axes[1, 0]
    lo = hi = None
    for g in GROUPS:
        sub = persist[persist["group"] == g]
        if len(sub):
            x, y = sub["kl_early"].clip(lower=1e-6), sub["kl_late"].clip(lower=1e-6)
            ax.scatter(x, y, s=8, alpha=0.6, c=GROUP_COLORS[g], label=g)
            lo = min(lo or np.inf, float(min(x.min(), y.min())))
            hi = max(hi or 0, float(max(x.max(), y.max())))
    if lo is not None:
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("mean KL, early checkpoint")
    ax.set_ylabel("mean KL, late checkpoint")
    ax.set_title("(c) per-token KL across checkpoints")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    all_d = persist["delta_kl"].to_numpy()
    bins = np.linspace(all_d.min(), all_d.max(), 31) if len(all_d) and np.ptp(all_d) > 0 else 30
    for g in GROUPS:
        d = persist.loc[persist["group"] == g, "delta_kl"].to_numpy()
        if len(d):   # shared bins, so the groups' spreads compare directly
            ax.hist(d, bins=bins, alpha=0.5, color=GROUP_COLORS[g], label=f"{g} (median {np.median(d):+.3f})")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("Delta KL = KL_late - KL_early")
    ax.set_ylabel("token types")
    ax.set_title("(d) Delta KL by group")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, outputs)
