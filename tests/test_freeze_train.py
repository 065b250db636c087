"""Every freeze regime through the real stage-2 engine on a tiny random Qwen3 pair, then the report.

One run per regime (2 optimizer steps, a checkpoint after each), sharing one module-scoped run
directory: same start model, same seeds, so the first step's rollouts are identical in every regime
and only the weights differ.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_distill_fixtures import CORPUS, tiny_pair  # noqa: E402,F401  (pytest fixture)

from rock import paths  # noqa: E402
from rock.freeze.config import from_section  # noqa: E402

pytestmark = pytest.mark.slow  # ~30 s: four short stage-2 runs

REGIMES = [
    {"name": "baseline", "selection": "none", "lambda": 1.0},
    {"name": "rock_freeze", "selection": "rock", "lambda": 0.0},
    {"name": "random_window_freeze", "selection": "random", "lambda": 0.0},
    {"name": "rock_soft_0p5", "selection": "rock", "lambda": 0.5},
]


def _config(tiny_pair, run_dir):
    return {
        "run_dir": str(run_dir), "seed": 0,
        "models": {"teacher": str(tiny_pair["teacher"]), "student": str(tiny_pair["student"]),
                   "enable_thinking": False, "teacher_system_prompts": [], "dtype": "float32"},
        "data": {"stage2_slice": [0, 12]},
        "stage2": {"global_batch": 4, "micro_batch": 2, "n_rollouts": 2, "max_new_tokens": 12,
                   "max_prompt_len": 64, "rollout_backend": "hf", "lr": 1.0e-3, "device": "cpu",
                   "gradient_checkpointing": False, "seed": 3},
        "detection": {"downstream_mode": "context"},
        "freeze": {"regimes": REGIMES, "window_radius": 1, "eval_every": 1, "max_steps": 2,
                   "benchmarks": ["aime24", "hmmt25"]},
    }


@pytest.fixture(scope="module")
def trained(tiny_pair, tmp_path_factory):
    from transformers import AutoTokenizer

    from rock.freeze.train import train_regime

    run_dir = tmp_path_factory.mktemp("freeze_run")
    (run_dir / "data").mkdir()
    shutil.copy(tiny_pair["prompts"], paths.prompts(run_dir, 2))
    shutil.copytree(tiny_pair["student"], paths.stage_model(run_dir, 1))
    tok = AutoTokenizer.from_pretrained(tiny_pair["student"])
    ids = [i for line in CORPUS for i in tok(line)["input_ids"]]
    counts = np.bincount(ids, minlength=len(tok))
    ranking = pd.DataFrame({"token_id": np.flatnonzero(counts), "freq": counts[counts > 0]})
    # R: the 60 most frequent corpus tokens (digits, spaces, operators, words of the arithmetic
    # lines): about a fifth of the vocabulary, so that the random tiny student's rollouts hit them
    rocks = ranking.sort_values("freq", ascending=False)["token_id"].head(60).tolist()
    det = paths.detection_dir(run_dir, "context")
    det.mkdir(parents=True)
    ranking.to_parquet(det / "ranking.parquet")
    (det / "rocks.json").write_text(json.dumps({"rocks": rocks, "window_radius": 2}))
    # window_anchor high_loss (the default) reads detection's cut: max(tau_pre, tau_post) nats
    (det / "info.json").write_text(json.dumps({"tau_pre": 0.5, "tau_post": 0.3,
                                               "config": {"loss": "reverse_kl"}}))
    config = _config(tiny_pair, run_dir)
    fcfg = from_section(config["freeze"])
    for r in fcfg.regimes:
        train_regime(config, fcfg, r, run_dir=run_dir, source="test")
    from rock.freeze.plan import report_files
    from rock.freeze.runreport import read_logs

    files = report_files(config, run_dir)
    logs = {r["name"]: read_logs({r["name"]: files["logs"][r["name"]]}, files["counts"]) for r in REGIMES}
    return {"run_dir": run_dir, "config": config, "fcfg": fcfg, "logs": logs, "rocks": rocks}


def test_each_regime_keeps_the_evaluated_checkpoints(trained):
    for r in REGIMES:
        out = paths.freeze_run_dir(trained["run_dir"], r["name"])
        for step in (1, 2):
            assert (paths.train_checkpoint(out, step) / "config.json").exists()
        assert (paths.train_model(out) / "config.json").exists()
        assert len(trained["logs"][r["name"]]) == 2


def test_same_start_same_seeds_same_first_rollouts(trained):
    """Step 1 samples from the same stage-1 model with the same seed in every regime, so its
    rollouts (and what Rock-Freeze would freeze on them) are identical; only the weights differ."""
    first = {n: lg.iloc[0] for n, lg in trained["logs"].items()}
    for col in ("n_response_tokens", "freeze_rock_occurrences"):
        assert len({int(f[col]) for f in first.values()}) == 1, col
    # the high-divergence windows need the per-token loss, which the baseline does not compute
    # (no extra scoring pass in plain OPD): compared across the freezing regimes
    assert pd.isna(first["baseline"].get("freeze_rock_window_tokens"))
    assert len({int(f["freeze_rock_window_tokens"]) for n, f in first.items() if n != "baseline"}) == 1


def test_logged_counts_per_regime(trained):
    lg = trained["logs"]
    b, rf, rnd, soft = (lg[n].iloc[0] for n in ("baseline", "rock_freeze", "random_window_freeze",
                                                "rock_soft_0p5"))
    assert b["freeze_frozen_tokens"] == 0
    assert b["freeze_weight_sum"] == b["n_response_tokens"]
    assert rf["freeze_rock_occurrences"] > 0
    # Rock-Freeze freezes exactly rock tokens + windows (radius from config: 1, not detection's 2)
    assert rf["freeze_frozen_tokens"] == rf["freeze_rock_window_tokens"]
    assert rf["freeze_response_tokens"] == rf["n_response_tokens"]
    assert rf["freeze_weight_sum"] == rf["n_response_tokens"] - rf["freeze_frozen_tokens"]
    assert soft["freeze_weight_sum"] == pytest.approx(
        soft["n_response_tokens"] - 0.5 * soft["freeze_frozen_tokens"])
    assert rnd["freeze_target_windows"] == rnd["freeze_rock_windows"]
    assert rnd["freeze_matched_windows"] + rnd["freeze_unmatched_windows"] == rnd["freeze_target_windows"]
    # issue 13: W_S never overlaps R or W_R; what did not fit is counted
    assert (lg["random_window_freeze"]["freeze_control_rock_window_overlap"] == 0).all()
    assert rnd["freeze_frozen_tokens"] + rnd["freeze_unmatched_tokens"] == rnd["freeze_rock_window_tokens"]


def test_random_regime_writes_its_match_histograms(trained):
    path = paths.freeze_control_match(trained["run_dir"], "random_window_freeze")
    obj = json.loads(path.read_text())
    lg = trained["logs"]["random_window_freeze"]
    assert sum(obj["target"]["length"].values()) == int(lg["freeze_target_windows"].sum())
    assert sum(obj["control"]["length"].values()) == int(lg["freeze_matched_windows"].sum())
    assert not list(path.parent.glob("freeze_steps.*"))  # merged and removed


def _write_eval_tables(run_dir, steps):
    """Per-problem tables of every (regime, step) as `rock evaluate` writes them (seeded)."""
    rng = np.random.default_rng(0)
    for r in REGIMES:
        for step in steps:
            rows = [{"model": r["name"], "task": t, "problem_id": f"{t}-{i}", "run": run, "seed": run,
                     "suppression_set": "none", "correct": int(rng.random() < 0.3)}
                    for t in ("aime24", "hmmt25") for i in range(30) for run in range(2)]
            path = paths.freeze_eval(run_dir, r["name"], step, "per_problem.parquet")
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_parquet(path)


def test_report_from_logs_and_evaluation_tables(trained):
    from rock.freeze.plan import planned_eval_steps
    from rock.freeze.runreport import write_report

    run_dir, config, fcfg = trained["run_dir"], trained["config"], trained["fcfg"]
    steps = planned_eval_steps(config)
    assert steps == [0, 1, 2]
    _write_eval_tables(run_dir, steps)
    res = write_report(config, fcfg, run_dir=run_dir)
    for name in paths.FREEZE_RESULTS:
        assert paths.freeze_result(run_dir, name).exists(), name
    table = res["table"].set_index("regime")
    assert table.loc["baseline", "frozen_fraction"] == 0
    assert 0 < table.loc["rock_freeze", "frozen_fraction"] < 1
    # step 0 is the shared stage-1 evaluation: identical in every regime
    c = res["curves"]
    s0 = c[(c["step"] == 0) & (c["benchmark"] == "average")]["pass1"]
    assert s0.nunique() == 1
    assert set(res["match"]["quantity"]) >= {"window_length", "token_log2_freq"}


def test_freeze_report_reads_the_files_its_rule_gives(trained, tmp_path):
    """`rock freeze report --in evals=... logs=... counts=... control=...` (the rule's named
    inputs, rock.freeze.plan.report_files) reads those files, not the run directory's: copies
    elsewhere give the same regime table; a wrong count is a ConfigError naming the input."""
    import argparse

    from rock.errors import ConfigError, DataError
    from rock.freeze.cli import run
    from rock.freeze.plan import planned_eval_steps, report_files
    from rock.freeze.runreport import write_report
    from rock.job_files import JobFiles, keyed_paths, unique_paths

    src, config = trained["run_dir"], trained["config"]
    _write_eval_tables(src, planned_eval_steps(config))
    out = tmp_path / "out"                                    # results only: none of the inputs
    pairs = []
    for name, by_key in report_files(config, src).items():
        for i, path in enumerate(unique_paths(by_key)):
            copy = tmp_path / "given" / name / f"{i}{path.suffix}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, copy)
            pairs.append(f"{name}={copy}")

    def report(given):   # what the rule runs; the (test-sized, partial) config is handed over as read
        return run(argparse.Namespace(action="report", config="config.yaml", config_data=config,
                                      run_dir=str(out), job_inputs=given, threads=None))

    assert report(pairs) == 0
    given = pd.read_csv(paths.freeze_result(out, "regimes.csv"))
    own = write_report(config, trained["fcfg"], run_dir=src)["table"]
    assert list(given["final_average"]) == list(own["final_average"])
    assert list(given["frozen_tokens"]) == list(own["frozen_tokens"])
    with pytest.raises(ConfigError, match=r"--in evals=\.\.\.: 9 paths expected .*got 8"):
        report(pairs[1:])                                       # one table short
    evals = report_files(config, src)["evals"]                  # 4 regimes x steps 1, 2 + step 0
    assert len(evals) == 12 and len(unique_paths(evals)) == 9
    assert keyed_paths(JobFiles(), "evals", evals) == evals     # by hand: the usual places
    with pytest.raises(DataError, match="evaluation table missing"):
        report([])                                              # nothing under out/


def test_random_regime_killed_and_resumed_draws_the_same_windows(tiny_pair, trained, tmp_path):
    """Kill the random regime after step 1 (a resume state is saved every step), rerun it: the
    hook's step counter resumes at 1, so the per-step counts, the W_R/W_S histograms and the final
    weights equal those of the uninterrupted run of the module fixture."""
    import torch
    from safetensors.torch import load_file

    from rock.freeze.train import train_regime

    src = trained["run_dir"]
    run_dir = tmp_path / "run"
    for sub in ("data", "distill", "detect"):
        shutil.copytree(src / sub, run_dir / sub)
    config = json.loads(json.dumps(trained["config"]))
    config["run_dir"] = str(run_dir)
    config["stage2"]["save_state_every"] = 1
    fcfg = trained["fcfg"]
    regime = fcfg.regime("random_window_freeze")

    class Kill(Exception):
        pass

    def kill_after_first(done):
        if done == 1:
            raise Kill

    with pytest.raises(Kill):
        train_regime(config, fcfg, regime, run_dir=run_dir, on_step_end=kill_after_first)
    out = paths.freeze_run_dir(run_dir, regime.name)
    assert paths.train_state(out).exists() and not paths.freeze_log(run_dir, regime.name).exists()
    train_regime(config, fcfg, regime, run_dir=run_dir)

    ref_out = paths.freeze_run_dir(src, regime.name)
    a = pd.read_csv(paths.freeze_log(run_dir, regime.name)).drop(columns="freeze_hook_seconds")
    b = pd.read_csv(paths.freeze_log(src, regime.name)).drop(columns="freeze_hook_seconds")
    pd.testing.assert_frame_equal(a, b)
    ja = json.loads(paths.freeze_control_match(run_dir, regime.name).read_text())
    jb = json.loads(paths.freeze_control_match(src, regime.name).read_text())
    assert ja == jb
    wa = load_file(str(paths.train_model(out) / "model.safetensors"))
    wb = load_file(str(paths.train_model(ref_out) / "model.safetensors"))
    for k in wb:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_baseline_regime_is_plain_stage2(tiny_pair, trained, tmp_path):
    """The baseline's weights (1 on every response token) change nothing: its final model equals a
    stage-2 run of the engine without any weight hook, same config and seeds."""
    import dataclasses

    import torch
    from safetensors.torch import load_file

    from rock.config import from_dict
    from rock.distill.config import ModelsConfig, Stage2Config
    from rock.distill.stage2 import run_stage2
    from rock.freeze.plan import n_checkpoints

    src, config = trained["run_dir"], trained["config"]
    s2 = from_dict(Stage2Config, config["stage2"], "stage2")
    s2 = dataclasses.replace(s2, max_steps=2, n_checkpoints=n_checkpoints(2, 1))
    models = from_dict(ModelsConfig, config["models"], "models")
    out = tmp_path / "plain"
    run_stage2(s2, models, prompts_path=paths.prompts(src, 2), student=str(paths.stage_model(src, 1)),
               teacher=models.teacher, out_dir=out)
    wa = load_file(str(paths.train_model(out) / "model.safetensors"))
    wb = load_file(str(paths.train_model(paths.freeze_run_dir(src, "baseline")) / "model.safetensors"))
    for k in wb:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
