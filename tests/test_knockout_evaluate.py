"""The knockout's evaluation seam on a real (tiny, random) Qwen3 through rock.evaluate and lm-eval."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from rock import paths
from rock.config import load_config
from rock.knockout import config as kconfig
from rock.knockout import pool as kpool
from rock.knockout import runner
from rock.knockout.cli import make_evaluator
from rock.evaluate.tiny import build_tiny_model

ROOT = Path(__file__).resolve().parent.parent
MATH = [{"unique_id": f"m{i}", "problem": f"What is $({a}+{b})*{c}$?", "answer": str((a + b) * c),
         "solution": "", "subject": "toy", "level": 1}
        for i, (a, b, c) in enumerate([(1, 2, 3), (4, 5, 2), (2, 2, 5)])]
IFEVAL = [{"key": 1, "prompt": "Write a sentence without commas.", "instruction_id_list": ["punctuation:no_comma"],
           "kwargs": [{}]},
          {"key": 2, "prompt": "Answer in lowercase.", "instruction_id_list": ["change_case:english_lowercase"],
           "kwargs": [{}]}]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ko_eval")
    model = build_tiny_model(root / "tiny", seed=0)
    run_dir = root / "run"
    for name, rows in (("math500", MATH), ("ifeval", IFEVAL)):
        f = paths.benchmark(run_dir, name)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = yaml.safe_load((ROOT / "tests/config_toy/config.yaml").read_text())
    cfg["run_dir"] = str(run_dir)
    cfg["knockout"].update({"n_runs": 2, "max_gen_toks": 10, "limit": None, "n_shards": 1})
    cfg_file = root / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    config = load_config(cfg_file)
    kcfg = kconfig.from_config(config)
    evaluate = make_evaluator(config, kcfg, model=str(model),
                              data_files={t: paths.benchmark(run_dir, t) for t in kcfg.tasks})
    return kcfg, evaluate


def test_shard_through_rock_evaluate(setup):
    kcfg, evaluate = setup
    pool = pd.DataFrame({"token_id": [40, 41], "rank": [1, 2],
                         "window_set": [list(range(30, 120)), [41]]})
    sets, mapping = kpool.build_plan(pool, levels=["token", "window"], n_shards=1)
    table = runner.run_shard(sets, 0, evaluate, tasks=kcfg.tasks, seeds=kcfg.seeds)
    # base, t40, w(30..119), t41: 4 sets x (3 + 2 problems) x 2 runs, seeds 0 and 1
    assert len(table) == 4 * 5 * 2
    assert sorted(table["seed"].unique()) == [0, 1]
    assert set(table["task"]) == {"math500", "ifeval"}
    gathered = runner.gather(sets, [table])
    # the baseline decoded again under the same seeds gives the same outcomes (paired design)
    again = runner.normalize_per_problem(evaluate([kpool.SuppressionSet("base", ())]))
    base = gathered[gathered["set_id"] == "base"].drop(columns="shard").reset_index(drop=True)
    pd.testing.assert_frame_equal(base, again.sort_values(["task", "problem_id", "run"]).reset_index(drop=True))
