"""``rock gpus N -- COMMAND``: run COMMAND on N GPUs of its own (CUDA_VISIBLE_DEVICES).

On one machine Snakemake's ``--resources gpu=8`` only *counts* GPUs: without this, four parallel
evaluations at tensor-parallel 2 all see every GPU and all land on GPUs 0-1. Every GPU job's shell
goes through this command (workflow/rules/*.smk), which

1. finds the machine's GPU pool: ``ROCK_GPU_SLOTS`` ("8" = devices 0-7; "0,1,4,5"; "4,"), else
   ``CUDA_VISIBLE_DEVICES`` (the user's own restriction), else the ``/dev/nvidia<N>`` devices;
2. takes N free devices of it under file locks (``fcntl.flock``, one file per device in
   ``ROCK_GPU_LOCK_DIR``, default /tmp/rock-gpu-slots, which Apptainer shares with the host), all
   N at once under a pool-wide lock, waiting while fewer are free;
3. sets ``CUDA_VISIBLE_DEVICES`` to them and *execs* COMMAND, which inherits the locked files: the
   kernel frees the devices when that process ends, however it ends (SIGKILL included).

Under SLURM (``SLURM_JOB_ID`` set) the scheduler has already given the job its own devices in
``CUDA_VISIBLE_DEVICES``, numbered from 0 on many clusters: nothing is locked, the command runs as
it is (after checking that the job sees N devices). A cluster that sets no CUDA_VISIBLE_DEVICES
(GPUs not managed as gres, whole nodes) gets the one-machine behaviour above. ``N = 0`` runs the command unchanged.
GPU jobs run with ``HF_HUB_OFFLINE=1`` (unless set): compute nodes are often offline, and the models
are in HF_HOME already (rock/download.py, a submit-host job).
A job asking for GPUs on a machine that shows none fails at once, naming the likely causes
(`--nv` missing, no driver), instead of running on the CPU.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import re
import time
from pathlib import Path

from rock.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = "/tmp/rock-gpu-slots"
#: what to check when a GPU job sees no GPU (also rock.distill.runtime.make_runtime's message)
GPU_FIX = ("run GPU jobs with Apptainer's --nv (--singularity-args=--nv or --profile "
           "workflow/profiles/local-gpu), check `nvidia-smi` (torch 2.14's CUDA 13 build needs an "
           "NVIDIA driver >= 580)")
NO_GPU_HELP = f"no GPU is visible: {GPU_FIX}, or set ROCK_GPU_SLOTS"


def parse_devices(spec: str) -> list[str]:
    """A count or a comma list: "8" -> ["0", ..., "7"]; "0,1,4" -> ["0", "1", "4"]; "4," -> ["4"]."""
    spec = spec.strip()
    if re.fullmatch(r"\d+", spec):
        return [str(i) for i in range(int(spec))]
    return [d.strip() for d in spec.split(",") if d.strip()]


def device_pool(env, dev_dir: Path = Path("/dev")) -> list[str]:
    """The devices jobs on this machine share (see the module docstring for the order)."""
    if env.get("ROCK_GPU_SLOTS") is not None:
        return parse_devices(env["ROCK_GPU_SLOTS"])
    if env.get("CUDA_VISIBLE_DEVICES") is not None:
        return [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    found = [p.name[len("nvidia"):] for p in dev_dir.glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
    return sorted(found, key=int)


def _lock_file(lock_dir: Path, name: str) -> int:
    return os.open(lock_dir / name, os.O_RDWR | os.O_CREAT, 0o666)


def try_acquire(n: int, pool: list[str], lock_dir: Path) -> tuple[list[str], list[int]] | None:
    """N devices of ``pool`` whose lock files were free, and their held file descriptors; or None
    (nothing held) when fewer than N are free. Atomic across processes (pool-wide lock)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    mutex = _lock_file(lock_dir, "pool.lock")
    try:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        got, fds = [], []
        for dev in pool:
            fd = _lock_file(lock_dir, f"gpu{dev}.lock")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            got.append(dev)
            fds.append(fd)
            if len(got) == n:
                return got, fds
        for fd in fds:
            os.close(fd)  # closing the only descriptor releases the flock
        return None
    finally:
        os.close(mutex)


def acquire(n: int, pool: list[str], lock_dir: Path, *, poll_s: float = 0.5,
            timeout_s: float | None = None) -> tuple[list[str], list[int]]:
    """Wait until N devices of ``pool`` are free, then hold them (see :func:`try_acquire`)."""
    if n > len(pool):
        raise ConfigError(f"the job asks for {n} GPUs but this machine's pool has {len(pool)} "
                          f"({','.join(pool) or 'none'}); lower the job's resources gpu or set ROCK_GPU_SLOTS")
    start, warned = time.monotonic(), False
    while True:
        held = try_acquire(n, pool, lock_dir)
        if held:
            return held
        if not warned:
            log.info("waiting for %d free GPUs of %s (locks in %s)", n, ",".join(pool), lock_dir)
            warned = True
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no {n} free GPUs after {timeout_s} s")
        time.sleep(poll_s)


def prepare(n: int, env, lock_dir: Path | None = None) -> dict:
    """The environment COMMAND runs with; holds the devices' locks (inheritable) when it assigns."""
    env = dict(env)
    if n <= 0:
        return env
    # models come from HF_HOME, filled on the submit host (rock download); HF_HUB_OFFLINE=0 opts out
    env.setdefault("HF_HUB_OFFLINE", "1")
    if env.get("SLURM_JOB_ID") and env.get("CUDA_VISIBLE_DEVICES") is not None:
        visible = [d for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
        if len(visible) < n:
            raise ConfigError(f"the SLURM job asks for {n} GPUs but sees {len(visible)} "
                              f"(CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '')!r}): "
                              "the profile must request them (resources gpu; see workflow/profiles/slurm)")
        return env
    pool = device_pool(env)
    if not pool:
        raise ConfigError(f"the job asks for {n} GPUs but {NO_GPU_HELP}")
    lock_dir = Path(lock_dir or env.get("ROCK_GPU_LOCK_DIR") or DEFAULT_LOCK_DIR)
    devices, fds = acquire(n, pool, lock_dir)
    for fd in fds:
        os.set_inheritable(fd, True)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    log.info("CUDA_VISIBLE_DEVICES=%s (pool %s)", env["CUDA_VISIBLE_DEVICES"], ",".join(pool))
    return env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("n", type=int, help="number of GPUs the command gets (the job's resources gpu)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- then the command and its arguments")


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ConfigError("rock gpus N -- COMMAND: no command given")
    env = prepare(args.n, os.environ)
    os.execvpe(command[0], command, env)
    return 0  # not reached
