"""Result protocol of the performance benchmarks (see benchmarks/README.md).

A benchmark script ``benchmarks/bench_<name>.py`` prints its own table for a human and, when the
environment variable ``ROCK_BENCH_RESULT`` names a file, also writes its results there as JSON so
that ``benchmarks/run_all.py`` can print one summary table::

    from protocol import emit            # benchmarks/ is the script's directory, so this imports
    emit("kl_chunked_peak_memory", measured=9.4, target=8.0, direction=">=", unit="x",
         note="naive / chunked peak bytes at V=151,936, 4,096 positions")

Each result is ``{name, measured, target, ratio, passed, direction, unit, note}``; ``ratio`` is
``measured / target`` for ``>=`` targets and ``target / measured`` for ``<=`` targets, so a ratio
of at least 1 always means the target is met. Several calls append to the same file.

A script that cannot measure here (e.g. the comparison side is not installed) says so with
``skip(name, reason)``: the summary shows the reason and the run does not count as failed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

ENV = "ROCK_BENCH_RESULT"
DIRECTIONS = (">=", "<=")
REQUIRED = ("name", "measured", "target", "ratio", "passed")


def result(name: str, measured: float, target: float, *, direction: str = ">=", unit: str = "",
           note: str = "") -> dict:
    """One result record (pure; :func:`emit` writes it)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    measured, target = float(measured), float(target)
    if direction == ">=":
        ratio = measured / target if target else math.inf
    else:
        ratio = target / measured if measured else math.inf
    return {"name": name, "measured": measured, "target": target, "ratio": ratio,
            "passed": bool(ratio >= 1.0), "direction": direction, "unit": unit, "note": note}


def emit(name: str, measured: float, target: float, **kw) -> dict:
    """Append a result to the file named by ``$ROCK_BENCH_RESULT`` (no-op when it is unset)."""
    rec = result(name, measured, target, **kw)
    _append(rec)
    return rec


def skip(name: str, reason: str) -> dict:
    """Record that ``name`` was not measured, and why (no-op when ``$ROCK_BENCH_RESULT`` is unset)."""
    rec = {"name": name, "skipped": reason}
    _append(rec)
    return rec


def _append(rec: dict) -> None:
    path = os.environ.get(ENV)
    if path:
        p = Path(path)
        old = json.loads(p.read_text()) if p.is_file() and p.stat().st_size else []
        old = old if isinstance(old, list) else [old]
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(old + [rec], indent=2))
        os.replace(tmp, p)
