"""Figure 5, the regime table and the wall-clock comparison of the freeze regimes [4.3, 5.2].

Pure functions over dataframes; ``rock freeze report`` reads the files and writes the outputs.

Inputs
------
``evals``: one row per (regime, step, benchmark, run) with ``correct`` (problems solved in that run)
and ``n_problems``; Pass@1 of a benchmark at a step is the mean over runs of ``correct / n_problems``
(Sec. 5.2: "Pass@1 accuracy averaged over five independent runs"); the ``average`` pseudo-benchmark
pools the problems of all benchmarks (the 90-problem average of Sec. 5.2, equal to the mean of the
three when each has 30 problems).

``logs``: the per-step training log of each regime with at least ``regime, step, step_seconds``
and the freeze counts of :class:`rock.freeze.masks.MaskStats` (``freeze_response_tokens``,
``freeze_frozen_tokens``, ``freeze_frozen_windows``, ``freeze_weight_sum``).

Wall-clock
----------
Two different speedups can be read from a run, and the paper does not say which of them its "1.7x"
(Sec. 4.3) or "1.4x" (take-away, conclusion) is:

* *throughput*: baseline seconds per optimizer step / regime seconds per step (same steps, same
  rollouts budget). Only work the regime actually skips can change it: frozen positions are still
  generated, still pass through the teacher and through the student's forward and backward (causal
  attention needs them as context for later positions); at most the full-vocabulary softmax/KL of
  the frozen rows can be skipped (``rock.distill.losses`` skips a chunk of rows only when none of
  them is active).
* *time-to-accuracy*: training seconds until the average Pass@1 first reaches
  ``tta_fraction x`` the baseline's best, baseline / regime. A regime can win here only by reaching
  the accuracy in fewer steps (or by stopping early), not by making a step cheaper.

How much a step could save at paper scale (an estimate from the model configs, not a measurement):
Qwen3-4B has hidden size 2560, ~3.6B non-embedding parameters and a 151,936 x 2560 output layer,
so the output layer is 2 x 0.39 / (2 x 3.6 + 2 x 0.39) ~ 10% of the student's forward (and
backward) FLOPs per token; the full-vocabulary softmax/KL is memory-bound but small in FLOPs.
Skipping the output layer and the KL for 30% of the rows (the take-away's share) therefore saves
at most ~3% of the student's update compute, less of the whole step, whose largest part is
generating 4 x up to 8,000 rollout tokens; nothing is saved on the rollouts.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

AVERAGE = "average"


def pass_at_1(evals: pd.DataFrame) -> pd.DataFrame:
    """Pass@1 per (regime, step, benchmark), plus the pooled ``average`` over benchmarks.

    Returns columns ``regime, step, benchmark, pass1, pass1_sd, n_runs, n_problems`` where
    ``pass1_sd`` is the standard deviation of the per-run accuracies (ddof=1; 0 for one run).
    """
    need = {"regime", "step", "benchmark", "run", "correct", "n_problems"}
    missing = need - set(evals.columns)
    if missing:
        raise ValueError(f"evals lacks columns {sorted(missing)}")
    e = evals.copy()
    pooled = (e.groupby(["regime", "step", "run"], as_index=False)[["correct", "n_problems"]].sum()
              .assign(benchmark=AVERAGE))
    runs = pd.concat([e[list(need)], pooled[list(need)]], ignore_index=True)
    runs["acc"] = runs["correct"] / runs["n_problems"]
    def sd(a):
        return float(np.std(a, ddof=1)) if len(a) > 1 else 0.0

    out = (runs.groupby(["regime", "step", "benchmark"], as_index=False)
           .agg(pass1=("acc", "mean"), pass1_sd=("acc", sd), n_runs=("run", "nunique"),
                n_problems=("n_problems", "first")))
    return out.sort_values(["regime", "benchmark", "step"]).reset_index(drop=True)


def cumulative_time(logs: pd.DataFrame) -> pd.DataFrame:
    """``regime, step, train_seconds``: training seconds spent up to and including each step
    (step 0 = 0 s). Evaluation and checkpoint time are not training time."""
    rows = []
    for regime, g in logs.sort_values("step").groupby("regime"):
        rows.append(pd.DataFrame({"regime": regime, "step": [0], "train_seconds": [0.0]}))
        rows.append(pd.DataFrame({"regime": regime, "step": g["step"].to_numpy(),
                                  "train_seconds": g["step_seconds"].cumsum().to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def time_to_accuracy(curve: pd.DataFrame, times: pd.DataFrame, target: float) -> tuple[float, float]:
    """First evaluated step whose average Pass@1 >= ``target`` and the training seconds to reach it;
    ``(nan, nan)`` if never reached. ``curve``: one regime's ``average`` rows (step, pass1)."""
    hit = curve[curve["pass1"] >= target - 1e-12].sort_values("step")
    if hit.empty:
        return math.nan, math.nan
    step = int(hit["step"].iloc[0])
    t = times.loc[times["step"] == step, "train_seconds"]
    return float(step), float(t.iloc[0]) if len(t) else math.nan


#: control columns of regimes.csv <- per-step log columns (random regime only; NaN elsewhere)
CONTROL_COUNTS = {"control_overlap_tokens": "freeze_control_rock_window_overlap",
                  "unmatched_windows": "freeze_unmatched_windows",
                  "unmatched_tokens": "freeze_unmatched_tokens"}


def _control_counts(lg: pd.DataFrame) -> dict[str, float]:
    """W_S positions inside R or W_R (0 by construction, issue 13) and the W_R windows that found
    no matched place outside W_R, summed over a regime's steps."""
    return {k: float(lg[c].sum()) if c in lg and lg[c].notna().any() else math.nan
            for k, c in CONTROL_COUNTS.items()}


def regime_table(curves: pd.DataFrame, logs: pd.DataFrame, regimes: list[dict], *,
                 baseline: str, tta_fraction: float) -> tuple[pd.DataFrame, float]:
    """One row per regime: final and best accuracy, tokens trained on, frozen fraction (the share
    of response tokens weighted lambda, issue 13), the control's overlap with W_R and its unmatched
    windows (random regime), wall-clock.

    ``regimes``: ``[{"name", "selection", "lambda"}]`` in display order. Returns the table and the
    time-to-accuracy target (``tta_fraction`` x the baseline's best average Pass@1).
    """
    avg = curves[curves["benchmark"] == AVERAGE]
    base = avg[avg["regime"] == baseline]
    target = tta_fraction * float(base["pass1"].max()) if len(base) else math.nan
    times = cumulative_time(logs) if len(logs) else pd.DataFrame(columns=["regime", "step", "train_seconds"])
    benches = [b for b in curves["benchmark"].unique() if b != AVERAGE]
    rows = []
    for r in regimes:
        name = r["name"]
        c = curves[curves["regime"] == name]
        lg = logs[logs["regime"] == name]
        last = int(c["step"].max()) if len(c) else -1
        row = {"regime": name, "selection": r["selection"], "lambda": r["lambda"], "final_step": last}
        for b in benches + [AVERAGE]:
            v = c[(c["benchmark"] == b) & (c["step"] == last)]["pass1"]
            row[f"final_{b}"] = float(v.iloc[0]) if len(v) else math.nan
        a = c[c["benchmark"] == AVERAGE]
        row["best_average"] = float(a["pass1"].max()) if len(a) else math.nan
        resp = float(lg["freeze_response_tokens"].sum()) if len(lg) else math.nan
        row["response_tokens"] = resp
        row["tokens_trained"] = float(lg["freeze_weight_sum"].sum()) if len(lg) else math.nan
        row["frozen_tokens"] = float(lg["freeze_frozen_tokens"].sum()) if len(lg) else math.nan
        row["frozen_fraction"] = row["frozen_tokens"] / resp if resp else math.nan
        row["frozen_windows"] = float(lg["freeze_frozen_windows"].sum()) if len(lg) else math.nan
        row.update(_control_counts(lg))
        row["train_seconds"] = float(lg["step_seconds"].sum()) if len(lg) else math.nan
        row["seconds_per_step"] = float(lg["step_seconds"].mean()) if len(lg) else math.nan
        for col, key in (("generate_seconds", "rollout_seconds_per_step"),
                         ("train_seconds", "update_seconds_per_step")):
            row[key] = float(lg[col].mean()) if len(lg) and col in lg else math.nan
        tt_step, tt_s = time_to_accuracy(a, times[times["regime"] == name], target)
        row["tta_step"], row["tta_seconds"] = tt_step, tt_s
        rows.append(row)
    table = pd.DataFrame(rows)
    b = table[table["regime"] == baseline].iloc[0] if (table["regime"] == baseline).any() else None
    if b is not None:
        table["throughput_speedup"] = b["seconds_per_step"] / table["seconds_per_step"]
        table["tta_speedup"] = b["tta_seconds"] / table["tta_seconds"]
    return table, target


def speedup_summary(table: pd.DataFrame, *, baseline: str, target: float,
                    loss_seconds_share: float | None = None) -> dict:
    """What the measured wall-clock says about the paper's speedup claims (1.7x vs 1.4x).

    ``loss_seconds_share``: the share of a baseline step that work on frozen rows could at most
    save (default: the measured update share, teacher + student forward/backward + loss, of the
    baseline's step; rollouts are never skipped). ``1 / (1 - frozen_fraction x share)`` is then an
    upper bound on the throughput gain of a regime, reached only if every frozen row's update work
    vanished; forward and backward through frozen positions are still needed, so the real bound
    is lower.
    """
    if loss_seconds_share is None and (table["regime"] == baseline).any():
        b = table[table["regime"] == baseline].iloc[0]
        if "update_seconds_per_step" in b and b["seconds_per_step"] > 0:
            loss_seconds_share = float(b["update_seconds_per_step"] / b["seconds_per_step"])
    out = {"baseline": baseline, "tta_target_average_pass1": target,
           "paper_claims": {"sec_4_3": 1.7, "take_away_and_conclusion": 1.4},
           "mechanism": (
               "Frozen positions (weight 0) are still sampled in the rollout, still scored by the "
               "teacher and still run through the student's forward and backward pass (later "
               "positions attend to them), so a step costs the same work except for the "
               "full-vocabulary softmax/KL of frozen rows, which the loss skips only in chunks "
               "with no active row. A per-step (throughput) speedup near 1.7x cannot arise from "
               "freezing 18-30% of the tokens; a wall-clock gain can only come from reaching the "
               "target accuracy in fewer steps (time-to-accuracy) or from stopping early. "
               "Paper-scale estimate (rock/freeze/report.py): the Qwen3-4B output layer is ~10% "
               "of the student's per-token FLOPs, so skipping it for 30% of the rows saves <= ~3% "
               "of the update and nothing of the rollouts."),
           "timing_note": (
               "seconds are the training process's wall-clock per optimizer step (rollout + update; "
               "evaluation and checkpoint writes excluded); compare regimes only when they ran on "
               "the same, otherwise idle hardware"),
           "regimes": {}}
    for _, r in table.iterrows():
        out["regimes"][r["regime"]] = {
            k: (None if isinstance(r[k], float) and math.isnan(r[k]) else r[k])
            for k in ("selection", "lambda", "frozen_fraction", "seconds_per_step",
                      "rollout_seconds_per_step", "update_seconds_per_step", "train_seconds",
                      "throughput_speedup", "tta_step", "tta_seconds", "tta_speedup")
            if k in r}
    if loss_seconds_share is not None and not math.isnan(loss_seconds_share):
        out["update_share_of_baseline_step"] = loss_seconds_share
        for name, r in out["regimes"].items():
            f = r.get("frozen_fraction") or 0.0
            r["throughput_upper_bound"] = 1.0 / (1.0 - f * loss_seconds_share)
    return out


def plot_figure5(curves: pd.DataFrame, regimes: list[str], benchmarks: list[str], png, pdf) -> None:
    """Figure 5: Pass@1 vs training step, one line per regime, one panel per benchmark and one for
    the 90-problem average; shaded band = +-1 s.d. over evaluation runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(benchmarks) + [AVERAGE]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), sharex=True)
    axes = np.atleast_1d(axes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, bench in zip(axes, panels):
        for i, regime in enumerate(regimes):
            c = curves[(curves["regime"] == regime) & (curves["benchmark"] == bench)].sort_values("step")
            if c.empty:
                continue
            y, sd = 100 * c["pass1"].to_numpy(), 100 * c["pass1_sd"].to_numpy()
            col = colors[i % len(colors)]
            ax.plot(c["step"], y, marker="o", ms=3, color=col, label=regime)
            ax.fill_between(c["step"], y - sd, y + sd, color=col, alpha=0.12, lw=0)
        title = "Average (AIME24, AIME25, HMMT25)" if bench == AVERAGE and set(benchmarks) == {
            "aime24", "aime25", "hmmt25"} else ("Average" if bench == AVERAGE else bench.upper())
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Pass@1 (%)")
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    from rock.atomic import save_figure

    save_figure(fig, [png, pdf])


def markdown_table(table: pd.DataFrame, target: float) -> str:
    """The regime table as Markdown (accuracies in %, tokens in thousands)."""
    cols = [c for c in table.columns if c.startswith("final_") and c != "final_step"]
    lines = [f"Time-to-accuracy target: average Pass@1 >= {100 * target:.2f}%", "",
             "| regime | selection | lambda | " + " | ".join(c[6:] for c in cols)
             + " | tokens trained (k) | frozen % | frozen windows | s/step | train s"
             + " | throughput x | TTA step | TTA x |",
             "|" + "---|" * (11 + len(cols))]

    def f(x, fmt):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    for _, r in table.iterrows():
        lines.append(
            f"| {r['regime']} | {r['selection']} | {r['lambda']:g} | "
            + " | ".join(f(100 * r[c], ".2f") for c in cols)
            + f" | {f(r['tokens_trained'] / 1e3, '.1f')} | {f(100 * r['frozen_fraction'], '.1f')}"
            + f" | {f(r['frozen_windows'], '.0f')} | {f(r['seconds_per_step'], '.3f')}"
            + f" | {f(r['train_seconds'], '.1f')} | {f(r.get('throughput_speedup'), '.2f')}"
            + f" | {f(r['tta_step'], '.0f')} | {f(r.get('tta_speedup'), '.2f')} |")
    return "\n".join(lines) + "\n"
