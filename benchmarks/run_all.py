"""Run every performance benchmark (``benchmarks/bench_*.py``) and print one table of ratios
against their targets.

    python benchmarks/run_all.py                      # all of them, one after the other
    python benchmarks/run_all.py --only bench_kl      # some of them (name with or without .py)
    python benchmarks/run_all.py --list               # what exists
    python benchmarks/run_all.py --json results/benchmarks.json   # also keep the table as JSON
    python benchmarks/run_all.py --tiny               # each script's small mode (seconds to a minute)

Each script runs in its own process (so one crash or memory blow-up cannot take the others down)
with ``ROCK_BENCH_RESULT`` pointing at a file where it writes its results by the protocol of
``benchmarks/protocol.py`` (see benchmarks/README.md). A script that writes no result file is
still summarised: the runner reads its printed ``ratio ...: 12.3x ... (target >= 10x)`` lines.
Benchmarks run one at a time, as the machine's cores are shared.

Exit status: 0 when every result meets its target (or is skipped, with a reason, through
``protocol.skip``), 1 when one misses it, crashes or reports nothing, 2 on a usage error (e.g. an
unknown benchmark name).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from protocol import ENV, REQUIRED  # noqa: E402

#: "ratio (total wall-clock, 10 sets): 12.3x   (target >= 10x)" -> measured 12.3, >=, 10
_PRINTED = re.compile(r"^\s*ratio\b(?P<label>[^:]*):\s*(?P<measured>[\d.]+(?:e[-+]?\d+)?)\s*x?"
                      r".*?target\s*(?P<dir>>=|<=|at least|at most)\s*(?P<target>[\d.]+(?:e[-+]?\d+)?)",
                      re.I | re.M)
DEFAULT_TIMEOUT_S = 3600
#: --tiny: the arguments of each script's small mode (a script not named here runs unchanged)
TINY_ARGS = {
    "bench_kl": ["--positions", "256", "--vocab", "8192", "--repeats", "1"],
    "bench_detect": ["--quick"],
    "bench_train_step": ["--size", "tiny", "--steps", "2"],
    "bench_suppression": ["--sets", "2", "--cli-runs", "1", "--limit", "2", "--max-gen-toks", "4"],
    "bench_opd_step": ["--steps", "1", "--max-new-tokens", "16"],
}


def discover(directory: Path = HERE) -> list[Path]:
    return sorted(p for p in directory.glob("bench_*.py") if p.is_file())


def parse_printed(output: str, bench: str) -> list[dict]:
    """Results from a script's printed ratio lines (for scripts that write no result file)."""
    out = []
    for m in _PRINTED.finditer(output):
        direction = ">=" if m["dir"].lower() in (">=", "at least") else "<="
        measured, target = float(m["measured"]), float(m["target"])
        ratio = measured / target if direction == ">=" else (target / measured if measured else math.inf)
        label = m["label"].strip(" ()") or "ratio"
        out.append({"name": f"{bench}: {label}", "measured": measured, "target": target,
                    "ratio": ratio, "passed": ratio >= 1.0, "direction": direction, "unit": "x",
                    "note": "parsed from printed output"})
    return out


def is_skip(rec: dict) -> bool:
    return "skipped" in rec and "measured" not in rec


def run_one(script: Path, timeout: int, extra_args: list[str]) -> dict:
    """Run one benchmark; returns ``{bench, seconds, returncode, results, error, tail}``."""
    with tempfile.TemporaryDirectory(prefix="rock-bench-") as tmp:
        result_file = Path(tmp) / "result.json"
        env = dict(os.environ, **{ENV: str(result_file)})
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(script), *extra_args], capture_output=True,
                                  text=True, env=env, timeout=timeout, cwd=HERE.parent)
            rc, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            rc = None
            output = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) \
                else (err.stdout or "")
        seconds = time.perf_counter() - t0
        results, error = [], ""
        if result_file.is_file() and result_file.stat().st_size:
            try:
                data = json.loads(result_file.read_text())
                results = data if isinstance(data, list) else [data]
                bad = [r for r in results if not is_skip(r) and not all(k in r for k in REQUIRED)]
                if bad:
                    error = f"result without {', '.join(REQUIRED)}: {bad[0]}"
            except ValueError as err:
                error = f"unreadable result file: {err}"
        if not results:
            results = parse_printed(output, script.stem)
    if rc is None:
        error = f"timed out after {timeout} s"
    elif rc != 0:
        error = error or f"exit status {rc}"
    elif not results:
        error = error or "reported no result (no ROCK_BENCH_RESULT file, no 'ratio ... target' line)"
    return {"bench": script.stem, "seconds": seconds, "returncode": rc, "results": results,
            "error": error, "tail": "\n".join(output.strip().splitlines()[-15:])}


def table(runs: list[dict]) -> str:
    head = f"{'benchmark':<28} {'result':<44} {'measured':>10} {'target':>10} {'ratio':>7} {'ok':>4} {'s':>7}"
    lines = [head, "-" * len(head)]
    for r in runs:
        if r["error"] and not r["results"]:
            lines.append(f"{r['bench']:<28} {'ERROR: ' + r['error']:<44} {'':>10} {'':>10} {'':>7} "
                         f"{'no':>4} {r['seconds']:>7.1f}")
            continue
        for i, res in enumerate(r["results"]):
            if is_skip(res):
                secs = f"{r['seconds']:>7.1f}" if i == 0 else " " * 7
                lines.append(f"{r['bench'] if i == 0 else '':<28} {str(res['name'])[:44]:<44} "
                             f"SKIPPED: {res['skipped']}   {secs}")
                continue
            target = f"{res.get('direction', '>=')}{res['target']:g}"
            ok = "yes" if res["passed"] and not r["error"] else "no"
            secs = f"{r['seconds']:>7.1f}" if i == 0 else " " * 7
            lines.append(f"{r['bench'] if i == 0 else '':<28} {str(res['name'])[:44]:<44} "
                         f"{res['measured']:>10.4g} {target:>10} {res['ratio']:>7.2f} {ok:>4} {secs}")
        if r["error"]:
            lines.append(f"{'':<28} ERROR: {r['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", metavar="NAME", help="benchmarks to run (bench_<x>[.py])")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds per benchmark")
    p.add_argument("--json", type=Path, help="also write the summary as JSON here")
    p.add_argument("--dir", type=Path, default=HERE, help="directory of the bench_*.py scripts")
    p.add_argument("--arg", action="append", default=[], metavar="ARG",
                   help="extra argument passed to every benchmark (repeatable)")
    p.add_argument("--tiny", action="store_true",
                   help="run each script in its small mode (TINY_ARGS), e.g. for CI")
    args = p.parse_args(argv)
    scripts = discover(args.dir)
    if args.list:
        sys.stdout.write("\n".join(s.stem for s in scripts) + "\n")
        return 0
    if args.only:
        known = {s.stem: s for s in scripts}
        chosen = []
        for name in args.only:
            stem = Path(name).stem
            if stem not in known:
                sys.stderr.write(f"run_all: error: unknown benchmark '{stem}' (known: "
                                 f"{', '.join(known) or 'none'})\n")
                return 2
            chosen.append(known[stem])
        scripts = chosen
    if not scripts:
        sys.stderr.write(f"run_all: error: no benchmarks/bench_*.py in {HERE}\n")
        return 2
    runs = []
    for s in scripts:
        sys.stdout.write(f"running {s.name} ...\n")
        sys.stdout.flush()
        r = run_one(s, args.timeout, (TINY_ARGS.get(s.stem, []) if args.tiny else []) + args.arg)
        if r["error"]:
            sys.stdout.write(f"  {s.name}: {r['error']}\n  last output:\n"
                             + "\n".join("    " + ln for ln in r["tail"].splitlines()) + "\n")
        runs.append(r)
    sys.stdout.write("\n" + table(runs) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(runs, indent=2, default=str))
        os.replace(tmp, args.json)
    failed = [r for r in runs if r["error"] or not all(x["passed"] for x in r["results"] if not is_skip(x))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
