"""Screening pool, window sets (Eq. 21), plan and shards; runner and gather with a scripted evaluator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rock.errors import DataError
from rock.knockout import pool as kpool
from rock.knockout import runner
from rock.knockout.pool import BASELINE_ID, SuppressionSet


def ranking():
    # detection's ranking: rank 0 = ineligible, must never be screened
    return pd.DataFrame({"token_id": [50, 10, 20, 30, 40, 60],
                         "rank": [0, 3, 1, 2, 4, 5],
                         "freq": [99, 5, 8, 7, 3, 2]})


def test_screening_pool_takes_top_ranks_only():
    p = kpool.screening_pool(ranking(), 4)
    assert p["token_id"].tolist() == [20, 30, 10, 40]
    assert p["rank"].tolist() == [1, 2, 3, 4]
    assert len(kpool.screening_pool(ranking(), 100)) == 5          # rank-0 row excluded
    bad = pd.concat([ranking(), ranking().iloc[[1]]])
    with pytest.raises(DataError, match="twice"):
        kpool.screening_pool(bad, 3)
    with pytest.raises(DataError, match="rank"):
        kpool.screening_pool(ranking().drop(columns="rank"), 3)


def tokens_table():
    # trajectory 0: positions 0..7, trajectory 1: positions 0..5
    t0 = [20, 1, 30, 2, 10, 3, 30, 4]
    t1 = [5, 20, 40, 6, 10, 7]
    return pd.DataFrame({"trajectory": [0] * 8 + [1] * 6, "position": list(range(8)) + list(range(6)),
                         "token_id": t0 + t1})


def test_window_sets_by_hand():
    pool = kpool.screening_pool(ranking(), 4)            # 20, 30, 10, 40
    windows = pd.DataFrame({
        "token_id":   [20, 20, 30, 10],
        "trajectory": [0, 1, 0, 1],
        "start":      [0, 0, 1, 3],
        "end":        [2, 2, 3, 5],
    })
    # 20's windows: traj0[0..2] = {20, 1, 30}; traj1[0..2] = {5, 20, 40}
    # 30's window: traj0[1..3] = {1, 30, 2};  10's window: traj1[3..5] = {6, 10, 7}; 40: none
    ws = kpool.window_sets(pool, windows, tokens_table(), members=pool["token_id"]).set_index("token_id")
    assert ws.loc[20, "window_set"] == [20, 30, 40]
    assert ws.loc[30, "window_set"] == [30]
    assert ws.loc[10, "window_set"] == [10]
    assert ws.loc[40, "window_set"] == [40] and ws.loc[40, "n_windows"] == 0
    assert ws.loc[20, "n_windows"] == 2
    # members restricted to the core {20, 30}: 40 drops out
    core = kpool.window_sets(pool, windows, tokens_table(), members=[20, 30]).set_index("token_id")
    assert core.loc[20, "window_set"] == [20, 30]
    # min_share 0.6: 30 and 40 each occur in 1 of 20's 2 windows (share .5) -> dropped
    strict = kpool.window_sets(pool, windows, tokens_table(), members=pool["token_id"], min_share=0.6)
    assert strict.set_index("token_id").loc[20, "window_set"] == [20]
    # the same from a window table that lists its token ids
    listed = windows.assign(token_ids=[[20, 1, 30], [5, 20, 40], [1, 30, 2], [6, 10, 7]])
    again = kpool.window_sets(pool, listed, None, members=pool["token_id"]).set_index("token_id")
    assert again["window_set"].tolist() == ws["window_set"].tolist()


def test_type_predictors_are_occurrence_means():
    post = pd.DataFrame({"token_id": [1, 1, 2, 3], "reverse_kl": [0.2, 0.4, 1.0, 9.0],
                         "student_entropy": [1.0, 3.0, 0.5, 0.0], "teacher_entropy": [2.0, 2.0, 1.0, 0.0]})
    pre = post.assign(reverse_kl=[0.5, 0.7, 1.0, 9.0], student_entropy=[2.0, 2.0, 2.0, 2.0])
    p = kpool.type_predictors([1, 2, 4], post, pre).set_index("token_id")
    assert p.loc[1, "kl_post"] == pytest.approx(0.3) and p.loc[1, "kl_pre"] == pytest.approx(0.6)
    assert p.loc[1, "kl_improvement"] == pytest.approx(0.3)
    assert p.loc[1, "ent_student_post"] == 2.0 and p.loc[1, "ent_student_pre"] == 2.0
    assert p.loc[2, "ent_teacher"] == 1.0 and p.loc[2, "kl_improvement"] == 0.0
    assert np.isnan(p.loc[4, "kl_post"])                   # never observed
    only_post = kpool.type_predictors([1], post[["token_id", "reverse_kl"]])
    assert list(only_post.columns) == ["token_id", "kl_post"]


def test_window_tokens_rejects_bad_span():
    w = pd.DataFrame({"token_id": [20], "trajectory": [0], "start": [3], "end": [1]})
    with pytest.raises(DataError, match="before it starts"):
        kpool.window_tokens(w, tokens_table())


def test_set_ids_are_stable_names_of_content():
    assert kpool.set_id([]) == BASELINE_ID
    assert kpool.set_id([7]) == "t7"
    assert kpool.set_id([3, 1, 3]) == kpool.set_id([1, 3]) != kpool.set_id([1, 4])
    assert SuppressionSet.of([5, 2]).token_ids == (2, 5)


def plan_pool():
    pool = kpool.screening_pool(ranking(), 4)
    pool["window_set"] = [[20, 30, 40], [30], [10], [40]]
    return pool


def test_plan_dedupes_sets_and_deals_shards():
    sets, mapping = kpool.build_plan(plan_pool(), levels=["token", "window"], n_shards=2)
    # base, t20, w(20,30,40), t30, t10, t40: window sets equal to {v} reuse t<v>
    assert sets["set_id"].tolist()[:2] == [BASELINE_ID, "t20"]
    assert len(sets) == 6
    assert sets["shard"].tolist() == [0, 1, 0, 1, 0, 1]
    m = mapping.set_index(["token_id", "level"])["set_id"]
    assert m[(30, "window")] == m[(30, "token")] == "t30"
    assert m[(20, "window")] == kpool.set_id([20, 30, 40])
    assert sets.set_index("set_id").loc[m[(20, "window")], "token_ids"] == [20, 30, 40]
    only_token, _ = kpool.build_plan(plan_pool(), levels=["token"], n_shards=3)
    assert len(only_token) == 5


# ---------------------------------------------------------------- runner + gather

class ScriptedEvaluator:
    """Deterministic outcomes: problem i, run r is solved unless token 20 is suppressed and
    (i + r) % 3 == 0. Records every call (one call = one model load)."""

    def __init__(self, tasks, n_problems, seeds):
        self.tasks, self.n, self.seeds, self.calls = tasks, n_problems, seeds, []

    def __call__(self, sets):
        self.calls.append([s.set_id for s in sets])
        rows = []
        for s in sets:
            for task in self.tasks:
                for i in range(self.n):
                    for r, seed in enumerate(self.seeds):
                        ok = not (20 in s.token_ids and (i + r) % 3 == 0)
                        rows.append({"suppression_set": s.set_id, "task": task, "problem_id": i,
                                     "run": r, "seed": seed, "correct": int(ok)})
        return pd.DataFrame(rows)


def test_shards_gather_equals_one_shard():
    tasks, seeds = ["math500", "ifeval"], [0, 1]
    sets, _ = kpool.build_plan(plan_pool(), levels=["token", "window"], n_shards=3)
    ev = ScriptedEvaluator(tasks, 5, seeds)
    parts = [runner.run_shard(sets, k, ev, tasks=tasks, seeds=seeds) for k in range(3)]
    assert len(ev.calls) == 3 and sorted(sum(ev.calls, [])) == sorted(sets["set_id"])
    table = runner.gather(sets, parts)
    assert len(table) == 6 * 2 * 5 * 2
    single = sets.assign(shard=0)
    one = runner.gather(single, [runner.run_shard(single, 0, ScriptedEvaluator(tasks, 5, seeds),
                                                  tasks=tasks, seeds=seeds)])
    pd.testing.assert_frame_equal(table.drop(columns="shard"), one.drop(columns="shard"))
    # t20 loses (i + r) % 3 == 0: (0,0), (2,1), (3,0) of the 10 (problem, run) pairs
    t20 = table[(table["set_id"] == "t20") & (table["task"] == "math500")]
    assert t20["correct"].sum() == 7


def test_gather_names_the_shard_to_rerun():
    tasks, seeds = ["math500"], [0]
    sets, _ = kpool.build_plan(plan_pool(), levels=["token", "window"], n_shards=3)
    ev = ScriptedEvaluator(tasks, 3, seeds)
    parts = [runner.run_shard(sets, k, ev, tasks=tasks, seeds=seeds) for k in (0, 2)]
    with pytest.raises(DataError, match=r"re-run shard\(s\) \[1\]"):
        runner.gather(sets, parts)


def test_run_shard_rejects_wrong_seeds_and_missing_sets():
    tasks = ["math500"]
    sets, _ = kpool.build_plan(plan_pool(), levels=["token"], n_shards=1)
    with pytest.raises(DataError, match="seed"):
        runner.run_shard(sets, 0, ScriptedEvaluator(tasks, 3, [5, 6]), tasks=tasks, seeds=[0, 1])

    def lazy(todo):
        return ScriptedEvaluator(tasks, 3, [0])(todo[:-1])
    with pytest.raises(DataError, match="missed"):
        runner.run_shard(sets, 0, lazy, tasks=tasks, seeds=[0])
    empty = runner.run_shard(sets, 5, lazy, tasks=tasks, seeds=[0])
    assert empty.empty and "set_id" in empty.columns
