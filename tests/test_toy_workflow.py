"""The toy run of the whole paper, end to end, as a user runs it (README: `make toy`).

One Snakemake invocation with the toy profile builds the toy world, distils in two stages, scores,
detects, runs the knockout and the freeze regimes, and writes the report; its `report_check` job
compares the run with `results/expected/toy/golden.csv` and fails on a toy regression. The runs
(fixtures in conftest.py) go into temporary run directories, never into `results/toy`: one clean
run, and a second clean run with the same seed killed in the middle of each long stage.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from rock import paths

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.toyrun]


def test_world_teacher_clearly_beats_student(toy_run):
    """The toy config's world: the margin is what distillation works with; greedy answers end."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rock.config import load_config
    from rock.toy import accuracy, settings_from

    info = json.loads(paths.world_info(toy_run).read_text())
    acc = info["accuracy_math500"]
    assert acc["teacher"] >= acc["student"] + 0.3, acc
    assert 512 <= info["tokenizer"]["size"] <= 1024
    settings = settings_from(load_config(ROOT / "tests" / "config_toy" / "config.yaml"))
    world = paths.world_dir(toy_run)
    tok = AutoTokenizer.from_pretrained(str(world / "student"))
    rows = [json.loads(line) for line in open(world / "raw" / "math500.jsonl")][:16]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    for role, system in (("teacher", settings["system_prompts"]), ("student", None)):
        model = AutoModelForCausalLM.from_pretrained(str(world / role))
        prompts = accuracy.chat_prompts([r["problem"] for r in rows], tok, system, seed=0)
        tok.padding_side = "left"
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=96)[:, enc.input_ids.shape[1]:]
        ended = [(im_end in seq.tolist()) for seq in out]
        assert sum(ended) >= 15, (role, tok.batch_decode(out))   # within the pipeline's 96 tokens


def test_both_distillation_stages_ran(toy_run):
    for stage in (1, 2):
        model = paths.train_model(paths.stage_dir(toy_run, stage))
        assert (model / "config.json").is_file(), model
    log = pd.read_csv(paths.train_log(paths.stage_dir(toy_run, 2)))
    assert len(log) >= 2
    kl_col = next(c for c in log.columns if "kl" in c.lower())
    assert log[kl_col].notna().all()


def test_every_figure_and_table_exists(toy_run):
    report = paths.report_dir(toy_run)
    html = next(report.glob("*.html"))
    assert html.stat().st_size > 10_000
    for name in ("claims_check.csv", "claims_check.md"):
        assert (report / name).is_file(), name
    pngs = {p.name for p in toy_run.rglob("*.png")}
    for fig in ("figure2", "figure3", "figure4", "figure5", "figure6"):
        assert any(fig in name for name in pngs), (fig, sorted(pngs))
    tables = {p.name for p in toy_run.rglob("table*.csv")}
    assert any("table1" in t for t in tables) and any("table2" in t for t in tables), tables


def test_claim_check_lists_every_paper_claim(toy_run):
    check = pd.read_csv(paths.report_file(toy_run, "claims_check.csv"))
    claims = pd.read_csv(ROOT / "results" / "expected" / "paper" / "claims.csv")
    assert set(claims["id"]) <= set(check["id"])
    status = check["status"].astype(str)
    assert status.str.len().gt(0).all()


def test_the_toy_recovers_what_it_plants(toy_run):
    """Issue 14: every direction claim agrees and every planted mechanism is recovered (the
    report_check job already failed the run otherwise; this names the rows). Like the golden rows,
    judged on the numerical platform the golden numbers were recorded on (rock.report.platform)."""
    from rock.report import platform

    gates, diff = platform.golden_gates(platform.read(ROOT / "results" / "expected" / "toy"),
                                        platform.current())
    if not gates:
        pytest.skip(f"toy world trained on another platform than the recorded one: {diff}")
    check = pd.read_csv(paths.report_file(toy_run, "claims_check.csv"), dtype=str, keep_default_na=False)
    d = check[(check["kind"] == "claim") & (check["toy"] == "direction")]
    assert len(d) >= 15
    assert (d["toy_status"] == "agrees").all(), d[d["toy_status"] != "agrees"][["id", "measured", "toy_band"]]
    gt = pd.read_csv(paths.report_file(toy_run, "ground_truth.csv"), dtype=str, keep_default_na=False)
    assert set(gt["check"]) >= {"rock_set", "learnable_in_high_kl", "knockout_pillar", "freeze_sign"}
    assert not (gt["status"] == "not recovered").any(), gt
    html = next(paths.report_dir(toy_run).glob("*.html")).read_text()
    assert html.index("What the toy reproduces") < html.index("id='figures'")


def test_window_sets_from_every_window_break_the_toys_knockout_truth(toy_run):
    """The real toy run, its window sets rebuilt from every occurrence in the window (the rule
    Eq. 21 does not use): the planted neutral step marker drags planted Pillar digits into its set.
    The windows are widened to the paper's radius 3 (config.yaml): at the toy's radius 1 no digit
    is next to a rock, so neither rule could drag one in (measured: both sets are {So})."""
    from rock.knockout.pool import window_sets
    from rock.report import truth
    from rock.report.readers import Context

    planted = truth.planted(Context(run_dir=toy_run))
    neutral = planted["knockout"]["neutral"]
    so = neutral["ids"][neutral["tokens"].index("So")]
    marker = {"knockout": {"pillars": planted["knockout"]["pillars"], "neutral": {"ids": [so]}}}
    pool = pd.read_parquet(toy_run / "knockout" / "pool.parquet")[["token_id"]]
    windows = pd.read_parquet(paths.detection_file(toy_run, "context", "windows.parquet"))
    windows = windows.assign(start=windows["start"] - 2, end=windows["end"] + 2)   # radius 1 -> 3
    tokens = pd.read_parquet(toy_run / "stats" / "tokens_post.parquet")
    for rule, status in (("high_divergence", "recovered"), ("any_occurrence", "not recovered")):
        sets = window_sets(pool, windows, tokens, members=pool["token_id"].tolist(), min_share=0.25,
                           rule=rule)
        sets["member_ids"] = sets["window_set"].map(lambda s: " ".join(map(str, s)))
        assert truth.check_neutral_sets(marker, sets)["status"] == status, (rule, sets)


def test_a_teacher_scored_without_its_hidden_context_loses_the_planted_rocks(toy_run, tmp_path):
    """Issue 14, item 4: the real toy run's trajectories scored again with the teacher given the
    student's prompt (no hidden system message: the teacher no longer knows which step marker and
    answer line the context asks for), then detection on the new tables. Measured on seed 0: the
    run's own detection finds the planted So and ** (Jaccard 1.0); the blind teacher's tables give
    So and a digit (Jaccard 0.33), so the planted rock set is not recovered."""
    from conftest import ROOT as root, toy_env
    from rock.atomic import write_jsonl
    from rock.report import truth
    from rock.report.readers import Context
    from rock.stats.core import read_trajectories

    planted = truth.planted(Context(run_dir=toy_run))
    config = toy_run.parent / f"{toy_run.name}.config.yaml"     # conftest.toy_config wrote it
    own = truth.check_detected_rocks(planted, toy_run)
    assert own["status"] == truth.OK, own
    rows = read_trajectories(paths.trajectories(toy_run))
    assert any(r["teacher_prompt_ids"] != r["student_prompt_ids"] for r in rows)
    blind = tmp_path / "trajectories.jsonl"
    write_jsonl(blind, [{**r, "teacher_prompt_ids": r["student_prompt_ids"]} for r in rows])
    tables = {}
    for checkpoint in ("pre", "post"):
        tables[checkpoint] = tmp_path / f"tokens_{checkpoint}.parquet"
        subprocess.run(["rock", "stats", "score", "--config", str(config), "--checkpoint", checkpoint,
                        "--trajectories", str(blind), "--out", str(tables[checkpoint])],
                       cwd=root, env=toy_env(), check=True, capture_output=True)
    subprocess.run(["rock", "detect", "select", "--config", str(config), "--mode", "context",
                    "--run-dir", str(tmp_path / "blind"), "--post", str(tables["post"]),
                    "--pre", str(tables["pre"])], cwd=root, env=toy_env(), check=True, capture_output=True)
    broken = truth.check_detected_rocks(planted, tmp_path / "blind")
    assert broken["status"] == truth.FAIL, broken


# ------------------------------------------------------------------------------------------------
# two clean runs, one of them killed in the middle of each long stage: the same tables
# ------------------------------------------------------------------------------------------------

#: columns and claim metrics that measure time (they differ between any two runs)
TIMING = re.compile(r"(?:second|wall|clock|speedup|throughput|per_s\b|tokens_per|elapsed|_time|time_)", re.I)


def run_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Every csv/parquet table of a run, timing columns (and timing claims) dropped."""
    out = {}
    for f in sorted(run_dir.rglob("*")):
        if f.suffix not in (".csv", ".parquet") or paths.benchmarks_dir(run_dir) in f.parents:
            continue
        t = pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f, keep_default_na=False)
        t = t[[c for c in t.columns if not TIMING.search(str(c))]]
        if "metric" in t.columns:
            t = t[~t["metric"].astype(str).str.contains(TIMING)]
        out[str(f.relative_to(run_dir))] = t.reset_index(drop=True)
    return out


def weights(run_dir: Path) -> dict[str, str]:
    """sha256 of every model file the run trained or built (world, stages, freeze regimes)."""
    return {str(f.relative_to(run_dir)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(run_dir.rglob("model.safetensors"))}


def test_the_resumed_run_was_killed_in_every_long_stage(resumed_toy_run):
    _, killed = resumed_toy_run
    assert sorted(killed) == sorted(["evaluate", "stage1", "stage2", "freeze_train", "knockout_shard"])


def test_two_clean_runs_one_killed_and_resumed_give_identical_tables(toy_run, resumed_toy_run):
    resumed, _ = resumed_toy_run
    a, b = run_tables(toy_run), run_tables(resumed)
    assert set(a) == set(b), sorted(set(a) ^ set(b))
    assert len(a) > 40
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def test_two_clean_runs_one_killed_and_resumed_give_identical_weights(toy_run, resumed_toy_run):
    """Models byte for byte: both distillation stages (resumed from their last state) and every
    freeze regime (the world is the same copy)."""
    resumed, _ = resumed_toy_run
    a, b = weights(toy_run), weights(resumed)
    assert {"distill/stage1/model/model.safetensors",
            "distill/stage2/model/model.safetensors"} <= set(a)
    assert a == b
