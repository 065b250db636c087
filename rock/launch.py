"""``rock launch``: start a distributed training job (stage 1, stage 2, freeze training) on one node
or on several, with the same shell line in the workflow.

    rock launch --gpus-per-node 4 --global-batch 4 -- distill stage2 --config config.yaml ...
    rock launch --gpus-per-node 8 --probe     # all-reduce on every rank: test the allocation

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
import socket
import subprocess

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


def node_address(name: str) -> str:
    """The address SLURM reaches node ``name`` at (``scontrol show node``'s NodeAddr; usually the
    name itself), for the rendezvous endpoint; the name when scontrol cannot tell."""
    if shutil.which("scontrol") is None:
        return name
    done = subprocess.run(["scontrol", "show", "node", "-o", name], capture_output=True, text=True)
    m = re.search(r"\bNodeAddr=(\S+)", done.stdout)
    return m.group(1) if done.returncode == 0 and m else name


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
            "--rdzv_backend", "c10d", "--rdzv_endpoint", f"{node_address(first_host(nodelist))}:{port}",
            "--rdzv_id", str(job_id), "-m", "rock.cli", *args]


def plan(args: list[str], env, *, gpus_per_node: int, global_batch: int) -> list[str]:
    """Check the batch against the allocation in ``env`` and return the command to run."""
    nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    check_batch(global_batch, nodes, gpus_per_node)
    return command(args, nodes=nodes, gpus_per_node=gpus_per_node, job_id=env.get("SLURM_JOB_ID"),
                   nodelist=env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST"))


def probe_rank() -> int:
    """One rank of ``rock launch --probe``: join the process group (NCCL on GPU, gloo on CPU),
    all-reduce a 1 and print what every rank sees: a check of the rendezvous, the network and
    NCCL (with NCCL_DEBUG=INFO) before a multi-day job."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    total = torch.ones(1, device=device)
    dist.all_reduce(total)
    print(f"rank {rank}/{world} on {socket.gethostname()} ({device}): all_reduce {int(total.item())}",
          flush=True)
    dist.destroy_process_group()
    return 0 if int(total.item()) == world else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus-per-node", type=int, default=1, help="ranks per node (GPUs)")
    parser.add_argument("--global-batch", type=int, default=None,
                        help="sequences per optimizer step (must divide over the ranks)")
    parser.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    parser.add_argument("--probe", action="store_true",
                        help="instead of a stage, run an all-reduce on every rank (rendezvous/NCCL check)")
    parser.add_argument("--probe-rank", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("rock_args", nargs=argparse.REMAINDER, help="-- then `rock` arguments")


def run(args: argparse.Namespace) -> int:
    if args.probe_rank:
        return probe_rank()
    rock_args = ["launch", "--probe-rank"] if args.probe else list(args.rock_args)
    if rock_args[:1] == ["--"]:
        rock_args = rock_args[1:]
    if args.global_batch is None and not args.probe:
        raise ConfigError("rock launch: --global-batch is required to run a stage")
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
    batch = args.global_batch or nodes * max(1, args.gpus_per_node)
    cmd = plan(rock_args, os.environ, gpus_per_node=args.gpus_per_node, global_batch=batch)
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
