"""rock launch (rock/launch.py): the training command on 1 node x 4 GPUs, 2 x 8 and 4 x 8 (dry
runs with a fake SLURM allocation), and the global-batch check before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rock import launch
from rock.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
ARGS = ["distill", "stage1", "--config", "config.yaml"]


@pytest.fixture(autouse=True)
def names_are_addresses(monkeypatch):
    """No SLURM here: the rendezvous host is the node's name (node_address is tested below)."""
    monkeypatch.setattr(launch, "node_address", lambda name: name)


def slurm_env(nodes: int, nodelist: str, job_id: str = "4242") -> dict:
    return {"SLURM_JOB_ID": job_id, "SLURM_JOB_NUM_NODES": str(nodes), "SLURM_JOB_NODELIST": nodelist}


def test_one_node_four_gpus_is_a_standalone_torchrun():
    cmd = launch.plan(ARGS, {}, gpus_per_node=4, global_batch=128)
    assert cmd == ["torchrun", "--standalone", "--nproc_per_node", "4", "-m", "rock.cli", *ARGS]
    # a one-node SLURM allocation: the same
    assert launch.plan(ARGS, slurm_env(1, "gpu07"), gpus_per_node=4, global_batch=4) == cmd


def test_one_gpu_or_the_cpu_toy_runs_rock_itself():
    assert launch.plan(ARGS, {}, gpus_per_node=1, global_batch=4) == ["rock", *ARGS]
    assert launch.plan(ARGS, {}, gpus_per_node=0, global_batch=3) == ["rock", *ARGS]


@pytest.mark.parametrize("nodes,nodelist,head", [(2, "gpu[01-02]", "gpu01"),
                                                 (4, "dgx[103,105-107]", "dgx103")])
def test_several_nodes_start_one_torchrun_per_node_with_c10d(nodes, nodelist, head):
    cmd = launch.plan(ARGS, slurm_env(nodes, nodelist), gpus_per_node=8, global_batch=128)
    assert cmd == ["srun", "--overlap", "--nodes", str(nodes), "--ntasks-per-node", "1",
                   "--kill-on-bad-exit=1", "torchrun", "--nnodes", str(nodes), "--nproc_per_node", "8",
                   "--rdzv_backend", "c10d", "--rdzv_endpoint", f"{head}:29500", "--rdzv_id", "4242",
                   "-m", "rock.cli", *ARGS]


def test_stage2_batch_of_4_on_16_ranks_is_a_clear_error():
    """The paper's stage 2 (global batch 4, 4 GPUs) on 2 nodes x 8 GPUs: refused before starting."""
    with pytest.raises(ConfigError, match=r"global_batch=4 sequences cannot be split evenly over 16 ranks "
                                          r"\(2 node\(s\) x 8 GPUs\)"):
        launch.plan(ARGS, slurm_env(2, "gpu[01-02]"), gpus_per_node=8, global_batch=4)
    with pytest.raises(ConfigError, match="over 32 ranks"):
        launch.plan(ARGS, slurm_env(4, "gpu[01-04]"), gpus_per_node=8, global_batch=48)
    launch.check_batch(4, 1, 4)     # the paper's setting: 1 sequence per rank
    launch.check_batch(128, 4, 8)   # stage 1 on 32 ranks: 4 each


def test_first_host_of_slurm_node_lists():
    assert launch.first_host("node7") == "node7"
    assert launch.first_host("gpu[03-04,07],cpu1") == "gpu03"
    assert launch.first_host("a-b[9,10]") == "a-b9"


def test_cli_dry_run_prints_the_command():
    env = dict(os.environ, PYTHONPATH=str(REPO), **slurm_env(2, "gpu[01-02]", "77"))
    done = subprocess.run([sys.executable, "-m", "rock.cli", "launch", "--gpus-per-node", "8",
                           "--global-batch", "128", "--dry-run", "--", *ARGS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("srun --overlap --nodes 2 ") and "--rdzv_endpoint gpu01:29500" in done.stdout
    env["SLURM_JOB_NUM_NODES"] = "2"
    bad = subprocess.run([sys.executable, "-m", "rock.cli", "launch", "--gpus-per-node", "8",
                          "--global-batch", "4", "--", *ARGS], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "cannot be split evenly over 16 ranks" in bad.stderr


def test_rendezvous_host_is_the_nodes_slurm_address(tmp_path, monkeypatch):
    """scontrol's NodeAddr (what SLURM itself reaches the node at), else the name."""
    monkeypatch.undo()
    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\necho \"NodeName=$4 Arch=x86_64 NodeAddr=10.1.2.3 NodeHostName=$4\"\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert launch.node_address("gpu01") == "10.1.2.3"
    fake.write_text("#!/bin/sh\nexit 1\n")
    assert launch.node_address("gpu01") == "gpu01"
