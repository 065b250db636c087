"""A one-node SLURM cluster on localhost for tests (Debian's slurm-wlm 22.05 + munge; see
/work/shared/SLURM-NOTES.md): `munged`, `slurmctld` and `slurmd` in the foreground as child
processes of the test, configured by /etc/slurm/slurm.conf (written here, removed on exit; a
machine that has one already is left alone: :func:`missing_tools` names it), and stopped by their
PIDs. It must be the default path: the jobstep plugin (snakemake-executor-plugin-slurm-jobstep
0.6.1) drops every SLURM_* variable, SLURM_CONF included, before its `srun` inside the job. No accounting daemon: job status
comes from squeue (MinJobAge 300 s keeps finished jobs visible to `squeue`/`scontrol` for 5
minutes), as the project's SLURM profile asks.

    with LocalSlurm(tmp_path) as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PARTITION = "debug"
REAL_MEMORY_MB = 20000
DAEMONS = ("munged", "slurmctld", "slurmd")
CONF = Path("/etc/slurm/slurm.conf")


def missing_tools() -> list[str]:
    """What keeps this machine from hosting the test cluster (empty: nothing)."""
    missing = [tool for tool in (*DAEMONS, "sinfo", "sbatch", "squeue", "scontrol")
               if shutil.which(tool) is None]
    if CONF.exists():
        missing.append(f"a free {CONF} (this machine has a SLURM config of its own)")
    return missing


def node_names(host: str, nodes: int) -> list[str]:
    """One node: this host's name; several: n1..nN, each a slurmd of its own on this host."""
    return [host] if nodes == 1 else [f"n{i}" for i in range(1, nodes + 1)]


def slurm_conf(state: Path, host: str, cpus: int, nodes: int = 1) -> str:
    """slurm.conf of ``nodes`` nodes of ``cpus`` CPUs (several nodes: one slurmd each, own port)."""
    names = node_names(host, nodes)
    node_lines = [f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={17001 + i} "
                  f"CPUs={cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket={cpus} ThreadsPerCore=1 "
                  f"RealMemory={REAL_MEMORY_MB // nodes} State=UNKNOWN" for i, name in enumerate(names)]
    return "\n".join([
        "ClusterName=rockci",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CryptoType=crypto/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
        "ReturnToService=2", "MinJobAge=300",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        f"StateSaveLocation={state}/ctld", f"SlurmdSpoolDir={state}/d-%n",
        f"SlurmctldPidFile={state}/slurmctld.pid", f"SlurmdPidFile={state}/slurmd-%n.pid",
        f"SlurmctldLogFile={state}/slurmctld.log", f"SlurmdLogFile={state}/slurmd-%n.log",
        "SlurmctldPort=16817",
        *node_lines,
        f"PartitionName={PARTITION} Nodes={','.join(names)} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


class LocalSlurm:
    """Start on enter, stop every daemon it started on exit (SIGTERM, then SIGKILL)."""

    def __init__(self, state: Path, cpus: int | None = None, nodes: int = 1):
        self.state = Path(state)
        self.host = socket.gethostname().split(".")[0]
        self.nodes = nodes
        self.cpus = cpus or max(1, min(os.cpu_count() or 1, 2) // nodes)
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ, SLURM_CONF=str(CONF))

    def __enter__(self) -> "LocalSlurm":
        (self.state / "ctld").mkdir(parents=True, exist_ok=True)
        if CONF.exists():
            raise RuntimeError(f"{CONF} exists: this machine has a SLURM of its own")
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(slurm_conf(self.state, self.host, self.cpus, self.nodes))
        try:
            self._start_munge()
            self._start(["slurmctld", "-D", "-i"], "slurmctld.out")
            for name in node_names(self.host, self.nodes):
                self._start(["slurmd", "-D", "-N", name], f"slurmd-{name}.out")
            self.wait_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self, cmd: list[str], log: str) -> None:
        out = open(self.state / log, "w")
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT))

    def _start_munge(self) -> None:
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        if Path("/run/munge/munge.socket.2").exists():
            probe = subprocess.run(["munge", "-n"], capture_output=True)
            if probe.returncode == 0:
                return  # a munged already runs on this machine: use it, do not stop it
        self._start(["munged", "-F", "--force"], "munged.out")
        for _ in range(50):
            if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("munged did not start: " + (self.state / "munged.out").read_text())

    def wait_idle(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            done = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=self.env, capture_output=True,
                                  text=True)
            states = done.stdout.split()
            if len(states) == self.nodes and set(states) <= {"idle", "mix", "alloc"}:
                return
            time.sleep(0.5)
        logs = {p.name: p.read_text()[-2000:] for p in self.state.glob("*.log")}
        raise RuntimeError(f"the SLURM node did not come up: sinfo {done.stdout!r} {done.stderr!r}; {logs}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        CONF.unlink(missing_ok=True)

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as key -> value (finished jobs stay MinJobAge seconds)."""
        done = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=self.env,
                              capture_output=True, text=True, check=True)
        fields = {}
        for item in done.stdout.split():
            if "=" in item:
                key, value = item.split("=", 1)
                fields[key] = value
        return fields

    def job_ids(self) -> list[str]:
        done = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i"], env=self.env,
                              capture_output=True, text=True, check=True)
        return sorted(done.stdout.split(), key=int)
