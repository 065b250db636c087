"""Resume states and kept checkpoints of a training run (DESIGN.md: "training resumes from its last
checkpoint"; Section 5.1: 7 stage-2 checkpoints).

A resume state is a directory ``<train_state>/step_<n>/`` with the student (HF format, fp32 master
weights), ``trainer_state.pt`` (optimizer, scheduler, RNG states of python/numpy/torch/cuda, step,
data position, elapsed wall-clock) and ``state.json`` (the same scalars, readable). It is written
to a temporary sibling and renamed; then ``LATEST`` (one line, the directory name) is replaced
atomically, then older states are deleted. A kill at any moment therefore leaves either the old
or the new state complete and ``LATEST`` naming a complete one; :func:`latest_state` falls back
to the newest complete directory if ``LATEST`` is missing.

The in-progress per-step log lives beside them (``log.partial.csv``, appended and flushed per step);
on resume it is cut back to the resumed step, and when the run completes it is copied atomically to
``train_log(out_dir)``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rock.atomic import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
LATEST = "LATEST"
PARTIAL_LOG = "log.partial.csv"


def capture_rng() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(state_root: str | os.PathLike, step: int, *, save_model: Callable[[Path], None],
               trainer_state: dict, keep: int = 1, is_main: bool = True) -> Path:
    """Write resume state ``step`` atomically and point ``LATEST`` at it (module docstring).

    ``save_model(dir)`` writes the student; ``trainer_state`` holds optimizer/scheduler state dicts
    and scalars (step, data position, elapsed seconds). Only the main rank writes files, but
    ``save_model`` is called on every rank (FSDP2 gathers are collectives).
    """
    root = Path(state_root)
    final = root / f"step_{step}"
    if not is_main:
        save_model(None)
        return final
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(final, directory=True) as tmp:
        save_model(tmp / "model")
        torch.save({**trainer_state, "rng": capture_rng()}, tmp / STATE_FILE)
        scalars = {k: v for k, v in trainer_state.items() if isinstance(v, (int, float, str, list, dict))
                   and k not in ("optimizer", "scheduler")}
        write_json(tmp / "state.json", scalars)
    write_text(root / LATEST, final.name + "\n")
    complete = sorted(_complete_states(root), key=lambda p: int(p.name.split("_")[1]))
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _complete_states(root: Path) -> list[Path]:
    return [p for p in root.glob("step_*") if p.is_dir() and (p / STATE_FILE).exists()
            and p.name.split("_")[1].isdigit()]


def latest_state(state_root: str | os.PathLike) -> Path | None:
    """The resume state to continue from, or None for a fresh run."""
    root = Path(state_root)
    if not root.exists():
        return None
    pointer = root / LATEST
    if pointer.exists():
        cand = root / pointer.read_text().strip()
        if (cand / STATE_FILE).exists():
            return cand
    complete = sorted(_complete_states(root), key=lambda p: int(p.name.split("_")[1]))
    return complete[-1] if complete else None


def load_trainer_state(state_dir: str | os.PathLike) -> dict:
    return torch.load(Path(state_dir) / STATE_FILE, map_location="cpu", weights_only=False)


def save_hf(model, tokenizer, out: str | os.PathLike, *, dtype: torch.dtype | None = None,
            state_dict: dict | None = None) -> None:
    """HF-format model directory (weights + config + tokenizer), written atomically.

    ``dtype`` casts the saved weights (bf16 for the paper's GPU runs); ``state_dict`` is the full
    state dict under FSDP2 (gathered by the caller), else the model's own.
    """
    with atomic_path(out, directory=True) as tmp:
        sd = state_dict if state_dict is not None else model.state_dict()
        if dtype is not None:
            sd = {k: (v.to(dtype) if torch.is_floating_point(v) else v) for k, v in sd.items()}
        model.save_pretrained(tmp, state_dict=sd)
        if dtype is not None:
            cfg = json.loads((tmp / "config.json").read_text())
            cfg["dtype"] = str(dtype).replace("torch.", "")
            (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)


class StepLog:
    """Per-step log rows: appended to ``<state_root>/log.partial.csv`` while running.

    The header always names every column of every row: a row with new columns (the caller extends
    :attr:`columns`, e.g. freeze counts known only after the first step) rewrites the file under the
    wider header first, and :meth:`truncate` after a resume keeps the columns the file already had.
    """

    def __init__(self, state_root: str | os.PathLike, columns: list[str], *, enabled: bool = True):
        self.path = Path(state_root) / PARTIAL_LOG
        self.columns = list(columns)
        self.enabled = enabled

    def header(self) -> list[str] | None:
        """The columns of the file on disk (None when there is none yet)."""
        if not self.path.exists():
            return None
        with open(self.path, newline="") as fh:
            return next(csv.reader(fh), None)

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as fh:
            return list(csv.DictReader(fh))

    def _rewrite(self, rows: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore", restval="")
            w.writeheader()
            w.writerows(rows)

    def truncate(self, step: int) -> None:
        """Keep rows of steps <= ``step`` (after a resume); drops a half-written last line too."""
        if not self.enabled:
            return
        kept = []
        for r in self.rows():
            try:
                if int(r["step"]) <= step and None not in r.values() and None not in r:
                    kept.append(r)
            except (KeyError, TypeError, ValueError):
                continue
        self.columns += [c for c in (self.header() or []) if c not in self.columns]
        self._rewrite(kept)

    def append(self, row: dict) -> None:
        if not self.enabled:
            return
        header = self.header()
        if header is not None and header != self.columns:
            self.columns += [c for c in header if c not in self.columns]
            self._rewrite(self.rows())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: _fmt(row.get(k, "")) for k in self.columns})
            fh.flush()
            os.fsync(fh.fileno())

    def publish(self, final: str | os.PathLike) -> None:
        if not self.enabled:
            return
        with atomic_path(final) as tmp:
            shutil.copyfile(self.path, tmp)


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v
