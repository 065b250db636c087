"""`rock gpus N -- COMMAND` (rock.gpu_slots) on CPU with a fake pool of 8 GPUs: parallel jobs of
1, 2 and 4 GPUs get disjoint devices, a job waits while too few are free, and a SIGKILLed job's
devices are free again at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rock import gpu_slots
from rock.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def start_job(n: int, out: Path, lock_dir: Path, pool: str = "8") -> subprocess.Popen:
    """A fake GPU job: writes the devices it was given, then sleeps until killed."""
    env = dict(os.environ, ROCK_GPU_SLOTS=pool, ROCK_GPU_LOCK_DIR=str(lock_dir), PYTHONPATH=str(REPO))
    env.pop("SLURM_JOB_ID", None)
    cmd = [sys.executable, "-m", "rock.cli", "gpus", str(n), "--",
           "sh", "-c", f'echo "$CUDA_VISIBLE_DEVICES" > {out}.tmp && mv {out}.tmp {out} && exec sleep 600']
    return subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)


def devices(out: Path, timeout: float = 30.0) -> list[str] | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if out.exists():
            return out.read_text().strip().split(",")
        time.sleep(0.05)
    return None


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_parallel_jobs_get_disjoint_devices_and_kills_free_them(tmp_path):
    lock_dir = tmp_path / "locks"
    sizes = [4, 2, 1, 1]                        # 8 GPUs in all: every job starts at once
    jobs = [start_job(n, tmp_path / f"job{i}", lock_dir) for i, n in enumerate(sizes)]
    waiting = None
    try:
        got = [devices(tmp_path / f"job{i}") for i in range(len(sizes))]
        assert [len(g) for g in got] == sizes
        flat = [d for g in got for d in g]
        assert sorted(flat, key=int) == [str(i) for i in range(8)]  # disjoint, all 8 used
        # a ninth GPU is not there: a 2-GPU job waits ...
        waiting = start_job(2, tmp_path / "waiting", lock_dir)
        assert devices(tmp_path / "waiting", timeout=2.0) is None
        # ... until the 4-GPU job is SIGKILLed; it then gets 2 of the 4 devices freed by the kill
        kill(jobs[0])
        late = devices(tmp_path / "waiting")
        assert late is not None and len(late) == 2 and set(late) <= set(got[0])
    finally:
        for proc in jobs[1:] + ([waiting] if waiting else []):
            kill(proc)
    # every job killed: all 8 devices are free again (held by this process, then released)
    held = gpu_slots.try_acquire(8, [str(i) for i in range(8)], lock_dir)
    assert held is not None and held[0] == [str(i) for i in range(8)]
    for fd in held[1]:
        os.close(fd)


def test_try_acquire_holds_nothing_when_too_few_are_free(tmp_path):
    pool = ["0", "1", "2"]
    first = gpu_slots.try_acquire(2, pool, tmp_path)
    assert first[0] == ["0", "1"]
    assert gpu_slots.try_acquire(2, pool, tmp_path) is None    # only "2" free
    only = gpu_slots.try_acquire(1, pool, tmp_path)             # and it was not left locked
    assert only[0] == ["2"]
    for fd in first[1] + only[1]:
        os.close(fd)


def test_pool_order_slots_then_visible_devices_then_dev_nodes(tmp_path):
    for name in ("nvidia0", "nvidia1", "nvidia10", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert gpu_slots.device_pool({}, tmp_path) == ["0", "1", "10"]
    assert gpu_slots.device_pool({"CUDA_VISIBLE_DEVICES": "2,3"}, tmp_path) == ["2", "3"]
    assert gpu_slots.device_pool({"ROCK_GPU_SLOTS": "4", "CUDA_VISIBLE_DEVICES": "2"}, tmp_path) \
        == ["0", "1", "2", "3"]
    assert gpu_slots.parse_devices("0,1,4,5") == ["0", "1", "4", "5"]
    assert gpu_slots.parse_devices("5,") == ["5"]
    assert gpu_slots.device_pool({}, tmp_path / "empty") == []


def test_no_gpu_fails_at_once_with_the_causes(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_slots, "device_pool", lambda env: [])
    with pytest.raises(ConfigError, match=r"asks for 2 GPUs but no GPU is visible.*--nv.*>= 580"):
        gpu_slots.prepare(2, {}, tmp_path)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"asks for 4 GPUs but this machine's pool has 2"):
        gpu_slots.prepare(4, {"ROCK_GPU_SLOTS": "2"}, tmp_path)


def test_slurm_jobs_keep_their_devices_and_zero_gpus_change_nothing(tmp_path):
    env = {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert gpu_slots.prepare(2, env, tmp_path) == {**env, "HF_HUB_OFFLINE": "1"}  # the scheduler's devices
    assert not any(tmp_path.iterdir())                              # nothing locked
    with pytest.raises(ConfigError, match=r"SLURM job asks for 4 GPUs but sees 2"):
        gpu_slots.prepare(4, env, tmp_path)
    assert gpu_slots.prepare(0, {"A": "1"}, tmp_path) == {"A": "1"}
    # a cluster whose SLURM does not manage GPUs (no CUDA_VISIBLE_DEVICES): the machine's pool
    unmanaged = gpu_slots.prepare(1, {"SLURM_JOB_ID": "8", "ROCK_GPU_SLOTS": "2"}, tmp_path)
    assert unmanaged["CUDA_VISIBLE_DEVICES"] == "0"


def test_command_line_passes_the_command_unchanged(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), ROCK_GPU_SLOTS="2", ROCK_GPU_LOCK_DIR=str(tmp_path))
    env.pop("SLURM_JOB_ID", None)
    env.pop("HF_HUB_OFFLINE", None)
    cmd = [sys.executable, "-m", "rock.cli", "gpus", "2", "--", "sh", "-c",
           'echo "$CUDA_VISIBLE_DEVICES $HF_HUB_OFFLINE $*"', "sh", "--config", "x y"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0,1 1 --config x y"   # GPU jobs read HF_HOME offline
    env["HF_HUB_OFFLINE"] = "0"                          # unless the user opts out
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "0,1 0 --config x y"


# ------------------------------------------------------------------------------------------------
# no silent CPU fallback: device "cuda" without a GPU fails at once, also under torchrun
# ------------------------------------------------------------------------------------------------

def test_paper_config_asks_for_cuda_everywhere():
    import yaml

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for section in ("teacher_samples", "stage1", "stage2", "stats"):
        assert cfg[section]["device"] == "cuda", section


@pytest.mark.parametrize("env", [{}, {"LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "RANK": "0",
                                     "WORLD_SIZE": "1", "MASTER_PORT": "29511"}],
                         ids=["one-process", "torchrun"])
def test_cuda_without_gpu_fails_before_any_work(env, monkeypatch):
    import torch

    from rock.distill import trainer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device 'cuda' requested but torch .* sees no GPU.*--nv.*>= 580"):
        trainer.make_runtime("cuda", env=env)
    assert not torch.distributed.is_initialized()   # failed before joining a (gloo) process group


def test_torchrun_rank_without_gpu_exits_with_the_message(tmp_path):
    """A real torchrun launch (1 process, CPU) of `rock distill stage1` with device cuda: exit 2 and
    the clear error, not a CPU (gloo) run."""
    import yaml

    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = yaml.safe_load((REPO / "tests" / "config_toy" / "config.yaml").read_text())
    cfg["stage1"]["device"] = "cuda"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "1", "-m", "rock.cli",
                           "distill", "stage1", "--config", str(path), "--student", "x", "--teacher", "y",
                           "--samples", str(tmp_path / "s.jsonl"), "--out-dir", str(tmp_path / "out")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "device 'cuda' requested but torch" in done.stderr, done.stderr[-3000:]
