"""The toy as a known-answer test across seeds (issue 14): does the analysis recover the planted
mechanisms in toy worlds built from other seeds, not only in the one the golden numbers record?

``make toy-seeds SEEDS="1 2"`` writes one config per seed (:func:`seed_config`: the toy config with
``seed``, ``run_dir`` = ``results/toy-seed<N>`` and the world's models under it; checked against the
paper's claims only, since the golden numbers are seed 0's), runs the toy workflow for each, and
prints :func:`summarize`'s table: per seed, the direction claims that agree and the planted
ground-truth checks recovered. ``rock report seeds`` exits 1 when a seed fails one of them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rock import paths

#: the expected tables a seed run is checked against: the paper's claims (toy kinds), no golden rows
SEED_EXPECTED = ["results/expected/paper"]


def seed_config(base: dict, seed: int, run_dir: str | Path) -> dict:
    """``base`` (the toy config as read) for toy world ``seed`` in ``run_dir``: the world's models
    under it, checked against the paper's claims only (direction claims and ground truth gate;
    the golden rows are seed 0's numbers), the report written without failing on them."""
    cfg = {**base, "seed": int(seed), "run_dir": str(run_dir)}
    cfg["models"] = {**base["models"], **{role: str(paths.world_model(run_dir, role))
                                          for role in ("teacher", "student")}}
    cfg["report"] = {**base.get("report", {}), "expected": list(SEED_EXPECTED), "fail_on_regression": False}
    return cfg


def seed_row(run_dir: Path) -> dict:
    """One run's line: the world's seed and greedy toy MATH-500 accuracy of teacher/student
    (``world.json``), direction claims agreeing / listed, the ones that disagree (id and
    measured value), ground-truth checks recovered / listed and the ones not recovered."""
    import json

    report = paths.report_dir(run_dir)
    info = paths.world_dir(run_dir) / "world.json"
    world = json.loads(info.read_text()) if info.is_file() else {}
    seed = world.get("seed")
    acc = world.get("accuracy_math500") or {}
    greedy = f"{acc['teacher']:.2f}/{acc['student']:.2f}" if {"teacher", "student"} <= set(acc) else ""
    check_csv, truth_csv = report / "claims_check.csv", report / "ground_truth.csv"
    if not check_csv.is_file() or not truth_csv.is_file():
        return {"run_dir": str(run_dir), "seed": seed, "teacher/student": greedy, "directions": "not run",
                "disagree": "", "ground_truth": "not run", "not_recovered": "", "ok": False}
    check = pd.read_csv(check_csv, dtype=str, keep_default_na=False)
    d = check[(check["kind"] == "claim") & (check["toy"] == "direction")]
    bad = d[d["toy_status"] != "agrees"]
    gt = pd.read_csv(truth_csv, dtype=str, keep_default_na=False)
    lost = gt[gt["status"] == "not recovered"]
    return {"run_dir": str(run_dir), "seed": seed, "teacher/student": greedy,
            "directions": f"{len(d) - len(bad)}/{len(d)}",
            "disagree": ", ".join(f"{r.id} ({r.measured})" for r in bad.itertuples()),
            "ground_truth": f"{(gt['status'] == 'recovered').sum()}/{len(gt)}",
            "not_recovered": ", ".join(f"{r.check} ({r.value})" for r in lost.itertuples()),
            "ok": len(bad) == 0 and len(lost) == 0}


def summarize(run_dirs: list[Path]) -> pd.DataFrame:
    return pd.DataFrame([seed_row(Path(r)) for r in run_dirs])
