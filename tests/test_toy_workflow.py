"""The toy run of the whole paper, end to end, as a user runs it (README: `make toy`).

One Snakemake invocation with the toy profile builds the toy world, distils in two stages, scores,
detects, runs the knockout and the freeze regimes, and writes the report; its `report_check` job
compares the run with `results/expected/toy/golden.csv` and fails on a toy regression. The run
goes into a temporary `run_dir` so that it never touches `results/toy`.

Set ROCK_TOY_RUN_DIR to reuse an existing run directory (the test then only re-plans and checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rock import paths

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.toyrun]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    run_dir = Path(os.environ.get("ROCK_TOY_RUN_DIR") or tmp_path_factory.mktemp("toy") / "toy")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = ["snakemake", "--profile", "workflow/profiles/toy", "--config", f"run_dir={run_dir}"]
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - start
    (run_dir / "snakemake.log").parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "snakemake.log").write_text(proc.stdout + proc.stderr)
    print(f"toy workflow: {wall:.0f} s wall, exit {proc.returncode}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return run_dir


def test_world_teacher_beats_student(toy_run):
    info = json.loads(paths.world_info(toy_run).read_text())
    text = json.dumps(info)
    assert "accuracy" in text
    acc = info.get("accuracy") or info.get("accuracies")
    assert acc, f"world.json has no accuracy block: {sorted(info)}"
    teacher, student = acc["teacher"], acc["student"]
    teacher = teacher["math500"] if isinstance(teacher, dict) else teacher
    student = student["math500"] if isinstance(student, dict) else student
    assert teacher > student + 0.2, (teacher, student)


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
