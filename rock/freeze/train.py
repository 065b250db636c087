"""Train one freeze regime: a stage-2 run with the regime's token weights [4.2, 5.1, C].

Everything but the weights is the stage-2 configuration (``stage2`` section): same start model
(the stage-1 model), same prompts, same seeds, so regimes differ only in Eq. 19. Overridden per
regime: ``max_steps`` (the planned steps, :mod:`rock.freeze.plan`), ``n_checkpoints`` (one per
evaluated step) and ``loss_normalization`` (``freeze.loss_normalization``).

R and Freq(v) come from detection (``detection.downstream_mode``): ``rocks.json`` (``rocks``,
``window_radius``) and ``ranking.parquet`` (``token_id``, ``freq``); with ``window_anchor:
high_loss`` and no ``anchor_loss_threshold``, the anchor threshold is detection's
``max(tau_pre, tau_post)`` from ``info.json`` (:func:`detection_threshold`).

Per-step counts. The hook's counts (frozen tokens and windows, rock share, matched windows) are
appended per rank to ``freeze_steps.rank<r>.jsonl`` as they are made, and when the run ends they
are deduplicated by step, summed over ranks and written atomically to ``freeze_log.csv``; the
random regime's per-step W_R/W_S histograms are merged into ``control_match.json`` the same way.
(The engine's own ``log.csv`` holds the timing; its ``extra`` columns are this rank's counts only.)

Resume: the engine resumes from its last state; the hook's step counter is set to the resumed step
(read from the state's ``state.json``) so the random control draws the same windows as an
uninterrupted run, and the per-step records of redone steps replace the earlier ones.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from rock import paths
from rock.atomic import atomic_path, write_json
from rock.errors import ConfigError, DataError
from rock.freeze.config import FreezeConfig, Regime
from rock.freeze.control import MatchAccumulator
from rock.freeze.plan import eval_steps, n_checkpoints, regime_total_steps, stage2_total_steps
from rock.freeze.weights import FreezeWeights
from rock.job_files import JobFiles

log = logging.getLogger(__name__)

STEP_RECORDS = "freeze_steps.rank{rank}.jsonl"


def _detection_json(path, mode: str, what: str) -> tuple[dict, str]:
    """A detection mode's json output at ``path`` and the path, or one clear error naming the stage
    to run."""
    try:
        return json.loads(Path(path).read_text()), str(path)
    except FileNotFoundError as err:
        raise DataError(f"{what} not found", file=str(path),
                        fix=f"run `rock detect select --mode {mode}` first") from err


def load_rock_set(run_dir, mode: str, files: JobFiles = JobFiles()) -> tuple[list[int], int, np.ndarray]:
    """``(R, detection window radius, Freq(v) per token id)`` from a detection mode's outputs
    (``files`` ``rocks`` and ``ranking`` when given, else their places under ``run_dir``)."""
    import pandas as pd

    rocks_json = files.path("rocks", paths.detection_file(run_dir, mode, "rocks.json"))
    rocks, rocks_path = _detection_json(rocks_json, mode, "Rock set")
    ranking_path = files.path("ranking", paths.detection_file(run_dir, mode, "ranking.parquet"))
    if not isinstance(rocks.get("rocks"), list):
        raise DataError("no 'rocks' list", file=rocks_path, field="rocks")
    try:
        ranking = pd.read_parquet(ranking_path, columns=["token_id", "freq"])
    except FileNotFoundError as err:
        raise DataError("detection ranking not found", file=str(ranking_path),
                        fix=f"run `rock detect select --mode {mode}` first") from err
    ids = ranking["token_id"].to_numpy(dtype=np.int64)
    freq = np.zeros(int(ids.max()) + 1 if len(ids) else 1, dtype=np.int64)
    freq[ids] = ranking["freq"].to_numpy(dtype=np.int64)
    radius = rocks.get("window_radius")
    return [int(v) for v in rocks["rocks"]], (int(radius) if radius is not None else None), freq


def detection_threshold(info: dict, file: str = "info.json") -> float:
    """The high-loss cut of a training-time anchor from detection's ``info.json``: ``max(tau_pre,
    tau_post)`` in loss units (context mode; the official mode has ``tau_post`` only), i.e. an
    occurrence that Eq. 5 would call high-loss under both checkpoints' cuts (rock/freeze/masks.py).
    The trainer's per-token loss is the full-vocabulary reverse KL, so detection must have used it."""
    loss = (info.get("config") or {}).get("loss", "reverse_kl")
    if loss != "reverse_kl":
        raise DataError(f"detection used loss '{loss}', the trainer's anchor loss is reverse_kl",
                        file=file, field="config.loss",
                        fix="set freeze.anchor_loss_threshold (nats of reverse KL) explicitly")
    taus = [float(info[k]) for k in ("tau_pre", "tau_post") if info.get(k) is not None]
    if not taus:
        raise DataError("no tau_pre/tau_post", file=file, field="tau_post",
                        fix="rerun `rock detect select`, or set freeze.anchor_loss_threshold")
    return max(taus)


def anchor_threshold(run_dir, mode: str, fcfg: FreezeConfig, files: JobFiles = JobFiles()) -> float | None:
    """``freeze.anchor_loss_threshold``, or detection's (``null``; ``files`` ``info``) for
    ``window_anchor: high_loss``."""
    if fcfg.window_anchor != "high_loss" or fcfg.anchor_loss_threshold is not None:
        return fcfg.anchor_loss_threshold
    info = files.path("info", paths.detection_file(run_dir, mode, "info.json"))
    return detection_threshold(*_detection_json(info, mode, "detection info"))


def resumed_step(out_dir) -> int:
    """Optimizer step a rerun of the engine will resume from (0 for a fresh run)."""
    from rock.distill import checkpoint as ckpt

    state = ckpt.latest_state(paths.train_state(out_dir))
    if state is None:
        return 0
    scalars = json.loads((Path(state) / "state.json").read_text())
    return int(scalars["step"])


class StepRecorder:
    """Appends one JSON line per hook call: ``{"step", "rank", "stats", "hist"}`` (``hist``: the
    step's W_R/W_S histograms in the random regime, else null). One file per rank."""

    def __init__(self, path: Path, rank: int):
        self.path, self.rank = Path(path), rank

    def __call__(self, step: int, stats: dict, acc: MatchAccumulator | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rec = {"step": int(step), "rank": self.rank, "stats": stats,
               "hist": acc.to_json() if acc is not None else None}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()


def read_step_records(files: list[Path], total_steps: int) -> dict[tuple[int, int], dict]:
    """The last record of each (step, rank) with step < total (a resumed run redoes the steps after
    its last state, with the same rollouts and windows; a line cut by a kill is skipped)."""
    latest: dict[tuple[int, int], dict] = {}
    for path in files:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if 0 <= rec["step"] < total_steps:
                latest[(rec["step"], rec["rank"])] = rec
    return latest


def freeze_log(records: dict[tuple[int, int], dict]):
    """Per-step counts summed over ranks: one row per optimizer step (1-based, as the engine's
    log), with ``freeze_frozen_fraction`` recomputed from the sums."""
    import pandas as pd

    rows: dict[int, dict] = {}
    for (step, _), rec in sorted(records.items()):
        row = rows.setdefault(step + 1, {"step": step + 1})
        for k, v in rec["stats"].items():
            if k != "freeze_frozen_fraction":
                row[k] = row.get(k, 0) + v
    df = pd.DataFrame([rows[k] for k in sorted(rows)])
    if len(df):
        df["freeze_frozen_fraction"] = df["freeze_frozen_tokens"] / df["freeze_response_tokens"].clip(lower=1)
    return df


def merge_histograms(records: dict[tuple[int, int], dict], bin_base: float) -> MatchAccumulator:
    acc = MatchAccumulator(bin_base=bin_base)
    for key in sorted(records):
        if records[key].get("hist") is not None:
            acc.merge(MatchAccumulator.from_json(records[key]["hist"]))
    return acc


def train_regime(config: dict, fcfg: FreezeConfig, regime: Regime, *, run_dir, student=None,
                 source: str = "config", rank: int = 0, on_step_end=None,
                 files: JobFiles = JobFiles()) -> dict:
    """Run (or resume) one regime into ``paths.freeze_run_dir(run_dir, regime.name)``.

    ``files``: the job's inputs as its rule names them (``student``, ``prompts``, ``rocks``,
    ``ranking``, ``info``; rock.job_files), else their places under ``run_dir``.

    ``rank``: this process's data-parallel rank (torchrun's ``RANK``; 0 without torchrun).
    ``on_step_end``: passed to the engine (tests use it to interrupt a run).
    """
    from rock.config import from_dict
    from rock.distill.config import ModelsConfig
    from rock.distill.stage2 import run_stage2

    models = from_dict(ModelsConfig, config["models"], "models")
    total = regime_total_steps(config)
    prompts_path = files.path("prompts", paths.prompts(run_dir, 2))
    s2 = _regime_stage2(config, fcfg, total, prompts_path, source)
    mode = config["detection"]["downstream_mode"]
    rock_ids, det_radius, freq = load_rock_set(run_dir, mode, files)
    radius = fcfg.window_radius if fcfg.window_radius is not None else det_radius
    if radius is None:
        raise ConfigError(f"{source}: freeze.window_radius is null and rocks.json has no window_radius; "
                          "set freeze.window_radius")
    out = paths.freeze_run_dir(run_dir, regime.name)
    start = resumed_step(out)
    threshold = anchor_threshold(run_dir, mode, fcfg, files)
    hook = FreezeWeights(regime, rock_ids=rock_ids, radius=radius, token_freq=freq,
                         anchor=fcfg.window_anchor, loss_threshold=threshold,
                         control=fcfg.control, seed=s2.seed, rank=rank, step=start)
    records = out / STEP_RECORDS.format(rank=rank)
    if start == 0 and records.exists():
        records.unlink()
    hook.on_step = StepRecorder(records, rank=rank)
    student = student or str(files.path("student", paths.stage_model(run_dir, 1)))
    log.info("regime %s (%s, lambda=%g): %d steps, evaluated at %s; |R| = %d, radius %d, anchor %s "
             "(l_t >= %s), loss %s; start %s%s", regime.name, regime.selection, regime.lam, total,
             eval_steps(total, fcfg.eval_every), len(rock_ids), radius, fcfg.window_anchor, threshold,
             fcfg.loss_normalization, student, f" (resuming at step {start})" if start else "")
    t0 = time.perf_counter()
    summary = run_stage2(s2, models, prompts_path=prompts_path, student=student,
                         teacher=models.teacher, out_dir=out, weighter=hook,
                         on_step_end=on_step_end)
    log.info("regime %s: %d steps in %.1f s (engine wall-clock %.1f s)", regime.name, total,
             time.perf_counter() - t0, summary.get("wall_clock_seconds", float("nan")))
    if rank == 0:
        _write_regime_records(run_dir, out, regime, fcfg, total)
    return summary


def _regime_stage2(config: dict, fcfg: FreezeConfig, total: int, prompts_path, source: str):
    """The ``stage2`` section as a regime runs it: ``total`` steps (which the prompts must allow),
    a kept checkpoint every ``freeze.eval_every`` steps, ``freeze.loss_normalization``."""
    from rock.config import from_dict
    from rock.distill.config import Stage2Config
    from rock.distill.sampling import read_prompts

    s2 = from_dict(Stage2Config, config["stage2"], "stage2")
    rows = read_prompts(prompts_path)
    engine_total = stage2_total_steps(len(rows), global_batch=s2.global_batch, n_rollouts=s2.n_rollouts,
                                      rollout_batch=s2.rollout_batch, epochs=s2.epochs, max_steps=total)
    if engine_total != total:
        raise ConfigError(
            f"{source}: freeze: the workflow planned {total} steps per regime (from data.stage2_slice), "
            f"but {prompts_path} has {len(rows)} prompts, which gives {engine_total}; set "
            f"freeze.max_steps to at most {engine_total}")
    return dataclasses.replace(s2, max_steps=total, n_checkpoints=n_checkpoints(total, fcfg.eval_every),
                               loss_normalization=fcfg.loss_normalization)


def _write_regime_records(run_dir, out, regime: Regime, fcfg: FreezeConfig, total: int) -> None:
    """Rank 0 after a regime's run: every rank's step records -> freeze_log.csv and
    control_match.json (then the per-rank record files are removed)."""
    files = sorted(out.glob(STEP_RECORDS.format(rank="*")))
    recs = read_step_records(files, total)
    table = freeze_log(recs)
    with atomic_path(paths.freeze_log(run_dir, regime.name)) as tmp:
        table.to_csv(tmp, index=False)
    # every regime writes the file (a fixed set of outputs per run); only the random regime
    # has control windows, the others record empty histograms
    acc = merge_histograms(recs, fcfg.control.bin_base)
    write_json(paths.freeze_control_match(run_dir, regime.name),
               {"regime": regime.name, "selection": regime.selection, "steps": total,
                **acc.to_json()})
    if regime.selection == "random":
        from rock.freeze.control import match_tests

        log.info("regime %s: W_R vs W_S two-sample tests\n%s", regime.name,
                 match_tests(acc).to_string(index=False))
    for f in files:
        f.unlink(missing_ok=True)
