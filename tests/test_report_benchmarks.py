"""benchmarks/run_all.py: runs every bench_*.py in its own process and prints one table of
ratios against targets (protocol: benchmarks/protocol.py)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_ALL = ROOT / "benchmarks" / "run_all.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

from protocol import result  # noqa: E402
from run_all import parse_printed  # noqa: E402

EMITTING = """
import sys
sys.path.insert(0, {bench_dir!r})
from protocol import emit
print("my table")
emit("speed", measured=12.0, target=10.0, unit="x")
emit("memory", measured=0.2, target=0.125, direction="<=", unit="x")
"""
PRINTING = 'print("ratio (total wall-clock, 10 sets): 12.5x   (target >= 10x)")\n'
CRASHING = 'raise SystemExit("boom: out of memory")\n'


def _run(tmp_path, scripts: dict, *extra):
    for name, text in scripts.items():
        (tmp_path / f"{name}.py").write_text(text.format(bench_dir=str(ROOT / "benchmarks")))
    out = tmp_path / "summary.json"
    r = subprocess.run([sys.executable, str(RUN_ALL), "--dir", str(tmp_path), "--json", str(out), *extra],
                       capture_output=True, text=True, timeout=120)
    return r, (json.loads(out.read_text()) if out.is_file() else None)


def test_protocol_ratio_direction():
    assert result("a", 12, 10)["ratio"] == 1.2 and result("a", 12, 10)["passed"]
    r = result("m", 0.2, 0.125, direction="<=")
    assert r["ratio"] == 0.625 and not r["passed"]


def test_parse_printed_ratio_lines():
    printed = "ratio (total wall-clock, 10 sets): 12.5x   (target >= 10x)\nratio (marginal cost): 3.0x\n"
    res = parse_printed(printed, "bench_x")
    assert len(res) == 1 and res[0]["measured"] == 12.5 and res[0]["target"] == 10 and res[0]["passed"]


def test_one_table_for_all_and_exit_status(tmp_path):
    r, summary = _run(tmp_path, {"bench_emit": EMITTING, "bench_print": PRINTING})
    assert r.returncode == 1, r.stdout + r.stderr          # "memory" misses its <= target
    by = {x["bench"]: x for x in summary}
    assert [x["name"] for x in by["bench_emit"]["results"]] == ["speed", "memory"]
    assert by["bench_print"]["results"][0]["measured"] == 12.5
    lines = r.stdout.splitlines()
    assert any("speed" in ln and "1.20" in ln and "yes" in ln for ln in lines)
    assert any("memory" in ln and "<=0.125" in ln and "no" in ln for ln in lines)
    r, _ = _run(tmp_path, {}, "--only", "bench_print")
    assert r.returncode == 0


def test_a_crashing_benchmark_is_reported_not_fatal(tmp_path):
    r, summary = _run(tmp_path, {"bench_crash": CRASHING, "bench_print": PRINTING})
    assert r.returncode == 1
    crash = next(x for x in summary if x["bench"] == "bench_crash")
    assert crash["error"] == "exit status 1" and "boom" in crash["tail"]
    assert "ERROR: exit status 1" in r.stdout and "bench_print" in r.stdout
