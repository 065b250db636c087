"""Decoding the knockout plan: one shard at a time, then gather [Sec. 3.2, App. D.3].

The seam to the evaluation stage is one callable::

    evaluate(sets: Sequence[SuppressionSet]) -> pd.DataFrame   # the per-problem table

It loads the post-OPD student once, decodes every task of the knockout for every set with the
set's token logits at -inf at every step (Eq. 20/21), each problem ``n_runs`` times with the seeds
of the plan (the same seeds for every set, baseline included), and returns one row per
(set, task, problem, run): ``set_id, task, problem_id, run, seed, correct``.
:func:`make_evaluator` binds it to :mod:`rock.evaluate`; tests bind it to constructed outcomes.

A shard's table is written atomically by the CLI, so a finished shard is never redone by
Snakemake and a failed one leaves nothing behind and is simply re-run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pandas as pd

from rock.errors import DataError
from rock.knockout.pool import BASELINE_ID, SuppressionSet, shard_sets
from rock.knockout.stats import PER_PROBLEM_COLUMNS, check_per_problem

log = logging.getLogger(__name__)

Evaluator = Callable[[Sequence[SuppressionSet]], pd.DataFrame]

#: names the evaluation stage may give the suppression-set column
SET_ID_ALIASES = ("set_id", "suppression_set", "suppression_set_id", "suppression", "set")


def normalize_per_problem(table: pd.DataFrame, *, source: str = "evaluator output") -> pd.DataFrame:
    """Rename the set column to ``set_id``, keep the contract columns, fix their dtypes."""
    if "set_id" not in table.columns:
        alias = next((a for a in SET_ID_ALIASES if a in table.columns), None)
        if alias is not None:
            table = table.rename(columns={alias: "set_id"})
    check_per_problem(table, source=source)
    out = table[list(PER_PROBLEM_COLUMNS)].copy()
    out["set_id"] = out["set_id"].astype(str)
    out["task"] = out["task"].astype(str)
    out["problem_id"] = out["problem_id"].astype(str)
    out["run"] = out["run"].astype(int)
    out["seed"] = out["seed"].astype(int)
    out["correct"] = out["correct"].astype(float)
    if ((out["correct"] < 0) | (out["correct"] > 1)).any():
        raise DataError("correct must lie in [0, 1]", file=source, field="correct",
                        fix="the evaluator must score each answer 0/1 (or a fraction)")
    return out


def run_shard(sets: pd.DataFrame, shard: int, evaluate: Evaluator, *, tasks: Sequence[str],
              seeds: Sequence[int]) -> pd.DataFrame:
    """Decode shard ``shard`` of the plan with one call of ``evaluate`` (one model load).

    Checks that the evaluator answered every set on every task with exactly the plan's seeds,
    one row per (set, task, problem, run). Returns the per-problem table plus a ``shard`` column.
    """
    todo = shard_sets(sets, shard)
    if not todo:
        log.warning("shard %d has no suppression sets; writing an empty table", shard)
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            (*PER_PROBLEM_COLUMNS, "shard"), ("str", "str", "str", "int64", "int64", "float64", "int64"))})
    log.info("shard %d: %d suppression sets x %d tasks x %d runs", shard, len(todo), len(tasks), len(seeds))
    table = normalize_per_problem(evaluate(todo))
    want = {s.set_id for s in todo}
    got = set(table["set_id"])
    if got != want:
        raise DataError(f"evaluator answered sets {sorted(got - want)[:5]} not asked for and missed "
                        f"{sorted(want - got)[:5]}", field="set_id",
                        fix="return one row per requested set, task, problem and run")
    if set(table["task"]) != set(tasks):
        raise DataError(f"evaluator answered tasks {sorted(set(table['task']))}, expected {sorted(tasks)}",
                        field="task", fix="evaluate exactly knockout.tasks")
    seed_of_run = table.groupby("run")["seed"].agg(lambda s: sorted(set(s)))
    expected = {r: [s] for r, s in enumerate(seeds)}
    if seed_of_run.to_dict() != expected:
        raise DataError(f"runs/seeds {seed_of_run.to_dict()} differ from the plan's {expected}",
                        field="seed", fix="decode run r with seed knockout.seed + r for every set")
    if table.duplicated(["set_id", "task", "problem_id", "run"]).any():
        raise DataError("duplicate (set_id, task, problem_id, run) rows", field="run",
                        fix="one row per set, task, problem and run")
    return table.assign(shard=shard)


def gather(sets: pd.DataFrame, shard_tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate the shard tables and check the plan is complete and paired.

    Every planned set must appear in exactly one shard, and on each task cover the baseline's
    (problem, run) grid with the baseline's seeds (the paired design of App. D.3).
    """
    table = pd.concat([t for t in shard_tables if len(t)], ignore_index=True)
    planned = set(sets["set_id"])
    have = set(table["set_id"])
    if planned - have:
        missing = sorted(planned - have)
        shards = sorted(set(sets.loc[sets["set_id"].isin(missing), "shard"].astype(int)))
        raise DataError(f"{len(missing)} planned set(s) missing, e.g. {missing[:3]}", field="set_id",
                        fix=f"re-run shard(s) {shards}")
    if have - planned:
        raise DataError(f"sets not in the plan: {sorted(have - planned)[:3]}", field="set_id",
                        fix="the shards come from another plan; re-run them")
    per_set_shards = table.groupby("set_id")["shard"].nunique()
    if (per_set_shards > 1).any():
        raise DataError(f"set(s) {per_set_shards[per_set_shards > 1].index[:3].tolist()} appear in "
                        "several shards", field="shard", fix="gather the shards of one plan")
    grid = table[table["set_id"] == BASELINE_ID].set_index(["task", "problem_id", "run"])["seed"].sort_index()
    for sid, g in table.groupby("set_id"):
        key = g.set_index(["task", "problem_id", "run"])["seed"].sort_index()
        if not (key.index.equals(grid.index) and (key.to_numpy() == grid.to_numpy()).all()):
            raise DataError(f"set '{sid}' is not paired with the baseline (other problems, runs or "
                            "seeds)", field="problem_id",
                            fix=f"re-run shard {int(g['shard'].iloc[0])} with the current plan")
    log.info("gathered %d rows: %d sets, %d shards", len(table), table["set_id"].nunique(),
             table["shard"].nunique())
    return table.sort_values(["set_id", "task", "problem_id", "run"], kind="stable").reset_index(drop=True)
