"""The benchmark runner (benchmarks/run_all.py) and the KD step benchmark in their tiny modes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"

FAKES = {
    "bench_a_ok.py": "from protocol import emit\nemit('a_speed', 2.0, 1.5, unit='x')\n"
                     "emit('a_memory', 0.25, 0.5, direction='<=', unit='x')\n",
    "bench_b_printed.py": "print('ratio (b wall-clock): 12.5x   (target >= 10x)')\n",
    "bench_c_skip.py": "from protocol import skip\nskip('c_vs_trl', 'no --trl-python')\n",
    "bench_d_miss.py": "from protocol import emit\nemit('d_time', 1.6, 1.3, direction='<=')\n",
    "bench_e_crash.py": "raise SystemExit('boom')\n",
    "bench_f_silent.py": "print('a table but no ratio')\n",
}


def _run_all(*args, cwd=REPO, timeout=600):
    return subprocess.run([sys.executable, str(BENCH / "run_all.py"), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def _fake_dir(tmp_path, names):
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(BENCH / "protocol.py", tmp_path / "protocol.py")
    for name in names:
        (tmp_path / name).write_text(FAKES[name])
    return tmp_path


def test_run_all_summarises_emitted_printed_and_skipped_results(tmp_path):
    d = _fake_dir(tmp_path, ["bench_a_ok.py", "bench_b_printed.py", "bench_c_skip.py"])
    out = _run_all("--dir", str(d), "--json", str(tmp_path / "summary.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    runs = {r["bench"]: r for r in json.loads((tmp_path / "summary.json").read_text())}
    assert [x["name"] for x in runs["bench_a_ok"]["results"]] == ["a_speed", "a_memory"]
    a_speed, a_mem = runs["bench_a_ok"]["results"]
    assert a_speed["ratio"] == 2.0 / 1.5 and a_mem["ratio"] == 0.5 / 0.25
    printed = runs["bench_b_printed"]["results"][0]
    assert printed["measured"] == 12.5 and printed["target"] == 10 and printed["passed"]
    assert runs["bench_c_skip"]["results"] == [{"name": "c_vs_trl", "skipped": "no --trl-python"}]
    assert "SKIPPED: no --trl-python" in out.stdout and "ERROR" not in out.stdout


def test_run_all_fails_on_a_missed_target_a_crash_and_silence(tmp_path):
    for name in ("bench_d_miss.py", "bench_e_crash.py", "bench_f_silent.py"):
        d = _fake_dir(tmp_path / name[:-3], [name, "bench_a_ok.py"])
        out = _run_all("--dir", str(d))
        assert out.returncode == 1, (name, out.stdout)
        assert "a_speed" in out.stdout            # the good script's results still reach the summary
    assert "reported no result" in out.stdout     # the silent one is named as such


def test_run_all_tiny_modes_bring_every_ratio_to_the_summary(tmp_path):
    """The real scripts in their tiny modes (CPU, about half a minute): each one's ratios arrive."""
    out = _run_all("--tiny", "--only", "bench_kl", "bench_train_step", "--json",
                   str(tmp_path / "s.json"))
    assert "ERROR" not in out.stdout, out.stdout
    runs = {r["bench"]: r for r in json.loads((tmp_path / "s.json").read_text())}
    assert {x["name"] for x in runs["bench_kl"]["results"]} == {
        "kl_train_peak_memory", "kl_train_time", "kl_forward_peak_memory", "kl_forward_time"}
    assert [x["name"] for x in runs["bench_train_step"]["results"]] == ["train_step_tiny_r48_m2_speed"]
    assert all(r["returncode"] == 0 and not r["error"] for r in runs.values())
    speed = runs["bench_train_step"]["results"][0]
    assert 0 < speed["measured"] < 100 and speed["target"] == 1.2
