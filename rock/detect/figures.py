"""Figure 2: empirical identification and stability of Rock Tokens [Sec. 2.3-2.4, App. E].

Panels follow the Figure 2 caption:
  (a) per-token mean KL vs frequency, rocks in red;
  (b) per-sequence Rock-Token density (median marked);
  (c) cumulative loss coverage (blue) and selection stability (red, Jaccard averaged over n) vs K;
  (d) Jaccard vs K, one curve per sub-corpus size n, plus the average.

Paper inconsistency, recorded rather than resolved: the caption puts the density in (b), coverage
and stability in (c) and Jaccard-vs-K per n in (d), whereas App. E calls the Jaccard-vs-K plot
"Figure 2(b)" and the coverage overlay "Figure 2(c)", and Sec. 2.3 says "Panel (a) reports the
absolute count of retained rock occurrences per sequence, while Panel (b) normalizes this count".
We follow the caption. Sec. 2.4 also cites "Figures 1b and 1c" for the same sweep.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rock.atomic import save_figure  # noqa: E402


def figure2(ranking: pd.DataFrame, density: pd.DataFrame, sweep: pd.DataFrame, summary: pd.DataFrame,
            *, top_k: int, title: str, outputs) -> None:
    """Draw the four panels and save to every path in ``outputs`` (png/pdf by suffix)."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    ax = axes[0, 0]
    other = ranking[~ranking["is_rock"]]
    rocks = ranking[ranking["is_rock"]]
    ax.scatter(other["freq"], other["mean_loss"].clip(lower=1e-6), s=4, c="0.6", alpha=0.5, label="other types")
    if "is_control" in ranking:
        ctrl = ranking[ranking["is_control"]]
        ax.scatter(ctrl["freq"], ctrl["mean_loss"].clip(lower=1e-6), s=8, c="tab:blue", alpha=0.7,
                   label=f"controls ({len(ctrl)})")
    ax.scatter(rocks["freq"], rocks["mean_loss"].clip(lower=1e-6), s=10, c="tab:red", label=f"rocks ({len(rocks)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("frequency Freq(v)")
    ax.set_ylabel("mean per-token loss")
    ax.set_title("(a) mean loss vs frequency")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    d = density["density"].to_numpy() * 100
    ax.hist(d, bins=30, color="tab:red", alpha=0.7)
    med = float(np.median(d)) if len(d) else float("nan")
    ax.axvline(med, color="k", ls="--", label=f"median {med:.1f}%")
    ax.set_xlabel("Rock-Token density per sequence (%)")
    ax.set_ylabel("sequences")
    ax.set_title("(b) per-sequence density")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    ax.plot(summary["k"], summary["coverage"], "o-", c="tab:blue", label="coverage")
    ax.set_xlabel("cutoff K")
    ax.set_ylabel("cumulative loss coverage", color="tab:blue")
    ax.axvline(top_k, color="0.5", ls=":")
    ax2 = ax.twinx()
    if "jaccard_mean" in summary:
        ax2.plot(summary["k"], summary["jaccard_mean"], "s-", c="tab:red", label="mean Jaccard")
    ax2.set_ylabel("selection stability (mean Jaccard)", color="tab:red")
    ax2.set_ylim(0, 1.05)
    ax.set_ylim(0, 1.05)
    ax.set_title("(c) coverage and stability vs K")

    ax = axes[1, 1]
    for n, sub in sweep.groupby("n"):
        m = sub.groupby("k")["jaccard"].mean()
        ax.plot(m.index, m.values, "o-", ms=3, label=f"n={n}")
    if "jaccard_mean" in summary:
        ax.plot(summary["k"], summary["jaccard_mean"], "k--", lw=2, label="average")
    ax.axvline(top_k, color="0.5", ls=":")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("cutoff K")
    ax.set_ylabel("Jaccard vs full corpus")
    ax.set_title("(d) ranking robustness across sample sizes")
    ax.legend(fontsize=8)

    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, outputs)
