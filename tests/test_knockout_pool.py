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
    # detection's ranking: rank 0 = ineligible; is_screen = ranks 1..k_screen (4), is_rock = top-K (2)
    return pd.DataFrame({"token_id": [50, 10, 20, 30, 40, 60],
                         "rank": [0, 3, 1, 2, 4, 5],
                         "freq": [99, 5, 8, 7, 3, 2],
                         "is_screen": [False, True, True, True, True, False],
                         "is_rock": [False, False, True, True, False, False]})


def test_screening_pool_is_detections_screened_set():
    p = kpool.screening_pool(ranking())
    assert p["token_id"].tolist() == [20, 30, 10, 40]              # is_screen, by rank
    assert p["rank"].tolist() == [1, 2, 3, 4]
    assert p["in_core"].tolist() == [True, True, False, False]     # detection's K rocks
    bad = pd.concat([ranking(), ranking().iloc[[1]]])
    with pytest.raises(DataError, match="twice"):
        kpool.screening_pool(bad)
    for col in ("rank", "is_screen", "is_rock"):
        with pytest.raises(DataError, match=col):
            kpool.screening_pool(ranking().drop(columns=col))


def tokens_table():
    # trajectory 0: positions 0..7, trajectory 1: positions 0..5
    t0 = [20, 1, 30, 2, 10, 3, 30, 4]
    t1 = [5, 20, 40, 6, 10, 7]
    return pd.DataFrame({"trajectory": [0] * 8 + [1] * 6, "position": list(range(8)) + list(range(6)),
                         "token_id": t0 + t1})


def test_window_sets_any_occurrence_rule_by_hand():
    """The earlier reading (rule any_occurrence): every occurrence of a member in v's windows."""
    pool = kpool.screening_pool(ranking())               # 20, 30, 10, 40
    windows = pd.DataFrame({
        "token_id":   [20, 20, 30, 10],
        "trajectory": [0, 1, 0, 1],
        "start":      [0, 0, 1, 3],
        "end":        [2, 2, 3, 5],
    })
    # 20's windows: traj0[0..2] = {20, 1, 30}; traj1[0..2] = {5, 20, 40}
    # 30's window: traj0[1..3] = {1, 30, 2};  10's window: traj1[3..5] = {6, 10, 7}; 40: none
    any_occ = dict(rule="any_occurrence")
    ws = kpool.window_sets(pool, windows, tokens_table(), members=pool["token_id"], **any_occ).set_index("token_id")
    assert ws.loc[20, "window_set"] == [20, 30, 40]
    assert ws.loc[30, "window_set"] == [30]
    assert ws.loc[10, "window_set"] == [10]
    assert ws.loc[40, "window_set"] == [40] and ws.loc[40, "n_windows"] == 0
    assert ws.loc[20, "n_windows"] == 2
    # members restricted to the core {20, 30}: 40 drops out
    core = kpool.window_sets(pool, windows, tokens_table(), members=[20, 30], **any_occ).set_index("token_id")
    assert core.loc[20, "window_set"] == [20, 30]
    # min_share 0.6: 30 and 40 each occur in 1 of 20's 2 windows (share .5) -> dropped
    strict = kpool.window_sets(pool, windows, tokens_table(), members=pool["token_id"], min_share=0.6, **any_occ)
    assert strict.set_index("token_id").loc[20, "window_set"] == [20]
    # the same from a window table that lists its token ids
    listed = windows.assign(token_ids=[[20, 1, 30], [5, 20, 40], [1, 30, 2], [6, 10, 7]])
    again = kpool.window_sets(pool, listed, None, members=pool["token_id"], **any_occ).set_index("token_id")
    assert again["window_set"].tolist() == ws["window_set"].tolist()


# ---------------------------------------------------------------- Eq. 21: high-divergence windows

EOS = 99
#  trajectory 0: pos 0    1   2   3  4   5   6   7   8   9  10  11
T0 = [EOS, 20, 30, 6, 7, 20, 30, 10, 8, 40, 9, 11]
#  trajectory 1: pos 0  1  2   3  4   5  6  7   8  9
T1 = [1, 2, 3, 20, 40, 5, 6, 7, 10, 9]
#  detection's high-divergence (Eq. 11) occurrences, radius-1 windows: (token, trajectory, position)
ANCHORS = [(EOS, 0, 0), (20, 0, 1), (30, 0, 2), (20, 0, 5), (30, 0, 6), (40, 0, 9), (20, 1, 3), (10, 1, 8)]


def hand_rollout():
    """A hand-made rollout: which windows are high-divergence and what lies in them.

    20's windows: t0[0..2] holds EOS@0 and 30@2 (both high-divergence), t0[4..6] holds 30@6 (hd),
    t1[2..4] holds 40@4, an ordinary occurrence.       -> 30 in 2 of 3 windows (share 2/3)
    30's windows: t0[1..3] holds 20@1 (hd); t0[5..7] holds 20@5 (hd) and 10@7, an *ordinary*
    occurrence of 10 (10 is high-divergence only at t1:8). -> 20 in 2 of 2 (share 1); 10 never
    40's window t0[8..10] and 10's window t1[7..9]: no other high-divergence occurrence.
    EOS (rank 2 in detection) never enters the pool, so it never enters a set.
    """
    ranking = pd.DataFrame({"token_id": [20, EOS, 30, 10, 40, 60], "rank": [1, 2, 3, 4, 5, 6],
                            "is_screen": [True] * 5 + [False], "is_rock": [True] * 3 + [False] * 3})
    tokens = pd.DataFrame({"trajectory": [0] * len(T0) + [1] * len(T1),
                           "position": list(range(len(T0))) + list(range(len(T1))),
                           "token_id": T0 + T1})
    lengths = {0: len(T0), 1: len(T1)}
    windows = pd.DataFrame([{"token_id": v, "trajectory": t, "position": p, "start": max(0, p - 1),
                             "end": min(lengths[t] - 1, p + 1)} for v, t, p in ANCHORS])
    return ranking, tokens, windows


def test_screening_pool_never_takes_special_tokens():
    ranking, _, _ = hand_rollout()
    pool = kpool.screening_pool(ranking, exclude={EOS: "stop token"})
    assert pool["token_id"].tolist() == [20, 30, 10, 40]          # detection screened 5, EOS dropped
    assert pool["rank"].tolist() == [1, 2, 3, 4]
    assert pool["detection_rank"].tolist() == [1, 3, 4, 5]
    assert pool["in_core"].tolist() == [True, True, False, False]
    assert EOS in kpool.screening_pool(ranking)["token_id"].tolist()   # without exclusion


def test_window_sets_from_high_divergence_windows_by_hand():
    ranking, tokens, windows = hand_rollout()
    pool = kpool.screening_pool(ranking, exclude=[EOS])
    members = pool["token_id"]

    def sets(**kw):
        return kpool.window_sets(pool, windows, tokens, members=members, **kw).set_index("token_id")

    ws = sets(min_share=0.25)
    assert ws["window_set"].to_dict() == {20: [20, 30], 30: [20, 30], 10: [10], 40: [40]}
    assert ws["n_windows"].to_dict() == {20: 3, 30: 2, 10: 1, 40: 1}
    assert ws.loc[20, "window_set_size"] == 2
    # share thresholds: 30 is in 2/3 of 20's windows, 20 in 2/2 of 30's
    assert sets(min_share=0.67)["window_set"].to_dict() == {20: [20], 30: [20, 30], 10: [10], 40: [40]}
    assert sets(min_share=2 / 3).loc[20, "window_set"] == [20, 30]
    # the earlier rule on the same rollout: the ordinary 10@t0:7 and 40@t1:4 join as well
    old = sets(min_share=0.0, rule="any_occurrence")
    assert old["window_set"].to_dict() == {20: [20, 30, 40], 30: [10, 20, 30], 10: [10], 40: [40]}
    # without the special-token exclusion EOS (anchor inside 20's first window) would be screened
    # and join 20's set: the exclusion is what keeps it out
    raw = kpool.screening_pool(ranking)
    leaky = kpool.window_sets(raw, windows, tokens, members=raw["token_id"], min_share=0.25)
    assert leaky.set_index("token_id").loc[20, "window_set"] == [20, 30, EOS]


def test_window_set_table_and_size_distribution():
    ranking, tokens, windows = hand_rollout()
    pool = kpool.screening_pool(ranking, exclude=[EOS])
    pool = pool.merge(kpool.window_sets(pool, windows, tokens, members=pool["token_id"], min_share=0.25),
                      on="token_id")
    names = {20: " So", 30: ",", 10: " the", 40: "\n\n"}
    t = kpool.window_set_table(pool, names.get)
    assert t["members"].tolist() == ["' So' | ','", "',' | ' So'", "' the'", "'\\n\\n'"]
    assert t["member_ids"].tolist() == ["20 30", "30 20", "10", "40"]
    assert t["window_set_size"].tolist() == [2, 2, 1, 1]
    d = kpool.size_distribution(t["window_set_size"])
    assert (d["n"], d["median"], d["max"], d["n_singletons"]) == (4, 1.5, 2, 2)
    assert d["counts"] == {"1": 2, "2": 2} and "median 1.5" in d["text"]


def test_excluded_ids_from_tokenizer_and_generation_config():
    from types import SimpleNamespace

    from rock.knockout.specials import excluded_ids

    tok = SimpleNamespace(
        eos_token_id=3, pad_token_id=0, all_special_ids=[0, 1, 3],
        chat_template="{% for m in messages %}<|im_start|>{{ m.role }}<think>{% endfor %}",
        added_tokens_decoder={0: SimpleNamespace(content="<|endoftext|>"),
                              1: SimpleNamespace(content="<|im_start|>"),
                              3: SimpleNamespace(content="<|im_end|>"),
                              5: SimpleNamespace(content="<think>"),
                              6: SimpleNamespace(content="<tool_call>")})
    gen = SimpleNamespace(eos_token_id=[3, 4], pad_token_id=0)
    ex = excluded_ids(tok, gen)
    # 3 and 4 stop generation, 0 pads, 1 is special, 5 is written by the chat template;
    # 6 is an added token the template never writes: an ordinary candidate
    assert sorted(ex) == [0, 1, 3, 4, 5]
    assert ex[4].startswith("stop") and ex[5] == "chat-template token"


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
    pool = kpool.screening_pool(ranking())
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


def test_zipf_simulation_sets_are_small_and_recover_the_planted_segments():
    """Detection + window sets on a Zipf corpus with planted segments (rock.knockout.simulate),
    at 1/5 of paper scale (benchmarks/bench_knockout_sets.py runs the 500-trajectory version:
    old rule median 61 / max 196, new rule median 2 / max 5)."""
    from rock.detect.context import ContextSpec
    from rock.detect.core import DetectionConfig, Occurrences, detect
    from rock.knockout.config import KnockoutConfig
    from rock.knockout.simulate import planted_partners, unexplained_members, zipf_corpus

    import dataclasses

    post, pre, segments = zipf_corpus(100, seed=0)
    # the pool of 200 as in the paper-scale scenario: without the detection cut (min_ccr 0,
    # the old R_ctx > 0 rule); with the default cut only 93 types qualify here and even the old
    # window rule gives median 4 / max 10 (the new one 2 / 3)
    cut_off = dataclasses.replace(DetectionConfig(), min_ccr=0.0)
    ranking, windows, _, _ = detect(Occurrences.from_tables(post, pre), cut_off, ContextSpec())
    pool = kpool.screening_pool(ranking)                         # detection's k_screen = 200
    assert len(pool) == 200
    share = KnockoutConfig().window_min_share
    new = kpool.window_sets(pool, windows, post, members=pool["token_id"], min_share=share)
    old = kpool.window_sets(pool, windows, post, members=pool["token_id"], rule="any_occurrence")
    d_new = kpool.size_distribution(new["window_set_size"])
    d_old = kpool.size_distribution(old["window_set_size"])
    print(f"new: {d_new['text'][:60]}; old: {d_old['text'][:60]}")
    assert d_new["median"] <= 5 and d_new["max"] <= 20          # measured: 2 and 5
    assert d_old["median"] >= 15 and d_old["max"] >= 100        # measured: 21 and 140
    planted = planted_partners(segments, pool["token_id"])
    ws = new.set_index("token_id")["window_set"]
    exact = sum(set(ws[v]) == planted[v] for v in planted)
    assert len(planted) >= 60 and exact >= 0.85 * len(planted)   # measured 68 of 74
    assert unexplained_members(new, segments) < unexplained_members(old, segments) / 50
