"""``rock freeze report``: read every regime's log and evaluations, write Figure 5 and the tables.

Reads the files its rule names (:func:`rock.freeze.plan.report_files`, given as ``--in``; by hand,
their places under the run directory): each regime's training log and freeze counts, the
per-problem table of every evaluated checkpoint (written by ``rock evaluate``), and the random
regimes' ``control_match.json``. Writes
``freeze/results/``: ``curves.csv`` (Pass@1 per regime, step, benchmark, with the 90-problem
average), ``regimes.csv`` / ``regimes.md`` (the regime table), ``speedup.json`` (wall-clock and how
a speedup could arise), ``control_match.csv`` (W_R vs W_S two-sample tests) and Figure 5 (PNG, PDF).
The tables are also logged, so the rule's log shows them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from rock import paths
from rock.atomic import atomic_path, write_json, write_text
from rock.errors import DataError
from rock.freeze.config import FreezeConfig
from rock.freeze.control import MatchAccumulator, match_tests
from rock.freeze.plan import report_files
from rock.freeze.report import (markdown_table, pass_at_1, plot_figure5, regime_table,
                                speedup_summary)

log = logging.getLogger(__name__)


def read_evaluations(tables: dict[tuple[str, int], Path], benchmarks) -> pd.DataFrame:
    """One row per (regime, step, benchmark, run): problems solved and problems evaluated, from
    ``{(regime, step): per-problem table}``."""
    rows = []
    for (regime, step), path in tables.items():
        try:
            table = pd.read_parquet(path, columns=["task", "problem_id", "run", "correct"])
        except FileNotFoundError as err:
            raise DataError("evaluation table missing", file=str(path),
                            fix="run the freeze_evaluate jobs (snakemake) first") from err
        table = table[table["task"].isin(list(benchmarks))]
        g = table.groupby(["task", "run"]).agg(correct=("correct", "sum"),
                                               n_problems=("problem_id", "nunique")).reset_index()
        for r in g.itertuples(index=False):
            rows.append({"regime": regime, "step": step, "benchmark": r.task, "run": int(r.run),
                         "correct": int(r.correct), "n_problems": int(r.n_problems)})
    return pd.DataFrame(rows)


#: timing columns of the engine's per-step log (rock.distill.loop.LOG_COLUMNS)
TIMING_COLUMNS = ("step", "generate_seconds", "train_seconds", "step_seconds", "wall_clock",
                  "n_response_tokens")


def read_engine_log(path) -> pd.DataFrame:
    """The timing columns of an engine log. Logs written before StepLog kept its header complete
    may have rows with more fields than the header: only the header's leading columns are read."""
    import csv

    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [r[:len(header)] for r in reader if r]
    df = pd.DataFrame(rows, columns=header)
    missing = [c for c in TIMING_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"training log lacks columns {missing}", file=str(path))
    return df[list(TIMING_COLUMNS)].apply(pd.to_numeric, errors="coerce")


def read_logs(logs: dict[str, Path], counts: dict[str, Path]) -> pd.DataFrame:
    """Per regime and step: the engine's timing (``logs`` {regime: log.csv}) joined with the
    hook's freeze counts (``counts`` {regime: freeze_log.csv})."""
    frames = []
    for regime, log_path in logs.items():
        try:
            timing = read_engine_log(log_path)
            counted = pd.read_csv(counts[regime])
        except FileNotFoundError as err:
            raise DataError(f"training log missing ({err.filename})", file=str(log_path),
                            fix=f"run `rock freeze train --regime {regime}` first") from err
        frames.append(timing.merge(counted, on="step", how="left").assign(regime=regime))
    return pd.concat(frames, ignore_index=True)


def control_matches(control: dict[str, Path]) -> pd.DataFrame:
    """W_R vs W_S two-sample tests of each random regime (``control`` {regime:
    control_match.json}), one row per (regime, quantity)."""
    matches = []
    for regime, path in control.items():
        try:
            acc = MatchAccumulator.from_json(json.loads(Path(path).read_text()))
        except FileNotFoundError as err:
            raise DataError("control histograms missing", file=str(path),
                            fix=f"re-run `rock freeze train --regime {regime}`") from err
        matches.append(match_tests(acc).assign(regime=regime))
    if not matches:
        return pd.DataFrame(columns=["regime", "quantity"])
    match = pd.concat(matches, ignore_index=True)
    return match[["regime"] + [c for c in match.columns if c != "regime"]]


def write_report(config: dict, fcfg: FreezeConfig, *, run_dir, files: dict | None = None) -> dict:
    """Read ``files`` (:func:`rock.freeze.plan.report_files`' layout; default: the places under
    ``run_dir``), write ``freeze/results/`` under ``run_dir``."""
    files = files or report_files(config, run_dir)
    names = fcfg.regime_names
    evals = read_evaluations(files["evals"], fcfg.benchmarks)
    logs = read_logs(files["logs"], files["counts"])
    curves = pass_at_1(evals)
    regimes = [{"name": r.name, "selection": r.selection, "lambda": r.lam} for r in fcfg.regimes]
    table, target = regime_table(curves, logs, regimes, baseline=fcfg.baseline.name,
                                 tta_fraction=fcfg.tta_fraction)
    share = logs.groupby("regime")[["freeze_rock_occurrences", "freeze_rock_window_tokens",
                                    "freeze_response_tokens"]].sum(min_count=1)
    table["rock_token_share"] = table["regime"].map(
        share["freeze_rock_occurrences"] / share["freeze_response_tokens"])
    table["rock_window_share"] = table["regime"].map(
        share["freeze_rock_window_tokens"] / share["freeze_response_tokens"])
    speed = speedup_summary(table, baseline=fcfg.baseline.name, target=target)
    by_regime = table.set_index("regime")
    for col in ("rock_token_share", "rock_window_share"):
        speed[col] = {k: (None if pd.isna(v) else float(v)) for k, v in by_regime[col].items()}
    speed["paper_rock_share_claims"] = {"sec_4_3_rock_tokens_of_output": 0.18,
                                        "take_away_high_cost_tokens": 0.30}

    match = control_matches(files["control"])
    out = lambda name: paths.freeze_result(run_dir, name)  # noqa: E731
    for df, name in ((curves, "curves.csv"), (table, "regimes.csv"), (match, "control_match.csv")):
        with atomic_path(out(name)) as tmp:
            df.to_csv(tmp, index=False)
    md = markdown_table(table, target)
    write_text(out("regimes.md"), md)
    write_json(out("speedup.json"), speed)
    plot_figure5(curves, names, list(fcfg.benchmarks), out("figure5.png"), out("figure5.pdf"))

    log.info("Pass@1 per regime and step (average over %s):\n%s", ", ".join(fcfg.benchmarks),
             curves[curves["benchmark"] == "average"].pivot(index="step", columns="regime",
                                                            values="pass1").to_string())
    log.info("regime table:\n%s", md)
    if len(match):
        log.info("W_R vs W_S two-sample tests (window length, centre-token frequency bin, token "
                 "log2-frequency of frozen positions):\n%s", match.to_string(index=False))
    log.info("wall-clock: %s", {k: {m: v.get(m) for m in ("seconds_per_step", "throughput_speedup",
                                                          "tta_speedup")}
                                for k, v in speed["regimes"].items()})
    log.info("how a speedup arises: %s", speed["mechanism"])
    return {"curves": curves, "table": table, "match": match, "speedup": speed}
