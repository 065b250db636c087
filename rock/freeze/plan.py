"""How many steps each regime trains and which checkpoints are evaluated [4.3, Fig. 5].

Import-light (no torch): the workflow (``workflow/rules/common.smk``) calls these functions at
planning time to name one evaluation job per (regime, step), and ``rock freeze train`` calls them
again to tell the stage-2 engine which checkpoints to keep. Both must agree, so they share this
code, and the training CLI checks that the engine's own step count is the planned one.

Steps. A regime runs ``freeze.max_steps`` optimizer steps, or (0) as many as the stage-2 config
gives: ``stage2.max_steps`` if set, else ``epochs x ceil(n_prompts / rollout_batch) x
steps_per_round`` (the engine's formula, :class:`rock.distill.stage2.Stage2Batches`), with
``n_prompts`` the size of ``data.stage2_slice``.

Evaluated checkpoints. The engine keeps ``n`` checkpoints at ``ceil(total * i / n)``
(:func:`rock.distill.loop.checkpoint_steps`); with ``n = ceil(total / eval_every)`` these are the
multiples of ``eval_every`` whenever it divides ``total`` (and as evenly spaced as possible
otherwise). Step 0 is the stage-1 model every regime starts from.
"""

from __future__ import annotations

import math

from rock import paths


def checkpoint_steps(total_steps: int, n_checkpoints: int) -> list[int]:
    """The engine's kept checkpoints (same formula as :func:`rock.distill.loop.checkpoint_steps`,
    restated here without importing torch; a test checks they agree)."""
    if total_steps <= 0 or n_checkpoints <= 0:
        return []
    return sorted({max(1, math.ceil(total_steps * i / n_checkpoints)) for i in range(1, n_checkpoints + 1)})


def n_checkpoints(total_steps: int, eval_every: int) -> int:
    return max(1, math.ceil(total_steps / eval_every))


def eval_steps(total_steps: int, eval_every: int) -> list[int]:
    """``[0] + checkpoint_steps(total, ceil(total / eval_every))``: 0, 200, ..., 2400, 2500 style."""
    if total_steps < 1 or eval_every < 1:
        raise ValueError(f"total_steps ({total_steps}) and eval_every ({eval_every}) must be >= 1")
    return [0] + checkpoint_steps(total_steps, n_checkpoints(total_steps, eval_every))


def stage2_total_steps(n_prompts: int, *, global_batch: int, n_rollouts: int, rollout_batch: int = 0,
                       epochs: int = 1, max_steps: int = 0) -> int:
    """Optimizer steps of one stage-2 run (the engine's formula, module docstring)."""
    rb = rollout_batch or max(1, global_batch // n_rollouts)
    per_round = max(1, rb * n_rollouts // global_batch)
    total = epochs * max(1, math.ceil(n_prompts / rb)) * per_round
    return min(total, max_steps) if max_steps else total


def regime_total_steps(config: dict) -> int:
    """Steps of every regime from a whole config mapping (sections ``freeze``, ``stage2``, ``data``)."""
    fr = config.get("freeze") or {}
    if fr.get("max_steps"):
        return int(fr["max_steps"])
    s2 = config["stage2"]
    start, end = config["data"]["stage2_slice"]
    return stage2_total_steps(end - start, global_batch=s2["global_batch"], n_rollouts=s2["n_rollouts"],
                              rollout_batch=s2.get("rollout_batch", 0) or 0, epochs=s2.get("epochs", 1),
                              max_steps=s2.get("max_steps", 0) or 0)


def planned_eval_steps(config: dict) -> list[int]:
    """Evaluated steps of every regime, from a whole config mapping."""
    return eval_steps(regime_total_steps(config), int(config["freeze"]["eval_every"]))


def report_files(config: dict, run_dir) -> dict[str, dict]:
    """What ``rock freeze report`` reads, by the names its rule gives them (``freeze_report`` in
    workflow/rules/freeze.smk declares each as a named input, :func:`rock.job_files.keyed_paths`
    maps what the job is given back to these keys): ``evals`` {(regime, step): per-problem table;
    step 0, the stage-1 model, is one file shared by every regime}, ``logs`` {regime: engine log},
    ``counts`` {regime: freeze_log.csv}, ``control`` {random regime: control_match.json}."""
    regimes = config["freeze"]["regimes"]
    names = [r["name"] for r in regimes]
    return {
        "evals": {(r, s): paths.freeze_eval(run_dir, r, s, "per_problem.parquet")
                  for r in names for s in planned_eval_steps(config)},
        "logs": {r: paths.train_log(paths.freeze_run_dir(run_dir, r)) for r in names},
        "counts": {r: paths.freeze_log(run_dir, r) for r in names},
        "control": {r["name"]: paths.freeze_control_match(run_dir, r["name"])
                    for r in regimes if r["selection"] == "random"},
    }
