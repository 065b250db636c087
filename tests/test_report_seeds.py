"""`make toy-seeds` (rock.report.seeds): per-seed configs and the summary that fails a seed which
misses a direction claim or a planted truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from rock import paths
from rock.config import load_config
from rock.report.seeds import seed_config, summarize

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "config_toy" / "config.yaml"


def test_seed_config_moves_world_models_and_drops_the_golden_rows(tmp_path):
    out = tmp_path / "toy-seed3.config.yaml"
    subprocess.run([sys.executable, "-m", "rock.cli", "report", "seed-config", "--config", str(TOY), "--seed", "3",
                    "--run-dir", str(tmp_path / "toy-seed3"), "--out", str(out)], cwd=ROOT, check=True)
    cfg = load_config(out)
    base = yaml.safe_load(TOY.read_text())
    assert cfg["seed"] == 3 and base["seed"] == 0
    assert cfg["run_dir"] == str(tmp_path / "toy-seed3")
    assert cfg["models"]["teacher"] == str(paths.world_model(tmp_path / "toy-seed3", "teacher"))
    assert cfg["models"]["teacher_system_prompts"] == base["models"]["teacher_system_prompts"]
    assert cfg["report"]["expected"] == ["results/expected/paper"]
    assert cfg["report"]["fail_on_regression"] is False
    assert {k: v for k, v in cfg.items() if k not in ("seed", "run_dir", "models", "report")} == \
        {k: v for k, v in base.items() if k not in ("seed", "run_dir", "models", "report")}
    assert seed_config(base, 3, "x")["detection"] is base["detection"]   # sections shared, not copied


def _run(tmp_path: Path, name: str, seed: int, g08: str, rock_set: str) -> Path:
    run = tmp_path / name
    report = paths.report_dir(run)
    report.mkdir(parents=True)
    paths.world_dir(run).mkdir(parents=True)
    (paths.world_dir(run) / "world.json").write_text(json.dumps(
        {"seed": seed, "accuracy_math500": {"teacher": 0.7, "student": 0.2}}))
    pd.DataFrame({"id": ["G03", "G08", "P01"], "kind": ["claim"] * 3, "toy": ["direction", "direction", "magnitude"],
                  "measured": ["0.36", "0", "5"], "toy_status": ["agrees", g08, "disagrees"]}
                 ).to_csv(report / "claims_check.csv", index=False)
    pd.DataFrame({"check": ["rock_set", "freeze_sign"], "value": ["0.5", "-0.04"],
                  "status": [rock_set, "underpowered"]}).to_csv(report / "ground_truth.csv", index=False)
    return run


def test_summary_names_what_each_seed_misses_and_fails_on_any(tmp_path):
    good = _run(tmp_path, "toy-seed1", 1, "agrees", "recovered")
    bad = _run(tmp_path, "toy-seed2", 2, "disagrees", "not recovered")
    table = summarize([good, bad, tmp_path / "toy-seed9"])
    assert table["seed"].tolist()[:2] == [1, 2]
    assert table["teacher/student"].tolist() == ["0.70/0.20", "0.70/0.20", ""]
    assert table["directions"].tolist() == ["2/2", "1/2", "not run"]      # magnitude rows do not count
    assert table["disagree"].tolist()[:2] == ["", "G08 (0)"]
    assert table["ground_truth"].tolist()[:2] == ["1/2", "0/2"]           # underpowered: not recovered, not failed
    assert table["not_recovered"].tolist()[:2] == ["", "rock_set (0.5)"]
    assert table["ok"].tolist() == [True, False, False]
    cmd = [sys.executable, "-m", "rock.cli", "report", "seeds", "--run-dirs"]
    assert subprocess.run(cmd + [str(good)], cwd=ROOT).returncode == 0
    proc = subprocess.run(cmd + [str(good), str(bad), "--out", str(tmp_path / "s.md")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "G08 (0)" in proc.stdout
    assert "rock_set (0.5)" in (tmp_path / "s.md").read_text()
