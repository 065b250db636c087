"""The numerical platform a toy run computed on, and whether golden numbers compare across platforms.

The toy run trains small models on the CPU in float32. Two machines with the same code, seed and
package versions still produce different weights when their BLAS and vectorised kernels differ:
oneMKL dispatches its sgemm by CPU vendor and instruction set ("settings other than AUTO or
COMPATIBLE are available only for Intel processors", oneMKL developer guide, *Specifying Code
Branches*), and ATen picks AVX2 or AVX-512 kernels at run time. Measured here: the same toy world
built on an AMD EPYC (teacher 0.83 / student 0.22 greedy on toy MATH-500) and on an Intel Xeon with
AVX-512 (0.85 / 0.19), or the Xeon with ``ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2`` (0.79 / 0.20).
The only vendor-independent setting, ``MKL_CBWR=COMPATIBLE``, made a toy training step 2.4x slower
(0.69 -> 1.67 s), which the 10-minute toy budget cannot pay.

So golden numbers are a *same-platform* regression check: they are recorded together with the
platform (``platform.json`` next to ``golden.csv``), and ``rock report check`` fails on a golden
disagreement only when the run's platform matches the recorded one (or ``ROCK_GOLDEN_STRICT=1``).
On another platform the disagreements are still listed, with a warning that names both platforms;
re-record there with ``rock report golden --update`` to make the check strict again. Determinism on
one machine is checked independently of this (two toy runs, one killed and resumed, must produce
identical tables and weights: ``tests/test_toy_workflow.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PLATFORM_FILE = "platform.json"
#: what decides the float32 results of the toy's CPU kernels
FIELDS = ("cpu_vendor", "cpu_model", "cpu_capability", "torch")
STRICT_ENV = "ROCK_GOLDEN_STRICT"


def _cpuinfo(key: str) -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def current() -> dict[str, str]:
    """This process's numerical platform (:data:`FIELDS`)."""
    import torch

    return {"cpu_vendor": _cpuinfo("vendor_id"), "cpu_model": _cpuinfo("model name"),
            "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "torch": torch.__version__}


def read(golden_dir: str | Path) -> dict[str, str] | None:
    """The platform the golden numbers in ``golden_dir`` were recorded on (None: not recorded)."""
    path = Path(golden_dir) / PLATFORM_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write(golden_dir: str | Path, plat: dict[str, str]) -> Path:
    from rock.atomic import write_text

    path = Path(golden_dir) / PLATFORM_FILE
    write_text(path, json.dumps({k: plat[k] for k in FIELDS}, indent=2) + "\n")
    return path


def differences(recorded: dict[str, str] | None, now: dict[str, str]) -> list[str]:
    """``field: recorded != now`` for every field that differs; ``[]`` when they match.

    A golden table without a recorded platform (no ``platform.json``) is compared strictly."""
    if recorded is None:
        return []
    return [f"{k}: {recorded.get(k)!r} != {now.get(k)!r}" for k in FIELDS if recorded.get(k) != now.get(k)]


def golden_gates(recorded: dict[str, str] | None, now: dict[str, str],
                 env: dict[str, str] | None = None) -> tuple[bool, list[str]]:
    """Whether golden disagreements fail the check here, and why not (the differences)."""
    env = os.environ if env is None else env
    diff = differences(recorded, now)
    return (not diff or env.get(STRICT_ENV) == "1"), diff


def recorded_for(expected: list[str | Path]) -> dict[str, str] | None:
    """The recorded platform of the golden table among the ``--expected`` files or directories."""
    for p in map(Path, expected):
        d = p if p.is_dir() else p.parent
        if (d / "golden.csv").is_file():
            return read(d)
    return None
