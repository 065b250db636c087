"""Provenance of a run for the report: config, package versions, git commit, hardware, seeds and
wall-clock per stage (lm-eval's result files carry ``configs``, ``versions``, ``git_hash``; so do
ours).

Everything is read, nothing is required: a missing source gives an empty entry, never an error.
Hardware and versions describe the machine that renders the report; on a cluster the stages ran
elsewhere, and the per-stage records (Snakemake ``benchmark:`` files, stage summaries) are the
better witness, so both are shown.

Wall-clock per stage comes from, in order of preference:

* Snakemake benchmark files ``{run_dir}/benchmarks/**/*.tsv`` (columns ``s``, ``max_rss``, ...),
  the ``benchmark:`` directive of each rule;
* timing fields (``*wall*``, ``*seconds*``, ``*_s``) of the stage summaries and ``world.json``;
* the log files ``{run_dir}/logs/**/*.log`` (listed with size and modification time only).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

#: distributions whose versions the report shows (absent ones are listed as "not installed")
PACKAGES = ("rock", "torch", "transformers", "tokenizers", "lm_eval", "vllm", "snakemake",
            "numpy", "pandas", "scipy", "pyarrow", "matplotlib", "math-verify", "datasets",
            "accelerate")
_TIMING_KEY = re.compile(r"(wall|seconds|elapsed|duration|_s$|_sec$|time_s)", re.I)
_RATE_KEY = re.compile(r"(per_s|per_sec|per_second|_per_)", re.I)  # rates, not durations
_SEED_KEY = re.compile(r"(^|[._])seeds?$", re.I)


def git_info(repo: str | Path = ".") -> dict:
    """Commit, branch and dirty flag of the checkout (read-only git commands); {} outside git."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                               timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "branch": git("rev-parse", "--abbrev-ref", "HEAD") or "",
            "dirty": bool(status)}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def hardware() -> dict:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count()}
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except (OSError, ValueError):
        pass
    gpus = []
    if shutil.which("nvidia-smi"):
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            gpus = [g.strip() for g in r.stdout.splitlines() if g.strip()] if r.returncode == 0 else []
        except (OSError, subprocess.TimeoutExpired):
            pass
    info["gpus"] = gpus
    cores = info.get("cpu_affinity", info["cpu_count"])
    info["summary"] = (f"{info.get('cpu_model', info['machine'])}, {cores} cores usable, "
                       f"{info.get('memory_gib', '?')} GiB RAM, "
                       + (f"{len(gpus)} GPU(s): {gpus[0]}" if gpus else "no GPU"))
    return info


def config_info(config_path: str | Path | None) -> dict:
    if not config_path:
        return {}
    p = Path(config_path)
    try:
        text = p.read_text()
    except OSError as err:
        return {"path": str(p), "error": str(err)}
    return {"path": str(p), "sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text}


def _json_files(run_dir: Path) -> list[Path]:
    from rock.report.golden import GOLDEN_SOURCES

    pats = GOLDEN_SOURCES
    seen: list[Path] = []
    for pat in pats:
        for f in sorted(run_dir.glob(pat)):
            if f.is_file() and f not in seen:
                seen.append(f)
    return seen


def _walk(obj: Any, prefix: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, obj


def seeds(run_dir: Path, config: dict | None) -> list[dict]:
    """Every seed the run names: the config's (any key named ``seed``) and the artifacts'."""
    out = []
    for key, v in _walk(config or {}):
        if _SEED_KEY.search(key):
            out.append({"source": "config", "key": key, "value": v})
    for f in _json_files(run_dir):
        try:
            obj = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        for key, v in _walk(obj):
            if _SEED_KEY.search(key):
                out.append({"source": str(f.relative_to(run_dir)), "key": key, "value": v})
    return out


def job_timings(run_dir: str | Path) -> list[dict]:
    """One record per Snakemake ``benchmark:`` file of the run: ``{job, source, seconds, cpu_s,
    max_rss_mb}`` (``job`` = the file's path under the benchmarks directory, e.g.
    ``evaluate/teacher``; its first part is the rule). A rerun with --benchmark-repeats writes several
    rows: the last one counts. Unreadable files are skipped."""
    import pandas as pd

    from rock import paths

    bdir = paths.benchmarks_dir(run_dir)
    out = []
    for f in sorted(bdir.rglob("*.tsv")) if bdir.is_dir() else []:
        try:
            t = pd.read_csv(f, sep="\t")
        except (OSError, ValueError, pd.errors.EmptyDataError):
            continue
        if t.empty or "s" not in t:
            continue
        last = t.iloc[-1]
        out.append({"job": str(f.relative_to(bdir).with_suffix("")), "source": str(f.relative_to(run_dir)),
                    "seconds": float(last["s"]), "cpu_s": _float(last.get("cpu_time")),
                    "max_rss_mb": _float(last.get("max_rss"))})
    return out


def wall_clock(run_dir: Path, jobs: list[dict] | None = None) -> list[dict]:
    """Rows ``{stage, source, seconds, max_rss_mb}`` from benchmark files (``jobs``: their
    :func:`job_timings`, read here if not given) and summary timings."""
    jobs = job_timings(run_dir) if jobs is None else jobs
    rows: list[dict] = [{"stage": j["job"], "source": j["source"], "seconds": j["seconds"],
                         "max_rss_mb": j["max_rss_mb"]} for j in jobs]
    for f in _json_files(run_dir):
        try:
            obj = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        stage = str(f.relative_to(run_dir).parent)
        for key, v in _walk(obj):
            leaf = key.split(".")[-1]
            if _TIMING_KEY.search(leaf) and not _RATE_KEY.search(leaf) \
                    and isinstance(v, (int, float)) and not isinstance(v, bool):
                rows.append({"stage": f"{stage}:{key}", "source": str(f.relative_to(run_dir)),
                             "seconds": float(v), "max_rss_mb": None})
    return rows


def stage_times(run_dir: str | Path, jobs: list[dict] | None = None) -> "pd.DataFrame":
    """Wall-clock per stage of a workflow run: one row per rule (the first path part of its
    Snakemake ``benchmark:`` files), with ``jobs``, ``wall_s`` (sum over its jobs), ``max_job_s``,
    ``cpu_s`` and ``max_rss_mb``, in order of ``wall_s``; a last row ``total`` sums the jobs (jobs
    that ran side by side count twice, so it exceeds the run's elapsed time on several cores).
    ``jobs``: the run's :func:`job_timings`, read here if not given."""
    import pandas as pd

    jobs = job_timings(run_dir) if jobs is None else jobs
    records = [{"stage": j["job"].split("/")[0], "s": j["seconds"], "cpu": j["cpu_s"], "rss": j["max_rss_mb"]}
               for j in jobs]
    cols = ["stage", "jobs", "wall_s", "max_job_s", "cpu_s", "max_rss_mb"]
    if not records:
        return pd.DataFrame(columns=cols)
    table = (pd.DataFrame(records).groupby("stage")
             .agg(jobs=("s", "size"), wall_s=("s", "sum"), max_job_s=("s", "max"), cpu_s=("cpu", "sum"),
                  max_rss_mb=("rss", "max"))
             .sort_values("wall_s", ascending=False).reset_index())
    total = {"stage": "total", "jobs": int(table["jobs"].sum()), "wall_s": table["wall_s"].sum(),
             "max_job_s": table["max_job_s"].max(), "cpu_s": table["cpu_s"].sum(),
             "max_rss_mb": table["max_rss_mb"].max()}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)[cols].round(1)


def _float(x) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def logs(run_dir: Path) -> list[dict]:
    from rock import paths

    ldir = paths.log_file(run_dir, "x").parent
    out = []
    for f in sorted(ldir.rglob("*.log")) if ldir.is_dir() else []:
        st = f.stat()
        out.append({"log": str(f.relative_to(run_dir)), "bytes": st.st_size,
                    "modified_utc": _dt.datetime.fromtimestamp(st.st_mtime, _dt.timezone.utc)
                    .strftime("%Y-%m-%d %H:%M:%S")})
    return out


def collect(run_dir: str | Path, config_path: str | Path | None = None, config: dict | None = None,
            repo: str | Path = ".") -> dict:
    """All provenance of ``run_dir`` as one JSON-serialisable dict."""
    run_dir = Path(run_dir)
    jobs = job_timings(run_dir)
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "run_dir": str(run_dir),
        "git": git_info(repo),
        "versions": versions(),
        "hardware": hardware(),
        "config": config_info(config_path),
        "seeds": seeds(run_dir, config),
        "stage_times": stage_times(run_dir, jobs).to_dict("records"),
        "wall_clock": wall_clock(run_dir, jobs),
        "logs": logs(run_dir),
    }
