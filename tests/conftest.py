"""Shared fixtures: the toy workflow run end to end, uninterrupted and killed-and-resumed.

Both are whole `snakemake --profile workflow/profiles/toy` runs, so that tests/test_toy_workflow.py
can compare them: two clean runs with the same seed, one of them killed in the middle of each long
stage and restarted, must end with the same tables. The first starts from an empty `run_dir`; the
second starts from a copy of the first one's toy world only (its build, ~4 minutes, would add
nothing: the world is written atomically, so a killed build simply starts again, and
tests/test_toy_build.py checks that two builds with one seed are byte-identical). The tests are
marked `toyrun` (minutes each; CI runs them).

Set ROCK_TOY_RUN_DIR (and ROCK_TOY_RESUMED_RUN_DIR) to reuse finished run directories: the
fixtures then only re-plan them (a no-op when complete) instead of running from scratch.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from rock import paths

ROOT = Path(__file__).resolve().parents[1]


TOY_CONFIG = ROOT / "tests" / "config_toy" / "config.yaml"


def toy_config(run_dir: Path) -> Path:
    """The toy config for a run in ``run_dir``: its run_dir and the world's models under it (the
    toy config points models.teacher/student at results/toy/world), written next to ``run_dir``."""
    cfg = yaml.safe_load(TOY_CONFIG.read_text())
    cfg["run_dir"] = str(run_dir)
    for role in ("teacher", "student"):
        cfg["models"][role] = str(paths.world_model(run_dir, role))
    path = run_dir.parent / f"{run_dir.name}.config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def toy_command(run_dir: Path, *extra: str) -> list[str]:
    """`make toy`'s Snakemake call, into ``run_dir`` (a --configfile replaces the profile's)."""
    return ["snakemake", "--profile", "workflow/profiles/toy", "--configfile", str(toy_config(run_dir)), *extra]


def toy_env() -> dict[str, str]:
    """The venv's snakemake and rock first on PATH (as `make toy` does)."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def run_toy_workflow(run_dir: Path) -> float:
    """One complete toy workflow into ``run_dir``; returns its wall seconds (fails on error)."""
    start = time.time()
    proc = subprocess.run(toy_command(run_dir), cwd=ROOT, env=toy_env(), capture_output=True, text=True)
    wall = time.time() - start
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "snakemake.log", "a") as fh:
        fh.write(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return wall


# ------------------------------------------------------------------------------------------------
# kill points: (stage, arm) where arm(since) gives the test "this stage is in the middle of work
# done by the invocation started at `since`" (a state or log left by an earlier invocation does
# not count: the restarted job must itself be running)
# ------------------------------------------------------------------------------------------------

Armed = Callable[[float], Callable[[], bool]]


def _job_running(run_dir: Path, rule: str, min_bytes: int) -> Armed:
    """A job of ``rule`` has written >= ``min_bytes`` of log since ``since`` and has no benchmark
    file yet (Snakemake writes it when the job ends)."""
    folder = paths.log_file(run_dir, rule, "x").parent

    def arm(since: float) -> Callable[[], bool]:
        def ready() -> bool:
            for log in folder.rglob("*.log") if folder.is_dir() else []:
                try:
                    st = log.stat()
                except OSError:
                    continue
                name = str(log.relative_to(folder).with_suffix(""))
                if (st.st_size >= min_bytes and st.st_mtime >= since
                        and not paths.job_timing(run_dir, rule, name).exists()):
                    return True
            return False
        return ready
    return arm


def _resume_state_saved(out_dirs: Callable[[], list[Path]], min_step: int) -> Armed:
    """A training run has written, since ``since``, a resume state of step >= ``min_step``
    (``LATEST`` names ``step_<n>``) and has not finished (model not yet written)."""
    def arm(since: float) -> Callable[[], bool]:
        def ready() -> bool:
            for d in out_dirs():
                latest = paths.train_state(d) / "LATEST"
                try:
                    fresh = latest.stat().st_mtime >= since
                    step = int(latest.read_text().strip().removeprefix("step_"))
                except (OSError, ValueError):
                    continue
                if fresh and step >= min_step and not paths.train_model(d).exists():
                    return True
            return False
        return ready
    return arm


def kill_points(run_dir: Path) -> list[tuple[str, Armed]]:
    """The long stages, each with its "in the middle" test (jobs run side by side, so the order
    in which they are reached is not fixed)."""
    freeze_runs = paths.freeze_dir(run_dir) / "regimes"
    return [
        ("evaluate", _job_running(run_dir, "evaluate", 2000)),
        # the toy's stage 1 has 64 steps (state every 5), stage 2 80 (every 2), a freeze regime 4
        ("stage1", _resume_state_saved(lambda: [paths.stage_dir(run_dir, 1)], 30)),
        ("stage2", _resume_state_saved(lambda: [paths.stage_dir(run_dir, 2)], 40)),
        ("freeze_train", _resume_state_saved(
            lambda: sorted(freeze_runs.iterdir()) if freeze_runs.is_dir() else [], 2)),
        ("knockout_shard", _job_running(run_dir, "knockout_shard", 2000)),
    ]


def run_toy_workflow_with_kills(run_dir: Path, timeout_s: float = 3600) -> list[str]:
    """The toy workflow from scratch, SIGKILLed (the whole process group: Snakemake and its jobs)
    as soon as a kill point's stage is in the middle of its work, then restarted (after
    `--unlock`, as a user would), once per kill point, until it completes. Returns the stages it
    was killed in, in the order it was."""
    killed, env, deadline = [], toy_env(), time.time() + timeout_s
    pending = kill_points(run_dir)
    log = open(run_dir.parent / f"{run_dir.name}.snakemake.log", "a")
    try:
        while pending:
            since = time.time()
            proc = subprocess.Popen(toy_command(run_dir), cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            tests = [(stage, arm(since)) for stage, arm in pending]
            hit = None
            while hit is None and proc.poll() is None:
                assert time.time() < deadline, f"toy workflow still running after {timeout_s} s"
                hit = next((stage for stage, in_the_middle in tests if in_the_middle()), None)
                time.sleep(0.2)
            if hit is None:
                assert proc.returncode == 0, f"toy workflow failed; not yet killed in {[s for s, _ in pending]}"
                break
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed.append(hit)
            pending = [(stage, arm) for stage, arm in pending if stage != hit]
            subprocess.run(toy_command(run_dir, "--unlock"), cwd=ROOT, env=env, stdout=log,
                           stderr=subprocess.STDOUT, check=True)
        proc = subprocess.run(toy_command(run_dir), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        assert proc.returncode == 0, f"the resumed toy workflow failed: {log.name}"
    finally:
        log.close()
    return killed


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """A clean, uninterrupted toy workflow run (`make toy` into a temporary run_dir)."""
    run_dir = Path(os.environ.get("ROCK_TOY_RUN_DIR") or tmp_path_factory.mktemp("toy") / "toy")
    wall = run_toy_workflow(run_dir)
    print(f"toy workflow: {wall:.0f} s wall")
    return run_dir


@pytest.fixture(scope="session")
def resumed_toy_run(toy_run, tmp_path_factory) -> tuple[Path, list[str]]:
    """A second toy run with the same seed from the first one's world, killed in the middle of
    each long stage."""
    reuse = os.environ.get("ROCK_TOY_RESUMED_RUN_DIR")
    if reuse:
        run_toy_workflow(Path(reuse))
        return Path(reuse), [stage for stage, _ in kill_points(Path(reuse))]
    run_dir = tmp_path_factory.mktemp("toy_resumed") / "toy"
    shutil.copytree(paths.world_dir(toy_run), paths.world_dir(run_dir))
    start = time.time()
    killed = run_toy_workflow_with_kills(run_dir)
    print(f"killed-and-resumed toy workflow: {time.time() - start:.0f} s wall, killed in {killed}")
    return run_dir, killed
