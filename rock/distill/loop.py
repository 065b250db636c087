"""The resumable training loop shared by stage 1 and stage 2.

``run_loop`` drives ``total_steps`` optimizer steps of a :class:`~rock.distill.trainer.Trainer`; a
stage supplies ``make_batch(step) -> (sequences, counts)`` (stage 1 reads teacher samples, stage 2
generates rollouts with the current weights). Per step it appends a log row, saves the kept HF
checkpoints (into the resume area; they move to ``checkpoints/`` when the run completes, since a
resumed run cannot redo a checkpoint of a step before its resume state) and, every ``save_state_every`` steps (only at ``state_ok(step)``, e.g. the end of a
rollout round), a resume state. A rerun finds the newest resume state and continues from it:
model, optimizer, scheduler, RNG states and step (the data position follows from the step) are
restored, so the resumed run ends with the same weights as an uninterrupted one (tested).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from rock import paths
from rock.atomic import atomic_path, write_json
from rock.distill import checkpoint as ckpt
from rock.distill.trainer import Runtime, StepResult, Trainer, TrainSequence, load_causal_lm
from rock.errors import ConfigError

log = logging.getLogger(__name__)

LOG_COLUMNS = ["step", "epoch", "loss", "mean_kl", "mean_ce", "lr", "grad_norm", "n_sequences",
               "n_response_tokens", "tokens_per_s", "generate_seconds", "train_seconds", "step_seconds",
               "wall_clock", "n_empty_prompts", "n_truncated_prompts", "n_empty_rollouts",
               "n_truncated_rollouts", "n_skipped_sequences", "n_frozen_tokens", "weight_sum"]


def checkpoint_steps(total_steps: int, n_checkpoints: int) -> list[int]:
    """``n_checkpoints`` optimizer steps evenly spaced over the run, the last one being the end."""
    if total_steps <= 0 or n_checkpoints <= 0:
        return []
    return sorted({max(1, math.ceil(total_steps * i / n_checkpoints)) for i in range(1, n_checkpoints + 1)})


@dataclass
class LoopSpec:
    """What the loop needs besides the trainer."""

    out_dir: Path
    student_path: str
    total_steps: int
    save_state_every: int
    keep_checkpoints: list[int] = field(default_factory=list)
    save_dtype: torch.dtype | None = None
    save_token_losses: bool = False
    summary: dict = field(default_factory=dict)


#: settings that may change between a kill and the rerun without changing the result
RESUME_SAFE_KEYS = {"save_state_every", "save_token_losses", "device", "n_checkpoints",
                    "rollout_batch_size_hf", "gpu_memory_utilization", "micro_batch"}


def run_fingerprint(spec: LoopSpec) -> str:
    """Hash of what determines the trajectory (config minus RESUME_SAFE_KEYS, models, steps)."""
    cfg = {k: v for k, v in (spec.summary.get("config") or {}).items() if k not in RESUME_SAFE_KEYS}
    key = {"config": cfg, "models": spec.summary.get("models"), "total_steps": spec.total_steps,
           "student": spec.student_path}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_loop(spec: LoopSpec, *, runtime: Runtime, tokenizer, make_trainer: Callable,
             make_batch: Callable[[int, Trainer], tuple[Sequence[TrainSequence], dict]],
             epoch_of: Callable[[int], int], state_ok: Callable[[int], bool] = lambda s: True,
             gradient_checkpointing: bool = False, on_step_end: Callable[[int], None] | None = None) -> dict:
    """Run (or resume) the loop; returns the run summary (also written to ``summary.json``)."""
    out = Path(spec.out_dir)
    state_root = paths.train_state(out)
    resume = ckpt.latest_state(state_root)
    fingerprint = run_fingerprint(spec)
    if resume:
        _check_fingerprint(resume, fingerprint, state_root)
    model_path = str(resume / "model") if resume else spec.student_path
    student = load_causal_lm(model_path, runtime, trainable=True,
                             gradient_checkpointing=gradient_checkpointing)
    trainer = make_trainer(student)
    steplog = ckpt.StepLog(state_root, LOG_COLUMNS, enabled=runtime.is_main)
    start, elapsed = _restore(resume, trainer, steplog, state_root, runtime, spec.total_steps)
    kept = set(spec.keep_checkpoints)
    bar = tqdm(range(start, spec.total_steps), initial=start, total=spec.total_steps, desc="train",
               unit="step", disable=not runtime.is_main)
    for step in bar:
        t0 = time.perf_counter()
        seqs, counts = make_batch(step, trainer)
        t1 = time.perf_counter()
        result: StepResult = trainer.step(seqs, keep_token_rows=spec.save_token_losses)
        t2 = time.perf_counter()
        elapsed += t2 - t0
        done = step + 1
        row = {"step": done, "epoch": epoch_of(step), "loss": result.loss, "mean_kl": result.mean_kd,
               "mean_ce": result.mean_ce, "lr": result.lr, "grad_norm": result.grad_norm,
               "n_sequences": result.n_sequences, "n_response_tokens": result.n_response_tokens,
               "tokens_per_s": result.n_response_tokens / max(t2 - t0, 1e-9),
               "generate_seconds": counts.pop("generate_seconds", t1 - t0), "train_seconds": t2 - t1,
               "step_seconds": t2 - t0, "wall_clock": elapsed, "n_frozen_tokens": result.n_frozen_tokens,
               "weight_sum": result.weight_sum, **counts, **result.extra}
        for k in row:
            if k not in steplog.columns:
                steplog.columns.append(k)
        steplog.append(row)
        bar.set_postfix(loss=f"{result.loss:.4f}", kl=f"{result.mean_kd:.4f}")
        if spec.save_token_losses and result.token_rows is not None:
            _write_token_losses(out, done, result.token_rows, runtime)
        if done in kept:
            _save_model(student, tokenizer, paths.train_pending_checkpoint(out, done), runtime,
                        spec.save_dtype)
        if done < spec.total_steps and done % spec.save_state_every == 0 and state_ok(step):
            _save_state(student, trainer, state_root, done, elapsed, runtime, fingerprint)
        if on_step_end is not None:
            on_step_end(done)
    _save_model(student, tokenizer, paths.train_model(out), runtime, spec.save_dtype)
    if runtime.is_main:
        _publish_checkpoints(out, sorted(kept))
    summary = {**spec.summary, "total_steps": spec.total_steps, "wall_clock_seconds": elapsed,
               "kept_checkpoints": sorted(kept), "resumed_from_step": start}
    if runtime.is_main:
        steplog.publish(paths.train_log(out))
        write_json(paths.train_summary(out), summary)
        shutil.rmtree(state_root, ignore_errors=True)
    return summary


def _check_fingerprint(resume: Path, fingerprint, state_root: Path) -> None:
    saved = json.loads((resume / "state.json").read_text()).get("fingerprint")
    if saved != fingerprint:
        raise ConfigError(f"{resume}: resume state of a run with other settings (config, models or "
                          f"step count changed); fix: restore them, or delete {state_root} to start over")


def _restore(resume, trainer: Trainer, steplog, state_root: Path, runtime: Runtime,
             total_steps: int) -> tuple[int, float]:
    """``(start step, elapsed seconds)``: the saved optimizer, scheduler and RNG state of ``resume``,
    or a fresh start (the resume area and the step log emptied)."""
    if resume:
        st = ckpt.load_trainer_state(resume)
        _load_optimizer(trainer, st["optimizer"], runtime)
        trainer.scheduler.load_state_dict(st["scheduler"])
        ckpt.restore_rng(st["rng"])
        start, elapsed = int(st["step"]), float(st.get("elapsed", 0.0))
        log.info("resuming from %s (step %d of %d)", resume, start, total_steps)
        steplog.truncate(start)
        return start, elapsed
    if runtime.is_main:
        if state_root.exists():
            shutil.rmtree(state_root)
        steplog.truncate(0)
    return 0, 0.0


def _publish_checkpoints(out: Path, steps: list[int]) -> None:
    """Move the kept checkpoints from the resume area to ``checkpoints/`` (atomic renames)."""
    for step in steps:
        src, dst = paths.train_pending_checkpoint(out, step), paths.train_checkpoint(out, step)
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(src, dst)
        elif not dst.exists():
            log.warning("kept checkpoint of step %d is missing (%s)", step, src)


def _save_model(model, tokenizer, out: Path, runtime: Runtime, dtype) -> None:
    if runtime.distributed:
        from rock.distill import fsdp

        sd = fsdp.full_state_dict(model)
        if runtime.is_main:
            ckpt.save_hf(model, tokenizer, out, dtype=dtype, state_dict=sd)
        return
    ckpt.save_hf(model, tokenizer, out, dtype=dtype)


def _save_state(student, trainer: Trainer, root: Path, step: int, elapsed: float, runtime: Runtime,
                fingerprint: str) -> None:
    if runtime.distributed:
        from rock.distill import fsdp

        optim = fsdp.full_optimizer_state(student, trainer.optimizer)
        model_sd = fsdp.full_state_dict(student)
    else:
        optim, model_sd = trainer.optimizer.state_dict(), None

    def save_model(path):
        if path is not None:
            ckpt.save_hf(student, None, path, state_dict=model_sd) if model_sd is not None else \
                student.save_pretrained(path)

    ckpt.save_state(root, step, save_model=save_model, is_main=runtime.is_main, trainer_state={
        "step": step, "elapsed": elapsed, "fingerprint": fingerprint, "optimizer": optim,
        "scheduler": trainer.scheduler.state_dict()})


def _load_optimizer(trainer: Trainer, state: dict, runtime: Runtime) -> None:
    if runtime.distributed:
        from rock.distill import fsdp

        fsdp.load_full_optimizer_state(trainer.student, trainer.optimizer, state)
    else:
        trainer.optimizer.load_state_dict(state)


def _write_token_losses(out: Path, step: int, rows: dict, runtime: Runtime) -> None:
    import pandas as pd

    path = paths.train_token_losses(out, step)
    if runtime.distributed:  # each rank writes its own share
        path = path.with_name(path.stem + f".rank{runtime.rank}" + path.suffix)
    df = pd.DataFrame({"step": step, **rows})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)

