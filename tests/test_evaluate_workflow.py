"""workflow/rules/evaluate.smk plans one job per model, all benchmarks in it, at both scales (dry runs)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rock import paths

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed")


def _dry_run(targets: list[str], config: str | None = None) -> str:
    # --force: plan the targets even when an earlier toy run in results/toy already made them
    cmd = ["snakemake", "-n", "-p", "--force", *targets]
    if config:
        cmd += ["--configfile", config]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("config,run_dir,model_ref", [
    (None, "results/paper", "Qwen/Qwen3-30B-A3B-Instruct-2507"),
    ("tests/config_toy/config.yaml", "results/toy", "results/toy/world/teacher"),
])
def test_teacher_and_student_on_every_benchmark(config, run_dir, model_ref):
    targets = [str(paths.eval_file(run_dir, m, b, "summary.json"))
               for m in ("teacher", "student") for b in paths.BENCHMARKS]
    out = _dry_run(targets, config)
    assert re.search(r"^evaluate\s+2$", out, re.M), out[-2000:]
    cmds = [line for line in out.splitlines()
            if line.startswith("Shell command:") and "rock evaluate " in line]   # GPU jobs: rock gpus N -- ...
    assert len(cmds) == 2
    teacher = next(c for c in cmds if "--model-name teacher " in c)
    assert f"--model {model_ref} " in teacher
    assert " ".join(f"--benchmark {b}" for b in paths.BENCHMARKS) in teacher
    assert f"--table '{run_dir}/eval/teacher/{{bench}}/per_problem.parquet'" in teacher
    assert f"--summary '{run_dir}/eval/teacher/{{bench}}/summary.json'" in teacher
    assert f"> {run_dir}/logs/evaluate/teacher.log 2>&1" in teacher
