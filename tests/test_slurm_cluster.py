"""The project's SLURM profile against a real SLURM (issue 15): a one-node cluster on localhost
(tests/slurm_cluster.py: Debian's slurm-wlm 22.05 + munge, started and stopped by this test) runs
the first jobs of a shrunken toy workflow (toy world -> data -> teacher samples) through
workflow/profiles/slurm with containers switched off, the override the profile documents (delete
`software-deployment-method` and `apptainer-args`) and its placeholders filled. Asserted from
`scontrol show job`: every job got the partition, CPUs, memory and time limit its config asks,
one node each, and the outputs landed. A second cluster of two slurmd nodes runs `rock launch
--probe` across both (srun + torchrun c10d, gloo). .ci/run installs slurm-wlm and munge; elsewhere
the tests are skipped, saying why. About 2.5 minutes on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slurm_cluster import PARTITION, LocalSlurm, missing_tools

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = "results/ci-slurm"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_tools()), reason=f"SLURM not installed ({', '.join(missing_tools())} "
                       "missing): apt-get install slurm-wlm munge (.ci/run does)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the local SLURM daemons run as root"),
]


def tiny_toy_config(path: Path) -> dict:
    """The toy config, shrunk to seconds: 5 pretraining steps, a few rows, short answers."""
    cfg = yaml.safe_load((REPO / "tests" / "config_toy" / "config.yaml").read_text())
    cfg["run_dir"] = RUN_DIR
    cfg["models"]["teacher"] = f"{RUN_DIR}/world/teacher"
    cfg["models"]["student"] = f"{RUN_DIR}/world/student"
    toy = cfg["toy"]
    for role in ("teacher", "student"):
        toy[role].update(steps=5, warmup_steps=1)
    toy["tokenizer"]["n_documents"] = 400
    toy["eval"].update(min_margin=-1, max_new_tokens=8, batch_size=8)
    toy["sizes"].update({k: 8 for k in toy["sizes"]})
    toy["sizes"].update(openthoughts=40, openthoughts_other_domains=2)
    cfg["data"]["stage1_slice"] = [0, 8]
    cfg["data"]["stage2_slice"] = [8, 16]
    cfg["teacher_samples"]["max_new_tokens"] = 8
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def ci_profile(directory: Path, configfile: Path) -> Path:
    """workflow/profiles/slurm with its placeholders filled for the local cluster and containers
    off (the documented override); everything else as shipped."""
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    del profile["software-deployment-method"], profile["apptainer-args"]
    profile["default-resources"]["slurm_partition"] = PARTITION
    del profile["default-resources"]["slurm_account"]  # no accounts on this cluster
    for entry in profile["set-resources"].values():
        entry["slurm_partition"] = PARTITION
        entry.pop("gpu_model", None)  # the toy asks for no GPU; this node has none
    profile.update({"configfile": str(configfile), "jobs": 2, "latency-wait": 5,
                    "slurm-init-seconds-before-status-checks": 5,
                    "slurm-logdir": str(directory / "slurm-logs")})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory


@pytest.fixture
def cluster(tmp_path):
    with LocalSlurm(tmp_path / "slurm") as running:
        yield running
    # every daemon this test started is gone
    assert not running.procs


def test_toy_jobs_run_through_the_slurm_profile_with_their_resources(cluster, tmp_path):
    shutil.rmtree(REPO / RUN_DIR, ignore_errors=True)
    cfg = tiny_toy_config(tmp_path / "config.yaml")
    profile = ci_profile(tmp_path / "profile", tmp_path / "config.yaml")
    target = f"{RUN_DIR}/distill/teacher_samples.jsonl"
    env = dict(cluster.env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("HF_HOME", None)  # the toy needs no model cache
    try:
        done = subprocess.run([sys.executable, "-m", "snakemake", "--profile", str(profile), target],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-6000:]
        assert (REPO / target).stat().st_size > 0
        assert (REPO / RUN_DIR / "world" / "teacher" / "config.json").exists()
        jobs = [cluster.job(job_id) for job_id in cluster.job_ids()]
    finally:
        shutil.rmtree(REPO / RUN_DIR, ignore_errors=True)
    by_rule = {}
    for job in jobs:
        assert job["JobState"] == "COMPLETED", job
        by_rule[job["Comment"].split("rule_")[-1].split("_wildcards")[0]] = job
    # the data job is a localrule: it ran on the submit host, not through sbatch
    assert set(by_rule) == {"toy_world", "teacher_samples"}, sorted(by_rule)
    for rule, group in (("toy_world", "toy_world"), ("teacher_samples", "teacher_samples")):
        want, job = cfg["resources"][group], by_rule[rule]
        assert job["Partition"] == PARTITION, job
        assert int(job["NumCPUs"]) == want["threads"], (rule, job["NumCPUs"])
        assert job["MinMemoryNode"] == f"{want['mem_mb']}M", (rule, job["MinMemoryNode"])
        hours, minutes = divmod(want["runtime"], 60)
        assert job["TimeLimit"] == f"{hours:02d}:{minutes:02d}:00", (rule, job["TimeLimit"])
        assert job["NumNodes"] == "1", (rule, job["NumNodes"])


def test_two_nodes_join_one_torchrun_job_through_rock_launch(tmp_path):
    """Two slurmd nodes on this machine (n1, n2): `rock launch --probe` inside a 2-node allocation
    starts one torchrun per node through srun, they meet at the c10d rendezvous on n1 (its
    NodeAddr) and the 2 gloo ranks all-reduce 1 + 1 = 2: the multi-node path of stage 1/2 and
    freeze training, on CPU."""
    import time

    with LocalSlurm(tmp_path / "slurm", nodes=2) as two:
        out = tmp_path / "probe.out"
        env = dict(two.env, PYTHONPATH=str(REPO),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        submit = subprocess.run(
            ["sbatch", "--parsable", "--nodes", "2", "--ntasks", "2", "--ntasks-per-node", "1",
             "-c", "1", "--mem", "2000", "-t", "10", "-o", str(out), "-D", str(REPO), "--wrap",
             f"{sys.executable} -m rock.cli launch --gpus-per-node 1 --probe"],
            env=env, capture_output=True, text=True, check=True)
        job_id = submit.stdout.strip()
        end = time.monotonic() + 300
        while two.job(job_id)["JobState"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            assert time.monotonic() < end, "the 2-node job did not finish in 5 minutes"
            time.sleep(1)
        job = two.job(job_id)
        log = out.read_text()
    assert job["JobState"] == "COMPLETED" and job["NumNodes"] == "2", (job, log[-3000:])
    ranks = sorted(line.split(" on ")[0] for line in log.splitlines() if line.startswith("rank "))
    assert ranks == ["rank 0/2", "rank 1/2"], log[-3000:]
    assert log.count("all_reduce 2") == 2, log[-3000:]
