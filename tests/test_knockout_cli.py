"""``rock knockout pool|shard|gather|analyze`` end to end on constructed detection output, with a
scripted evaluator in place of the model (the seam of :mod:`rock.knockout.runner`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rock import cli, paths
from rock.knockout import cli as kcli
from rock.knockout.stats import NEUTRAL, PILLAR

ROOT = Path(__file__).resolve().parent.parent
HARMFUL = 20          # planted Pillar: suppressing it breaks 2 of every 5 problems
N_PROBLEMS = 40


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from rock.evaluate.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


def special_id(model_dir) -> int:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir).convert_tokens_to_ids("<|im_end|>")


SPECIAL = 2           # <|im_end|> of the tiny model's tokenizer (checked in the test)


def write_inputs(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    ids = [HARMFUL, 30, SPECIAL, 40, 50, 60, 70, 80, 90, 100, 110]
    n = len(ids)
    ranking = pd.DataFrame({
        "rank": np.arange(1, n + 1), "token_id": ids, "freq": rng.integers(5, 500, n),
        "mean_loss": rng.uniform(0.1, 2, n), "mean_loss_pre": rng.uniform(0.1, 2, n),
        "n_rock_occ": rng.integers(1, 50, n), "ccr": rng.uniform(0, 1, n),
        "is_screen": np.arange(n) < 9, "is_rock": np.arange(n) < 5})   # k_screen 9, K 5
    # trajectory 0: ... 30 20 ... so 30's window holds the harmful token 20; trajectory 1 holds
    # every candidate once, so each has token statistics (Table 1 predictors)
    traj = [1, 30, HARMFUL, 2, 40, SPECIAL, 4, 50, 5]
    t1 = ids
    tokens = pd.DataFrame({"trajectory": [0] * len(traj) + [1] * len(t1),
                           "position": list(range(len(traj))) + list(range(len(t1))),
                           "token_id": traj + t1})
    m = len(tokens)
    tokens = tokens.assign(reverse_kl=rng.uniform(0, 2, m), student_entropy=rng.uniform(0, 3, m),
                           teacher_entropy=rng.uniform(0, 3, m))
    tokens_pre = tokens.assign(reverse_kl=rng.uniform(0, 2, m), student_entropy=rng.uniform(0, 3, m))
    # detection's high-divergence windows: 30@1 [0..2] holds the high-divergence 20@2; 40@4 [3..7]
    # holds 50@7; 20@2 [1..3] holds 30@1; the special token's window (it ranks 3rd in detection)
    # sits inside 40's window too, but specials are never screened, so it joins no set
    windows = pd.DataFrame({"token_id": [30, HARMFUL, 40, 50, SPECIAL], "rank": [2, 1, 4, 5, 3],
                            "trajectory": 0, "position": [1, 2, 4, 7, 5], "start": [0, 1, 3, 6, 4],
                            "end": [2, 3, 7, 8, 6]})
    cfg = yaml.safe_load((ROOT / "tests/config_toy/config.yaml").read_text())
    cfg["run_dir"] = str(tmp / "run")
    cfg["knockout"].update({"n_runs": 2, "n_shards": 3,
                            "limit": N_PROBLEMS, "n_resamples": 4000})
    files = {"ranking": tmp / "ranking.parquet", "windows": tmp / "windows.parquet",
             "tokens": tmp / "tokens.parquet", "tokens_pre": tmp / "tokens_pre.parquet",
             "config": tmp / "config.yaml"}
    ranking.to_parquet(files["ranking"])
    windows.to_parquet(files["windows"])
    tokens.to_parquet(files["tokens"])
    tokens_pre.to_parquet(files["tokens_pre"])
    files["config"].write_text(yaml.safe_dump(cfg))
    return files


def planted_evaluator(tasks, seeds, n=N_PROBLEMS):
    def evaluate(sets):
        rows = []
        for s in sets:
            for t, task in enumerate(tasks):
                for i in range(n):
                    for r, seed in enumerate(seeds):
                        base = (i * 7 + r * 3 + t) % 10 < 6          # baseline accuracy 0.6
                        ok = base and not (HARMFUL in s.token_ids and i % 5 < 2)
                        rows.append({"set_id": s.set_id, "task": task, "problem_id": f"{task}-{i}",
                                     "run": r, "seed": seed, "correct": int(ok)})
        return pd.DataFrame(rows)
    return evaluate


def test_cli_end_to_end(tmp_path, monkeypatch, tiny_model):
    assert special_id(tiny_model) == SPECIAL
    f = write_inputs(tmp_path)
    run_dir = tmp_path / "run"
    calls = []

    def fake_make_evaluator(config, cfg, *, model, data_files, source):
        assert sorted(data_files) == ["ifeval", "math500"]
        calls.append(model)
        return planted_evaluator(cfg.tasks, cfg.seeds)

    monkeypatch.setattr(kcli, "make_evaluator", fake_make_evaluator)
    pool, plan = paths.knockout_pool(run_dir), paths.knockout_plan(run_dir)
    assert cli.main(["knockout", "pool", "--config", str(f["config"]), "--candidates", str(f["ranking"]),
                     "--windows", str(f["windows"]), "--tokens", str(f["tokens"]),
                     "--tokens-pre", str(f["tokens_pre"]), "--model", str(tiny_model),
                     "--pool-out", str(pool), "--plan-out", str(plan)]) == 0
    pool_df = pd.read_parquet(pool).set_index("token_id")
    tok = pd.read_parquet(f["tokens"])
    pre = pd.read_parquet(f["tokens_pre"])
    assert pool_df.loc[30, "ent_teacher"] == pytest.approx(tok.loc[tok["token_id"] == 30, "teacher_entropy"].mean())
    assert pool_df.loc[30, "kl_improvement"] == pytest.approx(
        pre.loc[pre["token_id"] == 30, "reverse_kl"].mean() - tok.loc[tok["token_id"] == 30, "reverse_kl"].mean())
    p = json.loads(plan.read_text())
    assert p["seeds"] == [0, 1] and p["n_shards"] == 3
    # the special token (detection rank 3) is never screened: the pool is the next 8 candidates
    assert SPECIAL not in pool_df.index and len(pool_df) == 8 and 110 not in pool_df.index
    assert str(SPECIAL) in p["excluded_token_ids"]
    # window sets: 30 -> {20, 30}, 20 -> {20, 30}, 40 -> {40, 50} (span 3..7; the special token
    # inside is not a candidate), 50 -> {50} = its token set
    window_sets = {m["token_id"]: m["set_id"] for m in p["mapping"] if m["level"] == "window"}
    sets = {s["set_id"]: s["token_ids"] for s in p["sets"]}
    assert sets[window_sets[30]] == [HARMFUL, 30] and window_sets[HARMFUL] == window_sets[30]
    assert sets[window_sets[40]] == [40, 50]
    assert window_sets[50] == "t50" and window_sets[60] == "t60"
    assert len(sets) == 1 + 8 + 2
    table = pd.read_csv(pool.with_name("window_sets.csv")).set_index("token_id")
    assert table.loc[40, "window_set_size"] == 2 and table.loc[40, "member_ids"] == "40 50"
    assert table.loc[60, "window_set_size"] == 1
    assert table["members"].str.count(r" \| ").add(1).tolist() == table["window_set_size"].tolist()

    shard_files = [paths.knockout_shard(run_dir, k) for k in range(3)]
    for k, out in enumerate(shard_files):
        assert cli.main(["knockout", "shard", "--config", str(f["config"]), "--plan", str(plan),
                         "--shard", str(k), "--model", "toy-student",
                         "--benchmark-files", str(tmp_path / "math500.jsonl"), str(tmp_path / "ifeval.jsonl"),
                         "--out", str(out)]) == 0
    assert calls == ["toy-student"] * 3                     # one evaluator (model load) per shard
    per_problem = paths.knockout_per_problem(run_dir)
    assert cli.main(["knockout", "gather", "--plan", str(plan), "--shards", *map(str, shard_files),
                     "--out", str(per_problem)]) == 0
    # a missing shard is named
    assert cli.main(["knockout", "gather", "--plan", str(plan), "--shards", str(shard_files[0]),
                     "--out", str(tmp_path / "x.parquet")]) == 2

    out = paths.knockout_result(run_dir, "x").parent
    assert cli.main(["knockout", "analyze", "--config", str(f["config"]), "--pool", str(pool),
                     "--plan", str(plan), "--per-problem", str(per_problem), "--out-dir", str(out)]) == 0
    for name in paths.KNOCKOUT_RESULTS:
        assert (out / name).stat().st_size > 0, name

    cands = pd.read_csv(out / "candidates.csv")
    for t, task in enumerate(("math500", "ifeval")):
        c = cands[cands["task"] == task].set_index("token_id")
        # planted: 20 breaks the solved (problem, run) pairs with i % 5 < 2
        lost = [(i * 7 + r * 3 + t) % 10 < 6 and i % 5 < 2 for i in range(N_PROBLEMS) for r in range(2)]
        assert c.loc[HARMFUL, "delta_token"] == pytest.approx(-np.mean(lost))
        assert c.loc[HARMFUL, "delta_token"] <= -0.2
        assert c.loc[HARMFUL, "category"] == PILLAR and c.loc[HARMFUL, "decisive_level"] == "token"
        # 30 is harmless alone but its window holds 20: a Pillar through Eq. 21
        assert c.loc[30, "delta_token"] == 0 and c.loc[30, "category"] == PILLAR
        assert c.loc[30, "decisive_level"] == "window"
        assert (c.drop(index=[HARMFUL, 30])["category"] == NEUTRAL).all()
    census = pd.read_csv(out / "table2.csv").set_index("benchmark")
    assert census.loc["math500", "pillar"] == 2 and census.loc["math500", "neutral"] == 6
    assert census.loc["math500", "pillar_pct"] == 25.0
    agree = pd.read_csv(out / "table2_agreement.csv").set_index("label")["count"]
    assert agree["P||P"] == 2 and agree["N||N"] == 6
    mt = json.loads((out / "multiple_testing.json").read_text())
    assert mt["window_sets"]["counts"] == {"1": 5, "2": 3} and mt["window_sets"]["max"] == 2
    # L = 2 for 20, 30 and 40 (window set != {v}), 1 for the other five: 3 * 2 + 5 = 11 tests
    assert mt["per_task"]["math500"]["n_perturbations"] == 11
    assert mt["level_correction"] == "bonferroni"
    c = cands[cands["task"] == "math500"].set_index("token_id")
    assert c.loc[30, "n_tests"] == 2 and c.loc[60, "n_tests"] == 1
    assert c.loc[30, "p_value"] == pytest.approx(min(1.0, 2 * c.loc[30, "p_raw_min"]))
    assert "Window sets |S_W(v)|" in (out / "multiple_testing.md").read_text()
    from rock.report.extract import Context, resolve     # the report reads the distribution

    ctx = Context(run_dir)
    assert [resolve(f"knockout.window_set_size.{k}").read(ctx).value
            for k in ("median", "max", "n_singletons")] == [1.0, 2, 5]
    assert mt["combined"]["sign_negative"] == 4 and mt["combined"]["sign_p"] == pytest.approx(2 * 2 ** -4)
    assert mt["per_task"]["math500"]["core_negative"] == 2
    t1 = pd.read_csv(out / "table1.csv")
    assert len(t1) == 9 and t1["math500_n"].eq(8).all() and t1["math500_r"].notna().all()
    assert "| Rock rate |" in (out / "table1.md").read_text()
    assert "2 (25.0%)" in (out / "table2.md").read_text()
