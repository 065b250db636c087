"""``rock launch``: start a distributed training job (stage 1, stage 2, freeze training) on one node
or on several, with the same shell line in the workflow.

    rock launch --gpus-per-node 4 --global-batch 4 -- distill stage2 --config config.yaml ...

* 1 GPU: ``rock <args>``; several GPUs on one node: ``torchrun --standalone --nproc_per_node G``
  (Appendix C: 4x H100, FSDP2), both on devices of the job's own (rock.gpu_slots).
* N > 1 nodes (a SLURM allocation with ``nodes: N``, SLURM_JOB_NUM_NODES): one torchrun per node
  through ``srun --overlap --nodes N --ntasks-per-node 1``, joined by a c10d rendezvous on the first node
  (``--rdzv_backend c10d --rdzv_endpoint <first node>:29500 --rdzv_id <job id>``). srun is a host
  program: run such jobs outside the image (``--sdm conda``), or with the host's SLURM bound into it.

Before anything starts, the global batch must split evenly over the ranks (world = nodes x GPUs per
node): every rank takes an equal share of each optimizer step's sequences. The paper's stage 2
(global batch 4 on 4 GPUs) cannot run on 16 ranks without changing the paper's batch, so that is a
clear error here, not a silent change of the recipe.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil

from rock import gpu_slots
from rock.errors import ConfigError

RDZV_PORT = 29500


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: "gpu[03-04,07],cpu1" -> "gpu03"; "node7" -> "node7"."""
    head = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if not head:
        raise ConfigError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = head.group(1), head.group(3)
    if not ranges:
        return prefix
    return prefix + re.split(r"[-,]", ranges)[0]


def check_batch(global_batch: int, nodes: int, gpus_per_node: int) -> None:
    world = nodes * max(1, gpus_per_node)
    if global_batch % world:
        raise ConfigError(
            f"global_batch={global_batch} sequences cannot be split evenly over {world} ranks "
            f"({nodes} node(s) x {gpus_per_node} GPUs): every rank takes global_batch / ranks "
            f"sequences per optimizer step. Use a number of ranks that divides {global_batch}, or "
            f"set a global_batch that is a multiple of {world} (a change of the paper's recipe)")


def command(args: list[str], *, nodes: int, gpus_per_node: int, job_id: str | None = None,
            nodelist: str | None = None, port: int = RDZV_PORT) -> list[str]:
    """The command that runs ``rock <args>`` on ``nodes`` x ``gpus_per_node`` ranks."""
    if nodes <= 1:
        if gpus_per_node <= 1:
            return ["rock", *args]
        return ["torchrun", "--standalone", "--nproc_per_node", str(gpus_per_node), "-m", "rock.cli", *args]
    if not job_id or not nodelist:
        raise ConfigError(f"{nodes} nodes need a SLURM allocation (SLURM_JOB_ID, SLURM_JOB_NODELIST)")
    # --overlap: the Snakemake job itself already runs as a step of this allocation (jobstep plugin)
    return ["srun", "--overlap", "--nodes", str(nodes), "--ntasks-per-node", "1", "--kill-on-bad-exit=1",
            "torchrun", "--nnodes", str(nodes), "--nproc_per_node", str(gpus_per_node),
            "--rdzv_backend", "c10d", "--rdzv_endpoint", f"{first_host(nodelist)}:{port}",
            "--rdzv_id", str(job_id), "-m", "rock.cli", *args]


def plan(args: list[str], env, *, gpus_per_node: int, global_batch: int) -> list[str]:
    """Check the batch against the allocation in ``env`` and return the command to run."""
    nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    check_batch(global_batch, nodes, gpus_per_node)
    return command(args, nodes=nodes, gpus_per_node=gpus_per_node, job_id=env.get("SLURM_JOB_ID"),
                   nodelist=env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus-per-node", type=int, required=True, help="ranks per node (GPUs)")
    parser.add_argument("--global-batch", type=int, required=True,
                        help="sequences per optimizer step (must divide over the ranks)")
    parser.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    parser.add_argument("rock_args", nargs=argparse.REMAINDER, help="-- then `rock` arguments")


def run(args: argparse.Namespace) -> int:
    rock_args = list(args.rock_args)
    if rock_args[:1] == ["--"]:
        rock_args = rock_args[1:]
    cmd = plan(rock_args, os.environ, gpus_per_node=args.gpus_per_node, global_batch=args.global_batch)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    if cmd[0] == "srun" and shutil.which("srun") is None:
        raise ConfigError("a multi-node job needs `srun` (not found: inside an image?): run the "
                          "training jobs with --sdm conda, or bind the host's SLURM into the image")
    # one node: this job's own devices (rock gpus); several: SLURM assigns each node's devices
    env = gpu_slots.prepare(args.gpus_per_node if cmd[0] != "srun" else 0, os.environ)
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached
